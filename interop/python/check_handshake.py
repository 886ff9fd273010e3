#!/usr/bin/env python3
"""Recomputes tests/data/handshake_v1.json from SPEC.md with Python
`cryptography`: messages 1 and 2 byte for byte, the key schedule, the device
signature in message 3, and the first request and response."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import oncewire_spec as ow  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    v = json.loads((ROOT / "tests/data/handshake_v1.json").read_text())
    i = v["inputs"]
    hx = bytes.fromhex
    server_sk = ow.private_key(hx(i["server_static_secret"]))
    server_pub = ow.public_bytes(server_sk)
    assert server_pub.hex() == i["server_static_public"]
    ce = ow.private_key(hx(i["client_ephemeral_secret"]))
    se = ow.private_key(hx(i["server_ephemeral_secret"]))
    checks = 0

    msg1, csym = ow.client_msg1(server_pub, ce, hx(i["handshake_id"]), i["client_time_ms_msg1"])
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
    payload2 = ow.varint(i["server_time_ms_msg2"]) + ow.varint(i["lifetime_ms"])
    body_len = len(ow.pc_bytes(e_s) + ow.pc_bytes(b"\0" * (len(payload2) + 16)))
    hdr2 = ow.header(ow.HS_RESPONSE, hx(i["handshake_id"]), b"\0" * 12, i["server_time_ms_msg2"], body_len)
    ssym.mix_hash(hdr2)
    ssym.mix_hash(e_s)
    ssym.mix_key(ow.dh(se, e_c))
    sealed2 = ssym.encrypt_and_hash(payload2)
    msg2 = hdr2 + ow.pc_bytes(e_s) + ow.pc_bytes(sealed2)
    assert msg2.hex() == v["msg2"], "message 2 differs"
    checks += 1

    hello = ow.client_read_msg2(csym, ce, hx(i["handshake_id"]), msg2)
    assert hello["lifetime_ms"] == i["lifetime_ms"]
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
    dev_id, j = ow.read_bytes(pt, 0)
    sig, j = ow.read_bytes(pt, j)
    assert j == len(pt) and dev_id.hex() == i["device_id"] and len(sig) == 64
    assert int.from_bytes(sig[32:], "big") <= ow.N_HALF, "signature is not low-S"
    assert ow.verify_raw(hx(i["device_public"]), ow.signature_digest(csym.h), sig), "device signature invalid"
    # Re-seal message 3 with the same signature: byte-identical.
    msg3, _ = ow.client_msg3(csym, dev_id, None, i["client_time_ms_msg3"], signature=sig)
    assert msg3.hex() == v["msg3"]
    checks += 2

    req = v["first_request"]
    f, pt = ow.open_frame(hx(req["frame"]), *keys["c2s"], ow.RECORD, keys["session_id"])
    assert f["seq"] == req["seq"] and pt.hex() == req["payload"]
    resp = v["first_response"]
    ext = resp["request_seq"].to_bytes(8, "big")
    f, pt = ow.open_frame(hx(resp["frame"]), *keys["s2c"], ow.RESPONSE, keys["session_id"], ext)
    assert pt.hex() == resp["payload"]
    try:
        ow.open_frame(hx(resp["frame"]), *keys["s2c"], ow.RESPONSE, keys["session_id"], (2).to_bytes(8, "big"))
        raise AssertionError("a response opened for the wrong request")
    except ow.ProtocolError as e:
        assert str(e) == "Authentication"
    checks += 3
    print(f"python interop: handshake vectors {checks} passed, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
