#!/usr/bin/env python3
"""Writes the seed inputs of the `http_request` fuzz target to
corpus/http_request/.

Each seed is an `Input` of fuzz_targets/http_request.rs encoded as the
`arbitrary` crate (1.x) decodes it: an enum variant is a u32 (LE) scaled to
the variant count, integers are little-endian, a bool is a byte's low bit,
and a `Vec` is a sequence of elements each preceded by a `1` byte, ended by a
`0` byte (or by the end of the input). Keep the variant lists below in the
order of the enums in the target. Check a seed with
`cargo +nightly fuzz fmt http_request corpus/http_request/<name>`.
"""

import os
import struct

PATH_SEL = ["Known", "Other"]
PATH = ["EnrollChallenge", "Enroll", "Handshake", "Finish", "Challenge", "RequestKey",
        "Token", "Echo", "Pay", "Ping", "Metrics", "EchoQuery"]
METHOD = ["Post", "Get", "Put", "Head", "Delete", "Options", "Patch", "Other"]
SESSION = ["None", "Real", "RealUpper", "Hex", "Raw", "RealThenRaw", "RawThenReal", "OtherSession"]
CONTENT_TYPE = ["None", "Oncewire", "Json", "Raw"]
LENGTH = ["None", "Honest", "Lie", "Raw"]
ROUTE = ["None", "Hex", "Raw"]
MUTATION = ["Flip", "Set", "Insert", "Remove", "Truncate", "Append"]
BODY = ["Raw", "Large", "Genuine", "Twice", "KeyUpdate", "Bound", "OneShot", "Reflect"]


def tag(variants, name):
    k, n = variants.index(name), len(variants)
    # The smallest u32 v with (v * n) >> 32 == k.
    return struct.pack("<I", -(-(k << 32) // n))


def u8(v):
    return struct.pack("<B", v)


def u16(v):
    return struct.pack("<H", v)


def i16(v):
    return struct.pack("<h", v)


def u32(v):
    return struct.pack("<I", v)


def flag(b):
    return b"\x01" if b else b"\x00"


def vec(items):
    return b"".join(b"\x01" + i for i in items) + b"\x00"


def byte_vec(data):
    return vec([bytes([b]) for b in data])


def flip(at, bit):
    return tag(MUTATION, "Flip") + u16(at) + u8(bit)


def insert(at, byte):
    return tag(MUTATION, "Insert") + u16(at) + u8(byte)


def truncate(n):
    return tag(MUTATION, "Truncate") + u16(n)


def head(path, method="Post", session="Real", content_type="Oncewire", length="None", route="None"):
    out = tag(PATH_SEL, "Known") + tag(PATH, path) + tag(METHOD, method)
    out += tag(SESSION, session) + tag(CONTENT_TYPE, content_type)
    out += tag(LENGTH, length) + (u32(1 << 20) if length == "Lie" else b"")
    out += tag(ROUTE, route) + (bytes(8) if route == "Hex" else b"")
    return out


def raw(data):
    return tag(BODY, "Raw") + byte_vec(data)


def genuine(plain, mutations=()):
    return tag(BODY, "Genuine") + byte_vec(plain) + vec(list(mutations))


def twice(plain):
    return tag(BODY, "Twice") + byte_vec(plain)


def key_update(mutations=(), again=False):
    return tag(BODY, "KeyUpdate") + vec(list(mutations)) + flag(again)


def bound(request, challenge=True, token=True, mutations=(), again=False):
    return (tag(BODY, "Bound") + byte_vec(request) + flag(challenge) + flag(token)
            + vec(list(mutations)) + flag(again))


def one_shot(plain, for_ping=True, mutations=(), again=False):
    return tag(BODY, "OneShot") + byte_vec(plain) + flag(for_ping) + vec(list(mutations)) + flag(again)


def reflect(plain, mutations=()):
    return tag(BODY, "Reflect") + byte_vec(plain) + vec(list(mutations))


def large(fill, delta, huge):
    return tag(BODY, "Large") + u8(fill) + i16(delta) + flag(huge)


SEEDS = {
    "echo": head("Echo") + genuine(b"hello"),
    "echo-flipped": head("Echo") + genuine(b"hello", [flip(20, 3)]),
    "echo-truncated": head("Echo") + genuine(b"hello", [truncate(30)]),
    "echo-inserted": head("Echo") + genuine(b"hello", [insert(9, 0)]),
    "echo-twice": head("Echo", route="Hex") + twice(b"again"),
    "echo-no-session": head("Echo", session="None") + genuine(b"secret payload"),
    "echo-length-lie": head("EchoQuery", length="Lie", content_type="Json") + genuine(b"lie"),
    "echo-other-session": head("Echo", session="OtherSession") + twice(b"elsewhere"),
    "echo-reflected": head("Echo") + reflect(b"mirror"),
    "echo-get": head("Echo", method="Get") + genuine(b"get"),
    "key-update-twice": head("Echo") + key_update(again=True),
    "key-update-flipped": head("Echo") + key_update([flip(3, 0)]),
    "token": head("Token") + genuine(b""),
    "request-key": head("RequestKey") + genuine(b""),
    "pay": head("Pay") + bound(b"10 EUR to bob", again=True),
    "pay-tampered": head("Pay") + bound(b"10 EUR to bob", mutations=[flip(200, 1)]),
    "pay-no-token": head("Pay") + bound(b"10 EUR to bob", token=False),
    "ping": head("Ping", session="None") + one_shot(b"ping", again=True),
    "ping-other-path": head("Ping", session="None") + one_shot(b"ping", for_ping=False),
    "ping-flipped": head("Ping", session="None") + one_shot(b"ping", mutations=[flip(70, 7)]),
    "echo-large": head("Echo") + large(0x41, 1, False),
    "handshake-large": head("Handshake", session="None") + large(0, 1, True),
    "handshake-garbage": head("Handshake", session="None") + raw(b"\x01\x01" + bytes(64)),
    "finish-garbage": head("Finish") + raw(b"\x01\x03" + bytes(32)),
    "enroll-garbage": head("Enroll", session="None") + raw(bytes(40) + b"\x30"),
    "enroll-challenge": head("EnrollChallenge", session="None") + raw(b""),
    "challenge": head("Challenge", session="None") + raw(b""),
    "metrics": head("Metrics", method="Get", session="None", content_type="None") + raw(b""),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "http_request")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
