//! The device registry on PostgreSQL.
