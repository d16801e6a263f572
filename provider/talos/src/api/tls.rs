//! TLS for the Talos API: maintenance mode (server certificate not verified, no client
//! certificate, as `talosctl --insecure`) and authenticated mode (mutual TLS with a client
//! certificate from the OS CA, server verified against that CA by IP address).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer, ServerName, UnixTime,
};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::pem;
use crate::secrets::{EC_PEM_LABEL, ED25519_PEM_LABEL};

/// The ring crypto provider used for every Talos TLS connection.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every `CERTIFICATE` block of a PEM text.
pub fn certs_from_pem(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in PEM".into());
    }
    Ok(certs)
}

/// Parses a private key PEM in the forms Talos writes: `ED25519 PRIVATE KEY` (PKCS#8 DER
/// under Talos's own label), `EC PRIVATE KEY` (SEC1), `PRIVATE KEY` (PKCS#8).
pub fn private_key_from_pem(text: &str) -> Result<PrivateKeyDer<'static>, String> {
    let block = pem::decode_first(text).ok_or("private key is not PEM")?;
    match block.label.as_str() {
        ED25519_PEM_LABEL | "PRIVATE KEY" => {
            Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.der)))
        }
        EC_PEM_LABEL => Ok(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(block.der))),
        other => Err(format!("unsupported private key PEM label {other:?}")),
    }
}

/// An rcgen key pair (for signing certificates) from a Talos private key PEM
/// (`ED25519 PRIVATE KEY`, `EC PRIVATE KEY` P-256, or PKCS#8).
pub fn signing_key_pair_from_pem(text: &str) -> Result<rcgen::KeyPair, String> {
    crate::secrets::signing_key_from_pem(text)
}

/// Accepts any server certificate, but still checks the handshake signature made with the
/// certificate's key. This is what maintenance mode needs: the node's certificate is
/// self-signed and unknown before it has a configuration.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Client TLS for maintenance mode: no client certificate, server not verified.
pub fn maintenance_client_config() -> Result<ClientConfig, String> {
    let p = provider();
    let mut cfg = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(p)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Client TLS for an authenticated node: the server certificate must chain to `ca_pem` and
/// name the address we dial (IP SAN); we present `crt_pem`/`key_pem`.
pub fn mtls_client_config(
    ca_pem: &str,
    crt_pem: &str,
    key_pem: &str,
) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(ca_pem).map_err(|e| format!("CA: {e}"))? {
        roots
            .add(c)
            .map_err(|e| format!("CA certificate unusable: {e}"))?;
    }
    let chain = certs_from_pem(crt_pem).map_err(|e| format!("client certificate: {e}"))?;
    let key = private_key_from_pem(key_pem).map_err(|e| format!("client key: {e}"))?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("client certificate and key unusable: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}
