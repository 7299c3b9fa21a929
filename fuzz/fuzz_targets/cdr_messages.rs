//! Fuzz target `cdr_messages`: see `harness::cdr_messages`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::cdr_messages(data));
