"""The Python test of oncewire-mobile: the same flow as kotlin/OncewireTest.kt,
through the UniFFI Python bindings, against the live Rust HTTP server
(examples/test_server.rs), run by scripts/mobile-test.

The device key is a `cryptography` P-256 key signing the 32-byte digest as a
prehashed SHA-256 (DER out, as Android's NONEwithECDSA returns it); the key
never crosses into Rust.

Usage: PYTHONPATH=<generated bindings + cdylib> python3 test_oncewire.py BASE KEY_HEX
"""

import sys
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from oncewire_mobile import (
    Client,
    DeviceSigner,
    HttpResponse,
    NextAction,
    OncewireError,
    Signature,
    SignerError,
)


class PySigner(DeviceSigner):
    def __init__(self, fail=False):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.fail = fail
        self.signatures = 0

    def public_key(self):
        return self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def sign_digest(self, digest):
        if self.fail:
            raise SignerError.Failed("user cancelled")
        assert len(digest) == 32
        der = self.key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        self.signatures += 1
        return Signature.DER(der)


class Http:
    def __init__(self, base):
        self.base = base

    def send(self, req):
        r = urllib.request.Request(self.base + req.path, data=bytes(req.body), method="POST")
        for h in req.headers:
            r.add_header(h.name, h.value)
        try:
            resp = urllib.request.urlopen(r, timeout=10)
            status, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, e.headers, e.read()
        return HttpResponse(
            status=status,
            content_type=headers.get("content-type"),
            session=headers.get("oncewire-session"),
            next_action=headers.get("oncewire-next-action"),
            body=body,
        )


passed = failures = 0


def check(what, ok, detail):
    global passed, failures
    print(f"  [{' ok ' if ok else 'FAIL'}] {what}: {detail}")
    if ok:
        passed += 1
    else:
        failures += 1


def expect(what, kind, accept, f):
    try:
        r = f()
        check(what, False, f"expected {kind.__name__}, got {r!r}")
    except kind as e:
        check(what, accept(e), f"{type(e).__qualname__}: {e}")
    except Exception as e:  # noqa: BLE001 - reported as a failure
        check(what, False, f"expected {kind.__name__}, got {type(e).__qualname__}: {e}")


def enroll(c, http):
    c.enroll_finish(http.send(c.enroll(http.send(c.enroll_challenge()))))


def connect(c, http):
    c.handshake_confirm(http.send(c.handshake_finish(http.send(c.handshake_start()))))


def call(c, http, path, body):
    sc = c.seal(path, body)
    return c.open_reply(sc.request_id, http.send(sc.request))


def fetch_token(c, http):
    sc = c.token_request()
    c.accept_token(sc.request_id, http.send(sc.request))


def call_bound(c, http, path, request, challenge, token):
    ch = c.open_challenge(http.send(c.challenge_request())) if challenge else None
    sc = c.seal_bound(path, request, ch, token)
    return c.open_reply(sc.request_id, http.send(sc.request))


def main():
    started = time.monotonic()
    base, key = sys.argv[1], bytes.fromhex(sys.argv[2])
    http = Http(base)
    print(f"oncewire-mobile Python test against {base}")

    print("1. enroll and handshake (phone-py)")
    phone_key = PySigner()
    phone = Client(key, b"phone-py", phone_key)
    enroll(phone, http)
    connect(phone, http)
    st = phone.session_status()
    check("enroll and handshake", st.connected and not st.needs_handshake, f"session {phone.session_id()}")

    print("2. sealed calls and bound replies")
    first = phone.seal("/v1/notes", b"hello from Python")
    r = phone.open_reply(first.request_id, http.send(first.request))
    check("POST /v1/notes", r.status == 200 and r.body == b"noted for phone-py: hello from Python", f"{r.status} {r.body!r}")

    print("3. tokens and challenge-bound calls")
    fetch_token(phone, http)
    r = call_bound(phone, http, "/v1/orders", b"GET /v1/orders", False, True)
    check("POST /v1/orders (token)", r.body == b"3 orders of phone-py", f"{r.body!r}")
    r = call_bound(phone, http, "/v1/pay", b"pay 5 EUR to carol", True, True)
    check("POST /v1/pay (challenge and token)", r.body == b"paid by phone-py: pay 5 EUR to carol", f"{r.body!r}")

    print("4. key update")
    phone.key_update_finish(http.send(phone.key_update("/v1/notes")))
    sc = phone.seal("/v1/notes", b"after the key update")
    r = phone.open_reply(sc.request_id, http.send(sc.request))
    check("key update", sc.request_id.generation == 1 and r.body.endswith(b"after the key update"), f"generation {sc.request_id.generation}")

    print("5. attacks")
    expect(
        "replay the frame of step 2",
        OncewireError.Refused,
        lambda e: e.status == 400 and e.next_action == NextAction.DROP,
        lambda: phone.open_reply(first.request_id, http.send(first.request)),
    )
    sc = phone.seal("/v1/notes", b"tamper")
    genuine = http.send(sc.request)
    body = bytearray(genuine.body)
    body[-1] ^= 1
    tampered = HttpResponse(status=genuine.status, content_type=genuine.content_type, session=genuine.session,
                            next_action=genuine.next_action, body=bytes(body))
    expect("a tampered reply", OncewireError.Protocol, lambda e: e.next_action == NextAction.DROP,
           lambda: phone.open_reply(sc.request_id, tampered))
    tablet = Client(key, b"tablet-py", PySigner())
    enroll(tablet, http)
    connect(tablet, http)
    tablet.set_token(phone.token())
    expect(
        "phone-py's token used by tablet-py",
        OncewireError.Refused,
        lambda e: e.status == 401 and e.next_action == NextAction.REFRESH_TOKEN,
        lambda: call_bound(tablet, http, "/v1/orders", b"GET /v1/orders", False, True),
    )
    expect("a device never enrolled", OncewireError.Refused,
           lambda e: e.status == 403 and e.next_action == NextAction.REENROLL,
           lambda: connect(Client(key, b"stranger-py", PySigner()), http))
    expect("the signer fails", OncewireError.Signer, lambda e: e.next_action == NextAction.RETRY_LATER,
           lambda: enroll(Client(key, b"cancel-py", PySigner(fail=True)), http))

    ms = int((time.monotonic() - started) * 1000)
    print(f"Python: {passed} passed, {failures} failed, in {ms} ms")
    sys.exit(0 if failures == 0 else 1)


if __name__ == "__main__":
    main()
