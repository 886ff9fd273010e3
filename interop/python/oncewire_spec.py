"""oncewire v1 written from SPEC.md alone, with the Python `cryptography`
package: frames, the Noise NK handshake with the device signature, the key
schedule and the record layer. Used by the vector checks and the live peer."""
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature, decode_dss_signature
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
        raise ProtocolError("UnknownKey")
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
    r, s = decode_dss_signature(der)
    if s > N_HALF:
        s = N - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_raw(pub_bytes, digest, raw):
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    try:
        load_public(pub_bytes).verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except Exception:
        return False


def sign_digest(sk, digest):
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    return raw_low_s(sk.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))


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
        raise ProtocolError("UnknownKey")
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
