//! Certificates the emulated nodes make: the maintenance-mode self-signed Ed25519 server
//! certificate, apid server certificates from the OS CA, the admin kubeconfig client
//! certificate and the Kubernetes API serving certificate from the Kubernetes CA.

use std::net::IpAddr;

use base64::Engine as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// A PEM certificate and its PEM private key (PKCS#8).
#[derive(Clone)]
pub struct Pem {
    /// Certificate PEM.
    pub crt: String,
    /// Key PEM.
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn params(ips: &[IpAddr], dns: &[String], eku: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut p = CertificateParams::default();
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(365);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.subject_alt_names = ips
        .iter()
        .map(|ip| SanType::IpAddress(*ip))
        .chain(
            dns.iter()
                .filter_map(|d| d.clone().try_into().ok().map(SanType::DnsName)),
        )
        .collect();
    p
}

/// The self-signed Ed25519 certificate a node in maintenance mode serves.
pub fn maintenance_cert(ip: IpAddr) -> Result<Pem, String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
    let mut p = params(&[ip], &[], ExtendedKeyUsagePurpose::ServerAuth);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "talos");
    p.distinguished_name = dn;
    let cert = p.self_signed(&key).map_err(|e| e.to_string())?;
    Ok(Pem {
        crt: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn issuer(ca_crt: &str, ca_key: &str) -> Result<Issuer<'static, KeyPair>, String> {
    let key = waddle_talos::api::tls::signing_key_pair_from_pem(ca_key)
        .map_err(|e| format!("CA key: {e}"))?;
    Issuer::from_ca_cert_pem(ca_crt, key).map_err(|e| format!("CA certificate: {e}"))
}

/// An apid server certificate for `ips` (+ hostname) signed by the OS CA. Ed25519 key as
/// Talos uses for apid.
pub fn apid_cert(
    ca_crt: &str,
    ca_key: &str,
    ips: &[IpAddr],
    hostname: &str,
) -> Result<Pem, String> {
    let iss = issuer(ca_crt, ca_key)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
    let mut p = params(
        ips,
        &[hostname.to_string()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    p.distinguished_name = dn;
    let cert = p.signed_by(&key, &iss).map_err(|e| e.to_string())?;
    Ok(Pem {
        crt: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The Kubernetes API serving certificate for the VIP, signed by the Kubernetes CA.
pub fn kube_apiserver_cert(ca_crt: &str, ca_key: &str, ips: &[IpAddr]) -> Result<Pem, String> {
    let iss = issuer(ca_crt, ca_key)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut p = params(
        ips,
        &["kubernetes".into(), "kubernetes.default.svc".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    p.distinguished_name = dn;
    let cert = p.signed_by(&key, &iss).map_err(|e| e.to_string())?;
    Ok(Pem {
        crt: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The admin kubeconfig Talos generates: client certificate `O=system:masters`,
/// `CN=admin`, signed by the Kubernetes CA; server = the control-plane endpoint.
pub fn admin_kubeconfig(
    cluster_name: &str,
    endpoint: &str,
    ca_crt: &str,
    ca_key: &str,
) -> Result<String, String> {
    let iss = issuer(ca_crt, ca_key)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut p = params(&[], &[], ExtendedKeyUsagePurpose::ClientAuth);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:masters");
    dn.push(DnType::CommonName, "admin");
    p.distinguished_name = dn;
    let cert = p.signed_by(&key, &iss).map_err(|e| e.to_string())?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let ctx = format!("admin@{cluster_name}");
    Ok(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster_name}\n  cluster:\n    server: {endpoint}\n    certificate-authority-data: {ca}\nusers:\n- name: {ctx}\n  user:\n    client-certificate-data: {crt}\n    client-key-data: {key}\ncontexts:\n- context:\n    cluster: {cluster_name}\n    namespace: default\n    user: {ctx}\n  name: {ctx}\ncurrent-context: {ctx}\npreferences: {{}}\n",
        ca = b64(ca_crt),
        crt = b64(&cert.pem()),
        key = b64(&key.serialize_pem()),
    ))
}

/// A gzip-compressed tar archive holding one regular file.
pub fn tar_gz(name: &str, contents: &[u8]) -> Result<Vec<u8>, String> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(contents.len() as u64);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    b.append_data(&mut h, name, contents)
        .map_err(|e| e.to_string())?;
    let gz = b.into_inner().map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}
