#!/usr/bin/env python3
"""Independent check of tests/data/frames_v1.json, tests/data/digests_v1.json
and tests/data/hpke_rfc9180.json, written from SPEC.md (and RFC 9180) alone
with the Python `cryptography` package (no Rust involved). Every output is
recomputed and compared byte for byte; every refusal is checked for the exact
error."""
import json
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import oncewire_spec as ow  # noqa: E402

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
hx = bytes.fromhex


def u64(v):
    """SPEC 14: every u64 in the vector files is a decimal string."""
    assert isinstance(v, str) and re.fullmatch(r"0|[1-9][0-9]*", v), f"u64 not a decimal string: {v!r}"
    n = int(v)
    assert n <= ow.U64_MAX, f"u64 out of range: {v}"
    return n


def i64(v):
    assert isinstance(v, str) and re.fullmatch(r"0|-?[1-9][0-9]*", v), f"i64 not a decimal string: {v!r}"
    n = int(v)
    assert ow.I64_MIN <= n <= ow.I64_MAX, f"i64 out of range: {v}"
    return n


def error_of(fn, *args):
    try:
        fn(*args)
    except ow.ProtocolError as e:
        return str(e)
    return None


class Count:
    def __init__(self):
        self.n = 0

    def ok(self, cond, what):
        assert cond, what
        self.n += 1


# --- frames_v1.json (SPEC 2, 3) ------------------------------------------------

def receive_record(frame, key, iv, sid):
    """A receiver holding one session direction (SPEC 2.2 then 3.3); returns the error name or None."""
    try:
        f = ow.parse(frame)
    except ow.ProtocolError as e:
        return str(e)
    if f["type"] != ow.RECORD:
        return "UnexpectedFrame"
    if f["key_id"] != sid:
        return "UnknownSession"
    try:
        AESGCM(key).decrypt(ow.counter_nonce(iv, f["seq"]), frame[ow.HEADER_LEN:], f["header"])
    except Exception:
        return "Authentication"
    return None


def check_frames(c):
    v = json.loads((ROOT / "tests/data/frames_v1.json").read_text())
    for r in v["record"]:
        key, iv, sid = hx(r["key"]), hx(r["iv"]), hx(r["session_id"])
        seq, ts, payload = u64(r["seq"]), u64(r["timestamp_ms"]), hx(r["payload"])
        nonce = ow.counter_nonce(iv, seq)
        c.ok(nonce.hex() == r["nonce"], f"{r['name']}: nonce")
        frame = ow.seal(ow.RECORD, key, iv, sid, seq, ts, payload)
        c.ok(frame[:ow.HEADER_LEN].hex() == r["header"], f"{r['name']}: header")
        c.ok(frame.hex() == r["frame"], f"{r['name']}: frame")
        f = ow.parse(hx(r["frame"]))
        c.ok(f["ts"] == ts and f["seq"] == seq and f["key_id"] == sid, f"{r['name']}: parsed fields")
        c.ok(AESGCM(key).decrypt(nonce, hx(r["frame"])[36:], hx(r["frame"])[:36]) == payload, f"{r['name']}: open")
        c.ok(receive_record(hx(r["frame"]), key, iv, sid) is None, f"{r['name']}: receiver accepts")
    for r in v["sealed"]:
        key, nonce, payload = hx(r["key"]), hx(r["nonce"]), hx(r["payload"])
        hdr = ow.header(ow.SEALED, hx(r["key_id"]), nonce, u64(r["timestamp_ms"]), len(payload))
        c.ok(hdr.hex() == r["header"], f"{r['name']}: header")
        frame = hdr + AESGCM(key).encrypt(nonce, payload, hdr)
        c.ok(frame.hex() == r["frame"], f"{r['name']}: frame")
        c.ok(ow.parse(frame)["type"] == ow.SEALED, f"{r['name']}: parses")
    first = v["record"][0]
    key, iv, sid = hx(first["key"]), hx(first["iv"]), hx(first["session_id"])
    names = set()
    for case in v["invalid"]:
        err = receive_record(hx(case["frame"]), key, iv, sid)
        c.ok(err == case["error"], f"invalid {case['name']}: got {err}, want {case['error']}")
        names.add(case["name"])
    c.ok("key-update-with-payload" in names, "frames_v1.json lacks key-update-with-payload")
    # The KeyUpdate rule (SPEC 2.2, 9.3) on its own: an empty KeyUpdate parses, any payload is Malformed.
    ku = ow.seal(ow.KEY_UPDATE, key, iv, sid, 0, 0, b"")
    c.ok(ow.parse(ku)["type"] == ow.KEY_UPDATE, "empty KeyUpdate parses")
    c.ok(error_of(ow.parse, ow.seal(ow.KEY_UPDATE, key, iv, sid, 0, 0, b"x")) == "Malformed",
         "KeyUpdate with L = 1 is Malformed")
    return len(v["record"]) + len(v["sealed"]) + len(v["invalid"])


