//! How a container of a pod becomes a local process: program, arguments,
//! environment and working directory. Pure: everything it needs from the API
//! (ConfigMaps, Secrets) or the disk (volume directories) is passed in.
//!
//! Without mount namespaces a process cannot see its volumes at their
//! `mountPath`s, so paths are rewritten instead: any argument, environment
//! value or working directory that equals a container's `mountPath`, or
//! starts with `mountPath/` (for arguments, also the value of `--flag=path`),
//! is redirected to the pod's directory for that volume. Paths inside files
//! (e.g. in a mounted ConfigMap) are not. The one directory clients read
//! at a fixed path whatever their arguments say, the service-account
//! directory ([`SERVICE_ACCOUNT_DIR`]), is listed in [`Invocation::binds`] so
//! the process can be shown it there (`node::mount_ns`).
//!
//! Without network namespaces a process listening on every interface would
//! listen on the whole machine's, and two pods would take the same port; so
//! a wildcard listen address (`0.0.0.0`, `[::]`) in an argument or
//! environment value becomes the pod's own address, which is what it means
//! inside a pod.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::image_map::ImageMap;

/// What a pod's environment can refer to besides the pod itself.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    /// ConfigMap name → data (the pod's namespace).
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret name → decoded data (the pod's namespace).
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// Facts about the pod and node that downward-API fields resolve to.
#[derive(Debug, Clone, Copy)]
pub struct PodContext<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its loopback address.
    pub pod_ip: Ipv4Addr,
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// The node's name.
    pub node_name: &'a str,
    /// The node's allocatable CPU in cores and memory in bytes, which
    /// `resourceFieldRef` limits default to.
    pub node_cpu: f64,
    /// See `node_cpu`.
    pub node_memory: f64,
}

/// A container ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The binary the image maps to.
    pub program: PathBuf,
    /// Arguments after `$(VAR)` expansion and path rewriting.
    pub args: Vec<String>,
    /// The complete environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: PathBuf,
    /// Host directory → the path the process must see it at.
    pub binds: Vec<(PathBuf, PathBuf)>,
}

/// Where Kubernetes mounts a pod's service-account token, CA bundle and
/// namespace, and where in-cluster clients (client-go, kube-rs) read them.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A container's volume mounts resolved to host directories, longest mount
/// path first so the most specific one wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    /// Resolves `container`'s volume mounts against `volume_dirs` (volume
    /// name → host directory). A `subPath` is appended to the host directory.
    pub fn for_container(
        container: &Container,
        volume_dirs: &BTreeMap<String, PathBuf>,
    ) -> Result<Self, String> {
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let dir = volume_dirs
                .get(&mount.name)
                .ok_or_else(|| format!("volume {:?} is not defined in the pod", mount.name))?;
            let dir = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => dir.join(sub),
                None => dir.clone(),
            };
            let path = mount.mount_path.trim_end_matches('/').to_owned();
            mounts.push((
                if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                },
                dir,
            ));
        }
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Ok(Self(mounts))
    }

    /// Mounts whose path clients hard-code (the service-account directory):
    /// host directory → mount path.
    pub fn fixed_paths(&self) -> Vec<(PathBuf, PathBuf)> {
        self.0
            .iter()
            .filter(|(path, _)| path == SERVICE_ACCOUNT_DIR)
            .map(|(path, dir)| (dir.clone(), PathBuf::from(path)))
            .collect()
    }

    /// Host directories that must exist (subPaths included).
    pub fn host_dirs(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().map(|(_, dir)| dir.as_path())
    }

    /// An argument with its path rewritten: the whole argument, or the value
    /// of a `--flag=/path` argument.
    pub fn rewrite_arg(&self, arg: &str) -> String {
        if arg.starts_with('-')
            && let Some((flag, value)) = arg.split_once('=')
        {
            return format!("{flag}={}", self.rewrite(value));
        }
        self.rewrite(arg)
    }

    /// `value` with a leading mount path replaced by its host directory.
    pub fn rewrite(&self, value: &str) -> String {
        for (mount, dir) in &self.0 {
            if value == mount {
                return dir.display().to_string();
            }
            if let Some(rest) = value.strip_prefix(mount.as_str())
                && (rest.starts_with('/') || mount == "/")
            {
                return format!("{}/{}", dir.display(), rest.trim_start_matches('/'));
            }
        }
        value.to_owned()
    }
}

