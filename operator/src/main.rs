//! skiff-operator: reconciles `skiff.dev/v1alpha1` `Cluster` and `Topic` resources.
//!
//! The reconciler is not built yet (see the operator issue); this binary only
//! reports its version so the workspace, images and chart can be wired up.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("skiff-operator {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "skiff-operator {}: the reconciler is not implemented yet",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
