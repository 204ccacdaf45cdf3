//! skiff-operator: reconciles `skiff.dev/v1alpha1` `Cluster` and `Topic`
//! resources into broker StatefulSets and Kafka topics.
//!
//! The pipeline per reconcile: observe (I/O) → [`plan`] (pure) → apply (I/O)
//! → status. Child objects come from the pure builders in [`build`].

pub mod admin;
pub mod build;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod reconcile;
