//! The `planfile` target: see `matih_fuzz::planfile`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| matih_fuzz::planfile::run(data));