# --- digests_v1.json (SPEC 7.3, 8.2, 8.3, 11.3, 13) ---------------------------

def check_signature(c, what, pub, digest, sig, signer_sk):
    """The vector's signature: exact RFC 6979 bytes, the one wire form, and every other form refused."""
    c.ok(len(sig) == 64 and ow.wire_form_ok(sig), f"{what}: raw low-S form")
    c.ok(ow.verify_raw(pub, digest, sig), f"{what}: signature verifies")
    c.ok(ow.sign_digest(signer_sk, digest, deterministic=True) == sig, f"{what}: RFC 6979 signature bytes")
    hi = ow.high_s(sig)
    c.ok(ow.ecdsa_verify_any_s(pub, digest, hi), f"{what}: n - s is a valid ECDSA signature")
    c.ok(not ow.verify_raw(pub, digest, hi), f"{what}: high-S form refused (SPEC 8.2)")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    der = encode_dss_signature(r, s)
    c.ok(not ow.verify_raw(pub, digest, der), f"{what}: DER form refused")
    c.ok(not ow.verify_raw(pub, digest, sig[:63]) and not ow.verify_raw(pub, digest, sig + b"\0"),
         f"{what}: other lengths refused")
    c.ok(not ow.verify_raw(pub, digest, b"\0" * 32 + sig[32:]) and not ow.verify_raw(pub, digest, sig[:32] + b"\0" * 32)
         and not ow.verify_raw(pub, digest, ow.N.to_bytes(32, "big") + sig[32:]), f"{what}: r = 0, s = 0, r = n refused")
    other = bytes([digest[0] ^ 1]) + digest[1:]
    c.ok(not ow.verify_raw(pub, other, sig), f"{what}: signature bound to its digest")


