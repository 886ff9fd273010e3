//! Nothing to link: the crate holds `tests/typestate.rs`, which checks with
//! trybuild that misuse of the core's typestate API does not compile. See
//! `tests/compile_fail/` for the cases and the compiler errors they expect.
#![forbid(unsafe_code)]
#![no_std]
