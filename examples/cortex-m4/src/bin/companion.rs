//! The companion device: boots its reboot-safe counters from the I2C EEPROM,
//! seals records under its long-lived key (sequence numbers reserved ahead
//! in the EEPROM, `SPEC.md` §10), enrolls its device key, runs the oncewire
//! handshake with the host demo server over the UART, exchanges sealed
//! records, reports over semihosting the device side of the handshake in
//! timer ticks (instructions under `-icount`) and the peak stack, and exits
//! with a status.
#![no_std]
#![no_main]

use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::debug;
use oncewire::device::{DeviceId, SoftwareSigner};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN};
use oncewire::prover::Prover;
use oncewire::provider::PublicKey;
use oncewire::record::PersistentSender;
use oncewire::session::{Limits, Session};
use oncewire::wire::buffer_len;
use oncewire::{Error, Secret};
use oncewire_companion::cm4::Cm4;
use oncewire_companion::console::{self, Arg};
use oncewire_companion::counters::{EepromCounters, Write};
use oncewire_companion::i2c::SbconI2c;
use oncewire_companion::{
    BoardClock, HmacDrbg, StackPaint, Uart, calibrate, kind, millis, recv, send, start_systick, start_timer, ticks,
};
use rand_core::TryRng;
use serde::{Deserialize, Serialize};

/// EMULATION ONLY: a per-device seed provisioned into flash at build time.
static DEVICE_SEED: [u8; 32] = *include_bytes!(concat!(env!("OUT_DIR"), "/device_seed.bin"));
/// EMULATION ONLY: the long-lived record key shared with the server (key ‖
/// IV ‖ key id), provisioned into flash at build time. On hardware it lives
/// in a secure element or protected flash.
static LONG_LIVED: [u8; 52] = *include_bytes!(concat!(env!("OUT_DIR"), "/long_lived_key.bin"));
/// The EEPROM on the SBCon bus: 7-bit address and where the counters start.
const EEPROM: u8 = 0x50;
const EEPROM_BASE: u16 = 0;
/// Counter 0: the boot number, mixed into the DRBG. Counter 1: the
/// long-lived key's sequence bound.
const BOOT: usize = 0;
const SEQ: usize = 1;
/// Sequence numbers reserved per EEPROM write. Small, so that the power-cut
/// test sees many writes; a product reserves more (fewer writes, more
/// numbers skipped per reboot).
const SEQ_BLOCK: u64 = 2;
/// Records sealed under the long-lived key per boot.
const LONG_LIVED_RECORDS: usize = 12;
/// Busy-wait per half SCL period: I2C at a few hundred kHz under QEMU, so an
/// EEPROM write takes long enough for the power-cut test to land inside it.
const I2C_HALF_PERIOD: u32 = 100;

/// Unix ms at build time stands in for an RTC; the handshake corrects it.
const EPOCH_MS: u64 = 1_767_225_600_000;

#[derive(Serialize)]
enum AppRequest<'a> {
    Ping(&'a str),
}

#[derive(Deserialize)]
enum AppResponse<'a> {
    Text(&'a str),
}

// With `--features defmt`, logs go out as defmt frames over semihosting.
#[cfg(feature = "defmt")]
use defmt_semihosting as _;

#[exception]
fn SysTick() {
    oncewire_companion::tick();
}

// One format string for both variants: defmt interns it; the plain build
// prints it through `console` (no `core::fmt`: `{}` only, no `{:?}`).
macro_rules! log {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::info!($fmt $(, $arg)*);
        #[cfg(not(feature = "defmt"))]
        console::print($fmt, &[$(Arg::from($arg)),*]);
    }};
}

/// Iterations of the timer calibration loop (two instructions each).
const CALIBRATION_LOOPS: u32 = 500_000;

