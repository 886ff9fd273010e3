//! HPKE (RFC 9180): encryption to a public key, with no allocation.
//!
//! One KEM and one KDF, two AEADs, two modes:
//!
//! - KEM `DHKEM(P-256, HKDF-SHA256)` (0x0010), KDF `HKDF-SHA256` (0x0001);
//! - AEAD [`Aes128Gcm`] (0x0001) or [`Aes256Gcm`] (0x0002), chosen by type;
//! - mode base (0x00) or auth (0x02), where the sender also proves its own
//!   static key. PSK modes are not offered.
//!
//! Contexts seal and open in place with a detached tag, count their sequence
//! number (exhaustion is [`Error::KeyExhausted`], never a wrap-around), and
//! export secrets (`Context.Export`). A failed open leaves the buffer and
//! the sequence number unchanged. Every primitive goes through the
//! [`CryptoProvider`] seam.
//!
//! ```
//! use oncewire::hpke::{self, KeyPair, SingleShot};
//! use oncewire::rng::OsRng;
//!
//! let device: KeyPair = KeyPair::generate(&mut OsRng)?;
//! // Sender: enc ‖ ciphertext ‖ tag, sealed in place.
//! let msg = b"firmware manifest";
//! let mut buf = [0u8; hpke::ENC_LEN + 17 + hpke::TAG_LEN];
//! buf[hpke::ENC_LEN..][..msg.len()].copy_from_slice(msg);
//! let n = <SingleShot>::seal(&mut OsRng, device.public_key(), None, b"info", b"aad", &mut buf, msg.len())?;
//! // Recipient.
//! let opened = <SingleShot>::open(&device, None, b"info", b"aad", &mut buf[..n])?;
//! assert_eq!(opened, msg);
//! # Ok::<(), oncewire::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::provider::{AeadCipher, CryptoProvider, P256_PUBLIC_LEN, PublicKey};
use crate::secret::Secret;
use crate::wire::NONCE_LEN;
use rand_core::TryCryptoRng;

/// Length of the encapsulated key `enc` (an uncompressed P-256 point).
pub const ENC_LEN: usize = P256_PUBLIC_LEN;
/// Length of the AEAD tag.
pub use crate::wire::TAG_LEN;
/// Bytes a single-shot message adds: `enc` and the tag.
pub const SINGLE_SHOT_OVERHEAD: usize = ENC_LEN + TAG_LEN;

const KEM_ID: u16 = 0x0010;
const KDF_ID: u16 = 0x0001;
const MODE_BASE: u8 = 0x00;
const MODE_AUTH: u8 = 0x02;
const HPKE_V1: &[u8] = b"HPKE-v1";
const KEM_SUITE_ID: [u8; 5] = [b'K', b'E', b'M', (KEM_ID >> 8) as u8, KEM_ID as u8];
/// Longest exporter output (255 × Nh).
pub const MAX_EXPORT_LEN: usize = 255 * 32;

/// An AEAD this module can use, named by a marker type.
pub trait HpkeAead {
    /// The RFC 9180 AEAD identifier.
    const ID: u16;
    /// Key length `Nk`.
    const KEY_LEN: usize;
    /// The provider's cipher for this AEAD.
    type Cipher<P: CryptoProvider>: AeadCipher;
}

/// AES-128-GCM (AEAD id 0x0001).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Aes128Gcm;

/// AES-256-GCM (AEAD id 0x0002).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Aes256Gcm;

impl HpkeAead for Aes128Gcm {
    const ID: u16 = 0x0001;
    const KEY_LEN: usize = 16;
    type Cipher<P: CryptoProvider> = P::Aead128;
}

impl HpkeAead for Aes256Gcm {
    const ID: u16 = 0x0002;
    const KEY_LEN: usize = 32;
    type Cipher<P: CryptoProvider> = P::Aead256;
}

fn hpke_suite_id<A: HpkeAead>() -> [u8; 10] {
    let [k0, k1] = KEM_ID.to_be_bytes();
    let [d0, d1] = KDF_ID.to_be_bytes();
    let [a0, a1] = A::ID.to_be_bytes();
    [b'H', b'P', b'K', b'E', k0, k1, d0, d1, a0, a1]
}