/// `value` with a wildcard listen address (`0.0.0.0`, `0.0.0.0:8080`,
/// `[::]:8080`, also as the value of `--flag=…`) narrowed to `pod_ip`.
pub fn narrow_wildcard(value: &str, pod_ip: Ipv4Addr) -> String {
    if value.starts_with('-')
        && let Some((flag, rest)) = value.split_once('=')
    {
        return format!("{flag}={}", narrow_wildcard(rest, pod_ip));
    }
    for wildcard in ["0.0.0.0", "[::]", "::"] {
        if value == wildcard {
            return pod_ip.to_string();
        }
        if let Some(port) = value
            .strip_prefix(wildcard)
            .and_then(|r| r.strip_prefix(':'))
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            return format!("{pod_ip}:{port}");
        }
    }
    value.to_owned()
}

/// Kubernetes `$(VAR)` expansion: a defined variable is replaced, an
/// undefined reference is kept as written, and `$$` is a literal `$`.
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API `fieldRef`.
pub fn field_ref(ctx: &PodContext<'_>, field_path: &str) -> Result<String, String> {
    let meta = &ctx.pod.metadata;
    let spec = ctx.pod.spec.as_ref();
    let map_key = |prefix: &str| {
        field_path
            .strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    if let Some(key) = map_key("metadata.labels['") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&key))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(key) = map_key("metadata.annotations['") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(&key))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match field_path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => ctx.node_name.to_owned(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.to_string(),
        other => return Err(format!("unsupported fieldRef {other:?}")),
    })
}

/// Parses a Kubernetes quantity ("500m", "2", "1Gi", "128974848", "1e3")
/// into a plain number (cores for CPU, bytes for memory).
pub fn parse_quantity(quantity: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let quantity = quantity.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    quantity.parse::<f64>().ok()
}

fn resource_field(
    ctx: &PodContext<'_>,
    resources: Option<&ResourceRequirements>,
    resource: &str,
    divisor: Option<&Quantity>,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resourceFieldRef {resource:?}"))?;
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resourceFieldRef {resource:?}")),
    };
    let value = set
        .and_then(|s| s.get(name))
        .and_then(|q| parse_quantity(&q.0))
        // As the kubelet does: an unset limit is the node's allocatable, an
        // unset request is the limit.
        .or_else(|| {
            let limit = resources
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get(name))
                .and_then(|q| parse_quantity(&q.0));
            match name {
                "cpu" => Some(limit.unwrap_or(ctx.node_cpu)),
                "memory" => Some(limit.unwrap_or(ctx.node_memory)),
                _ => None,
            }
        })
        .ok_or_else(|| format!("unsupported resourceFieldRef {resource:?}"))?;
    let divisor = divisor.and_then(|d| parse_quantity(&d.0)).unwrap_or(1.0);
    // Rounded up, as the kubelet does (a 250m CPU limit reads as 1).
    Ok(format!("{}", (value / divisor).ceil()))
}

fn env_var(
    ctx: &PodContext<'_>,
    container: &Container,
    var: &EnvVar,
    sources: &EnvSources,
    defined: &BTreeMap<String, String>,
) -> Result<Option<String>, String> {
    if let Some(value) = &var.value {
        return Ok(Some(expand(value, defined)));
    }
    let Some(from) = &var.value_from else {
        return Ok(Some(String::new()));
    };
    if let Some(field) = &from.field_ref {
        return field_ref(ctx, &field.field_path).map(Some);
    }
    if let Some(resource) = &from.resource_field_ref {
        return resource_field(
            ctx,
            container.resources.as_ref(),
            &resource.resource,
            resource.divisor.as_ref(),
        )
        .map(Some);
    }
    let key_ref = |kind: &str,
                   data: &BTreeMap<String, BTreeMap<String, String>>,
                   name: &str,
                   key: &str,
                   optional: Option<bool>| {
        match data.get(name).and_then(|d| d.get(key)) {
            Some(value) => Ok(Some(value.clone())),
            None if optional == Some(true) => Ok(None),
            None => Err(format!(
                "{kind} {name:?} has no key {key:?} (env {})",
                var.name
            )),
        }
    };
    if let Some(r) = &from.config_map_key_ref {
        return key_ref(
            "configmap",
            &sources.config_maps,
            &r.name,
            &r.key,
            r.optional,
        );
    }
    if let Some(r) = &from.secret_key_ref {
        return key_ref("secret", &sources.secrets, &r.name, &r.key, r.optional);
    }
    Err(format!("env {}: unsupported valueFrom", var.name))
}

