//! End-to-end harness for Skiff: a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler built from source)
//! and a node agent that runs each scheduled pod as a local process.

pub mod broker_image;
pub mod chart;
pub mod controlplane;
pub mod local_cluster;
pub mod manifest;
pub mod node;
