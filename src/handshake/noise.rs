//! The Noise `SymmetricState` with SHA-256 and AES-256-GCM (`SPEC.md` §7.2).

use crate::error::{Error, Result};
use crate::keyschedule::labels;
use crate::provider::{AeadCipher, CryptoProvider, PublicKey};
use crate::secret::Secret;
use crate::wire::{NONCE_LEN, TAG_LEN};

/// Noise `SymmetricState` with SHA-256 and AES-256-GCM.
pub(super) struct Symmetric<P: CryptoProvider> {
    pub(super) ck: Secret<32>,
    pub(super) h: [u8; 32],
    k: Option<Secret<32>>,
    n: u64,
    _p: core::marker::PhantomData<P>,
}

impl<P: CryptoProvider> Symmetric<P> {
    pub(super) fn new(server_static: &PublicKey) -> Self {
        let mut h = [0u8; 32];
        // PROTOCOL_NAME is 27 bytes: Noise pads names up to 32 bytes with zeros.
        for (d, s) in h.iter_mut().zip(labels::PROTOCOL_NAME) {
            *d = *s;
        }
        let mut st = Self { ck: Secret::new(h), h, k: None, n: 0, _p: core::marker::PhantomData };
        st.mix_hash(labels::PROLOGUE);
        st.mix_hash(server_static.as_bytes());
        st
    }

    pub(super) fn mix_hash(&mut self, data: &[u8]) {
        self.h = P::sha256(&[&self.h, data]);
    }

    /// Noise `HKDF(ck, ikm, 2)`.
    pub(super) fn mix_key(&mut self, ikm: &Secret<32>) {
        let temp = Secret::new(P::hmac_sha256(self.ck.expose(), &[ikm.expose()]));
        let ck = Secret::new(P::hmac_sha256(temp.expose(), &[&[0x01]]));
        let k = Secret::new(P::hmac_sha256(temp.expose(), &[ck.expose(), &[0x02]]));
        self.ck = ck;
        self.k = Some(k);
        self.n = 0;
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        crate::wire::counter_nonce(&[0u8; NONCE_LEN], self.n)
    }

    fn cipher(&self) -> Result<P::Aead256> {
        P::Aead256::new(self.k.as_ref().ok_or(Error::Misuse)?.expose())
    }

    /// Encrypts `buf` in place with AD = h, then mixes `ciphertext ‖ tag` into h.
    pub(super) fn encrypt_and_hash(&mut self, buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let tag = self.cipher()?.seal_detached(&self.nonce(), &self.h, buf)?;
        self.n = self.n.saturating_add(1);
        self.h = P::sha256(&[&self.h, buf, &tag]);
        Ok(tag)
    }

    /// Decrypts `ciphertext ‖ tag` into `out` with AD = h, then mixes it into h.
    pub(super) fn decrypt_and_hash(&mut self, sealed: &[u8], out: &mut [u8]) -> Result<usize> {
        let split = sealed.len().checked_sub(TAG_LEN).ok_or(Error::Truncated)?;
        let (ct, tag) = sealed.split_at(split);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Truncated)?;
        let pt = out.get_mut(..ct.len()).ok_or(Error::BufferTooSmall)?;
        pt.copy_from_slice(ct);
        self.cipher()?.open_detached(&self.nonce(), &self.h, pt, tag)?;
        self.n = self.n.saturating_add(1);
        self.h = P::sha256(&[&self.h, sealed]);
        Ok(ct.len())
    }
}
