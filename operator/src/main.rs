//! skiff-operator: reconciles `skiff.dev/v1alpha1` `Cluster` and `Topic` resources.

fn main() {
    println!("skiff-operator {}", env!("CARGO_PKG_VERSION"));
}
