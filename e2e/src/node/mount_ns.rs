//! Showing a container's process a directory at the path it hard-codes, as a
//! container runtime's bind mount does. Only for [`Invocation::binds`] (the
//! service-account directory that in-cluster clients read whatever their
//! arguments say); every other volume is reached by path rewriting
//! (`node::spec`).
//!
//! The process starts through util-linux `unshare --mount` in a mount
//! namespace of its own, where a shell bind-mounts each directory and then
//! `exec`s the program, so the pid the agent supervises and signals is the
//! program's. The machine's mount table is untouched; the mount point
//! directory itself must exist on the machine, so it is created (empty; under
//! `/run`, a tmpfs, it goes at reboot). Needs root: without it, or without
//! `unshare`, the program starts as before and in-cluster clients do not find
//! their credentials.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::spec::Invocation;

/// Mounts each `$1` on `$2`, pair by pair up to `--`, then runs the rest.
const SCRIPT: &str = r#"set -e
while [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done
shift
exec "$@""#;

/// `unshare` on the agent's PATH, if the agent may create mount namespaces.
fn unshare() -> Option<PathBuf> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("unshare"))
        .find(|candidate| candidate.is_file())
}

/// The command that runs `invocation`'s program with its arguments (no
/// environment or working directory yet): directly, or in a mount namespace
/// with its binds in place.
pub fn command(invocation: &Invocation) -> Result<Command, String> {
    if invocation.binds.is_empty() {
        let mut command = Command::new(&invocation.program);
        command.args(&invocation.args);
        return Ok(command);
    }
    let Some(unshare) = unshare() else {
        tracing::warn!(
            program = %invocation.program.display(),
            "mount namespaces need root and util-linux unshare: the container's \
             service-account directory is not where in-cluster clients read it"
        );
        let mut command = Command::new(&invocation.program);
        command.args(&invocation.args);
        return Ok(command);
    };
    let mut command = Command::new(unshare);
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(SCRIPT)
        .arg("skiff-e2e-mount");
    for (host, path) in &invocation.binds {
        create_mount_point(path)?;
        command.arg(host).arg(path);
    }
    command
        .arg("--")
        .arg(&invocation.program)
        .args(&invocation.args);
    Ok(command)
}

fn create_mount_point(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path)
        .map_err(|e| format!("creating the mount point {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(binds: Vec<(PathBuf, PathBuf)>) -> Invocation {
        Invocation {
            program: "/bin/echo".into(),
            args: vec!["a b".into(), "--".into()],
            env: Vec::new(),
            working_dir: "/".into(),
            binds,
        }
    }

    #[test]
    fn without_binds_the_program_runs_directly() {
        let command = command(&invocation(Vec::new())).unwrap();
        assert_eq!(command.get_program(), "/bin/echo");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["a b", "--"]);
    }

    #[test]
    fn the_script_binds_every_pair_then_runs_the_program_with_its_arguments() {
        // The script alone, with `mount` replaced by echo: the pairs, then
        // the program with arguments that contain spaces and `--`.
        let output = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT.replace("mount --bind", "echo bind"))
            .args([
                "name", "/h1", "/p1", "/h2", "/p2", "--", "echo", "a b", "--",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "bind /h1 /p1\nbind /h2 /p2\na b --\n"
        );
    }
}
