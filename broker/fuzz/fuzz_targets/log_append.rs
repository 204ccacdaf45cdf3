#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::log_append::run(data));
