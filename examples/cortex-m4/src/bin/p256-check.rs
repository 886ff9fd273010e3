//! Checks the Cortex-M4 P-256 provider ([`Cm4`], `p256-cm4`'s assembly)
//! against the core's `RustCrypto` provider and the RFC 6979 vector, under
//! QEMU: the same public keys, shared secrets and SEC1 validation, and
//! byte-identical signatures that each side verifies. Exits 0 if every check
//! held. Run by `.ci/run` before the companion's end-to-end run.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use oncewire::provider::{CryptoProvider, PublicKey};
use oncewire::{RustCrypto, Secret};
use oncewire_companion::HmacDrbg;
use oncewire_companion::cm4::Cm4;
use rand_core::TryRng;

/// n − 1, the largest valid scalar.
const N_MINUS_1: [u8; 32] = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550");
/// n itself: not a valid scalar.
const N: [u8; 32] = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/// p, the field prime: not a valid coordinate.
const P: [u8; 32] = hex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");
/// RFC 6979 A.2.5: the P-256 key, its public key, and the SHA-256 "sample"
/// signature (its s is high; the wire form is n − s).
const RFC_X: [u8; 32] = hex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721");
const RFC_UX: [u8; 32] = hex("60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6");
const RFC_UY: [u8; 32] = hex("7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299");
const RFC_R: [u8; 32] = hex("efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716");
const RFC_S: [u8; 32] = hex("f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8");

const fn hex(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not hex"),
    }
}

