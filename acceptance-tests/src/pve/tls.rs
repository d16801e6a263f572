//! The emulator's own CA and server certificate (like PVE's `pve-root-ca.pem` and
//! `pve-ssl.pem`).

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::EmulatorError;

pub(crate) struct ServerTls {
    pub ca_pem: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

fn tls_err(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Tls(e.to_string())
}

impl ServerTls {
    pub fn generate(ip: IpAddr, names: &[String]) -> Result<Self, EmulatorError> {
        let ca_key = KeyPair::generate().map_err(tls_err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Proxmox Virtual Environment");
        dn.push(DnType::OrganizationalUnitName, "waddle emulator");
        dn.push(DnType::OrganizationName, "PVE Cluster Manager CA");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().map_err(tls_err)?;
        let mut leaf = CertificateParams::new(names.to_vec()).map_err(tls_err)?;
        leaf.subject_alt_names.push(SanType::IpAddress(ip));
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.get(1).cloned().unwrap_or_else(|| "pve".into()),
        );
        dn.push(DnType::OrganizationName, "PVE Cluster Node");
        leaf.distinguished_name = dn;
        leaf.is_ca = IsCa::ExplicitNoCa;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(tls_err)?;

        let chain = vec![
            CertificateDer::from(leaf_cert.der().to_vec()),
            CertificateDer::from(ca_cert.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls_err)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}