#[entry]
fn main() -> ! {
    let stack = StackPaint::paint();
    let mut cp = cortex_m::Peripherals::take().unwrap_or_else(|| fail("peripherals"));
    start_systick(&mut cp.SYST);
    start_timer();
    log!("timer: a {}-instruction loop took {} ticks", 2 * CALIBRATION_LOOPS, calibrate(CALIBRATION_LOOPS));
    let result = run();
    log!("peak stack: {} bytes", stack.peak());
    match result {
        Ok(()) => {
            log!("companion: OK");
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(e) => fail(e),
    }
    loop {
        cortex_m::asm::wfi();
    }
}

fn fail(why: &str) -> ! {
    console::print("companion: FAILED: {}", &[Arg::Str(why)]);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    fail("panic")
}

/// Marks each EEPROM slot write on the console: the power-cut test knows
/// from them whether it cut power inside a write.
fn write_marker(w: Write, generation: u32) {
    match w {
        Write::Begin => log!("eeprom: write begin {}", generation),
        Write::End => log!("eeprom: write end {}", generation),
    }
}

fn run() -> Result<(), &'static str> {
    let mut uart = Uart::uart0();
    let clock = BoardClock { epoch_ms: EPOCH_MS };
    let bus = SbconI2c::sbcon3(I2C_HALF_PERIOD);
    let mut store = EepromCounters::mount(bus, EEPROM, EEPROM_BASE).map_err(|_| "eeprom mount")?.on_write(write_marker);
    log!("eeprom: generation {}, {} damaged slot(s)", store.generation(), store.damaged());
    // Persisted before the DRBG draws anything: no two boots share a stream.
    let boot = store.reserve(BOOT, 1).map_err(|_| "eeprom: boot number")?;
    log!("boot {}", boot);
    let mut rng = HmacDrbg::new(&DEVICE_SEED);
    // EMULATION ONLY: the device key comes from the DRBG. On hardware this is
    // a key slot in a secure element (ATECC608, SE050, OPTIGA) behind the
    // same `DeviceSigner` trait, and never leaves it.
    let mut key: Secret<32> = Secret::zero();
    rng.try_fill_bytes(key.expose_mut()).map_err(|_| "rng")?;
    rng.reseed(&boot.to_le_bytes());
    let mut signer: SoftwareSigner<Cm4> = SoftwareSigner::from_bytes(&key).map_err(|_| "device key")?;
    let device = DeviceId::new(b"cortex-m4-lock").map_err(|_| "device id")?;
    let mut buf = [0u8; 512];

    long_lived(&mut uart, &clock, &mut store, &mut buf)?;

    // The server's static key: provisioned at the factory in a product; the
    // demo server makes a new one per run, so the device asks for it.
    send(&mut uart, kind::SERVER_KEY, &[]).map_err(|_| "uart")?;
    let (_, n) = recv(&mut uart, &mut buf)?;
    let server_key = PublicKey::from_sec1_uncompressed(&buf[..n]).map_err(|_| "server key")?;
    log!("server key received");

    send(&mut uart, kind::ENROLL_BEGIN, &[]).map_err(|_| "uart")?;
    let (k, n) = recv(&mut uart, &mut buf)?;
    // 40 bytes: expiry ‖ random ‖ MAC tag (SPEC.md §12); the device treats it as opaque.
    let challenge: [u8; 40] = buf[..n].try_into().map_err(|_| "enrollment challenge")?;
    if k != kind::ENROLL_CHALLENGE {
        return Err("expected an enrollment challenge");
    }
    // The answer signs the server's key too (it cannot be relayed to another
    // server), and carries the one wire form of a signature: raw, low-S.
    let c0 = ticks();
    let answer = Prover::<_, Cm4>::with_provider(&mut signer)
        .answer_enrollment(&server_key, &challenge, device)
        .map_err(|_| "sign")?;
    log!("enrollment answer: {} timer ticks (one ECDSA signature)", ticks().wrapping_sub(c0));
    // The challenge goes back with the answer: the server keeps no state.
    let mut out = [0u8; 40 + oncewire::device::MAX_ENROLLMENT_REQUEST_LEN];
    out[..40].copy_from_slice(&challenge);
    let n = answer.to_bytes(&mut out[40..]).map_err(|_| "encode")?;
    let msg = &out[..40 + n];
    send(&mut uart, kind::ENROLL_ANSWER, msg).map_err(|_| "uart")?;
    if recv(&mut uart, &mut buf)?.0 != kind::OK {
        return Err("enrollment rejected");
    }
    log!("enrolled");

    let t0 = millis();
    // The device's own work (message 1, then message 2 in and message 3
    // out), without the UART round trips between them.
    let c0 = ticks();
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (hs, n1) = ClientHandshake::<Cm4>::start(server_key, &mut rng, &clock, &mut m1).map_err(|_| "msg1")?;
    let mut device_ticks = ticks().wrapping_sub(c0);
    send(&mut uart, kind::FRAME, &m1[..n1]).map_err(|_| "uart")?;
    let (_, n2) = recv(&mut uart, &mut buf)?;
    let c1 = ticks();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    // A 4-word replay window (192 sequence numbers) is plenty for a device.
    let (mut session, n3): (Session<Cm4, 4>, usize) = hs
        .finish(&clock, &buf[..n2], device, &mut signer, Limits::DEFAULT, &mut m3)
        .map_err(|_| "msg2: server not authenticated")?;
    device_ticks = device_ticks.wrapping_add(ticks().wrapping_sub(c1));
    send(&mut uart, kind::FRAME, &m3[..n3]).map_err(|_| "uart")?;
    if recv(&mut uart, &mut buf)?.0 != kind::OK {
        return Err("handshake rejected");
    }
    let handshake_ms = millis().wrapping_sub(t0);
    log!("handshake done in {} ms (QEMU SysTick, with the server's time)", handshake_ms);
    log!("handshake device side: {} timer ticks (start + finish)", device_ticks);
    // The session stamps records in the server's time base by itself.
    log!("server clock offset: {} ms", session.clock_offset_ms());

    for text in ["hello from cortex-m4", "door state?"] {
        let mut body = [0u8; 64];
        let body = postcard::to_slice(&AppRequest::Ping(text), &mut body).map_err(|_| "encode")?;
        let mut frame = [0u8; buffer_len(64)];
        // The response opens only as the answer to this request (its key
        // generation and sequence number are in the response's AAD).
        let (len, request) = session.seal_request(&clock, body, &mut frame).map_err(|_| "seal")?;
        send(&mut uart, kind::FRAME, &frame[..len]).map_err(|_| "uart")?;
        let (k, n) = recv(&mut uart, &mut buf)?;
        if k == kind::REJECTED {
            log!("request rejected: {}", core::str::from_utf8(&buf[..n]).unwrap_or("?"));
        }
        if k != kind::FRAME {
            return Err("request rejected");
        }
        // Checked for freshness too, in the server's time base: the session
        // applies the handshake's clock offset to this uncorrected clock.
        let opened = session.open_response(&clock, request, &mut buf[..n]).map_err(|e| match e {
            Error::Stale => "response stale",
            Error::FromFuture => "response from the future",
            _ => "response did not open",
        })?;
        let reply: Result<AppResponse<'_>, _> = postcard::from_bytes(opened.payload);
        match reply {
            Ok(AppResponse::Text(t)) => log!("sealed exchange: sent \"{}\", got \"{}\"", text, t),
            Err(_) => return Err("response did not decode"),
        }
    }
    Ok(())
}

