#!/usr/bin/env python3
"""Recomputes tests/data/handshake_v1.json from SPEC.md with Python
`cryptography`: messages 1 and 2 byte for byte, the key schedule, the clock
offset, the device signature in message 3 (RFC 6979, exact bytes), and the
first request and its response bound to generation || seq (SPEC 9.2)."""
import json
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import oncewire_spec as ow  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def u64(v):
    """SPEC 14: u64 values in the vector files are decimal strings."""
    assert isinstance(v, str) and re.fullmatch(r"0|[1-9][0-9]*", v), f"u64 not a decimal string: {v!r}"
    assert int(v) <= ow.U64_MAX
    return int(v)


def i64(v):
    assert isinstance(v, str) and re.fullmatch(r"0|-?[1-9][0-9]*", v), f"i64 not a decimal string: {v!r}"
    assert ow.I64_MIN <= int(v) <= ow.I64_MAX
    return int(v)


def main():
    v = json.loads((ROOT / "tests/data/handshake_v1.json").read_text())
    i = v["inputs"]
    t1, t2, t3 = u64(i["client_time_ms_msg1"]), u64(i["server_time_ms_msg2"]), u64(i["client_time_ms_msg3"])
    lifetime = u64(i["lifetime_ms"])
    hx = bytes.fromhex
    server_sk = ow.private_key(hx(i["server_static_secret"]))
    server_pub = ow.public_bytes(server_sk)
    assert server_pub.hex() == i["server_static_public"]
    ce = ow.private_key(hx(i["client_ephemeral_secret"]))
    se = ow.private_key(hx(i["server_ephemeral_secret"]))
    checks = 0

    msg1, csym = ow.client_msg1(server_pub, ce, hx(i["handshake_id"]), t1)
    assert msg1.hex() == v["msg1"], "message 1 differs"
    checks += 1

    # Server side of message 1 and message 2, from the spec.
    f1 = ow.parse(msg1)
    e_c, j = ow.read_bytes(f1["body"], 0)
    sealed1, j = ow.read_bytes(f1["body"], j)
    ssym = ow.Symmetric(server_pub)
    ssym.mix_hash(f1["header"])
    ssym.mix_hash(e_c)
    ssym.mix_key(ow.dh(server_sk, e_c))
    assert ssym.decrypt_and_hash(sealed1) == b""
    e_s = ow.public_bytes(se)
    payload2 = ow.varint(t2) + ow.varint(lifetime)
    body_len = len(ow.pc_bytes(e_s) + ow.pc_bytes(b"\0" * (len(payload2) + 16)))
    hdr2 = ow.header(ow.HS_RESPONSE, hx(i["handshake_id"]), b"\0" * 12, t2, body_len)
    ssym.mix_hash(hdr2)
    ssym.mix_hash(e_s)
    ssym.mix_key(ow.dh(se, e_c))
    sealed2 = ssym.encrypt_and_hash(payload2)
    msg2 = hdr2 + ow.pc_bytes(e_s) + ow.pc_bytes(sealed2)
    assert msg2.hex() == v["msg2"], "message 2 differs"
    checks += 1

    hello = ow.client_read_msg2(csym, ce, hx(i["handshake_id"]), msg2)
    assert hello["lifetime_ms"] == lifetime and hello["server_time_ms"] == t2
    # The vector's client reads its clock (t3) when message 2 arrives and seals
    # message 3 and the first request at that same time (tests/handshake_vectors.rs).
    offset = ow.clock_offset(hello["server_time_ms"], t1, t3)
    assert offset == i64(v["client_clock_offset_ms"]), f"clock offset {offset} differs"
    checks += 1
    assert csym.h.hex() == v["handshake_hash"] == ssym.h.hex(), "handshake hash differs"
    keys = ow.session_keys(csym.ck, csym.h)
    for name, got in [("session_id", keys["session_id"]), ("c2s_traffic_secret", keys["c2s_secret"]),
                      ("s2c_traffic_secret", keys["s2c_secret"]), ("c2s_key", keys["c2s"][0]),
                      ("c2s_iv", keys["c2s"][1]), ("s2c_key", keys["s2c"][0]), ("s2c_iv", keys["s2c"][1])]:
        assert got.hex() == v[name], f"{name} differs"
        checks += 1

    # Message 3: open it, check the device signature over H.
    f3, pt = ow.open_frame(hx(v["msg3"]), *keys["c2s"], ow.HS_FINISH, keys["session_id"])
    assert f3["seq"] == 0
    assert f3["ts"] == t3, "message 3 carries the uncorrected client time (SPEC 7.3)"
    dev_id, j = ow.read_bytes(pt, 0)
    sig, j = ow.read_bytes(pt, j)
    assert j == len(pt) and dev_id.hex() == i["device_id"] and len(sig) == 64
    assert int.from_bytes(sig[32:], "big") <= ow.N_HALF, "signature is not low-S"
    assert ow.verify_raw(hx(i["device_public"]), ow.signature_digest(csym.h), sig), "device signature invalid"
    assert not ow.verify_raw(hx(i["device_public"]), ow.signature_digest(csym.h), ow.high_s(sig)), \
        "high-S form of the device signature accepted"
    device_sk = ow.private_key(hx(i["device_secret"]))
    assert ow.public_bytes(device_sk).hex() == i["device_public"]
    assert ow.sign_digest(device_sk, ow.signature_digest(csym.h), deterministic=True) == sig, \
        "device signature is not the RFC 6979 low-S signature"
    # Re-seal message 3 with the same signature: byte-identical.
    msg3, _ = ow.client_msg3(csym, dev_id, None, t3, signature=sig)
    assert msg3.hex() == v["msg3"]
    checks += 3

    # First request: c2s sequence 1 (message 3 was 0), stamped in the server's time base.
    req = v["first_request"]
    gen, seq, ts = u64(req["generation"]), u64(req["seq"]), u64(req["timestamp_ms"])
    assert gen == 0 and seq == 1, "the client's first record is generation 0, sequence 1"
    assert ts == ow.apply_offset(t3, offset), "first request not stamped with the corrected clock"
    f, pt = ow.open_frame(hx(req["frame"]), *keys["c2s"], ow.RECORD, keys["session_id"])
    assert f["seq"] == seq and f["ts"] == ts and pt.hex() == req["payload"]
    assert ow.seal(ow.RECORD, *keys["c2s"], keys["session_id"], seq, ts, hx(req["payload"])).hex() == req["frame"]
    checks += 2

    # Its response: AAD = header || generation (u32 BE) || seq (u64 BE).
    resp = v["first_response"]
    rgen, rseq, rts = u64(resp["request_generation"]), u64(resp["request_seq"]), u64(resp["timestamp_ms"])
    assert (rgen, rseq) == (gen, seq), "response bound to another request"
    ext = ow.response_ext(rgen, rseq)
    assert len(ext) == 12 and ext.hex() == resp["request_id"], "request id is not generation || seq"
    f, pt = ow.open_frame(hx(resp["frame"]), *keys["s2c"], ow.RESPONSE, keys["session_id"], ext)
    assert pt.hex() == resp["payload"] and f["seq"] == u64(resp["seq"]) and f["ts"] == rts
    resealed = ow.seal(ow.RESPONSE, *keys["s2c"], keys["session_id"], u64(resp["seq"]), rts, hx(resp["payload"]), ext)
    assert resealed.hex() == resp["frame"], "response frame differs"
    checks += 2
    for wrong, what in [(ow.response_ext(rgen, rseq + 1), "another sequence"),
                        (ow.response_ext(rgen + 1, rseq), "the same sequence of the next generation"),
                        (rseq.to_bytes(8, "big"), "the old 8-byte seq binding"),
                        (b"", "no binding")]:
        try:
            ow.open_frame(hx(resp["frame"]), *keys["s2c"], ow.RESPONSE, keys["session_id"], wrong)
            raise AssertionError(f"a response opened for {what}")
        except ow.ProtocolError as e:
            assert str(e) == "Authentication", (what, str(e))
        checks += 1
    print(f"python interop: handshake vectors {checks} passed, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
