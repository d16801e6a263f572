//! A go-plugin-like client for tests and benchmarks (feature `client`).
//!
//! [`ClientIdentity::generate`] makes the same kind of client certificate
//! Terraform/OpenTofu make for AutoMTLS (self-signed ECDSA P-521, CA flag,
//! `localhost`), and [`connect`] opens a tonic [`Channel`] to a plugin from its
//! parsed handshake line, over the unix socket or TCP, with or without TLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use p521::ecdsa::signature::Signer as _;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::handshake::{HandshakeInfo, ListenAddr};

/// Client-side failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Connecting failed.
    #[error("connect: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The certificate could not be built.
    #[error("certificate: {0}")]
    Cert(String),
}

/// A client certificate and P-521 key, as go-plugin hosts generate them.
#[derive(Clone)]
pub struct ClientIdentity {
    cert_der: Vec<u8>,
    key: p521::ecdsa::SigningKey,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_der_len", &self.cert_der.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClientIdentity {
    /// Generates a fresh self-signed ECDSA P-521 certificate for `localhost`.
    pub fn generate() -> Result<Self, ClientError> {
        let key = p521::ecdsa::SigningKey::random(&mut p521::elliptic_curve::rand_core::OsRng);
        let point = p521::ecdsa::VerifyingKey::from(&key).to_encoded_point(false);
        let mut serial = [0u8; 16];
        crate::tls::crypto_provider()
            .secure_random
            .fill(&mut serial)
            .map_err(|_| ClientError::Cert("no randomness available".into()))?;
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        let now = time::OffsetDateTime::now_utc();
        let tbs = der::tbs_certificate(
            &serial,
            now - time::Duration::seconds(30),
            now + time::Duration::days(365),
            point.as_bytes(),
        );
        let sig: p521::ecdsa::Signature = key.sign(&tbs);
        let cert_der = der::certificate(&tbs, sig.to_der().as_bytes());
        Ok(ClientIdentity { cert_der, key })
    }

    /// The certificate in DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate in PEM, as passed in `PLUGIN_CLIENT_CERT`.
    pub fn cert_pem(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.cert_der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// The P-521 signing key.
    pub fn signing_key(&self) -> &p521::ecdsa::SigningKey {
        &self.key
    }

    fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(self.cert_der.clone())],
            Arc::new(P521Key(self.key.clone())),
        ))
    }
}

#[derive(Debug)]
struct StaticResolver(Arc<CertifiedKey>);

impl ResolvesClientCert for StaticResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes
            .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

struct P521Key(p521::ecdsa::SigningKey);

impl std::fmt::Debug for P521Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P521Key(<redacted>)")
    }
}

impl SigningKey for P521Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
            .then(|| Box::new(P521Signer(self.0.clone())) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct P521Signer(p521::ecdsa::SigningKey);

impl std::fmt::Debug for P521Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P521Signer(<redacted>)")
    }
}

impl Signer for P521Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let sig: p521::ecdsa::Signature = self.0.sign(message);
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP521_SHA512
    }
}

/// The rustls client configuration a go-plugin host uses: trust exactly the
/// server certificate from the handshake line, present `identity` (if any).
pub fn tls_client_config(
    server_cert_der: &[u8],
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(server_cert_der.to_vec()))?;
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some(id) => builder.with_client_cert_resolver(Arc::new(StaticResolver(id.certified_key()))),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

async fn dial(
    addr: ListenAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> io::Result<TokioIo<Pin<Box<dyn Io>>>> {
    let plain: Pin<Box<dyn Io>> = match &addr {
        ListenAddr::Unix(path) => Box::pin(tokio::net::UnixStream::connect(path).await?),
        ListenAddr::Tcp(sa) => {
            let s = tokio::net::TcpStream::connect(sa).await?;
            s.set_nodelay(true)?;
            Box::pin(s)
        }
    };
    let io: Pin<Box<dyn Io>> = match tls {
        None => plain,
        Some(cfg) => {
            let connector = tokio_rustls::TlsConnector::from(cfg);
            let name = ServerName::try_from("localhost")
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            Box::pin(connector.connect(name, plain).await?)
        }
    };
    Ok(TokioIo::new(io))
}

/// Connects to a plugin described by its handshake line. With a server
/// certificate in the line, TLS is used and `identity` presented (`None`
/// connects without a client certificate, which a plugin must refuse).
pub async fn connect(
    info: &HandshakeInfo,
    identity: Option<&ClientIdentity>,
) -> Result<Channel, ClientError> {
    let tls = match &info.server_cert_der {
        Some(der) => Some(Arc::new(tls_client_config(der, identity)?)),
        None => None,
    };
    let addr = info.addr.clone();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            dial(addr.clone(), tls.clone())
        }))
        .await?;
    Ok(channel)
}

