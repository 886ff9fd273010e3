"""oncewire v1 written from SPEC.md alone, with the Python `cryptography`
package: frames, the Noise NK handshake with the device signature, the key
schedule and the record layer, the one accepted signature form (8.2), the
enrollment, token and proof digests (8.3, 13), the clock offset (7.3), and
RFC 9180 HPKE with the one-shot request format (11.3). Used by the vector
checks and the live peer."""
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature, decode_dss_signature, Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

VERSION = 0x01
RECORD, SEALED, RESPONSE, KEY_UPDATE = 0x01, 0x02, 0x03, 0x04
HS_INIT, HS_RESPONSE, HS_FINISH = 0x10, 0x11, 0x12
NONE, COUNTER, RANDOM = 0x00, 0x01, 0x02
STRATEGY = {RECORD: COUNTER, SEALED: RANDOM, RESPONSE: COUNTER, KEY_UPDATE: COUNTER,
            HS_INIT: NONE, HS_RESPONSE: NONE, HS_FINISH: COUNTER}
HEADER_LEN, TAG_LEN = 36, 16
PROTOCOL_NAME = b"Noise_NK_P256_AESGCM_SHA256"
PROLOGUE = b"oncewire/1"
N_HALF = 0x7FFFFFFF800000007FFFFFFFFFFFFFFFDE737D56D38BCF4279DCE5617E3192A8
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class ProtocolError(Exception):
    pass


# --- frames (SPEC 2) ---------------------------------------------------------

def header(ftype, key_id, nonce_field, ts, length):
    return (bytes([VERSION, ftype, STRATEGY[ftype], 0]) + key_id + nonce_field
            + ts.to_bytes(8, "big") + length.to_bytes(4, "big"))


def parse(frame):
    """Strict parse (SPEC 2.2). Returns a dict or raises ProtocolError(name)."""
    if len(frame) < HEADER_LEN:
        raise ProtocolError("Truncated")
    ver, ftype, strategy, reserved = frame[0], frame[1], frame[2], frame[3]
    if ver != VERSION:
        raise ProtocolError(f"UnsupportedVersion({ver})")
    if ftype not in STRATEGY:
        raise ProtocolError(f"UnknownFrameType({ftype})")
    if reserved != 0 or strategy != STRATEGY[ftype]:
        raise ProtocolError("Malformed")
    nonce = frame[12:24]
    if strategy == COUNTER and nonce[:4] != b"\0\0\0\0":
        raise ProtocolError("Malformed")
    if strategy == NONE and nonce != b"\0" * 12:
        raise ProtocolError("Malformed")
    length = int.from_bytes(frame[32:36], "big")
    if ftype == KEY_UPDATE and length != 0:
        raise ProtocolError("Malformed")
    if length > 1 << 24:
        raise ProtocolError("PayloadTooLarge")
    want = HEADER_LEN + length + (0 if strategy == NONE else TAG_LEN)
    if len(frame) < want:
        raise ProtocolError("Truncated")
    if len(frame) > want:
        raise ProtocolError("TrailingBytes")
    return dict(type=ftype, key_id=frame[4:12], nonce=nonce, seq=int.from_bytes(nonce[4:], "big"),
                ts=int.from_bytes(frame[24:32], "big"), length=length, header=frame[:HEADER_LEN],
                body=frame[HEADER_LEN:HEADER_LEN + length])


def response_ext(generation, seq):
    """The extra AAD of a Response frame (SPEC 9.2): generation (u32 BE) || seq (u64 BE).
    These 12 bytes are also the request id the vectors carry."""
    return generation.to_bytes(4, "big") + seq.to_bytes(8, "big")


def counter_nonce(iv, seq):
    return bytes(a ^ b for a, b in zip(iv, b"\0" * 4 + seq.to_bytes(8, "big")))


def seal(ftype, key, iv, key_id, seq, ts, payload, ext=b""):
    hdr = header(ftype, key_id, b"\0" * 4 + seq.to_bytes(8, "big"), ts, len(payload))
    return hdr + AESGCM(key).encrypt(counter_nonce(iv, seq), payload, hdr + ext)


def open_frame(frame, key, iv, expected_type, key_id, ext=b""):
    f = parse(frame)
    if f["type"] != expected_type:
        raise ProtocolError("UnexpectedFrame")
    if f["key_id"] != key_id:
        raise ProtocolError("UnknownSession")
    try:
        pt = AESGCM(key).decrypt(counter_nonce(iv, f["seq"]), frame[HEADER_LEN:], f["header"] + ext)
    except Exception:
        raise ProtocolError("Authentication")
    return f, pt