/// The container's environment: `base` (PATH, HOSTNAME, …), then `envFrom`,
/// then `env` in order, each value able to refer to the ones before it.
pub fn container_env(
    ctx: &PodContext<'_>,
    container: &Container,
    sources: &EnvSources,
    base: &[(String, String)],
) -> Result<BTreeMap<String, String>, String> {
    let mut env: BTreeMap<String, String> = base.iter().cloned().collect();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (data, name, optional) = if let Some(cm) = &from.config_map_ref {
            (sources.config_maps.get(&cm.name), &cm.name, cm.optional)
        } else if let Some(secret) = &from.secret_ref {
            (
                sources.secrets.get(&secret.name),
                &secret.name,
                secret.optional,
            )
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (key, value) in data {
                    env.insert(format!("{prefix}{key}"), value.clone());
                }
            }
            None if optional == Some(true) => {}
            None => return Err(format!("envFrom {name:?} does not exist")),
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = env_var(ctx, container, var, sources, &env)? {
            env.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}

/// Everything needed to start `container`: the mapped binary, arguments
/// (`command[1..]` then `args`, as the image's own binary is the
/// entrypoint), environment and working directory, with `$(VAR)` expanded
/// mount paths rewritten and wildcard addresses narrowed to `pod_ip`.
pub fn invocation(
    container: &Container,
    images: &ImageMap,
    env: &BTreeMap<String, String>,
    mounts: &Mounts,
    pod_dir: &Path,
    pod_ip: Ipv4Addr,
) -> Result<Invocation, String> {
    let image = container.image.as_deref().unwrap_or_default();
    let program = images
        .resolve(image)
        .ok_or_else(|| format!("image {image:?} is not in the image map"))?
        .to_owned();
    let args = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(|arg| narrow_wildcard(&mounts.rewrite_arg(&expand(arg, env)), pod_ip))
        .collect();
    let env = env
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                narrow_wildcard(&mounts.rewrite(value), pod_ip),
            )
        })
        .collect();
    let working_dir = container
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(mounts.rewrite(d)))
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| pod_dir.to_owned());
    Ok(Invocation {
        program,
        args,
        env,
        working_dir,
        binds: mounts.fixed_paths(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVarSource, ObjectFieldSelector, PodSpec, ResourceFieldSelector, VolumeMount,
    };
    use kube::api::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("broker-0".into()),
                namespace: Some("kafka".into()),
                uid: Some("u-1".into()),
                labels: Some(
                    [
                        ("app".to_owned(), "skiff".to_owned()),
                        // Set by the StatefulSet controller (Kubernetes ≥ 1.28).
                        ("apps.kubernetes.io/pod-index".to_owned(), "2".to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                service_account_name: Some("skiff".into()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn ctx(pod: &Pod) -> PodContext<'_> {
        PodContext {
            pod,
            pod_ip: Ipv4Addr::new(127, 0, 1, 7),
            host_ip: Ipv4Addr::LOCALHOST,
            node_name: "node-a",
            node_cpu: 8.0,
            node_memory: 16e9,
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let env = BTreeMap::from([("A".to_owned(), "x".to_owned())]);
        let cases = [
            ("$(A)", "x"),
            ("pre-$(A)-post", "pre-x-post"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(A)", "$(A)"),
            ("cost: $5", "cost: $5"),
            ("$(unclosed", "$(unclosed"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &env), expected, "{input}");
        }
    }

    #[test]
    fn downward_api_fields() {
        let pod = pod();
        let ctx = ctx(&pod);
        let cases = [
            ("metadata.name", "broker-0"),
            ("metadata.namespace", "kafka"),
            ("metadata.uid", "u-1"),
            ("status.podIP", "127.0.1.7"),
            ("status.hostIP", "127.0.0.1"),
            ("spec.nodeName", "node-a"),
            ("spec.serviceAccountName", "skiff"),
            ("metadata.labels['app']", "skiff"),
            ("metadata.labels['apps.kubernetes.io/pod-index']", "2"),
            ("metadata.labels['none']", ""),
        ];
        for (path, expected) in cases {
            assert_eq!(field_ref(&ctx, path).unwrap(), expected, "{path}");
        }
        assert!(field_ref(&ctx, "status.phase").is_err());
    }

    #[test]
    fn quantities() {
        let cases = [
            ("500m", 0.5),
            ("2", 2.0),
            ("1Gi", 1073741824.0),
            ("1k", 1000.0),
            ("1e3", 1000.0),
        ];
        for (q, expected) in cases {
            assert_eq!(parse_quantity(q), Some(expected), "{q}");
        }
        assert_eq!(parse_quantity("lots"), None);
    }

    #[test]
    fn env_then_args_with_fields_expansion_and_mounts() {
        let pod = pod();
        let ctx = ctx(&pod);
        let container = Container {
            name: "broker".into(),
            image: Some("skiff/broker:0.1".into()),
            command: Some(vec!["/usr/bin/skiff-broker".into(), "serve".into()]),
            args: Some(vec![
                "--listen=$(POD_IP):9092".into(),
                "--data=/var/lib/skiff/data".into(),
                "/var/lib/skiff".into(),
            ]),
            env: Some(vec![
                field("POD_IP", "status.podIP"),
                field("POD_NAME", "metadata.name"),
                EnvVar {
                    name: "ADVERTISED".into(),
                    value: Some("$(POD_NAME).brokers:9092".into()),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "DATA_DIR".into(),
                    value: Some("/var/lib/skiff/data".into()),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "CPUS".into(),
                    value_from: Some(EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.cpu".into(),
                            ..ResourceFieldSelector::default()
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                },
            ]),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/var/lib/skiff".into(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "config".into(),
                    mount_path: "/var/lib/skiff/data/config".into(),
                    ..VolumeMount::default()
                },
            ]),
            ..Container::default()
        };
        let images = ImageMap::parse("skiff/broker=/bin/broker").unwrap();
        let env = container_env(&ctx, &container, &EnvSources::default(), &[]).unwrap();
        assert_eq!(env["ADVERTISED"], "broker-0.brokers:9092");
        assert_eq!(env["CPUS"], "8");
        let volume_dirs = BTreeMap::from([
            ("data".to_owned(), PathBuf::from("/pv/pvc-1")),
            ("config".to_owned(), PathBuf::from("/pods/u-1/config")),
        ]);
        let mounts = Mounts::for_container(&container, &volume_dirs).unwrap();
        assert_eq!(
            mounts.rewrite("/var/lib/skiff/data/config/x"),
            "/pods/u-1/config/x"
        );
        assert_eq!(mounts.rewrite("/var/lib/skiffy"), "/var/lib/skiffy");
        let run = invocation(
            &container,
            &images,
            &env,
            &mounts,
            Path::new("/pods/u-1"),
            Ipv4Addr::new(127, 1, 0, 7),
        )
        .unwrap();
        assert_eq!(run.program, PathBuf::from("/bin/broker"));
        assert_eq!(
            run.args,
            [
                "serve",
                "--listen=127.0.1.7:9092",
                "--data=/pv/pvc-1/data",
                "/pv/pvc-1"
            ]
        );
        let env: BTreeMap<_, _> = run.env.into_iter().collect();
        assert_eq!(env["DATA_DIR"], "/pv/pvc-1/data");
        assert_eq!(run.working_dir, PathBuf::from("/pods/u-1"));
        assert!(run.binds.is_empty(), "{:?}", run.binds);
    }

    #[test]
    fn the_service_account_directory_is_bound_at_its_fixed_path() {
        let container = Container {
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "kube-api-access-x1".into(),
                    mount_path: format!("{SERVICE_ACCOUNT_DIR}/"),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    ..VolumeMount::default()
                },
            ]),
            ..Container::default()
        };
        let dirs = BTreeMap::from([
            ("kube-api-access-x1".to_owned(), PathBuf::from("/pods/u/sa")),
            ("data".to_owned(), PathBuf::from("/pv/1")),
        ]);
        let mounts = Mounts::for_container(&container, &dirs).unwrap();
        assert_eq!(
            mounts.fixed_paths(),
            [(
                PathBuf::from("/pods/u/sa"),
                PathBuf::from(SERVICE_ACCOUNT_DIR)
            )]
        );
    }

    #[test]
    fn wildcard_listen_addresses_become_the_pod_address() {
        let ip = Ipv4Addr::new(127, 1, 0, 9);
        let cases = [
            (
                "--metrics-addr=0.0.0.0:8080",
                "--metrics-addr=127.1.0.9:8080",
            ),
            ("0.0.0.0:9092", "127.1.0.9:9092"),
            ("0.0.0.0", "127.1.0.9"),
            ("[::]:8080", "127.1.0.9:8080"),
            ("--listen=127.0.0.1:8080", "--listen=127.0.0.1:8080"),
            ("0.0.0.0.example", "0.0.0.0.example"),
            ("0.0.0.0:80/path", "0.0.0.0:80/path"),
            ("--x=a=0.0.0.0", "--x=a=0.0.0.0"),
            ("10.0.0.0/8", "10.0.0.0/8"),
        ];
        for (value, expected) in cases {
            assert_eq!(narrow_wildcard(value, ip), expected, "{value}");
        }
    }
}
