#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::segment_recovery::run(data));
