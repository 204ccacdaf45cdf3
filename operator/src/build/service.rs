//! The headless Service (a stable DNS name per broker, also before it is
//! Ready, so brokers find each other while starting) and the client
//! Service clients bootstrap from.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ClusterRef, labels};

/// Port names, shared by the container ports and the Services.
pub mod port {
    /// Kafka protocol.
    pub const KAFKA: &str = "kafka";
    /// Metadata quorum.
    pub const CONTROLLER: &str = "controller";
    /// HTTP admin.
    pub const ADMIN: &str = "admin";
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The headless Service behind the StatefulSet.
pub fn headless(cluster: &ClusterRef<'_>) -> Service {
    let l = &cluster.spec.listeners;
    Service {
        metadata: cluster.metadata(&cluster.names.headless_service),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector(&cluster.names.cluster)),
            ports: Some(vec![
                service_port(port::KAFKA, l.kafka_port),
                service_port(port::CONTROLLER, l.controller_port),
                service_port(port::ADMIN, l.admin_port),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The client Service: Kafka port of Ready brokers only.
pub fn client(cluster: &ClusterRef<'_>) -> Service {
    Service {
        metadata: cluster.metadata(&cluster.names.client_service),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(labels::selector(&cluster.names.cluster)),
            ports: Some(vec![service_port(
                port::KAFKA,
                cluster.spec.listeners.kafka_port,
            )]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture;

    fn ports(service: &Service) -> Vec<(String, i32)> {
        service
            .spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect()
    }

    #[test]
    fn headless_service_publishes_unready_brokers_on_every_port() {
        let cluster = fixture::cluster(
            3,
            serde_json::json!({"listeners": {"kafkaPort": 19092, "controllerPort": 19093, "adminPort": 19644}}),
        );
        let svc = headless(&ClusterRef::new(&cluster).unwrap());
        assert_eq!(svc.metadata.name.as_deref(), Some("prod-brokers"));
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            ports(&svc),
            [
                ("kafka".to_owned(), 19092),
                ("controller".to_owned(), 19093),
                ("admin".to_owned(), 19644)
            ]
        );
    }

    #[test]
    fn client_service_exposes_kafka_only() {
        let cluster = fixture::cluster(3, serde_json::json!({}));
        let svc = client(&ClusterRef::new(&cluster).unwrap());
        assert_eq!(svc.metadata.name.as_deref(), Some("prod-bootstrap"));
        assert_eq!(ports(&svc), [("kafka".to_owned(), 9092)]);
        assert_eq!(
            svc.spec.unwrap().selector.unwrap(),
            labels::selector("prod")
        );
    }
}