# --- postcard (SPEC 7.3) -----------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf, i):
    n = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtocolError("Decode")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def pc_bytes(b):
    return varint(len(b)) + b


def read_bytes(buf, i):
    n, i = read_varint(buf, i)
    if i + n > len(buf):
        raise ProtocolError("Decode")
    return buf[i:i + n], i + n


# --- P-256 -------------------------------------------------------------------

def private_key(scalar_bytes):
    return ec.derive_private_key(int.from_bytes(scalar_bytes, "big"), ec.SECP256R1())


def public_bytes(key):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def load_public(b):
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b)
    except Exception:
        raise ProtocolError("InvalidKey")


def dh(sk, pk_bytes):
    return sk.exchange(ec.ECDH(), load_public(pk_bytes))


def raw_low_s(der):
    """Sender side of SPEC 8.2: strict DER -> raw r || s with s normalised to low S."""
    r, s = decode_dss_signature(der)
    if s > N_HALF:
        s = N - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def wire_form_ok(raw):
    """SPEC 8.2: the one accepted form, raw r || s, exactly 64 bytes, 0 < r < n, 0 < s <= n/2."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 64:
        return False
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return 0 < r < N and 0 < s <= N_HALF


def ecdsa_verify_any_s(pub_bytes, digest, raw):
    """Plain ECDSA verification (either S). Only used to show that a refused form
    would be mathematically valid; never to accept anything."""
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    try:
        load_public(pub_bytes).verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except Exception:
        return False


def verify_raw(pub_bytes, digest, raw):
    """Verifier of SPEC 8.2: refuses every form but raw low-S, then verifies."""
    if not wire_form_ok(raw):
        return False
    return ecdsa_verify_any_s(pub_bytes, digest, raw)


def high_s(raw):
    """The other valid ECDSA encoding of the same signature: r || (n - s)."""
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return r + (N - s).to_bytes(32, "big")


def sign_digest(sk, digest, deterministic=False):
    """Raw low-S signature over a 32-byte digest; deterministic = RFC 6979."""
    alg = ec.ECDSA(Prehashed(hashes.SHA256()), deterministic_signing=True) if deterministic \
        else ec.ECDSA(Prehashed(hashes.SHA256()))
    return raw_low_s(sk.sign(digest, alg))


# --- Noise NK (SPEC 7.2) -----------------------------------------------------

def sha256(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


def hmac256(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def expand(secret, info, length):
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


class Symmetric:
    def __init__(self, server_static_pub):
        self.h = PROTOCOL_NAME.ljust(32, b"\0")
        self.ck = self.h
        self.k = None
        self.n = 0
        self.mix_hash(PROLOGUE)
        self.mix_hash(server_static_pub)

    def mix_hash(self, d):
        self.h = sha256(self.h, d)

    def mix_key(self, ikm):
        t = hmac256(self.ck, ikm)
        o1 = hmac256(t, b"\x01")
        o2 = hmac256(t, o1, b"\x02")
        self.ck, self.k, self.n = o1, o2, 0

    def _nonce(self):
        return b"\0" * 4 + self.n.to_bytes(8, "big")

    def encrypt_and_hash(self, pt):
        c = AESGCM(self.k).encrypt(self._nonce(), pt, self.h)
        self.n += 1
        self.mix_hash(c)
        return c

    def decrypt_and_hash(self, c):
        try:
            pt = AESGCM(self.k).decrypt(self._nonce(), c, self.h)
        except Exception:
            raise ProtocolError("Authentication")
        self.n += 1
        self.mix_hash(c)
        return pt


def session_keys(ck, h):
    c2s = expand(ck, b"oncewire/1 c2s" + h, 32)
    s2c = expand(ck, b"oncewire/1 s2c" + h, 32)
    sid = expand(ck, b"oncewire/1 session id" + h, 8)
    def kv(secret):
        return expand(secret, b"oncewire/1 key", 32), expand(secret, b"oncewire/1 iv", 12)
    return dict(session_id=sid, c2s_secret=c2s, s2c_secret=s2c, c2s=kv(c2s), s2c=kv(s2c))


def signature_digest(h):
    return sha256(b"oncewire/1 device handshake signature", h)


def client_msg1(server_pub, e_sk, handshake_id, ts):
    e_pub = public_bytes(e_sk)
    sym = Symmetric(server_pub)
    body_len = len(pc_bytes(e_pub) + pc_bytes(b"\0" * TAG_LEN))
    hdr = header(HS_INIT, handshake_id, b"\0" * 12, ts, body_len)
    sym.mix_hash(hdr)
    sym.mix_hash(e_pub)
    sym.mix_key(dh(e_sk, server_pub))
    sealed = sym.encrypt_and_hash(b"")
    return hdr + pc_bytes(e_pub) + pc_bytes(sealed), sym


def client_read_msg2(sym, e_sk, handshake_id, msg2):
    f = parse(msg2)
    if f["type"] != HS_RESPONSE:
        raise ProtocolError("UnexpectedFrame")
    if f["key_id"] != handshake_id:
        raise ProtocolError("UnknownSession")
    body = f["body"]
    e_s, i = read_bytes(body, 0)
    sealed, i = read_bytes(body, i)
    if i != len(body):
        raise ProtocolError("TrailingBytes")
    sym.mix_hash(f["header"])
    sym.mix_hash(e_s)
    sym.mix_key(dh(e_sk, e_s))
    pt = sym.decrypt_and_hash(sealed)
    server_time, j = read_varint(pt, 0)
    lifetime, j = read_varint(pt, j)
    if j != len(pt):
        raise ProtocolError("TrailingBytes")
    return dict(server_time_ms=server_time, lifetime_ms=lifetime, ts=f["ts"])


def client_msg3(sym, device_id, device_sk, ts, signature=None):
    keys = session_keys(sym.ck, sym.h)
    sig = signature if signature is not None else sign_digest(device_sk, signature_digest(sym.h))
    pt = pc_bytes(device_id) + pc_bytes(sig)
    key, iv = keys["c2s"]
    return seal(HS_FINISH, key, iv, keys["session_id"], 0, ts, pt), keys


# --- clock offset (SPEC 7.3) -------------------------------------------------

I64_MIN, I64_MAX, U64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1


def clock_offset(server_time_ms, sent_ms, received_ms):
    """server_time - floor((sent + received) / 2), the sum without overflow (Python
    ints), rounded down, saturated to a signed 64-bit integer."""
    off = server_time_ms - (sent_ms + received_ms) // 2
    return max(I64_MIN, min(I64_MAX, off))


def apply_offset(clock_ms, offset_ms):
    """A clock corrected into the server's time base (SPEC 5), clamped to u64."""
    return max(0, min(U64_MAX, clock_ms + offset_ms))