/// Seals records under the long-lived key: the sender resumes above every
/// sequence number any earlier boot used, reserving ahead in the EEPROM
/// before each use. A frame of its own (`inline(never)`): its sender and
/// frame buffer are gone before the handshake's P-256 work, where the stack
/// peaks.
#[inline(never)]
fn long_lived(
    uart: &mut Uart,
    clock: &BoardClock,
    store: &mut EepromCounters<SbconI2c>,
    buf: &mut [u8],
) -> Result<(), &'static str> {
    let key = Secret::new(LONG_LIVED[..32].try_into().map_err(|_| "key")?);
    let iv = Secret::new(LONG_LIVED[32..44].try_into().map_err(|_| "key")?);
    let id = LONG_LIVED[44..].try_into().map_err(|_| "key")?;
    let mut tx =
        PersistentSender::<_, Cm4>::boot(&key, iv, id, store.counter(SEQ), SEQ_BLOCK).map_err(|e| match e {
            Error::KeyExhausted => "long-lived key exhausted",
            _ => "eeprom: sequence reservation",
        })?;
    log!("long-lived: resuming at seq {}", tx.next_seq());
    for _ in 0..LONG_LIVED_RECORDS {
        let mut frame = [0u8; buffer_len(16)];
        let n = tx.seal(clock, b"door: locked", &mut frame).map_err(|e| match e {
            Error::Storage => "eeprom: sequence reservation",
            _ => "long-lived seal",
        })?;
        send(uart, kind::LONG_LIVED, &frame[..n]).map_err(|_| "uart")?;
        if recv(uart, buf)?.0 != kind::OK {
            return Err("long-lived record rejected");
        }
    }
    log!("long-lived: sealed up to seq {}", tx.next_seq() - 1);
    Ok(())
}
