//! Writes the seed corpora: `cargo run --release --features gen-seeds --bin gen-seeds`
//! (from `broker/fuzz`).
//! Each target's directory is emptied first, so the seeds always match the code.

use std::path::Path;

fn write(dir: &Path, seeds: Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let n = seeds.len();
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("{}: {n} seeds", dir.display());
    Ok(())
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    write(&root.join("request"), skiff_fuzz::seeds::request_seeds())?;
    write(
        &root.join("log_append"),
        skiff_fuzz::seeds::log_append_seeds(),
    )?;
    write(
        &root.join("segment_recovery"),
        skiff_fuzz::seeds::segment_recovery_seeds(),
    )?;
    Ok(())
}
