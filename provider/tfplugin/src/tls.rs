//! AutoMTLS: a fresh server certificate per start, and a client-certificate
//! verifier that accepts exactly the certificate the host announced in
//! `PLUGIN_CLIENT_CERT`.
//!
//! go-plugin hosts generate a self-signed ECDSA **P-521** certificate (flagged
//! as a CA). webpki refuses a self-signed end-entity certificate and ring cannot
//! verify P-521 signatures, so [`ExactClientCertVerifier`] compares the DER
//! byte for byte and verifies handshake signatures itself (P-521 with the
//! RustCrypto `p521` crate, every other key type through rustls' provider).

use std::sync::Arc;

use p521::ecdsa::signature::Verifier as _;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// OID of id-ecPublicKey.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// OID of the secp521r1 named curve.
const OID_SECP521R1: &str = "1.3.132.0.35";

/// AutoMTLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `PLUGIN_CLIENT_CERT` holds no usable PEM certificate.
    #[error("PLUGIN_CLIENT_CERT does not contain a valid PEM certificate: {0}")]
    InvalidClientCert(String),
    /// Generating the server certificate failed.
    #[error("cannot generate the plugin server certificate: {0}")]
    CertGen(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider used by the plugin server (ring).
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A freshly generated server identity.
pub(crate) struct ServerIdentity {
    pub cert_der: CertificateDer<'static>,
    pub key_der: PrivatePkcs8KeyDer<'static>,
}

/// Generates an ECDSA P-256 certificate valid for DNS name `localhost`
/// (go-plugin hosts dial with ServerName "localhost" and trust exactly the
/// certificate printed in the handshake line).
pub(crate) fn generate_server_identity() -> Result<ServerIdentity, TlsError> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    dn.push(DnType::OrganizationName, "waddle");
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::seconds(30);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key)?;
    Ok(ServerIdentity {
        cert_der: cert.der().clone(),
        key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
    })
}

/// Builds the rustls server configuration for AutoMTLS.
pub(crate) fn server_config(
    identity: &ServerIdentity,
    client_cert_pem: &str,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = crypto_provider();
    let verifier = ExactClientCertVerifier::from_pem(client_cert_pem, &provider)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(
            vec![identity.cert_der.clone()],
            PrivateKeyDer::Pkcs8(identity.key_der.clone_key()),
        )?;
    // grpc-go (recent OpenTofu) insists on ALPN "h2".
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

enum ExpectedKey {
    /// ECDSA P-521, verified with RustCrypto.
    P521(p521::ecdsa::VerifyingKey),
    /// Anything else: verified by the rustls crypto provider.
    Other,
}

impl std::fmt::Debug for ExpectedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExpectedKey::P521(_) => "P521",
            ExpectedKey::Other => "Other",
        })
    }
}

