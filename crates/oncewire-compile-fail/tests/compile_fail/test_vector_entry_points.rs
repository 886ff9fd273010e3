//! The traffic-secret export for test vectors does not exist in a normal
//! build, whatever Cargo features any crate in the graph enables: it needs
//! RUSTFLAGS="--cfg oncewire_test_vectors".
fn secrets(session: &oncewire::Session) {
    let _ = session.traffic_secrets();
}

fn main() {}
