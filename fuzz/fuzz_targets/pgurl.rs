//! The `pgurl` target: see `matih_fuzz::pgurl`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| matih_fuzz::pgurl::run(data));
