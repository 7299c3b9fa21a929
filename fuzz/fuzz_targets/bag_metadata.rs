//! Fuzz target `bag_metadata`: see `harness::bag_metadata`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::bag_metadata(data));
