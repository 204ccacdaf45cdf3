//! Writes the CRDs of the operator's resources as YAML: `crdgen` prints
//! both, `crdgen DIR` writes `DIR/skiff.dev_clusters.yaml` and
//! `DIR/skiff.dev_topics.yaml`, `crdgen --check DIR` fails if they differ.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (check, dir) = match args.as_slice() {
        [] => {
            for (_, yaml) in skiff_operator::crd::generated() {
                print!("---\n{yaml}");
            }
            return ExitCode::SUCCESS;
        }
        [flag, dir] if flag == "--check" => (true, PathBuf::from(dir)),
        [dir] if !dir.starts_with('-') => (false, PathBuf::from(dir)),
        _ => {
            eprintln!("usage: crdgen [--check] [DIR]");
            return ExitCode::from(2);
        }
    };
    let mut stale = false;
    for (file, yaml) in skiff_operator::crd::generated() {
        let path = dir.join(file);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                eprintln!(
                    "{} is not what the types generate; run `make crds`",
                    path.display()
                );
                stale = true;
            }
        } else if let Err(e) = std::fs::write(&path, &yaml) {
            eprintln!("writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if stale {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
