//! Fleet state on Redis.
//!
//! - [`conn`]: the shared connection ([`conn::Fleet`]), timeouts, the error
//!   mapping, and the restart floor;
//! - [`once`]: the accepted-once sets ([`once::RedisOnce`]);
//! - [`pending`]: pending handshakes ([`pending::RedisPending`]);
//! - [`sessions`]: established sessions.

pub mod conn;
pub mod once;
pub mod pending;
pub mod sessions;

pub use conn::{Fleet, FleetConfig};
pub use once::RedisOnce;
pub use pending::RedisPending;
