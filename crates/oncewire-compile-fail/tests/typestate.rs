//! Typestate misuse must not compile: sealing before the handshake is done,
//! resuming a handshake step that already ran (or failed), and making the
//! proof tokens or a session without running the verifiers.
#![allow(missing_docs)]

#[test]
fn typestate_misuse_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
