//! Where the control plane binaries live, and building them on demand.
//!
//! The versions are compiled in from the wrapper modules' go.mod files (the
//! same files `build.sh` reads), so the Rust side and the build script cannot
//! disagree about which version is cached where.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{ControlPlaneError, Result};

const ETCD_GO_MOD: &str = include_str!("../../controlplane/etcd/go.mod");
const KUBERNETES_GO_MOD: &str = include_str!("../../controlplane/kubernetes/go.mod");

/// The build script, at its place in this checkout.
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("controlplane")
        .join("build.sh")
}

/// Version of `module` required by a go.mod file, e.g. `v1.34.4`.
fn required_version(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let mut first = words.next()?;
        if first == "require" {
            first = words.next()?;
        }
        let version = words.next()?;
        (first == module && version.starts_with('v')).then(|| version.to_owned())
    })
}

/// The Kubernetes release the control plane is built from, e.g. `v1.34.4`.
pub fn kubernetes_version() -> String {
    required_version(KUBERNETES_GO_MOD, "k8s.io/kubernetes")
        .expect("e2e/controlplane/kubernetes/go.mod requires k8s.io/kubernetes")
}

/// The etcd release the control plane is built from, e.g. `v3.6.16`.
pub fn etcd_version() -> String {
    required_version(ETCD_GO_MOD, "go.etcd.io/etcd/server/v3")
        .expect("e2e/controlplane/etcd/go.mod requires go.etcd.io/etcd/server/v3")
}

/// `$SKIFF_CACHE_DIR`, else `~/.cache/skiff` (as in build.sh).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SKIFF_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache").join("skiff")
}

/// Whether e2e tests must run rather than skip (`SKIFF_E2E_REQUIRE` set to
/// anything but empty or `0`).
pub fn require_e2e() -> bool {
    std::env::var("SKIFF_E2E_REQUIRE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Paths of the binaries the control plane runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd server.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kube-scheduler.
    pub kube_scheduler: PathBuf,
    /// kubectl (not run by the launcher; handy for humans and tests).
    pub kubectl: PathBuf,
}

impl Binaries {
    /// The binaries in the given directories.
    pub fn in_dirs(etcd_dir: &Path, k8s_dir: &Path) -> Self {
        Self {
            etcd: etcd_dir.join("etcd"),
            kube_apiserver: k8s_dir.join("kube-apiserver"),
            kube_controller_manager: k8s_dir.join("kube-controller-manager"),
            kube_scheduler: k8s_dir.join("kube-scheduler"),
            kubectl: k8s_dir.join("kubectl"),
        }
    }

    /// Where build.sh caches them; `SKIFF_ETCD_BIN_DIR` / `SKIFF_K8S_BIN_DIR`
    /// override a directory. Does not check that they exist.
    pub fn cached() -> Self {
        let cache = cache_dir();
        let dir = |var: &str, default: PathBuf| {
            std::env::var_os(var)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or(default)
        };
        let etcd_dir = dir(
            "SKIFF_ETCD_BIN_DIR",
            cache.join("etcd").join(etcd_version()).join("bin"),
        );
        let k8s_dir = dir(
            "SKIFF_K8S_BIN_DIR",
            cache.join("k8s").join(kubernetes_version()).join("bin"),
        );
        Self::in_dirs(&etcd_dir, &k8s_dir)
    }

    fn all(&self) -> [(&'static str, &Path); 5] {
        [
            ("etcd", &self.etcd),
            ("kube-apiserver", &self.kube_apiserver),
            ("kube-controller-manager", &self.kube_controller_manager),
            ("kube-scheduler", &self.kube_scheduler),
            ("kubectl", &self.kubectl),
        ]
    }

    /// Fails naming the first binary that is missing.
    pub fn verify(&self) -> Result<()> {
        for (binary, path) in self.all() {
            if !path.is_file() {
                return Err(ControlPlaneError::MissingBinary {
                    binary: binary.to_owned(),
                    path: path.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Whether every binary is present.
    pub fn present(&self) -> bool {
        self.verify().is_ok()
    }

    /// The binaries for an e2e test, or `None` when the test should be
    /// skipped: they are not cached and `SKIFF_E2E_REQUIRE` is unset. With
    /// `SKIFF_E2E_REQUIRE=1` (as in CI) missing binaries are built instead,
    /// and a failed build is an error, so CI never passes by skipping.
    ///
    /// The skip notice is written straight to stderr, past the test
    /// harness's output capture, so a skipped test never looks like a pass.
    pub fn for_tests(test: &str) -> Result<Option<Self>> {
        let cached = Self::cached();
        if cached.present() {
            return Ok(Some(cached));
        }
        if require_e2e() {
            return Self::build().map(Some);
        }
        use std::io::Write;
        let missing = cached
            .verify()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {missing}");
        Ok(None)
    }

    /// Runs build.sh for etcd and Kubernetes (a no-op taking about a second
    /// when they are cached; a cold build takes tens of minutes) and returns
    /// the binaries it reports. Build progress goes to this process's stderr.
    pub fn build() -> Result<Self> {
        let script = build_script();
        let build_err = |reason: String| ControlPlaneError::Build {
            script: script.clone(),
            reason,
        };
        let output = Command::new("bash")
            .arg(&script)
            .args(["etcd", "kubernetes"])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| build_err(format!("cannot run it: {e}")))?;
        if !output.status.success() {
            return Err(build_err(format!(
                "it failed ({}); its output is above",
                output.status
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(PathBuf::from)
                .ok_or_else(|| build_err(format!("it printed no {name}= line: {stdout}")))
        };
        let binaries = Self::in_dirs(&dir("SKIFF_ETCD_BIN_DIR")?, &dir("SKIFF_K8S_BIN_DIR")?);
        binaries.verify()?;
        Ok(binaries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_wrapper_modules() {
        assert!(
            kubernetes_version().starts_with("v1."),
            "{}",
            kubernetes_version()
        );
        assert!(etcd_version().starts_with("v3."), "{}", etcd_version());
    }

    #[test]
    fn required_version_reads_single_line_and_block_requires() {
        let go_mod =
            "module x\n\nrequire a.b/c v1.2.3\n\nrequire (\n\td.e/f v0.1.0 // indirect\n)\n";
        assert_eq!(required_version(go_mod, "a.b/c").as_deref(), Some("v1.2.3"));
        assert_eq!(required_version(go_mod, "d.e/f").as_deref(), Some("v0.1.0"));
        assert_eq!(required_version(go_mod, "a.b"), None);
        // A replace line names the module too, but is not a requirement.
        assert_eq!(required_version("\td.e/f => d.e/f v0.2.0\n", "d.e/f"), None);
    }
}