/// Accepts exactly one client certificate (byte-equal DER) and verifies the
/// TLS 1.2/1.3 handshake signature made with its key.
#[derive(Debug)]
pub struct ExactClientCertVerifier {
    expected_der: CertificateDer<'static>,
    key: ExpectedKey,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ExactClientCertVerifier {
    /// Builds the verifier from the PEM the host passed in `PLUGIN_CLIENT_CERT`.
    pub fn from_pem(pem: &str, provider: &CryptoProvider) -> Result<Self, TlsError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| TlsError::InvalidClientCert(e.to_string()))?;
        Self::from_der(der, provider)
    }

    /// Builds the verifier from a DER certificate.
    pub fn from_der(
        der: CertificateDer<'static>,
        provider: &CryptoProvider,
    ) -> Result<Self, TlsError> {
        use x509_parser::prelude::FromDer as _;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
            .map_err(|e| TlsError::InvalidClientCert(e.to_string()))?;
        let spki = &cert.tbs_certificate.subject_pki;
        let is_ec = spki.algorithm.algorithm.to_id_string() == OID_EC_PUBLIC_KEY;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let key = if is_ec && curve.as_deref() == Some(OID_SECP521R1) {
            let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data)
                .map_err(|e| TlsError::InvalidClientCert(format!("P-521 key: {e}")))?;
            ExpectedKey::P521(vk)
        } else {
            ExpectedKey::Other
        };
        Ok(ExactClientCertVerifier {
            expected_der: der,
            key,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    fn check_cert(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if cert.as_ref() == self.expected_der.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_p521(
        vk: &p521::ecdsa::VerifyingKey,
        message: &[u8],
        scheme: SignatureScheme,
        signature: &[u8],
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let bad = || rustls::Error::InvalidCertificate(CertificateError::BadSignature);
        if scheme != SignatureScheme::ECDSA_NISTP521_SHA512 {
            return Err(bad());
        }
        let sig = p521::ecdsa::Signature::from_der(signature).map_err(|_| bad())?;
        vk.verify(message, &sig).map_err(|_| bad())?;
        Ok(HandshakeSignatureValid::assertion())
    }
}

impl ClientCertVerifier for ExactClientCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_cert(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_cert(cert)?;
        match &self.key {
            ExpectedKey::P521(vk) => Self::verify_p521(vk, message, dss.scheme, dss.signature()),
            ExpectedKey::Other => {
                rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
            }
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_cert(cert)?;
        match &self.key {
            ExpectedKey::P521(vk) => Self::verify_p521(vk, message, dss.scheme, dss.signature()),
            ExpectedKey::Other => {
                rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
            }
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match self.key {
            // Offering only this scheme makes Go pick SHA-512 in TLS 1.2 too.
            ExpectedKey::P521(_) => vec![SignatureScheme::ECDSA_NISTP521_SHA512],
            ExpectedKey::Other => self.algorithms.supported_schemes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_cert_is_for_localhost_and_fresh_each_time() {
        use x509_parser::prelude::*;
        let a = generate_server_identity().unwrap();
        let b = generate_server_identity().unwrap();
        assert_ne!(a.cert_der.as_ref(), b.cert_der.as_ref());
        let (_, cert) = X509Certificate::from_der(a.cert_der.as_ref()).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(san
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName("localhost"))));
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);
        assert!(cert.validity().is_valid());
    }

    #[test]
    fn verifier_rejects_garbage_pem() {
        let p = crypto_provider();
        assert!(matches!(
            ExactClientCertVerifier::from_pem("not a cert", &p),
            Err(TlsError::InvalidClientCert(_))
        ));
    }

    #[cfg(feature = "client")]
    #[test]
    fn verifier_accepts_only_the_exact_p521_cert_and_its_signatures() {
        use p521::ecdsa::signature::Signer as _;
        let p = crypto_provider();
        let id = crate::client::ClientIdentity::generate().unwrap();
        let other = crate::client::ClientIdentity::generate().unwrap();
        let v = ExactClientCertVerifier::from_pem(&id.cert_pem(), &p).unwrap();
        assert!(matches!(v.key, ExpectedKey::P521(_)));
        assert_eq!(
            v.supported_verify_schemes(),
            vec![SignatureScheme::ECDSA_NISTP521_SHA512]
        );
        let mine = CertificateDer::from(id.cert_der().to_vec());
        let theirs = CertificateDer::from(other.cert_der().to_vec());
        assert!(v.verify_client_cert(&mine, &[], UnixTime::now()).is_ok());
        assert!(v.verify_client_cert(&theirs, &[], UnixTime::now()).is_err());

        let ExpectedKey::P521(vk) = &v.key else {
            unreachable!()
        };
        let msg = b"tls transcript";
        let sig: p521::ecdsa::Signature = id.signing_key().sign(msg);
        let der = sig.to_der().as_bytes().to_vec();
        let scheme = SignatureScheme::ECDSA_NISTP521_SHA512;
        assert!(ExactClientCertVerifier::verify_p521(vk, msg, scheme, &der).is_ok());
        // Wrong message, wrong scheme, wrong key all fail.
        assert!(ExactClientCertVerifier::verify_p521(vk, b"other", scheme, &der).is_err());
        let p256 = SignatureScheme::ECDSA_NISTP256_SHA256;
        assert!(ExactClientCertVerifier::verify_p521(vk, msg, p256, &der).is_err());
        let other_sig: p521::ecdsa::Signature = other.signing_key().sign(msg);
        let other_der = other_sig.to_der().as_bytes().to_vec();
        assert!(ExactClientCertVerifier::verify_p521(vk, msg, scheme, &other_der).is_err());
    }
}