# --- device binding and tokens (SPEC 8.3, 13) --------------------------------

def enrollment_digest(server_pub, challenge, device_id, device_pub):
    if len(server_pub) != 65 or len(device_pub) != 65 or not 1 <= len(device_id) <= 32:
        raise ProtocolError("Malformed")
    return sha256(b"oncewire/1 device enrollment", server_pub, challenge,
                  bytes([len(device_id)]), device_id, device_pub)


def thumbprint(device_pub):
    return sha256(b"oncewire/1 cnf", device_pub)


def token_digest(claims):
    return sha256(b"oncewire/1 token", claims)


def decode_claims(buf):
    """Postcard Claims (SPEC 13): iss str, sub bytes, aud str, iat, nbf, exp, jti bytes, cnf [u8; 32].
    Returns (claims, end of the claims)."""
    iss, i = read_bytes(buf, 0)
    sub, i = read_bytes(buf, i)
    aud, i = read_bytes(buf, i)
    iat, i = read_varint(buf, i)
    nbf, i = read_varint(buf, i)
    exp, i = read_varint(buf, i)
    jti, i = read_bytes(buf, i)
    cnf = buf[i:i + 32]
    if len(cnf) != 32:
        raise ProtocolError("Decode")
    try:
        iss, aud = iss.decode(), aud.decode()
    except UnicodeDecodeError:
        raise ProtocolError("Decode")
    return dict(iss=iss, sub=sub, aud=aud, iat=iat, nbf=nbf, exp=exp, jti=jti, cnf=cnf), i + 32


def verify_token(token, issuer_pub, audience, now, leeway=0):
    """SPEC 13, in order: decode, length, signature, aud, exp, nbf / iat."""
    claims, end = decode_claims(token)
    sig = token[end:]
    if len(sig) != 64:
        raise ProtocolError("Truncated" if len(sig) < 64 else "TrailingBytes")
    if not verify_raw(issuer_pub, token_digest(token[:end]), sig):
        raise ProtocolError("Authentication")
    if claims["aud"] != audience:
        raise ProtocolError("WrongAudience")
    if now > claims["exp"] + leeway:
        raise ProtocolError("Expired")
    if claims["nbf"] > now + leeway or claims["iat"] > now + leeway:
        raise ProtocolError("NotYetValid")
    return claims