/// Minimal DER writer for the go-plugin style client certificate.
mod der {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    fn oid(arcs: &[u64]) -> Vec<u8> {
        let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &arc in &arcs[2..] {
            let mut stack = vec![(arc & 0x7f) as u8];
            let mut v = arc >> 7;
            while v > 0 {
                stack.push(0x80 | (v & 0x7f) as u8);
                v >>= 7;
            }
            stack.reverse();
            body.extend(stack);
        }
        tlv(0x06, &body)
    }

    fn uint(bytes: &[u8]) -> Vec<u8> {
        let mut body = bytes.to_vec();
        if body.first().is_some_and(|b| b & 0x80 != 0) {
            body.insert(0, 0);
        }
        tlv(0x02, &body)
    }

    fn bit_string(unused: u8, bytes: &[u8]) -> Vec<u8> {
        let mut body = vec![unused];
        body.extend_from_slice(bytes);
        tlv(0x03, &body)
    }

    fn time(t: time::OffsetDateTime) -> Vec<u8> {
        let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
        let (h, mi, s) = (t.hour(), t.minute(), t.second());
        if (1950..2050).contains(&y) {
            let s = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
            tlv(0x17, s.as_bytes())
        } else {
            let s = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
            tlv(0x18, s.as_bytes())
        }
    }

    fn name() -> Vec<u8> {
        let rdn = |arcs: &[u64], v: &str| tlv(0x31, &seq(&[oid(arcs), tlv(0x0c, v.as_bytes())]));
        seq(&[
            rdn(&[2, 5, 4, 10], "HashiCorp"),
            rdn(&[2, 5, 4, 3], "localhost"),
        ])
    }

    fn ext(arcs: &[u64], critical: bool, value: Vec<u8>) -> Vec<u8> {
        let mut parts = vec![oid(arcs)];
        if critical {
            parts.push(vec![0x01, 0x01, 0xff]);
        }
        parts.push(tlv(0x04, &value));
        seq(&parts)
    }

    const ECDSA_WITH_SHA512: &[u64] = &[1, 2, 840, 10045, 4, 3, 4];

    pub(super) fn tbs_certificate(
        serial: &[u8],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
        sec1_point: &[u8],
    ) -> Vec<u8> {
        let spki = seq(&[
            seq(&[oid(&[1, 2, 840, 10045, 2, 1]), oid(&[1, 3, 132, 0, 35])]),
            bit_string(0, sec1_point),
        ]);
        let extensions = seq(&[
            // keyUsage: digitalSignature, keyEncipherment, keyAgreement, keyCertSign
            ext(&[2, 5, 29, 15], true, bit_string(2, &[0xac])),
            // extKeyUsage: clientAuth, serverAuth
            ext(
                &[2, 5, 29, 37],
                false,
                seq(&[
                    oid(&[1, 3, 6, 1, 5, 5, 7, 3, 2]),
                    oid(&[1, 3, 6, 1, 5, 5, 7, 3, 1]),
                ]),
            ),
            // basicConstraints: CA
            ext(&[2, 5, 29, 19], true, seq(&[vec![0x01, 0x01, 0xff]])),
            // subjectAltName: DNS localhost
            ext(&[2, 5, 29, 17], false, seq(&[tlv(0x82, b"localhost")])),
        ]);
        seq(&[
            tlv(0xa0, &uint(&[2])),
            uint(serial),
            seq(&[oid(ECDSA_WITH_SHA512)]),
            name(),
            seq(&[time(not_before), time(not_after)]),
            name(),
            spki,
            tlv(0xa3, &extensions),
        ])
    }

    pub(super) fn certificate(tbs: &[u8], signature_der: &[u8]) -> Vec<u8> {
        seq(&[
            tbs.to_vec(),
            seq(&[oid(ECDSA_WITH_SHA512)]),
            bit_string(0, signature_der),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_is_a_valid_p521_self_signed_cert() {
        use x509_parser::prelude::*;
        let id = ClientIdentity::generate().unwrap();
        let (rest, cert) = X509Certificate::from_der(id.cert_der()).unwrap();
        assert!(rest.is_empty());
        assert_eq!(cert.subject(), cert.issuer());
        assert!(cert.is_ca());
        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.4"
        );
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(san
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName("localhost"))));
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.value.digital_signature() && ku.value.key_cert_sign());
        assert!(cert.validity().is_valid());
        // The PEM round-trips to the same DER.
        use rustls::pki_types::pem::PemObject as _;
        let der = CertificateDer::from_pem_slice(id.cert_pem().as_bytes()).unwrap();
        assert_eq!(der.as_ref(), id.cert_der());
    }
}
