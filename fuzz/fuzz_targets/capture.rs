//! Fuzz target `capture`: see `fuzz/harness.rs`.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code, reason = "each target uses one function of the harness")]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::capture(data));