def proof_digest(token, request, iat, jti):
    if len(jti) != 16:
        raise ProtocolError("Malformed")
    return sha256(b"oncewire/1 token proof", sha256(token), sha256(request), iat.to_bytes(8, "big"), jti)


def make_proof(device_sk, token, request, iat, jti, deterministic=False):
    """proof = iat (u64 BE) || jti (16) || raw low-S signature over proof_digest (88 bytes)."""
    sig = sign_digest(device_sk, proof_digest(token, request, iat, jti), deterministic)
    return iat.to_bytes(8, "big") + jti + sig


def split_proof(proof):
    if len(proof) < 88:
        raise ProtocolError("Truncated")
    if len(proof) > 88:
        raise ProtocolError("TrailingBytes")
    return int.from_bytes(proof[:8], "big"), proof[8:24], proof[24:]


# --- HPKE, RFC 9180 (SPEC 11) ------------------------------------------------
# DHKEM(P-256, HKDF-SHA256) 0x0010, HKDF-SHA256 0x0001, AES-128-GCM 0x0001 /
# AES-256-GCM 0x0002; modes base 0x00 and auth 0x02. Written from RFC 9180
# sections 4, 5, 7 with HMAC-SHA256 as HKDF.

KEM_P256, KDF_SHA256, AEAD_AES128GCM, AEAD_AES256GCM = 0x0010, 0x0001, 0x0001, 0x0002
MODE_BASE, MODE_AUTH = 0x00, 0x02
AEAD_NK = {AEAD_AES128GCM: 16, AEAD_AES256GCM: 32}
HPKE_NN, HPKE_NH, KEM_NSECRET, KEM_NSK = 12, 32, 32, 32


def hkdf_extract(salt, ikm):
    return hmac256(salt, ikm)   # RFC 5869 2.2: an empty salt is HashLen zeros, same HMAC key


def hkdf_expand(prk, info, length):
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac256(prk, t, info, bytes([i]))
        out += t
        i += 1
    return out[:length]


def labeled_extract(suite_id, salt, label, ikm):
    return hkdf_extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def labeled_expand(suite_id, prk, label, info, length):
    return hkdf_expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info, length)


KEM_SUITE = b"KEM" + KEM_P256.to_bytes(2, "big")


def derive_key_pair(ikm):
    """RFC 9180 7.1.3 for P-256 (bitmask 0xff)."""
    if len(ikm) < 32:
        raise ProtocolError("InvalidKey")
    prk = labeled_extract(KEM_SUITE, b"", b"dkp_prk", ikm)
    for counter in range(256):
        cand = bytearray(labeled_expand(KEM_SUITE, prk, b"candidate", bytes([counter]), KEM_NSK))
        cand[0] &= 0xFF
        sk = int.from_bytes(cand, "big")
        if 0 < sk < N:
            return private_key(bytes(cand))
    raise ProtocolError("InvalidKey")


def _extract_and_expand(dh_bytes, kem_context):
    prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh_bytes)
    return labeled_expand(KEM_SUITE, prk, b"shared_secret", kem_context, KEM_NSECRET)


def load_enc(enc):
    """A recipient rejects any enc that is not a valid uncompressed point (SPEC 11.1)."""
    if len(enc) != 65 or enc[0] != 0x04:
        raise ProtocolError("InvalidKey")
    return load_public(enc)


def encap(pk_r, sk_e, sk_s=None):
    """Encap / AuthEncap with a given ephemeral key. Returns (shared_secret, enc)."""
    enc = public_bytes(sk_e)
    load_enc(pk_r)
    dh_bytes = dh(sk_e, pk_r)
    ctx = enc + pk_r
    if sk_s is not None:
        dh_bytes += dh(sk_s, pk_r)
        ctx += public_bytes(sk_s)
    return _extract_and_expand(dh_bytes, ctx), enc


def decap(enc, sk_r, pk_s=None):
    load_enc(enc)
    pk_r = public_bytes(sk_r)
    dh_bytes = dh(sk_r, enc)
    ctx = enc + pk_r
    if pk_s is not None:
        dh_bytes += dh(sk_r, pk_s)
        ctx += pk_s
    return _extract_and_expand(dh_bytes, ctx)


