//! Which names resolve to which pod, as cluster DNS would answer them.
//!
//! Cluster DNS serves, for a headless Service (`clusterIP: None`) with a
//! selector, one record per address in its endpoints:
//! `<svc>.<ns>.svc.cluster.local` for every selected pod, and
//! `<hostname>.<svc>.<ns>.svc.cluster.local` for a pod whose `hostname` is
//! set and whose `subdomain` names the Service (what StatefulSets do). A pod
//! is in the endpoints while it has an address and has not finished, and
//! either is Ready and not terminating, or the Service sets
//! `publishNotReadyAddresses`. Those rules are reproduced here. The pod's
//! own hostname, which the kubelet writes into the pod's private
//! `/etc/hosts`, is added as a short name, but only when no other pod of
//! the node has the same one, because here every process shares one hosts
//! file.
//!
//! Pure: pods and Services in, hosts entries out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Pod, Service};

use super::hosts::HostEntry;

/// The cluster domain (the kubelet's `--cluster-domain` default).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `<hostname>.<service>.<namespace>.svc.cluster.local`.
pub fn pod_fqdn(hostname: &str, service: &str, namespace: &str) -> String {
    format!("{hostname}.{service}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// `<service>.<namespace>.svc.cluster.local`.
pub fn service_fqdn(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

fn headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// A Service without a selector has hand-made endpoints, never our pods.
fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
    else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// The hostname the pod sees: `spec.hostname`, else its name.
fn own_hostname(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .or(pod.metadata.name.as_deref())
}

/// The names of every pod in `pods`, one entry per address, sorted by
/// address; pods without an address or without any name are left out.
pub fn records<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    services: impl IntoIterator<Item = &'a Service>,
) -> Vec<HostEntry> {
    let pods: Vec<(&Pod, Ipv4Addr)> = pods
        .into_iter()
        .filter(|p| !finished(p))
        .filter_map(|p| Some((p, pod_ip(p)?)))
        .collect();
    let headless_services: Vec<&Service> = services.into_iter().filter(|s| headless(s)).collect();
    let mut hostname_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (pod, _) in &pods {
        if let Some(hostname) = own_hostname(pod) {
            *hostname_counts.entry(hostname).or_default() += 1;
        }
    }

    let mut entries = Vec::new();
    for (pod, ip) in &pods {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.as_ref();
        let hostname = spec
            .and_then(|s| s.hostname.as_deref())
            .filter(|h| !h.is_empty());
        let subdomain = spec.and_then(|s| s.subdomain.as_deref());
        let serving = ready(pod) && pod.metadata.deletion_timestamp.is_none();
        let mut pod_names = Vec::new();
        let mut service_names = BTreeSet::new();
        for service in &headless_services {
            let Some(name) = service.metadata.name.as_deref() else {
                continue;
            };
            if service.metadata.namespace.as_deref().unwrap_or("default") != namespace
                || !selects(service, pod)
            {
                continue;
            }
            let publish_not_ready = service
                .spec
                .as_ref()
                .and_then(|s| s.publish_not_ready_addresses)
                .unwrap_or(false);
            if !(serving || publish_not_ready) {
                continue;
            }
            if let Some(hostname) = hostname
                && subdomain == Some(name)
            {
                pod_names.push(pod_fqdn(hostname, name, namespace));
            }
            service_names.insert(service_fqdn(name, namespace));
        }
        let mut names = pod_names;
        names.extend(service_names);
        if let Some(own) = own_hostname(pod)
            && hostname_counts.get(own) == Some(&1)
        {
            names.push(own.to_owned());
        }
        if !names.is_empty() {
            entries.push(HostEntry { ip: *ip, names });
        }
    }
    entries.sort();
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, namespace: &str, cluster_ip: &str, publish_not_ready: bool) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": "b"},
                     "publishNotReadyAddresses": publish_not_ready}
        }))
        .unwrap()
    }

    /// A StatefulSet pod `b-<n>` of Service `b` in `ns`.
    fn pod(n: u8, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("b-{n}"), "namespace": "ns", "labels": {"app": "b"}},
            "spec": {"hostname": format!("b-{n}"), "subdomain": "b", "containers": []},
            "status": {"phase": "Running", "podIP": format!("127.0.1.{n}"),
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn names(entries: &[HostEntry]) -> Vec<(String, Vec<&str>)> {
        entries
            .iter()
            .map(|e| {
                (
                    e.ip.to_string(),
                    e.names.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn statefulset_pods_get_their_fqdn_the_service_name_and_their_hostname() {
        let pods = [pod(1, true), pod(2, true)];
        let services = [service("b", "ns", "None", false)];
        assert_eq!(
            names(&records(&pods, &services)),
            [
                (
                    "127.0.1.1".into(),
                    vec![
                        "b-1.b.ns.svc.cluster.local",
                        "b.ns.svc.cluster.local",
                        "b-1"
                    ]
                ),
                (
                    "127.0.1.2".into(),
                    vec![
                        "b-2.b.ns.svc.cluster.local",
                        "b.ns.svc.cluster.local",
                        "b-2"
                    ]
                ),
            ]
        );
    }

    #[test]
    fn service_names_follow_endpoint_membership() {
        let mut terminating = pod(3, true);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let mut finished = pod(4, true);
        finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut no_ip = pod(5, true);
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let pods = [pod(1, true), pod(2, false), terminating, finished, no_ip];

        // (Service, which pods get the pod name; short names are always there)
        let cases: [(Service, &[u8]); 5] = [
            (service("b", "ns", "None", false), &[1]),
            (service("b", "ns", "None", true), &[1, 2, 3]),
            // Not headless: a ClusterIP, which needs kube-proxy; no pod names.
            (service("b", "ns", "10.0.0.7", true), &[]),
            // Another namespace.
            (service("b", "other", "None", true), &[]),
            // Another name than the pods' subdomain: only the Service name.
            (service("c", "ns", "None", true), &[]),
        ];
        for (svc, expected) in cases {
            let entries = records(&pods, std::slice::from_ref(&svc));
            let with_fqdn: Vec<u8> = entries
                .iter()
                .filter(|e| e.names[0].ends_with(".b.ns.svc.cluster.local"))
                .map(|e| e.ip.octets()[3])
                .collect();
            assert_eq!(with_fqdn, expected, "{:?}", svc.spec);
            for entry in &entries {
                let n = entry.ip.octets()[3];
                assert!(n <= 3, "finished or address-less pod {n} listed");
                assert_eq!(
                    entry.names.last().unwrap(),
                    &format!("b-{n}"),
                    "own hostname"
                );
            }
        }
        let other = records(&pods, &[service("c", "ns", "None", true)]);
        assert_eq!(other[0].names, ["c.ns.svc.cluster.local", "b-1"]);
    }

    #[test]
    fn a_service_without_selector_selects_nothing() {
        let mut svc = service("b", "ns", "None", true);
        svc.spec.as_mut().unwrap().selector = None;
        assert_eq!(
            names(&records(&[pod(1, true)], &[svc])),
            [("127.0.1.1".into(), vec!["b-1"])]
        );
    }

    #[test]
    fn a_pod_without_hostname_gets_no_pod_name_but_the_service_name() {
        let mut plain = pod(1, true);
        plain.spec.as_mut().unwrap().hostname = None;
        plain.spec.as_mut().unwrap().subdomain = None;
        assert_eq!(
            names(&records(&[plain], &[service("b", "ns", "None", false)])),
            [("127.0.1.1".into(), vec!["b.ns.svc.cluster.local", "b-1"])]
        );
    }

    #[test]
    fn clashing_short_hostnames_are_left_out() {
        let mut twin = pod(1, true);
        twin.metadata.namespace = Some("other".into());
        twin.status.as_mut().unwrap().pod_ip = Some("127.0.2.1".into());
        let entries = records(&[pod(1, true), twin], &[]);
        assert!(entries.is_empty(), "{entries:?}");
    }
}