/// `LabeledExtract(salt, label, ikm)` with up to four `ikm` parts.
fn labeled_extract<P: CryptoProvider>(suite_id: &[u8], salt: &[u8], label: &[u8], ikm: &[&[u8]]) -> Secret<32> {
    let mut parts: [&[u8]; 7] = [HPKE_V1, suite_id, label, &[], &[], &[], &[]];
    for (slot, p) in parts.iter_mut().skip(3).zip(ikm) {
        *slot = p;
    }
    // An empty salt is HMAC with a zero key of hash length, which HMAC pads
    // to the same block as the empty key.
    P::hkdf_extract(salt, &parts)
}

/// `LabeledExpand(prk, label, info, L)` into `out` (`L = out.len()`).
fn labeled_expand<P: CryptoProvider>(
    suite_id: &[u8],
    prk: &Secret<32>,
    label: &[u8],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<()> {
    let len = u16::try_from(out.len()).map_err(|_| Error::BufferTooSmall)?.to_be_bytes();
    let mut parts: [&[u8]; 8] = [&len, HPKE_V1, suite_id, label, &[], &[], &[], &[]];
    if info.len() > 4 {
        return Err(Error::Misuse);
    }
    for (slot, p) in parts.iter_mut().skip(4).zip(info) {
        *slot = p;
    }
    P::hkdf_expand(prk, &parts, out)
}

/// A P-256 key pair for HPKE: a recipient's key, or a sender's static key
/// in auth mode.
pub struct KeyPair<P: CryptoProvider = crate::provider::DefaultProvider> {
    secret: P::EcdhSecret,
    public: PublicKey,
}

impl<P: CryptoProvider> core::fmt::Debug for KeyPair<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

impl<P: CryptoProvider> KeyPair<P> {
    /// A fresh key pair from the RNG.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self> {
        let (secret, public) = P::p256_generate(rng)?;
        Ok(Self { secret, public })
    }

    /// `DeriveKeyPair(ikm)` (RFC 9180 §7.1.3): the same `ikm` always gives
    /// the same key pair. `ikm` must hold at least 32 bytes of entropy.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if `ikm` is shorter than 32 bytes, or (with
    /// negligible probability) no candidate in 256 was a valid scalar.
    pub fn derive(ikm: &[u8]) -> Result<Self> {
        if ikm.len() < 32 {
            return Err(Error::InvalidKey);
        }
        let prk = labeled_extract::<P>(&KEM_SUITE_ID, &[], b"dkp_prk", &[ikm]);
        for counter in 0..=255u8 {
            let mut bytes = Secret::<32>::zero();
            labeled_expand::<P>(&KEM_SUITE_ID, &prk, b"candidate", &[&[counter]], bytes.expose_mut())?;
            // The P-256 bitmask is 0xff: no bits to clear.
            if let Ok((secret, public)) = P::p256_ecdh_secret_from_bytes(&bytes) {
                return Ok(Self { secret, public });
            }
        }
        Err(Error::InvalidKey)
    }

    /// Imports a private scalar (`DeserializePrivateKey`).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if it is zero or not below the group order.
    pub fn from_bytes(secret: &Secret<32>) -> Result<Self> {
        let (secret, public) = P::p256_ecdh_secret_from_bytes(secret)?;
        Ok(Self { secret, public })
    }

    /// The public key (`SerializePublicKey`: 65-byte uncompressed point).
    pub const fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

/// `ExtractAndExpand(dh, kem_context)`.
fn extract_and_expand<P: CryptoProvider>(dh: &[&[u8]], kem_context: &[&[u8]]) -> Result<Secret<32>> {
    let eae_prk = labeled_extract::<P>(&KEM_SUITE_ID, &[], b"eae_prk", dh);
    let mut shared = Secret::<32>::zero();
    labeled_expand::<P>(&KEM_SUITE_ID, &eae_prk, b"shared_secret", kem_context, shared.expose_mut())?;
    Ok(shared)
}

/// `Encap` / `AuthEncap` with a given ephemeral key.
fn encap<P: CryptoProvider>(
    ephemeral: &KeyPair<P>,
    pk_r: &PublicKey,
    sender: Option<&KeyPair<P>>,
) -> Result<Secret<32>> {
    let enc = ephemeral.public.as_bytes();
    let dh1 = P::p256_ecdh(&ephemeral.secret, pk_r)?;
    match sender {
        None => extract_and_expand::<P>(&[dh1.expose()], &[enc, pk_r.as_bytes()]),
        Some(s) => {
            let dh2 = P::p256_ecdh(&s.secret, pk_r)?;
            extract_and_expand::<P>(&[dh1.expose(), dh2.expose()], &[enc, pk_r.as_bytes(), s.public.as_bytes()])
        }
    }
}

/// `Decap` / `AuthDecap`.
fn decap<P: CryptoProvider>(enc: &[u8], recipient: &KeyPair<P>, pk_s: Option<&PublicKey>) -> Result<Secret<32>> {
    // DeserializePublicKey validates the point; an invalid one is a typed
    // error before any secret is touched.
    let pk_e = P::p256_public_from_sec1(enc)?;
    if pk_e.as_bytes().as_slice() != enc {
        return Err(Error::InvalidKey);
    }
    let dh1 = P::p256_ecdh(&recipient.secret, &pk_e)?;
    match pk_s {
        None => extract_and_expand::<P>(&[dh1.expose()], &[enc, recipient.public.as_bytes()]),
        Some(pk_s) => {
            let dh2 = P::p256_ecdh(&recipient.secret, pk_s)?;
            extract_and_expand::<P>(&[dh1.expose(), dh2.expose()], &[enc, recipient.public.as_bytes(), pk_s.as_bytes()])
        }
    }
}

/// The AEAD context both sides derive (`KeySchedule`).
struct Keys<A: HpkeAead, P: CryptoProvider> {
    cipher: A::Cipher<P>,
    base_nonce: Secret<NONCE_LEN>,
    exporter_secret: Secret<32>,
    seq: u64,
}

impl<A: HpkeAead, P: CryptoProvider> Keys<A, P> {
    fn schedule(mode: u8, shared_secret: &Secret<32>, info: &[u8]) -> Result<Self> {
        let suite = hpke_suite_id::<A>();
        // Default PSK and PSK id are empty (base and auth modes).
        let psk_id_hash = labeled_extract::<P>(&suite, &[], b"psk_id_hash", &[]);
        let info_hash = labeled_extract::<P>(&suite, &[], b"info_hash", &[info]);
        let ctx: [&[u8]; 3] = [&[mode], psk_id_hash.expose(), info_hash.expose()];
        let secret = labeled_extract::<P>(&suite, shared_secret.expose(), b"secret", &[]);
        // Secret zeroizes the whole buffer on drop.
        let mut key_buf = Secret::<32>::zero();
        let key = key_buf.expose_mut().get_mut(..A::KEY_LEN).ok_or(Error::InvalidKey)?;
        labeled_expand::<P>(&suite, &secret, b"key", &ctx, key)?;
        let cipher = A::Cipher::<P>::new(key)?;
        let mut base_nonce = Secret::<NONCE_LEN>::zero();
        labeled_expand::<P>(&suite, &secret, b"base_nonce", &ctx, base_nonce.expose_mut())?;
        let mut exporter_secret = Secret::<32>::zero();
        labeled_expand::<P>(&suite, &secret, b"exp", &ctx, exporter_secret.expose_mut())?;
        Ok(Self { cipher, base_nonce, exporter_secret, seq: 0 })
    }

    /// `ComputeNonce(seq)`, refusing the last sequence number so the counter
    /// never wraps.
    fn nonce(&self) -> Result<[u8; NONCE_LEN]> {
        if self.seq == u64::MAX {
            return Err(Error::KeyExhausted);
        }
        Ok(crate::wire::counter_nonce(self.base_nonce.expose(), self.seq))
    }

    fn export(&self, exporter_context: &[u8], out: &mut [u8]) -> Result<()> {
        if out.len() > MAX_EXPORT_LEN {
            return Err(Error::BufferTooSmall);
        }
        labeled_expand::<P>(&hpke_suite_id::<A>(), &self.exporter_secret, b"sec", &[exporter_context], out)
    }
}

/// The sender's context: seals a sequence of messages to one recipient.
pub struct SenderContext<A: HpkeAead, P: CryptoProvider = crate::provider::DefaultProvider> {
    keys: Keys<A, P>,
}

/// The recipient's context: opens the sender's messages in order.
pub struct RecipientContext<A: HpkeAead, P: CryptoProvider = crate::provider::DefaultProvider> {
    keys: Keys<A, P>,
}

impl<A: HpkeAead, P: CryptoProvider> core::fmt::Debug for SenderContext<A, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderContext").field("seq", &self.keys.seq).finish_non_exhaustive()
    }
}

