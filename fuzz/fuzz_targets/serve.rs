//! The `serve` target: see `matih_fuzz::serve`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| matih_fuzz::serve::run(data));
