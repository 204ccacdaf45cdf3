//! Keys, certificates and kubeconfigs the control plane needs, generated in
//! pure Rust so a fresh machine needs no openssl.
//!
//! One CA signs the serving certificate (shared by the apiserver,
//! controller-manager and scheduler, all on 127.0.0.1) and one client
//! certificate per identity. As in kubeadm, a separate front-proxy CA signs
//! only the apiserver's aggregation-layer client certificate (whoever holds a
//! certificate of that CA may assert any user in request headers). The
//! service-account signing key is its own key pair. Owns files under
//! `<state dir>/pki` and the kubeconfigs; starts nothing.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::error::{ControlPlaneError, Result};

/// Identity of the admin user (group `system:masters`: every permission).
pub const ADMIN_USER: &str = "skiff-e2e-admin";
/// Common name of the apiserver's aggregation-layer client certificate.
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";
/// Name of the cluster, user and context in generated kubeconfigs.
pub const KUBECONFIG_CONTEXT: &str = "skiff-e2e";

/// The cluster-internal names of the apiserver (the first address of the
/// service range is added by [`Pki::generate`]).
const APISERVER_DNS_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// A client identity: one certificate and one kubeconfig.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// Kubeconfig that uses this identity against the apiserver.
    pub kubeconfig: PathBuf,
}

/// Paths of everything generated.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate (PEM); trusted for serving and client certificates.
    pub ca_cert: PathBuf,
    /// CA private key (PEM), for the controller-manager's CSR signer.
    pub ca_key: PathBuf,
    /// CA certificate (DER), for Rust clients.
    pub ca_der: Vec<u8>,
    /// Serving certificate for 127.0.0.1, localhost and the in-cluster names.
    pub serving_cert: PathBuf,
    /// Its private key.
    pub serving_key: PathBuf,
    /// Front-proxy CA: trusted only for aggregation-layer request headers.
    pub front_proxy_ca_cert: PathBuf,
    /// The apiserver's client certificate towards aggregated apiservers.
    pub front_proxy_client_cert: PathBuf,
    /// Its private key.
    pub front_proxy_client_key: PathBuf,
    /// Service-account token signing key (private, PEM).
    pub service_account_key: PathBuf,
    /// Its public half (PEM), which the apiserver verifies tokens with.
    pub service_account_pub: PathBuf,
    /// `system:masters` user; its kubeconfig is the one handed to users.
    pub admin: ClientIdentity,
    /// `system:kube-controller-manager`.
    pub controller_manager: ClientIdentity,
    /// `system:kube-scheduler`.
    pub scheduler: ClientIdentity,
}

fn pki_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> ControlPlaneError {
    move |source| ControlPlaneError::Pki { what, source }
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| ControlPlaneError::io("writing", path, e))
}

/// Writes a private key readable by the owner only.
fn write_key(path: &Path, key: &KeyPair) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ControlPlaneError::io("creating", path, e))?;
    file.write_all(key.serialize_pem().as_bytes())
        .map_err(|e| ControlPlaneError::io("writing", path, e))
}

impl Pki {
    /// Generates a fresh CA, certificates and keys into `dir`, and kubeconfigs
    /// pointing at `apiserver_url`. `service_ip` is the apiserver's address in
    /// the service range (the first one), for in-cluster clients.
    pub fn generate(dir: &Path, apiserver_url: &str, service_ip: IpAddr) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| ControlPlaneError::io("creating", dir, e))?;

        let (ca, ca_der) = new_ca(dir, "ca", "skiff-e2e-ca")?;
        let ca_cert_path = dir.join("ca.crt");
        let (front_proxy_ca, _) = new_ca(dir, "front-proxy-ca", "skiff-e2e-front-proxy-ca")?;
        let (front_proxy_client_cert, front_proxy_client_key) = sign_leaf(
            dir,
            "front-proxy-client",
            FRONT_PROXY_CLIENT,
            None,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            &front_proxy_ca,
        )?;

        let mut names: Vec<String> = APISERVER_DNS_NAMES
            .iter()
            .map(|n| (*n).to_owned())
            .collect();
        names.push(Ipv4Addr::LOCALHOST.to_string());
        names.push(service_ip.to_string());
        let (serving_cert, serving_key) = sign_leaf(
            dir,
            "serving",
            "kube-apiserver",
            None,
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
        )?;

        let client = |name: &str, cn: &str, org: Option<&str>| -> Result<ClientIdentity> {
            let (cert, key) = sign_leaf(
                dir,
                name,
                cn,
                org,
                Vec::new(),
                ExtendedKeyUsagePurpose::ClientAuth,
                &ca,
            )?;
            let kubeconfig = dir.join(format!("{name}.kubeconfig"));
            write_kubeconfig(&kubeconfig, apiserver_url, &ca_cert_path, &cert, &key)?;
            Ok(ClientIdentity {
                cert,
                key,
                kubeconfig,
            })
        };
        let admin = client("admin", ADMIN_USER, Some("system:masters"))?;
        let controller_manager =
            client("controller-manager", "system:kube-controller-manager", None)?;
        let scheduler = client("scheduler", "system:kube-scheduler", None)?;

        let sa_key = KeyPair::generate().map_err(pki_err("service-account key"))?;
        let service_account_key = dir.join("service-account.key");
        let service_account_pub = dir.join("service-account.pub");
        write_key(&service_account_key, &sa_key)?;
        write(&service_account_pub, sa_key.public_key_pem())?;

        Ok(Self {
            ca_cert: ca_cert_path,
            ca_key: dir.join("ca.key"),
            ca_der,
            front_proxy_ca_cert: dir.join("front-proxy-ca.crt"),
            front_proxy_client_cert,
            front_proxy_client_key,
            serving_cert,
            serving_key,
            service_account_key,
            service_account_pub,
            admin,
            controller_manager,
            scheduler,
        })
    }
}

