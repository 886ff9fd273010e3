//! Placeholder until the record benches land.
fn main() {}