impl<A: HpkeAead, P: CryptoProvider> core::fmt::Debug for RecipientContext<A, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecipientContext").field("seq", &self.keys.seq).finish_non_exhaustive()
    }
}

impl<A: HpkeAead, P: CryptoProvider> SenderContext<A, P> {
    /// `SetupBaseS(pkR, info)`: returns `enc` for the recipient and the context.
    ///
    /// # Errors
    /// [`Error::Rng`], [`Error::InvalidKey`] if `pk_r` is not a valid point.
    pub fn base<R: TryCryptoRng + ?Sized>(rng: &mut R, pk_r: &PublicKey, info: &[u8]) -> Result<(PublicKey, Self)> {
        Self::with_ephemeral(KeyPair::generate(rng)?, pk_r, info, None)
    }

    /// `SetupAuthS(pkR, info, skS)`: as [`Self::base`], and the recipient
    /// learns that the holder of `sender` sent it.
    ///
    /// # Errors
    /// As [`Self::base`].
    pub fn auth<R: TryCryptoRng + ?Sized>(
        rng: &mut R,
        pk_r: &PublicKey,
        info: &[u8],
        sender: &KeyPair<P>,
    ) -> Result<(PublicKey, Self)> {
        Self::with_ephemeral(KeyPair::generate(rng)?, pk_r, info, Some(sender))
    }