class HpkeContext:
    def __init__(self, aead_id, key, base_nonce, exporter_secret, suite_id):
        self.aead_id, self.key, self.base_nonce = aead_id, key, base_nonce
        self.exporter_secret, self.suite_id, self.seq = exporter_secret, suite_id, 0

    def _nonce(self):
        return bytes(a ^ b for a, b in zip(self.base_nonce, self.seq.to_bytes(HPKE_NN, "big")))

    def seal(self, aad, pt):
        ct = AESGCM(self.key).encrypt(self._nonce(), pt, aad)
        self.seq += 1
        return ct

    def open(self, aad, ct):
        try:
            pt = AESGCM(self.key).decrypt(self._nonce(), ct, aad)
        except Exception:
            raise ProtocolError("Authentication")
        self.seq += 1
        return pt

    def export(self, exporter_context, length):
        return labeled_expand(self.suite_id, self.exporter_secret, b"sec", exporter_context, length)


def key_schedule(mode, shared_secret, info, aead_id, kdf_id=KDF_SHA256, kem_id=KEM_P256):
    """RFC 9180 5.1 without PSK (psk and psk_id empty). Returns the context and the
    intermediate values (for the published vectors)."""
    if kem_id != KEM_P256 or kdf_id != KDF_SHA256 or aead_id not in AEAD_NK or mode not in (MODE_BASE, MODE_AUTH):
        raise ProtocolError("Malformed")
    suite_id = b"HPKE" + kem_id.to_bytes(2, "big") + kdf_id.to_bytes(2, "big") + aead_id.to_bytes(2, "big")
    psk_id_hash = labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(suite_id, b"", b"info_hash", info)
    ks_context = bytes([mode]) + psk_id_hash + info_hash
    secret = labeled_extract(suite_id, shared_secret, b"secret", b"")
    key = labeled_expand(suite_id, secret, b"key", ks_context, AEAD_NK[aead_id])
    base_nonce = labeled_expand(suite_id, secret, b"base_nonce", ks_context, HPKE_NN)
    exporter_secret = labeled_expand(suite_id, secret, b"exp", ks_context, HPKE_NH)
    ctx = HpkeContext(aead_id, key, base_nonce, exporter_secret, suite_id)
    return ctx, dict(key_schedule_context=ks_context, secret=secret, key=key, base_nonce=base_nonce,
                     exporter_secret=exporter_secret)


# --- one-shot requests (SPEC 11.3) -------------------------------------------

REQUEST_INFO = b"oncewire/1 request"
REQUEST_MIN = 65 + 8 + 16


def request_info(app_info):
    if len(app_info) > 64:
        raise ProtocolError("Malformed")
    return REQUEST_INFO + app_info


def request_aad(ts, app_aad):
    if len(app_aad) > 64:
        raise ProtocolError("Malformed")
    return ts.to_bytes(8, "big") + app_aad


def request_id(enc):
    return sha256(b"oncewire/1 request id", enc)[:12]


def seal_request(recipient_pub, ts, message, app_info=b"", app_aad=b"", eph_sk=None, sender_sk=None):
    """request = enc (65) || timestamp (u64 BE) || ciphertext || tag (16), HPKE base
    (or auth with sender_sk) with AES-256-GCM, sealed with the context's first nonce."""
    if eph_sk is None:
        eph_sk = ec.generate_private_key(ec.SECP256R1())
    shared, enc = encap(recipient_pub, eph_sk, sender_sk)
    mode = MODE_BASE if sender_sk is None else MODE_AUTH
    ctx, _ = key_schedule(mode, shared, request_info(app_info), AEAD_AES256GCM)
    return enc + ts.to_bytes(8, "big") + ctx.seal(request_aad(ts, app_aad), message)


def open_request(recipient_sk, request, app_info=b"", app_aad=b"", sender_pub=None):
    """The cryptographic part of a receiver (no cache, no clock): returns (ts, id, plaintext)."""
    if len(request) < REQUEST_MIN:
        raise ProtocolError("Truncated")
    enc, ts = request[:65], int.from_bytes(request[65:73], "big")
    shared = decap(enc, recipient_sk, sender_pub)
    mode = MODE_BASE if sender_pub is None else MODE_AUTH
    ctx, _ = key_schedule(mode, shared, request_info(app_info), AEAD_AES256GCM)
    return ts, request_id(enc), ctx.open(request_aad(ts, app_aad), request[73:])
