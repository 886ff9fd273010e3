//! Sessions on Redis, sealed under the fleet key (owned by the lead; placeholder).
