//! oncewire fleet state: what several servers behind one load balancer
//! must share so that every request is accepted once by the whole fleet
//! (`SPEC.md` §17).
//!
//! - [`redis`]: the replay state (session windows, one-shot requests,
//!   token proofs, used challenges), sessions sealed under a fleet key,
//!   pending handshakes and the servers' send counters;
//! - [`postgres`]: the device registry.
//!
//! Every store implements a trait of `oncewire_http::store` and passes the
//! same behavioural suite as the in-memory stores.

#![forbid(unsafe_code)]

pub mod postgres;
pub mod redis;
pub mod seal;
