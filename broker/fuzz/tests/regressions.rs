//! Replays `regressions/<target>/*` through the harnesses (as the fuzz targets
//! would, without libFuzzer): `cargo +nightly test --release` from `broker/fuzz`.
//! Inputs of known, reported issues pass here because the harnesses mask them;
//! with `SKIFF_FUZZ_STRICT=1` they fail until the broker is fixed.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    // Files only: `unfixed/` holds inputs that still crash the process.
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in files {
        let data = std::fs::read(&file).expect("read regression input");
        eprintln!("replaying {}", file.display());
        run(&data);
    }
}

#[test]
fn request_regressions() {
    replay("request", skiff_fuzz::request::run);
}

#[test]
fn log_append_regressions() {
    replay("log_append", skiff_fuzz::log_append::run);
}

#[test]
fn segment_recovery_regressions() {
    replay("segment_recovery", skiff_fuzz::segment_recovery::run);
}