    fn with_ephemeral(
        ephemeral: KeyPair<P>,
        pk_r: &PublicKey,
        info: &[u8],
        sender: Option<&KeyPair<P>>,
    ) -> Result<(PublicKey, Self)> {
        let shared = encap(&ephemeral, pk_r, sender)?;
        let mode = if sender.is_some() { MODE_AUTH } else { MODE_BASE };
        Ok((ephemeral.public, Self { keys: Keys::schedule(mode, &shared, info)? }))
    }

    /// Seals `buf` in place under AAD `aad` and returns the detached tag.
    ///
    /// # Errors
    /// [`Error::KeyExhausted`] when the sequence number is used up,
    /// [`Error::PayloadTooLarge`] above the AEAD's limit.
    pub fn seal_in_place_detached(&mut self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let nonce = self.keys.nonce()?;
        let tag = self.keys.cipher.seal_detached(&nonce, aad, buf)?;
        // nonce() refused u64::MAX, so this cannot overflow.
        self.keys.seq = self.keys.seq.saturating_add(1);
        Ok(tag)
    }

    /// Seals `buf[..msg_len]` in place and writes the tag after it. Returns
    /// `msg_len + TAG_LEN`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if the tag does not fit; as
    /// [`Self::seal_in_place_detached`].
    pub fn seal_in_place(&mut self, aad: &[u8], buf: &mut [u8], msg_len: usize) -> Result<usize> {
        let total = msg_len.checked_add(TAG_LEN).ok_or(Error::BufferTooSmall)?;
        let (msg, rest) = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?.split_at_mut(msg_len);
        let tag = self.seal_in_place_detached(aad, msg)?;
        rest.copy_from_slice(&tag);
        Ok(total)
    }

    /// `Context.Export(exporter_context, L)` into `out`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `out` is longer than [`MAX_EXPORT_LEN`].
    pub fn export(&self, exporter_context: &[u8], out: &mut [u8]) -> Result<()> {
        self.keys.export(exporter_context, out)
    }

    /// The next sequence number.
    pub const fn seq(&self) -> u64 {
        self.keys.seq
    }
}

impl<A: HpkeAead, P: CryptoProvider> RecipientContext<A, P> {
    /// `SetupBaseR(enc, skR, info)`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if `enc` is not a valid uncompressed point.
    pub fn base(enc: &[u8], recipient: &KeyPair<P>, info: &[u8]) -> Result<Self> {
        let shared = decap(enc, recipient, None)?;
        Ok(Self { keys: Keys::schedule(MODE_BASE, &shared, info)? })
    }

    /// `SetupAuthR(enc, skR, info, pkS)`: succeeds only for messages the
    /// holder of `pk_s`'s private key set up (opening fails otherwise).
    ///
    /// # Errors
    /// As [`Self::base`], and [`Error::InvalidKey`] if `pk_s` is not a valid point.
    pub fn auth(enc: &[u8], recipient: &KeyPair<P>, info: &[u8], pk_s: &PublicKey) -> Result<Self> {
        let shared = decap(enc, recipient, Some(pk_s))?;
        Ok(Self { keys: Keys::schedule(MODE_AUTH, &shared, info)? })
    }

