#!/usr/bin/env python3
"""An independent oncewire client written from SPEC.md with Python
`cryptography`: it enrolls a device, runs the handshake against the Rust demo
server over TCP, exchanges sealed requests and responses, verifies a token
(ES256 signature, audience, expiry, cnf) and uses it with a proof of
possession. Exits non-zero if any step fails.

Usage: peer.py HOST:PORT"""
import socket
import struct
import sys
import time
import pathlib
import os

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import oncewire_spec as ow  # noqa: E402

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

ENROLL_BEGIN, ENROLL_CHALLENGE, ENROLL_ANSWER, OK, FRAME, TOKEN_USE, SERVER_KEY, ISSUER_KEY, REJECTED = \
    1, 2, 3, 4, 5, 6, 7, 8, 15


class Conn:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=20)

    def send(self, kind, body=b""):
        self.s.sendall(bytes([kind]) + struct.pack(">H", len(body)) + body)

    def recv(self):
        head = self._exact(3)
        return head[0], self._exact(struct.unpack(">H", head[1:])[0])

    def _exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise ConnectionError("server closed the connection")
            out += chunk
        return out


def now_ms():
    return int(time.time() * 1000)


def decode_claims(buf):
    """Postcard Claims (SPEC 13): iss str, sub bytes, aud str, iat, nbf, exp, jti bytes, cnf [u8; 32]."""
    iss, i = ow.read_bytes(buf, 0)
    sub, i = ow.read_bytes(buf, i)
    aud, i = ow.read_bytes(buf, i)
    iat, i = ow.read_varint(buf, i)
    nbf, i = ow.read_varint(buf, i)
    exp, i = ow.read_varint(buf, i)
    jti, i = ow.read_bytes(buf, i)
    cnf = buf[i:i + 32]
    if len(cnf) != 32:
        raise ow.ProtocolError("Decode")
    return dict(iss=iss.decode(), sub=sub, aud=aud.decode(), iat=iat, nbf=nbf, exp=exp, jti=jti, cnf=cnf), i + 32


def verify_token(token, issuer_pub, audience, now, leeway=0):
    claims, end = decode_claims(token)
    sig = token[end:]
    if len(sig) != 64:
        raise ow.ProtocolError("Truncated" if len(sig) < 64 else "TrailingBytes")
    digest = ow.sha256(b"oncewire/1 token", token[:end])
    if not ow.verify_raw(issuer_pub, digest, sig):
        raise ow.ProtocolError("Authentication")
    if claims["aud"] != audience:
        raise ow.ProtocolError("WrongAudience")
    if now > claims["exp"] + leeway:
        raise ow.ProtocolError("Expired")
    if claims["nbf"] > now + leeway:
        raise ow.ProtocolError("NotYetValid")
    return claims


def main(addr):
    passed = failed = 0

    def check(what, ok, detail=""):
        nonlocal passed, failed
        print(f"  [{' ok ' if ok else 'FAIL'}] {what} {detail}")
        passed, failed = passed + ok, failed + (not ok)

    c = Conn(addr)
    c.send(SERVER_KEY)
    _, server_pub = c.recv()
    c.send(ISSUER_KEY)
    _, issuer_pub = c.recv()

    device_id = b"python-peer-01"
    device_sk = ec.generate_private_key(ec.SECP256R1())
    device_pub = ow.public_bytes(device_sk)
    c.send(ENROLL_BEGIN)
    kind, challenge = c.recv()
    digest = ow.sha256(b"oncewire/1 device enrollment", challenge, bytes([len(device_id)]), device_id, device_pub)
    sig = ow.sign_digest(device_sk, digest)
    c.send(ENROLL_ANSWER, ow.pc_bytes(device_id) + ow.pc_bytes(device_pub) + ow.pc_bytes(sig))
    kind, _ = c.recv()
    check("enrollment", kind == OK)

    e_sk = ec.generate_private_key(ec.SECP256R1())
    handshake_id = os.urandom(8)
    t1 = now_ms()
    msg1, sym = ow.client_msg1(server_pub, e_sk, handshake_id, t1)
    c.send(FRAME, msg1)
    kind, msg2 = c.recv()
    hello = ow.client_read_msg2(sym, e_sk, handshake_id, msg2)
    msg3, keys = ow.client_msg3(sym, device_id, device_sk, now_ms())
    c.send(FRAME, msg3)
    kind, body = c.recv()
    check("handshake", kind == OK, f"session {keys['session_id'].hex()}, server clock offset "
          f"{hello['server_time_ms'] - (t1 + now_ms()) // 2} ms")

    sid = keys["session_id"]
    c2s_key, c2s_iv = keys["c2s"]
    s2c_key, s2c_iv = keys["s2c"]
    seq = 1
    s2c_seen = set()

    def call(request):
        nonlocal seq
        frame = ow.seal(ow.RECORD, c2s_key, c2s_iv, sid, seq, now_ms(), request)
        my_seq = seq
        seq += 1
        c.send(FRAME, frame)
        kind, resp = c.recv()
        if kind != FRAME:
            raise ow.ProtocolError(resp.decode())
        f, pt = ow.open_frame(resp, s2c_key, s2c_iv, ow.RESPONSE, sid, my_seq.to_bytes(8, "big"))
        if f["seq"] in s2c_seen:
            raise ow.ProtocolError("Replay")
        s2c_seen.add(f["seq"])
        return pt, frame

    # AppRequest::Ping("hello from python") = variant 0, str
    pt, first_frame = call(ow.varint(0) + ow.pc_bytes(b"hello from python"))
    variant, i = ow.read_varint(pt, 0)
    text, _ = ow.read_bytes(pt, i)
    check("sealed request and bound response", variant == 0 and text.startswith(b"pong: hello from python"),
          repr(text.decode()))

    # A replay of our own first frame must be rejected by the server.
    c.send(FRAME, first_frame)
    kind, why = c.recv()
    check("server rejects our replayed frame", kind == REJECTED and why == b"Replay", why.decode())

    # AppRequest::GetToken { lifetime_ms } = variant 3
    pt, _ = call(ow.varint(3) + ow.varint(60_000))
    variant, i = ow.read_varint(pt, 0)
    token, _ = ow.read_bytes(pt, i)
    claims = verify_token(token, issuer_pub, "demo-api", now_ms(), leeway=5_000)
    cnf = ow.sha256(b"oncewire/1 cnf", device_pub)
    check("token verified in python", variant == 2 and claims["sub"] == device_id and claims["cnf"] == cnf,
          f"{len(token)} bytes, exp in {claims['exp'] - now_ms()} ms")
    try:
        bad = bytearray(token)
        bad[3] ^= 1
        verify_token(bytes(bad), issuer_pub, "demo-api", now_ms())
        check("tampered token rejected in python", False)
    except ow.ProtocolError as e:
        check("tampered token rejected in python", True, str(e))

    request = b"GET /api/orders"
    proof = ow.sign_digest(device_sk, ow.sha256(b"oncewire/1 token proof", ow.sha256(token), ow.sha256(request)))
    c.send(TOKEN_USE, ow.pc_bytes(token) + ow.pc_bytes(device_pub) + ow.pc_bytes(proof) + ow.pc_bytes(request))
    kind, body = c.recv()
    check("token used with a proof of possession", kind == OK, body.decode())

    print(f"python peer: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