def check_digests(c):
    v = json.loads((ROOT / "tests/data/digests_v1.json").read_text())
    k = v["keys"]
    device_sk, issuer_sk = ow.private_key(hx(k["device_secret"])), ow.private_key(hx(k["issuer_secret"]))
    request_sk = ow.private_key(hx(k["server_request_secret"]))
    device_pub = ow.public_bytes(device_sk)
    c.ok(device_pub.hex() == k["device_public"], "keys: device public key")
    c.ok(ow.public_bytes(issuer_sk).hex() == k["issuer_public"], "keys: issuer public key")
    c.ok(ow.public_bytes(request_sk).hex() == k["server_public"], "keys: server (request) public key")

    e = v["enrollment"]
    server_pub, challenge, dev_id = hx(e["server_public"]), hx(e["challenge"]), hx(e["device_id"])
    c.ok(e["device_public"] == k["device_public"], "enrollment: device key")
    digest = ow.enrollment_digest(server_pub, challenge, dev_id, hx(e["device_public"]))
    manual = ow.sha256(b"oncewire/1 device enrollment" + server_pub + challenge + bytes([len(dev_id)]) + dev_id
                       + hx(e["device_public"]))
    c.ok(digest == manual and digest.hex() == e["digest"], "enrollment: digest")
    check_signature(c, "enrollment", device_pub, digest, hx(e["signature"]), device_sk)
    # Bound to the server (SPEC 8.3): the same answer is refused under another server's key.
    other_server = ow.public_bytes(issuer_sk)
    c.ok(not ow.verify_raw(device_pub, ow.enrollment_digest(other_server, challenge, dev_id, device_pub),
                           hx(e["signature"])), "enrollment: relayed to another server, refused")

    cnf = ow.thumbprint(hx(v["cnf"]["device_public"]))
    c.ok(cnf.hex() == v["cnf"]["thumbprint"], "cnf thumbprint")

    t = v["token"]
    token, claims_bytes, tsig = hx(t["token"]), hx(t["claims"]), hx(t["signature"])
    c.ok(token == claims_bytes + tsig, "token = claims || signature")
    claims, end = ow.decode_claims(token)
    c.ok(end == len(claims_bytes), "token: claims length")
    c.ok(claims["iat"] == u64(t["iat"]) and claims["nbf"] == u64(t["nbf"]) and claims["exp"] == u64(t["exp"]),
         "token: iat, nbf, exp")
    c.ok(claims["cnf"] == cnf and claims["sub"] == dev_id, "token: cnf and sub")
    tdigest = ow.token_digest(claims_bytes)
    c.ok(tdigest.hex() == t["digest"], "token: claims digest")
    check_signature(c, "token", ow.public_bytes(issuer_sk), tdigest, tsig, issuer_sk)
    now = claims["iat"]
    c.ok(ow.verify_token(token, hx(k["issuer_public"]), claims["aud"], now) == claims, "token verifies")
    c.ok(error_of(ow.verify_token, token, hx(k["issuer_public"]), "other", now) == "WrongAudience", "token: aud")
    c.ok(error_of(ow.verify_token, token, hx(k["issuer_public"]), claims["aud"], claims["exp"] + 1) == "Expired",
         "token: exp")
    c.ok(error_of(ow.verify_token, token, hx(k["issuer_public"]), claims["aud"], now - 1) == "NotYetValid",
         "token: nbf")
    c.ok(error_of(ow.verify_token, claims_bytes + ow.high_s(tsig), hx(k["issuer_public"]), claims["aud"], now)
         == "Authentication", "token: high-S signature refused")
    c.ok(error_of(ow.verify_token, token[:-1], hx(k["issuer_public"]), claims["aud"], now) == "Truncated"
         and error_of(ow.verify_token, token + b"\0", hx(k["issuer_public"]), claims["aud"], now) == "TrailingBytes",
         "token: signature length")

    p = v["token_proof"]
    ptoken, preq, iat, jti, proof = hx(p["token"]), hx(p["request"]), u64(p["iat"]), hx(p["jti"]), hx(p["proof"])
    c.ok(ptoken == token, "proof: the token of the vector")
    pdigest = ow.proof_digest(ptoken, preq, iat, jti)
    manual = ow.sha256(b"oncewire/1 token proof" + ow.sha256(ptoken) + ow.sha256(preq) + iat.to_bytes(8, "big") + jti)
    c.ok(pdigest == manual and pdigest.hex() == p["digest"], "proof: digest")
    c.ok(len(proof) == 88 and proof == iat.to_bytes(8, "big") + jti + hx(p["signature"]),
         "proof: iat || jti || signature (88 bytes)")
    c.ok(ow.split_proof(proof) == (iat, jti, hx(p["signature"])), "proof: split")
    c.ok(error_of(ow.split_proof, proof[:-1]) == "Truncated" and error_of(ow.split_proof, proof + b"\0")
         == "TrailingBytes", "proof: length")
    check_signature(c, "proof", device_pub, pdigest, hx(p["signature"]), device_sk)
    c.ok(ow.make_proof(device_sk, ptoken, preq, iat, jti, deterministic=True) == proof, "proof: exact bytes")
    c.ok(ow.proof_digest(ptoken, preq, iat + 1, jti) != pdigest, "proof: iat is signed")

    for o in v["clock_offset"]:
        got = ow.clock_offset(u64(o["server_time_ms"]), u64(o["sent_ms"]), u64(o["received_ms"]))
        c.ok(got == i64(o["offset_ms"]), f"clock offset {o}: got {got}")
    # Saturation both ways (SPEC 7.3).
    c.ok(ow.clock_offset(ow.U64_MAX, 0, 0) == ow.I64_MAX and ow.clock_offset(0, ow.U64_MAX, ow.U64_MAX) == ow.I64_MIN,
         "clock offset saturates to i64")

    r = v["one_shot_request"]
    c.ok((u64(r["kem_id"]), u64(r["kdf_id"]), u64(r["aead_id"]), u64(r["mode"]))
         == (ow.KEM_P256, ow.KDF_SHA256, ow.AEAD_AES256GCM, ow.MODE_BASE), "one-shot: suite and mode")
    recipient = hx(r["recipient_public"])
    c.ok(recipient == ow.public_bytes(request_sk), "one-shot: recipient is keys.server_request_secret")
    ts, app_info, app_aad, msg = u64(r["timestamp_ms"]), hx(r["app_info"]), hx(r["app_aad"]), hx(r["message"])
    c.ok(ow.request_info(app_info) == b"oncewire/1 request" + app_info and ow.request_info(app_info).hex() == r["info"],
         "one-shot: info")
    c.ok(ow.request_aad(ts, app_aad) == ts.to_bytes(8, "big") + app_aad and ow.request_aad(ts, app_aad).hex() == r["aad"],
         "one-shot: aad")
    eph = ow.private_key(hx(r["ephemeral_secret"]))
    req = ow.seal_request(recipient, ts, msg, app_info, app_aad, eph_sk=eph)
    want = hx(r["request"])
    c.ok(req == want, "one-shot: request bytes (enc || timestamp || ciphertext || tag)")
    c.ok(want[:65] == ow.public_bytes(eph) and want[65:73] == ts.to_bytes(8, "big")
         and len(want) == 65 + 8 + len(msg) + 16, "one-shot: layout")
    got_ts, rid, pt = ow.open_request(request_sk, want, app_info, app_aad)
    c.ok(got_ts == ts and pt == msg, "one-shot: opens with the recipient secret")
    c.ok(rid == ow.sha256(b"oncewire/1 request id" + want[:65])[:12] and rid.hex() == r["replay_id"],
         "one-shot: replay id")
    later = want[:65] + (ts + 1).to_bytes(8, "big") + want[73:]
    c.ok(error_of(ow.open_request, request_sk, later, app_info, app_aad) == "Authentication",
         "one-shot: timestamp authenticated")
    c.ok(error_of(ow.open_request, request_sk, want, app_info + b"x", app_aad) == "Authentication"
         and error_of(ow.open_request, request_sk, want, app_info, app_aad + b"x") == "Authentication",
         "one-shot: info and aad bound")
    c.ok(error_of(ow.open_request, issuer_sk, want, app_info, app_aad) == "Authentication", "one-shot: other key")
    c.ok(error_of(ow.open_request, request_sk, want[:88], app_info, app_aad) == "Truncated", "one-shot: length")
    bad_enc = b"\x04" + b"\xff" * 64 + want[65:]
    c.ok(error_of(ow.open_request, request_sk, bad_enc, app_info, app_aad) == "InvalidKey", "one-shot: invalid enc")
    return 6 + len(v["clock_offset"])


