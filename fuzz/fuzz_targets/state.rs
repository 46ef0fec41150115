//! The `state` target: see `matih_fuzz::state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| matih_fuzz::state::run(data));
