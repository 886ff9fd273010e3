#!/usr/bin/env python3
"""An independent oncewire client written from SPEC.md with Python
`cryptography`: it enrolls a device (bound to the server's key), runs the
handshake against the Rust demo server over TCP, exchanges sealed requests
and responses bound to generation || sequence, stamps records in the server's
time base, verifies a token (ES256 signature, audience, expiry, cnf) and uses
it with an 88-byte proof of possession, and sends a one-shot HPKE request;
every replay must be refused. Exits non-zero if any step fails.

Usage: peer.py HOST:PORT"""
import os
import pathlib
import socket
import struct
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import oncewire_spec as ow  # noqa: E402

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

(ENROLL_BEGIN, ENROLL_CHALLENGE, ENROLL_ANSWER, OK, FRAME, TOKEN_USE, SERVER_KEY, ISSUER_KEY, ONE_SHOT,
 REQUEST_KEY, REJECTED) = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15
ONE_SHOT_INFO = b"oncewire-demo one-shot"
MAX_AGE_MS, MAX_FUTURE_MS = 30_000, 5_000   # the default freshness window (SPEC 5)


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


def main(addr):
    passed = failed = 0

    def check(what, ok, detail=""):
        nonlocal passed, failed
        print(f"  [{' ok ' if ok else 'FAIL'}] {what} {detail}")
        passed, failed = passed + ok, failed + (not ok)

    def text(body):
        return body.decode(errors="replace")

    c = Conn(addr)
    c.send(SERVER_KEY)
    kind, server_pub = c.recv()
    if kind != SERVER_KEY or len(server_pub) != 65:
        raise ow.ProtocolError(f"SERVER_KEY reply: kind {kind}, {len(server_pub)} bytes")
    c.send(ISSUER_KEY)
    kind, issuer_pub = c.recv()
    if kind != ISSUER_KEY or len(issuer_pub) != 65:
        raise ow.ProtocolError(f"ISSUER_KEY reply: kind {kind}, {len(issuer_pub)} bytes")

    # Enrollment (SPEC 8.3): the digest names the server's static key; raw low-S signature (8.2).
    device_id = b"python-peer-01"
    device_sk = ec.generate_private_key(ec.SECP256R1())
    device_pub = ow.public_bytes(device_sk)

    def enroll(server_key, mangle=lambda sig: sig):
        c.send(ENROLL_BEGIN)
        kind, challenge = c.recv()
        if kind != ENROLL_CHALLENGE or len(challenge) != 40:
            raise ow.ProtocolError(f"ENROLL_BEGIN reply: kind {kind}, {len(challenge)} bytes")
        sig = ow.sign_digest(device_sk, ow.enrollment_digest(server_key, challenge, device_id, device_pub))
        # The challenge goes back with the answer (the server keeps no state).
        c.send(ENROLL_ANSWER, challenge + ow.pc_bytes(device_id) + ow.pc_bytes(device_pub) + ow.pc_bytes(mangle(sig)))
        return c.recv()

    kind, why = enroll(server_pub, ow.high_s)
    check("server refuses an enrollment signed in high-S form", kind == REJECTED and why == b"Authentication",
          text(why))
    kind, why = enroll(issuer_pub)
    check("server refuses an enrollment bound to another server key", kind == REJECTED and why == b"Authentication",
          text(why))
    kind, body = enroll(server_pub)
    check("enrollment", kind == OK and body == b"enrolled", text(body))

    # Handshake (SPEC 7.3); the clock offset from message 2 puts us in the server's time base.
    e_sk = ec.generate_private_key(ec.SECP256R1())
    handshake_id = os.urandom(8)
    t_send = now_ms()
    msg1, sym = ow.client_msg1(server_pub, e_sk, handshake_id, t_send)
    c.send(FRAME, msg1)
    kind, msg2 = c.recv()
    t_receive = now_ms()   # read before any P-256 work
    if kind != FRAME:
        raise ow.ProtocolError(f"message 1 refused: {text(msg2)}")
    hello = ow.client_read_msg2(sym, e_sk, handshake_id, msg2)
    offset = ow.clock_offset(hello["server_time_ms"], t_send, t_receive)

    def server_now():
        return ow.apply_offset(now_ms(), offset)

    msg3, keys = ow.client_msg3(sym, device_id, device_sk, now_ms())   # message 3: uncorrected time
    c.send(FRAME, msg3)
    kind, body = c.recv()
    check("handshake", kind == OK and body == b"session established",
          f"{text(body)!r}, session {keys['session_id'].hex()}, server clock offset {offset} ms")

    sid = keys["session_id"]
    c2s_key, c2s_iv = keys["c2s"]
    s2c_key, s2c_iv = keys["s2c"]
    generation = 0   # we never send a KeyUpdate
    seq = 1          # message 3 was c2s sequence 0
    s2c_seen = set()

    def next_frame(request, ts=None):
        nonlocal seq
        frame = ow.seal(ow.RECORD, c2s_key, c2s_iv, sid, seq, server_now() if ts is None else ts, request)
        seq += 1
        return frame, seq - 1

    def call(request):
        frame, my_seq = next_frame(request)
        c.send(FRAME, frame)
        kind, resp = c.recv()
        if kind != FRAME:
            raise ow.ProtocolError(text(resp))
        f, pt = ow.open_frame(resp, s2c_key, s2c_iv, ow.RESPONSE, sid, ow.response_ext(generation, my_seq))
        if f["seq"] in s2c_seen:
            raise ow.ProtocolError("Replay")
        now = server_now()
        if f["ts"] < now - MAX_AGE_MS:
            raise ow.ProtocolError("Stale")
        if f["ts"] > now + MAX_FUTURE_MS:
            raise ow.ProtocolError("FromFuture")
        s2c_seen.add(f["seq"])
        return pt, frame

    # AppRequest::Ping("hello from python") = variant 0, str
    pt, first_frame = call(ow.varint(0) + ow.pc_bytes(b"hello from python"))
    variant, i = ow.read_varint(pt, 0)
    reply, _ = ow.read_bytes(pt, i)
    check("sealed request and bound response", variant == 0 and reply.startswith(b"pong: hello from python"),
          repr(text(reply)))

    # A replay of our own first frame must be rejected by the server.
    c.send(FRAME, first_frame)
    kind, why = c.recv()
    check("server rejects our replayed frame", kind == REJECTED and why == b"Replay", text(why))

    # Record freshness on the server (SPEC 5): 30 s back, 5 s ahead, in its time base.
    ping = ow.varint(0) + ow.pc_bytes(b"late")
    c.send(FRAME, next_frame(ping, ow.apply_offset(server_now(), -60_000))[0])
    kind, why = c.recv()
    check("server rejects a record stamped 60 s ago", kind == REJECTED and why == b"Stale", text(why))
    c.send(FRAME, next_frame(ping, server_now() + 20_000)[0])
    kind, why = c.recv()
    check("server rejects a record stamped 20 s ahead", kind == REJECTED and why == b"FromFuture", text(why))

    # AppRequest::GetToken { lifetime_ms } = variant 3
    pt, _ = call(ow.varint(3) + ow.varint(60_000))
    variant, i = ow.read_varint(pt, 0)
    token, _ = ow.read_bytes(pt, i)
    claims = ow.verify_token(token, issuer_pub, "demo-api", server_now(), leeway=5_000)
    cnf = ow.thumbprint(device_pub)
    check("token verified in python", variant == 2 and claims["sub"] == device_id and claims["cnf"] == cnf,
          f"{len(token)} bytes, exp in {claims['exp'] - server_now()} ms")
    try:
        bad = bytearray(token)
        bad[3] ^= 1
        ow.verify_token(bytes(bad), issuer_pub, "demo-api", server_now())
        check("tampered token rejected in python", False)
    except ow.ProtocolError as e:
        check("tampered token rejected in python", True, str(e))

    # Token use (SPEC 13): proof = iat || jti || sig, iat in the server's time base.
    request = b"GET /api/orders"
    proof = ow.make_proof(device_sk, token, request, server_now(), os.urandom(16))
    use = ow.pc_bytes(token) + ow.pc_bytes(device_pub) + ow.pc_bytes(proof) + ow.pc_bytes(request)
    high = proof[:24] + ow.high_s(proof[24:])
    c.send(TOKEN_USE, ow.pc_bytes(token) + ow.pc_bytes(device_pub) + ow.pc_bytes(high) + ow.pc_bytes(request))
    kind, why = c.recv()
    check("server refuses the proof's high-S form", kind == REJECTED and why == b"Authentication", text(why))
    c.send(TOKEN_USE, use)
    kind, body = c.recv()
    check("token used with a proof of possession", kind == OK and body == b"token accepted", text(body))
    c.send(TOKEN_USE, use)
    kind, why = c.recv()
    check("server rejects the replayed token use", kind == REJECTED and why == b"Replay", text(why))

    # One-shot HPKE request to the server's request key (SPEC 11.3).
    c.send(REQUEST_KEY)
    kind, request_pub = c.recv()
    if kind != REQUEST_KEY or len(request_pub) != 65:
        raise ow.ProtocolError(f"REQUEST_KEY reply: kind {kind}, {len(request_pub)} bytes")
    message = b"hello one-shot from python"
    one_shot = ow.seal_request(request_pub, server_now(), message, ONE_SHOT_INFO, b"")
    forged = bytearray(one_shot)
    forged[80] ^= 0x01   # a ciphertext byte; same enc, so the same replay id
    c.send(ONE_SHOT, bytes(forged))
    kind, why = c.recv()
    check("server refuses a forged one-shot request", kind == REJECTED and why == b"Authentication", text(why))
    c.send(ONE_SHOT, one_shot)
    kind, body = c.recv()
    check("one-shot request accepted", kind == OK and body == b"one-shot accepted: " + message,
          f"{text(body)!r} (request key {'is not' if request_pub != server_pub else 'IS'} the handshake key)")
    c.send(ONE_SHOT, one_shot)
    kind, why = c.recv()
    check("server rejects the replayed one-shot request", kind == REJECTED and why == b"Replay", text(why))

    c.send(42)
    kind, why = c.recv()
    check("server rejects an unknown envelope kind", kind == REJECTED and why == b"UnexpectedFrame", text(why))

    c.s.close()
    print(f"python peer: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
