//! Fuzz target `image_decode`: see `harness::image_decode`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::image_decode(data));