    /// Verifies `tag` over `buf` and `aad`, then decrypts `buf` in place. On
    /// error `buf` and the sequence number are unchanged.
    ///
    /// # Errors
    /// [`Error::Authentication`], [`Error::KeyExhausted`].
    pub fn open_in_place_detached(&mut self, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<()> {
        let nonce = self.keys.nonce()?;
        self.keys.cipher.open_detached(&nonce, aad, buf, tag)?;
        self.keys.seq = self.keys.seq.saturating_add(1);
        Ok(())
    }

    /// Opens `ciphertext ‖ tag` in place and returns the plaintext, a prefix
    /// of `buf`.
    ///
    /// # Errors
    /// [`Error::Truncated`] if `buf` is shorter than a tag; as
    /// [`Self::open_in_place_detached`].
    pub fn open_in_place<'a>(&mut self, aad: &[u8], buf: &'a mut [u8]) -> Result<&'a mut [u8]> {
        let ct_len = buf.len().checked_sub(TAG_LEN).ok_or(Error::Truncated)?;
        let (ct, tag) = buf.split_at_mut(ct_len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| Error::Truncated)?;
        self.open_in_place_detached(aad, ct, tag)?;
        Ok(ct)
    }

    /// `Context.Export(exporter_context, L)` into `out`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `out` is longer than [`MAX_EXPORT_LEN`].
    pub fn export(&self, exporter_context: &[u8], out: &mut [u8]) -> Result<()> {
        self.keys.export(exporter_context, out)
    }

    /// The next sequence number.
    pub const fn seq(&self) -> u64 {
        self.keys.seq
    }
}

/// Single-shot messages (`SPEC.md` §11.1): `enc ‖ ciphertext ‖ tag`, sealed
/// with one context's first nonce. The AEAD and the provider are type
/// parameters with defaults (AES-256-GCM, RustCrypto). A single-shot message
/// carries no timestamp and keeps no state when opened: for data at rest and
/// files; requests to a server use [`crate::request`].
pub struct SingleShot<A: HpkeAead = Aes256Gcm, P: CryptoProvider = crate::provider::DefaultProvider>(
    core::marker::PhantomData<(A, P)>,
);

impl<A: HpkeAead, P: CryptoProvider> core::fmt::Debug for SingleShot<A, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SingleShot")
    }
}

impl<A: HpkeAead, P: CryptoProvider> SingleShot<A, P> {
    /// Seals in place to `pk_r` (with `sender`, auth mode). `buf` is laid
    /// out `enc ‖ message ‖ tag`: put the message at
    /// `buf[ENC_LEN..ENC_LEN + msg_len]`; the rest is written. Returns
    /// `ENC_LEN + msg_len + TAG_LEN`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`], [`Error::Rng`], [`Error::InvalidKey`].
    #[allow(clippy::too_many_arguments)]
    pub fn seal<R: TryCryptoRng + ?Sized>(
        rng: &mut R,
        pk_r: &PublicKey,
        sender: Option<&KeyPair<P>>,
        info: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        msg_len: usize,
    ) -> Result<usize> {
        // Lengths first, before any cryptography.
        let total = msg_len.checked_add(SINGLE_SHOT_OVERHEAD).ok_or(Error::BufferTooSmall)?;
        let buf = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        let (enc_slot, rest) = buf.split_at_mut(ENC_LEN);
        let ephemeral = KeyPair::generate(rng)?;
        let (enc, mut ctx) = SenderContext::<A, P>::with_ephemeral(ephemeral, pk_r, info, sender)?;
        ctx.seal_in_place(aad, rest, msg_len)?;
        enc_slot.copy_from_slice(enc.as_bytes());
        Ok(total)
    }

    /// Opens `enc ‖ ciphertext ‖ tag` in place for `recipient` (with `pk_s`,
    /// only a message the holder of `pk_s` sealed in auth mode). Returns the
    /// plaintext, inside `buf`. On error `buf` is unchanged.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::InvalidKey`] (bad `enc`),
    /// [`Error::Authentication`].
    pub fn open<'a>(
        recipient: &KeyPair<P>,
        pk_s: Option<&PublicKey>,
        info: &[u8],
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8]> {
        // Lengths first, before any cryptography.
        if buf.len() < SINGLE_SHOT_OVERHEAD {
            return Err(Error::Truncated);
        }
        let (enc, rest) = buf.split_at_mut(ENC_LEN);
        let mut ctx = match pk_s {
            None => RecipientContext::<A, P>::base(enc, recipient, info)?,
            Some(pk_s) => RecipientContext::<A, P>::auth(enc, recipient, info, pk_s)?,
        };
        ctx.open_in_place(aad, rest)
    }
}
