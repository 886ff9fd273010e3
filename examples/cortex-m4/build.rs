//! Puts `memory.x` where the linker finds it, and provisions the emulated
//! device's seed (32 random bytes) and its long-lived record key, both baked
//! into flash at build time.
//!
//! EMULATION ONLY: QEMU has no hardware RNG and no secure element. A real
//! device seeds its DRBG from its TRNG and keeps its key in a secure element.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    // cortex-m-rt's `device` feature includes device.x (the weak aliases of
    // the device interrupt handlers); the firmware handles none of them (its
    // vector table is in src/board.rs).
    fs::write(out.join("device.x"), "/* no device interrupt handlers */\n").expect("write device.x");
    // cortex-m-rt's linker script, here rather than in .cargo/config.toml so
    // that a RUSTFLAGS variable in the environment cannot drop it.
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        // defmt's linker script keeps the interned log strings.
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
    let mut seed = [0u8; 32];
    match env::var("ONCEWIRE_DEVICE_SEED") {
        // Reproducible builds: a 64-hex-digit seed from the environment.
        Ok(hex) if hex.len() == 64 => {
            for (i, b) in seed.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex seed");
            }
        }
        _ => getrandom::fill(&mut seed).expect("host RNG"),
    }
    fs::write(out.join("device_seed.bin"), seed).expect("write seed");
    println!("cargo:rerun-if-env-changed=ONCEWIRE_DEVICE_SEED");
    // The long-lived record key shared with the server (key 32 ‖ IV 12 ‖
    // key id 8). Its server learns it from this file (scripts/qemu-e2e finds
    // it through `cargo build --message-format=json`, which names OUT_DIR).
    let mut long_lived = [0u8; 52];
    match env::var("ONCEWIRE_LONG_LIVED_KEY") {
        Ok(hex) if hex.len() == 104 => {
            for (i, b) in long_lived.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex key");
            }
        }
        _ => getrandom::fill(&mut long_lived).expect("host RNG"),
    }
    fs::write(out.join("long_lived_key.bin"), long_lived).expect("write long-lived key");
    println!("cargo:rerun-if-env-changed=ONCEWIRE_LONG_LIVED_KEY");
}
