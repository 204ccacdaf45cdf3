//! End-to-end harness for Skiff: a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler built from source)
//! and a node agent that runs each scheduled pod as a local process.

pub mod controlplane;
pub mod node;