#[entry]
fn main() -> ! {
    let code = match check() {
        Ok(n) => {
            hprintln!("p256-check: OK ({} checks against RustCrypto and RFC 6979)", n);
            debug::EXIT_SUCCESS
        }
        Err(why) => {
            hprintln!("p256-check: FAILED: {}", why);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Counts the checks that held.
struct Checks(u32);

impl Checks {
    fn that(&mut self, ok: bool, what: &'static str) -> Result<(), &'static str> {
        if ok {
            self.0 += 1;
            Ok(())
        } else {
            Err(what)
        }
    }
}

fn check() -> Result<u32, &'static str> {
    let mut c = Checks(0);
    let mut rng = HmacDrbg::new(b"p256-check: a fixed seed, the same stream every run");

    // Scalars: 1, n - 1 and random ones give the same public keys; 0 and n are refused by both.
    let mut one = [0u8; 32];
    one[31] = 1;
    let mut scalars = [[0u8; 32]; 8];
    scalars[0] = one;
    scalars[1] = N_MINUS_1;
    scalars[2] = RFC_X;
    for s in scalars.iter_mut().skip(3) {
        rng.try_fill_bytes(s).map_err(|_| "rng")?;
    }
    for bad in [[0u8; 32], N] {
        let bad = Secret::new(bad);
        c.that(Cm4::p256_ecdh_secret_from_bytes(&bad).is_err(), "a scalar of 0 or n was accepted (ECDH)")?;
        c.that(Cm4::signing_key_from_bytes(&bad).is_err(), "a scalar of 0 or n was accepted (ECDSA)")?;
        c.that(RustCrypto::signing_key_from_bytes(&bad).is_err(), "RustCrypto accepted 0 or n")?;
    }
    let mut publics = [None::<PublicKey>; 8];
    for (s, slot) in scalars.iter().zip(publics.iter_mut()) {
        let s = Secret::new(*s);
        let (_, ours) = Cm4::p256_ecdh_secret_from_bytes(&s).map_err(|_| "Cm4 refused a valid scalar")?;
        let (_, theirs) =
            RustCrypto::p256_ecdh_secret_from_bytes(&s).map_err(|_| "RustCrypto refused a valid scalar")?;
        c.that(ours == theirs, "public keys differ (ECDH)")?;
        let sk = Cm4::signing_key_from_bytes(&s).map_err(|_| "Cm4 refused a signing key")?;
        c.that(Cm4::signing_key_public(&sk) == theirs, "public keys differ (ECDSA)")?;
        *slot = Some(ours);
    }
    let rfc = publics[2].ok_or("no RFC public key")?;
    c.that(rfc.as_bytes()[1..33] == RFC_UX && rfc.as_bytes()[33..] == RFC_UY, "RFC 6979 public key")?;

    // ECDH: every pair of the scalars above, against RustCrypto.
    for (i, a) in scalars.iter().enumerate().skip(1) {
        let a = Secret::new(*a);
        let (ours_a, _) = Cm4::p256_ecdh_secret_from_bytes(&a).map_err(|_| "scalar")?;
        let (theirs_a, _) = RustCrypto::p256_ecdh_secret_from_bytes(&a).map_err(|_| "scalar")?;
        for peer in publics.iter().take(i).flatten() {
            let ours = Cm4::p256_ecdh(&ours_a, peer).map_err(|_| "Cm4 ECDH failed on a valid point")?;
            let theirs = RustCrypto::p256_ecdh(&theirs_a, peer).map_err(|_| "RustCrypto ECDH failed")?;
            c.that(ours.expose() == theirs.expose(), "shared secrets differ")?;
        }
    }

    // SEC1 input: compressed forms decode to the same points; invalid encodings are refused by both.
    for public in publics.iter().flatten() {
        let b = public.as_bytes();
        let mut compressed = [0u8; 33];
        compressed[0] = 0x02 | (b[64] & 1);
        compressed[1..].copy_from_slice(&b[1..33]);
        let ours = Cm4::p256_public_from_sec1(&compressed).map_err(|_| "Cm4 refused a compressed key")?;
        c.that(ours == *public, "a compressed key decoded to another point")?;
        c.that(Cm4::p256_public_from_sec1(b) == Ok(*public), "an uncompressed key did not round-trip")?;
        let mut off_curve = *b;
        off_curve[64] ^= 1;
        let mut hybrid = *b;
        hybrid[0] = 0x06 | (b[64] & 1);
        let mut wrong_parity = compressed;
        wrong_parity[0] ^= 1;
        let bad: [&[u8]; 7] = [&off_curve, &hybrid, &b[..64], &b[..33], &compressed[..32], &[], &[0x00]];
        for input in bad {
            c.that(Cm4::p256_public_from_sec1(input).is_err(), "Cm4 accepted an invalid SEC1 key")?;
            c.that(RustCrypto::p256_public_from_sec1(input).is_err(), "RustCrypto accepted an invalid SEC1 key")?;
        }
        // The other y for the same x: valid, and not the same point.
        let flipped = Cm4::p256_public_from_sec1(&wrong_parity).map_err(|_| "the other y was refused")?;
        c.that(
            Some(flipped) == RustCrypto::p256_public_from_sec1(&wrong_parity).ok() && flipped != *public,
            "the other y for the same x",
        )?;
        // A point off the curve, as a peer key: ECDH refuses it.
        let (s, _) = Cm4::p256_ecdh_secret_from_bytes(&Secret::new(one)).map_err(|_| "scalar")?;
        let raw_off = PublicKey::from_sec1_uncompressed(&off_curve).map_err(|_| "wrap")?;
        c.that(Cm4::p256_ecdh(&s, &raw_off).is_err(), "ECDH with a point off the curve")?;
    }
    // Coordinates at or above p, an x with no point, and the identity.
    let mut x_is_p = [0u8; 65];
    x_is_p[0] = 0x04;
    x_is_p[1..33].copy_from_slice(&P);
    let mut compressed_p = [0x02u8; 33];
    compressed_p[1..].copy_from_slice(&P);
    for input in [&x_is_p[..], &compressed_p[..], &[0u8; 65][..], &[0x04u8; 65][..]] {
        c.that(Cm4::p256_public_from_sec1(input).is_err(), "Cm4 accepted a coordinate >= p or the identity")?;
        c.that(RustCrypto::p256_public_from_sec1(input).is_err(), "RustCrypto accepted a coordinate >= p")?;
    }
    // Small x, both parities: about half have no point; the two agree on
    // which, and on the point where there is one.
    let mut absent = 0;
    for x in 0..32u8 {
        for prefix in [0x02, 0x03] {
            let mut input = [0u8; 33];
            input[0] = prefix;
            input[32] = x;
            let ours = Cm4::p256_public_from_sec1(&input);
            c.that(ours == RustCrypto::p256_public_from_sec1(&input), "Cm4 and RustCrypto disagree on a compressed x")?;
            absent += u32::from(ours.is_err());
        }
    }
    c.that(absent > 0 && absent < 64, "every small x decoded, or none")?;

    // Signatures: byte-identical to RustCrypto's (RFC 6979, low-S), each
    // verifying under the other; digests 0, n - 1, n, all-ones included.
    let mut digests = [[0u8; 32]; 12];
    digests[1] = N_MINUS_1;
    digests[2] = N;
    digests[3] = [0xff; 32];
    digests[4] = RustCrypto::sha256(&[b"sample"]);
    for d in digests.iter_mut().skip(5) {
        rng.try_fill_bytes(d).map_err(|_| "rng")?;
    }
    for (s, public) in scalars.iter().zip(publics.iter().flatten()) {
        let s = Secret::new(*s);
        let ours_key = Cm4::signing_key_from_bytes(&s).map_err(|_| "key")?;
        let theirs_key = RustCrypto::signing_key_from_bytes(&s).map_err(|_| "key")?;
        for d in &digests {
            let ours = Cm4::ecdsa_sign_prehash(&ours_key, d).map_err(|_| "Cm4 could not sign")?;
            let theirs = RustCrypto::ecdsa_sign_prehash(&theirs_key, d).map_err(|_| "RustCrypto could not sign")?;
            c.that(ours == theirs, "signatures differ from RustCrypto's")?;
            c.that(RustCrypto::ecdsa_verify_prehash(public, d, &ours).is_ok(), "RustCrypto refused Cm4's signature")?;
            c.that(Cm4::ecdsa_verify_prehash(public, d, &theirs).is_ok(), "Cm4 refused RustCrypto's signature")?;
            let mut tampered = ours;
            tampered[63] ^= 1;
            c.that(Cm4::ecdsa_verify_prehash(public, d, &tampered).is_err(), "Cm4 accepted a tampered signature")?;
            let mut other = *d;
            other[0] ^= 0x80;
            c.that(Cm4::ecdsa_verify_prehash(public, &other, &ours).is_err(), "Cm4 accepted another digest")?;
        }
    }
    // The RFC 6979 vector, and its high-S form: verifiers accept both (the
    // wire takes only low-S, checked elsewhere); r or s of 0 or n is refused.
    let key = Cm4::signing_key_from_bytes(&Secret::new(RFC_X)).map_err(|_| "key")?;
    let sig = Cm4::ecdsa_sign_prehash(&key, &digests[4]).map_err(|_| "sign")?;
    let mut high = [0u8; 64];
    high[..32].copy_from_slice(&RFC_R);
    high[32..].copy_from_slice(&RFC_S);
    c.that(sig[..32] == RFC_R, "RFC 6979 r")?;
    c.that(sig[32..] != RFC_S && Cm4::ecdsa_verify_prehash(&rfc, &digests[4], &sig).is_ok(), "RFC 6979 low s")?;
    c.that(Cm4::ecdsa_verify_prehash(&rfc, &digests[4], &high).is_ok(), "the high-S RFC 6979 signature")?;
    for (at, v) in [(0, [0u8; 32]), (0, N), (32, [0u8; 32]), (32, N)] {
        let mut bad = high;
        bad[at..at + 32].copy_from_slice(&v);
        c.that(Cm4::ecdsa_verify_prehash(&rfc, &digests[4], &bad).is_err(), "r or s of 0 or n")?;
    }

    // Generation from an RNG: valid keys that ECDH agrees on.
    let (a, pa) = Cm4::p256_generate(&mut rng).map_err(|_| "generate")?;
    let (b, pb) = Cm4::p256_generate(&mut rng).map_err(|_| "generate")?;
    let ab = Cm4::p256_ecdh(&a, &pb).map_err(|_| "ecdh")?;
    let ba = Cm4::p256_ecdh(&b, &pa).map_err(|_| "ecdh")?;
    c.that(ab.expose() == ba.expose() && pa != pb, "generated keys do not agree")?;
    c.that(RustCrypto::p256_public_from_sec1(pa.as_bytes()).is_ok(), "a generated key is not a valid point")?;
    let g = Cm4::signing_key_generate(&mut rng).map_err(|_| "generate")?;
    let sig = Cm4::ecdsa_sign_prehash(&g, &digests[5]).map_err(|_| "sign")?;
    c.that(
        RustCrypto::ecdsa_verify_prehash(&Cm4::signing_key_public(&g), &digests[5], &sig).is_ok(),
        "a generated signing key",
    )?;
    Ok(c.0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("p256-check: FAILED: panic");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

/// A fault (for example an instruction QEMU treats as undefined) names its
/// address instead of hanging.
#[cortex_m_rt::exception]
unsafe fn HardFault(ef: &cortex_m_rt::ExceptionFrame) -> ! {
    hprintln!("p256-check: FAILED: hard fault at pc {:#x}", ef.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
