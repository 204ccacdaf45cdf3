//! The `skiff/broker` image of the e2e tests and the local cluster: the
//! `skiff-broker` binary of this workspace, freshly built.
//!
//! Integration tests only get `CARGO_BIN_EXE_*` for their own package, and
//! artifact dependencies are unstable, so the binary is built by running
//! `cargo build -p skiff-broker` in the workspace (a no-op of a second or
//! two when it is up to date) and located from cargo's own JSON messages,
//! which respects `CARGO_TARGET_DIR` and build profiles. `SKIFF_BROKER_BIN`
//! names a prebuilt binary instead and skips the build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The image name pods use for the broker (any tag maps to the binary).
pub const IMAGE: &str = "skiff/broker";
/// A prebuilt broker binary to use instead of building one.
pub const BIN_ENV: &str = "SKIFF_BROKER_BIN";
/// The broker's package and binary name.
const PACKAGE: &str = "skiff-broker";

/// Which cargo profile to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `dev`, as `cargo test` builds (shares the tests' build cache).
    Debug,
    /// `release`, as `make run` builds.
    Release,
}

/// Why no broker binary is available.
#[derive(Debug, thiserror::Error)]
pub enum BrokerBuildError {
    /// `SKIFF_BROKER_BIN` names no file.
    #[error("{BIN_ENV}={}: no such file", path.display())]
    Missing {
        /// The path it names.
        path: PathBuf,
    },
    /// cargo could not be run, failed, or reported no binary.
    #[error("building {package} with `{command}`: {reason}")]
    Build {
        /// The package.
        package: String,
        /// The command line.
        command: String,
        /// What went wrong.
        reason: String,
    },
}

/// The workspace root (the parent of this package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// The broker binary: `$SKIFF_BROKER_BIN`, or the result of building it in
/// `profile` (cargo's progress goes to this process's stderr).
pub fn binary(profile: Profile) -> Result<PathBuf, BrokerBuildError> {
    if let Some(path) = std::env::var_os(BIN_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(BrokerBuildError::Missing { path })
        };
    }
    build_binary(PACKAGE, profile)
}

/// Builds the binary of the same name as `package` in `profile` and returns
/// its path (cargo's progress goes to this process's stderr).
pub fn build_binary(package: &str, profile: Profile) -> Result<PathBuf, BrokerBuildError> {
    // Cargo sets CARGO for the programs it runs (tests, `cargo run`).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--package", package, "--bin", package])
        .arg("--message-format=json-render-diagnostics");
    if profile == Profile::Release {
        command.arg("--release");
    }
    // Cargo describes the crate it runs (a test, `cargo run`) in variables
    // that build scripts track (ring: CARGO_MANIFEST_DIR); passed on, they
    // would make this build and every top-level one rebuild each other's
    // dependencies.
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && is_crate_variable(name)
        {
            command.env_remove(name);
        }
    }
    let shown = format!("{command:?}");
    let fail = |reason: String| BrokerBuildError::Build {
        package: package.to_owned(),
        command: shown.clone(),
        reason,
    };
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("cannot run {}: {e}", Path::new(&cargo).display())))?;
    if !output.status.success() {
        return Err(fail(format!(
            "it failed ({}); its output is above",
            output.status
        )));
    }
    executable_from_messages(&String::from_utf8_lossy(&output.stdout), package)
        .ok_or_else(|| fail(format!("cargo reported no {package} executable")))
}

/// Whether cargo sets `name` for the crate it compiles or runs (rather than
/// it being cargo configuration, such as `CARGO_TARGET_DIR`).
fn is_crate_variable(name: &str) -> bool {
    const EXACT: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_")
}

/// The `executable` of the binary `name` in cargo's JSON messages.
fn executable_from_messages(stdout: &str, name: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_crate_description_is_kept_from_nested_builds() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_BIN_EXE_skiff-e2e",
            "OUT_DIR",
        ] {
            assert!(is_crate_variable(name), "{name}");
        }
        for name in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO",
            "CARGO_PROFILE_DEV_DEBUG",
        ] {
            assert!(!is_crate_variable(name), "{name}");
        }
    }

    #[test]
    fn finds_the_broker_executable_among_cargo_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"skiff_broker","kind":["lib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"skiff-broker","kind":["bin"]},"executable":"/t/debug/skiff-broker"}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json",
        ]
        .join("\n");
        assert_eq!(
            executable_from_messages(&messages, PACKAGE),
            Some(PathBuf::from("/t/debug/skiff-broker"))
        );
        assert_eq!(
            executable_from_messages(messages.lines().next().unwrap(), PACKAGE),
            None
        );
    }
}
