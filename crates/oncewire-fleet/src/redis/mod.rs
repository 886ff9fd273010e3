//! Fleet state on Redis.

pub mod sessions;
