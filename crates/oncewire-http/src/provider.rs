//! The crypto provider every oncewire type in this crate runs on, chosen
//! once for the crate by a Cargo feature:
//!
//! - default: [`oncewire::provider::DefaultProvider`] (RustCrypto, unless the
//!   core's `oncewire_default_awslc` cfg switched it);
//! - feature `aws-lc-rs`: [`oncewire::provider::AwsLc`], several times
//!   faster on a server CPU (`BENCHMARKS.md`, "HTTP load on both providers").
//!
//! The wire is the same: a server on either provider talks to a client on
//! either. The aliases below are the types this crate's API takes and
//! returns; code that names them (`oncewire_http::provider::ServerKey`, not
//! `oncewire::ServerKey<RustCrypto>`) compiles with the feature on or off.
//! The feature changes which provider those aliases name, so a crate that
//! spells out a provider of its own must match it; that is the price of one
//! provider per process without a type parameter on every store trait.

/// The provider of this build (see the module docs).
#[cfg(feature = "aws-lc-rs")]
pub type Provider = oncewire::provider::AwsLc;
/// The provider of this build (see the module docs).
#[cfg(not(feature = "aws-lc-rs"))]
pub type Provider = oncewire::provider::DefaultProvider;

/// The server's static key ([`oncewire::ServerKey`]) on [`Provider`].
pub type ServerKey = oncewire::ServerKey<Provider>;
/// An established session ([`oncewire::Session`]) on [`Provider`].
pub type Session = oncewire::Session<Provider>;
/// A handshake waiting for message 3 ([`oncewire::handshake::ServerAwaitFinish`]) on [`Provider`].
pub type ServerAwaitFinish = oncewire::handshake::ServerAwaitFinish<Provider>;
/// The token issuer ([`oncewire::token::TokenIssuer`]) on [`Provider`].
pub type TokenIssuer = oncewire::token::TokenIssuer<Provider>;
/// A token verifier ([`oncewire::token::TokenVerifier`]) on [`Provider`].
pub type TokenVerifier<'a> = oncewire::token::TokenVerifier<'a, Provider>;
/// Stateless challenges ([`oncewire::challenge::StatelessChallenges`]) on [`Provider`].
pub type StatelessChallenges = oncewire::challenge::StatelessChallenges<Provider>;
/// The enrollment challenge issuer ([`oncewire::device::EnrollmentIssuer`]) on [`Provider`].
pub type EnrollmentIssuer = oncewire::device::EnrollmentIssuer<Provider>;
/// The one-shot request key pair ([`oncewire::hpke::KeyPair`]) on [`Provider`].
pub type KeyPair = oncewire::hpke::KeyPair<Provider>;
/// The one-shot request receiver ([`oncewire::request::RequestReceiver`]) on [`Provider`].
pub type RequestReceiver = oncewire::request::RequestReceiver<oncewire::hpke::Aes256Gcm, Provider>;
/// An accepted-once set ([`oncewire::cache::ReplayCache`]) on [`Provider`].
pub type ReplayCache<const N: usize = 1024> = oncewire::cache::ReplayCache<Provider, N>;
/// The client's side of the handshake ([`oncewire::ClientHandshake`]) on [`Provider`].
pub type ClientHandshake = oncewire::ClientHandshake<Provider>;
/// The device's prover ([`oncewire::prover::Prover`]) on [`Provider`].
pub type Prover<S> = oncewire::prover::Prover<S, Provider>;
/// A one-shot request sender ([`oncewire::request::RequestSender`]) on [`Provider`].
pub type RequestSender = oncewire::request::RequestSender<oncewire::hpke::Aes256Gcm, Provider>;
/// The client's handshake after message 1 ([`oncewire::handshake::ClientAwaitResponse`]) on [`Provider`].
pub type ClientAwaitResponse = oncewire::handshake::ClientAwaitResponse<Provider>;
/// A device key in software ([`oncewire::device::SoftwareSigner`]) on [`Provider`]: tests and demos.
pub type SoftwareSigner = oncewire::device::SoftwareSigner<Provider>;
/// One enrollment challenge ([`oncewire::device::EnrollmentChallenge`]) on [`Provider`].
pub type EnrollmentChallenge = oncewire::device::EnrollmentChallenge<Provider>;

/// The name of [`Provider`] in this build: `"AwsLc"` or `"RustCrypto"`
/// (for logs and benchmark tables).
pub fn name() -> &'static str {
    let full = core::any::type_name::<Provider>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_feature_picks_the_provider_and_its_name() {
        #[cfg(feature = "aws-lc-rs")]
        assert_eq!(core::any::TypeId::of::<super::Provider>(), core::any::TypeId::of::<oncewire::provider::AwsLc>());
        #[cfg(feature = "aws-lc-rs")]
        assert_eq!(super::name(), "AwsLc");
        #[cfg(not(feature = "aws-lc-rs"))]
        assert_eq!(
            core::any::TypeId::of::<super::Provider>(),
            core::any::TypeId::of::<oncewire::provider::DefaultProvider>()
        );
        #[cfg(all(not(feature = "aws-lc-rs"), not(oncewire_default_awslc)))]
        assert_eq!(super::name(), "RustCrypto");
    }
}