# --- hpke_rfc9180.json (RFC 9180 A.3, A.6 for the suites of SPEC 11) -----------

def check_rfc9180(c):
    v = json.loads((ROOT / "tests/data/hpke_rfc9180.json").read_text())
    n = 0
    for t in v["vectors"]:
        mode, aead = t["mode"], t["aead_id"]
        what = f"RFC 9180 mode {mode} aead {aead}"
        sk_e, sk_r = ow.derive_key_pair(hx(t["ikmE"])), ow.derive_key_pair(hx(t["ikmR"]))
        c.ok(ow.private_key(hx(t["skEm"])).private_numbers().private_value == sk_e.private_numbers().private_value
             and ow.public_bytes(sk_e).hex() == t["pkEm"], f"{what}: DeriveKeyPair(ikmE)")
        c.ok(ow.public_bytes(sk_r).hex() == t["pkRm"]
             and sk_r.private_numbers().private_value == int(t["skRm"], 16), f"{what}: DeriveKeyPair(ikmR)")
        sk_s = None
        if mode == ow.MODE_AUTH:
            sk_s = ow.derive_key_pair(hx(t["ikmS"]))
            c.ok(ow.public_bytes(sk_s).hex() == t["pkSm"], f"{what}: DeriveKeyPair(ikmS)")
        shared, enc = ow.encap(hx(t["pkRm"]), sk_e, sk_s)
        c.ok(enc.hex() == t["enc"] and shared.hex() == t["shared_secret"], f"{what}: encap")
        pk_s = hx(t["pkSm"]) if mode == ow.MODE_AUTH else None
        c.ok(ow.decap(enc, sk_r, pk_s) == shared, f"{what}: decap")
        sctx, vals = ow.key_schedule(mode, shared, hx(t["info"]), aead, t["kdf_id"], t["kem_id"])
        rctx, _ = ow.key_schedule(mode, shared, hx(t["info"]), aead, t["kdf_id"], t["kem_id"])
        for name in ("key_schedule_context", "secret", "key", "base_nonce", "exporter_secret"):
            c.ok(vals[name].hex() == t[name], f"{what}: {name}")
        for i, e in enumerate(t["encryptions"]):
            assert sctx._nonce().hex() == e["nonce"], f"{what}: nonce {i}"
            ct = sctx.seal(hx(e["aad"]), hx(e["pt"]))
            assert ct.hex() == e["ct"], f"{what}: encryption {i}"
            assert rctx.open(hx(e["aad"]), ct) == hx(e["pt"]), f"{what}: decryption {i}"
        c.ok(sctx.seq == len(t["encryptions"]), f"{what}: {len(t['encryptions'])} encryptions")
        for x in t["exports"]:
            c.ok(sctx.export(hx(x["exporter_context"]), x["L"]).hex() == x["exported_value"], f"{what}: export")
        n += 1
    return n


def main():
    c = Count()
    frames = check_frames(c)
    digests = check_digests(c)
    hpke = check_rfc9180(c)
    print(f"python interop: frames_v1.json {frames} vectors, digests_v1.json {digests} groups, "
          f"hpke_rfc9180.json {hpke} suites; {c.n} checks passed, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
