//! Errors of the control plane launcher. Each says which component or file was
//! involved, and startup failures carry the tail of the component's log so a
//! failed CI run explains itself.

use std::path::PathBuf;
use std::time::Duration;

/// A component's log file and its last lines, for error messages.
#[derive(Debug, Clone)]
pub struct LogTail {
    /// The log file.
    pub path: PathBuf,
    /// Its last lines.
    pub tail: String,
}

impl LogTail {
    /// Reads the last lines of `path`.
    pub fn read(path: &std::path::Path) -> Box<Self> {
        Box::new(Self {
            path: path.to_owned(),
            tail: super::process::log_tail(path),
        })
    }
}

impl std::fmt::Display for LogTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "last lines of {}:\n{}", self.path.display(), self.tail)
    }
}

/// Why starting, stopping or inspecting the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// A binary the control plane needs is not where the cache says it is.
    #[error(
        "{binary} not found at {path} (build the control plane binaries with \
         e2e/controlplane/build.sh, or set SKIFF_E2E_REQUIRE=1 to let the tests build them)"
    )]
    MissingBinary {
        /// Name of the binary, e.g. `kube-apiserver`.
        binary: String,
        /// Where it was expected.
        path: PathBuf,
    },

    /// `build.sh` failed or printed something unexpected.
    #[error("building the control plane binaries with {script}: {reason}")]
    Build {
        /// The build script that was run.
        script: PathBuf,
        /// What went wrong, including the script's stderr tail.
        reason: String,
    },

    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "writing".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Generating keys or certificates failed.
    #[error("generating {what}: {source}")]
    Pki {
        /// Which key or certificate.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },

    /// A component could not be started at all.
    #[error("starting {component} ({program}): {source}")]
    Spawn {
        /// Component name, e.g. `etcd`.
        component: String,
        /// The binary.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A component exited while the control plane was starting or running.
    #[error("{component} exited ({status}); {log}")]
    Exited {
        /// Component name.
        component: String,
        /// How it exited.
        status: String,
        /// Its log.
        log: Box<LogTail>,
    },

    /// A component did not become healthy in time.
    #[error(
        "{component} not ready after {timeout:?}: {what} kept failing (last: {last_error}); {log}"
    )]
    Unhealthy {
        /// Component name.
        component: String,
        /// The readiness check, e.g. `GET /readyz`.
        what: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The last health check's failure.
        last_error: String,
        /// Its log.
        log: Box<LogTail>,
    },

    /// Some processes survived SIGTERM and SIGKILL.
    #[error("processes still running after stop: {0}")]
    Leftover(String),

    /// The state directory holds a control plane that is still running.
    #[error(
        "a control plane from {} is still running (launcher pid {pid}); run `skiff-e2e down` first",
        state_dir.display()
    )]
    AlreadyRunning {
        /// The state directory.
        state_dir: PathBuf,
        /// Pid of the launcher or of a component still alive.
        pid: i32,
    },

    /// The state file is missing or unreadable.
    #[error("state file {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Building a Kubernetes client or calling the API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },

    /// Loading the generated kubeconfig failed.
    #[error("loading kubeconfig {}: {reason}", path.display())]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl ControlPlaneError {
    /// An I/O error while doing `action` to `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the control plane.
pub type Result<T, E = ControlPlaneError> = std::result::Result<T, E>;
