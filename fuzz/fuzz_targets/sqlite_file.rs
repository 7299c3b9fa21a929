//! Fuzz target `sqlite_file`: see `harness::sqlite_file`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::sqlite_file(data));
