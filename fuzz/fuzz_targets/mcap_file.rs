//! Fuzz target `mcap_file`: see `harness::mcap_file`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::mcap_file(data));
