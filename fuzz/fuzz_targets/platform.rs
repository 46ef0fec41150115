//! The `platform` target: see `matih_fuzz::platform`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| matih_fuzz::platform::run(data));
