//! Servers built with one fleet secret share the keys a fleet must share
//! (`SPEC.md` §17.1); servers without it, or with another, do not.
#![allow(missing_docs, clippy::unwrap_used)]

use oncewire::Secret;
use oncewire::rng::OsRng;
use oncewire_http::provider::ServerKey;
use oncewire_http::server::Backend;

fn server_key() -> ServerKey {
    ServerKey::from_bytes(&Secret::new([7u8; 32])).unwrap()
}

#[test]
fn one_fleet_secret_one_set_of_keys() {
    let a = Backend::builder(server_key()).fleet_secret(Secret::new([1u8; 32])).build().unwrap();
    let b = Backend::builder(server_key()).fleet_secret(Secret::new([1u8; 32])).build().unwrap();
    assert_eq!(a.request_key(), b.request_key());
    assert_eq!(a.token_key(), b.token_key());
    assert_eq!(a.public_key(), b.public_key());

    let other = Backend::builder(server_key()).fleet_secret(Secret::new([2u8; 32])).build().unwrap();
    assert_ne!(a.request_key(), other.request_key());
    assert_ne!(a.token_key(), other.token_key());
    let alone = Backend::builder(ServerKey::generate(&mut OsRng).unwrap()).build().unwrap();
    assert_ne!(a.request_key(), alone.request_key());
}
