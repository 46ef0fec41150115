//! The `addr` target: see `matih_fuzz::addr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| matih_fuzz::addr::run(data));
