//! The provider every type defaults to is the one this run names: RustCrypto,
//! or aws-lc-rs under `RUSTFLAGS="--cfg oncewire_default_awslc"`, the run
//! of the whole suite on the server provider (`.ci/run`).
#![allow(missing_docs)]

use core::any::TypeId;
use oncewire::{DefaultProvider, RustCrypto, ServerKey, Session};

#[test]
fn the_default_provider_is_the_one_this_run_names() {
    #[cfg(oncewire_default_awslc)]
    type Expected = oncewire::provider::AwsLc;
    #[cfg(not(oncewire_default_awslc))]
    type Expected = RustCrypto;
    assert_eq!(TypeId::of::<DefaultProvider>(), TypeId::of::<Expected>());
    assert_eq!(TypeId::of::<Session>(), TypeId::of::<Session<Expected>>());
    assert_eq!(TypeId::of::<ServerKey>(), TypeId::of::<ServerKey<Expected>>());
    assert_eq!(cfg!(oncewire_default_awslc), TypeId::of::<Session>() != TypeId::of::<Session<RustCrypto>>());
}
