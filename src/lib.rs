#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

#[cfg(feature = "std")]
extern crate std;

pub mod audit;
pub mod bound;
pub mod cache;
pub mod challenge;
pub mod clock;
pub mod device;
pub mod error;
pub mod handshake;
pub mod hpke;
pub mod keyschedule;
pub mod prover;
pub mod provider;
pub mod record;
pub mod replay;
pub mod request;
pub mod rng;
pub mod secret;
pub mod session;
pub mod store;
pub mod stream;
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub mod table;
pub mod token;
pub mod wire;

// The entry points, by role (see the crate docs above).
pub use audit::Audit;
pub use clock::Clock;
pub use device::{DeviceId, DeviceSigner};
pub use error::{Error, Expiry, Origin, PeerAction, Result};
pub use handshake::{ClientHandshake, ServerKey};
pub use provider::{CryptoProvider, DefaultProvider, PublicKey, RustCrypto};
pub use record::{CounterReceiver, CounterSender, OneShotReceiver, OneShotSender, Opened};
pub use secret::Secret;
pub use session::{Limits, Received, RequestId, SESSION_STATE_LEN, SeqUse, Session};
#[cfg(feature = "std")]
pub use table::SessionTable;
