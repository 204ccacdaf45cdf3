//! Fuzz harnesses of the Skiff broker. Each `fuzz_targets/<name>.rs` is a thin
//! `fuzz_target!` over `<name>::run`; keeping the logic here lets the seed
//! generator and the regression test share it.

pub mod log_append;
pub mod readback;
pub mod request;
pub mod seeds;
pub mod segment_recovery;
pub mod shape;