/// A self-signed CA written to `<name>.crt`/`<name>.key`; also returns the
/// certificate's DER.
fn new_ca(
    dir: &Path,
    name: &str,
    common_name: &str,
) -> Result<(Issuer<'static, KeyPair>, Vec<u8>)> {
    let key = KeyPair::generate().map_err(pki_err("CA key"))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(pki_err("CA certificate"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(pki_err("CA certificate"))?;
    write(&dir.join(format!("{name}.crt")), cert.pem())?;
    write_key(&dir.join(format!("{name}.key")), &key)?;
    Ok((Issuer::new(params, key), cert.der().to_vec()))
}

/// Issues `<name>.crt`/`<name>.key` signed by `ca`.
fn sign_leaf(
    dir: &Path,
    name: &str,
    common_name: &str,
    organization: Option<&str>,
    subject_alt_names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    ca: &Issuer<'_, KeyPair>,
) -> Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate().map_err(pki_err("leaf key"))?;
    let mut params =
        CertificateParams::new(subject_alt_names).map_err(pki_err("leaf certificate"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let cert = params
        .signed_by(&key, ca)
        .map_err(pki_err("leaf certificate"))?;
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    write(&cert_path, cert.pem())?;
    write_key(&key_path, &key)?;
    Ok((cert_path, key_path))
}

/// A kubeconfig referring to the certificate files by absolute path, so it
/// works from any working directory and stays readable.
pub fn kubeconfig_yaml(apiserver_url: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    let ctx = KUBECONFIG_CONTEXT;
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {ctx}\n  cluster:\n    server: {apiserver_url}\n    certificate-authority: {ca}\n\
         users:\n\
         - name: {ctx}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
         contexts:\n\
         - name: {ctx}\n  context:\n    cluster: {ctx}\n    user: {ctx}\n    namespace: default\n\
         current-context: {ctx}\n",
        ca = yaml_str(ca),
        cert = yaml_str(cert),
        key = yaml_str(key),
    )
}

/// A path as a YAML string (JSON strings are YAML).
fn yaml_str(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

fn write_kubeconfig(
    path: &Path,
    apiserver_url: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<()> {
    write(path, kubeconfig_yaml(apiserver_url, ca, cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_parses_and_points_at_the_files() {
        let yaml = kubeconfig_yaml(
            "https://127.0.0.1:6443",
            Path::new("/s/pki/ca.crt"),
            Path::new("/s/pki/admin.crt"),
            Path::new("/s/pki/a key.key"),
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(
            cluster.certificate_authority.as_deref(),
            Some("/s/pki/ca.crt")
        );
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_key.as_deref(), Some("/s/pki/a key.key"));
        assert_eq!(parsed.current_context.as_deref(), Some(KUBECONFIG_CONTEXT));
    }

    #[test]
    fn generates_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(
            dir.path(),
            "https://127.0.0.1:1",
            "10.96.0.1".parse().unwrap(),
        )
        .unwrap();
        for path in [
            &pki.ca_cert,
            &pki.serving_cert,
            &pki.service_account_key,
            &pki.admin.kubeconfig,
        ] {
            assert!(path.is_file(), "{}", path.display());
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pki.admin.key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private keys are not readable by others");
    }
}
