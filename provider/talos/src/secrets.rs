//! The Talos secrets bundle (`talosctl gen secrets` / `secrets.yaml`), generated with the
//! exact key types Talos uses:
//!
//! | what | key | PEM label | subject |
//! |---|---|---|---|
//! | OS (Talos API) CA | Ed25519 | `ED25519 PRIVATE KEY` (PKCS#8) | `O=talos` |
//! | Kubernetes CA | ECDSA P-256 | `EC PRIVATE KEY` (SEC1) | `O=kubernetes` |
//! | aggregator (front-proxy) CA | ECDSA P-256 | `EC PRIVATE KEY` | `CN=front-proxy` |
//! | etcd CA | ECDSA P-256 | `EC PRIVATE KEY` | `O=etcd` |
//! | service-account key | RSA-4096 | `RSA PRIVATE KEY` (PKCS#1) | – |
//!
//! CAs are valid for 87600h (10 years) from the clock's `now`, with key usage
//! digitalSignature + keyCertSign and extended key usage serverAuth + clientAuth.
//! Tokens are `[0-9a-z]{6}.[0-9a-z]{16}`; the cluster id is 32 random bytes in URL-safe
//! base64, the cluster secret and the secretbox secret 32 random bytes in standard base64.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::pem;

/// Validity of generated CAs (Talos `CAValidityTime`, 87600h).
pub const CA_VALIDITY: Duration = Duration::hours(87600);

/// PEM label Talos uses for Ed25519 private keys (PKCS#8 DER inside).
pub const ED25519_PEM_LABEL: &str = "ED25519 PRIVATE KEY";
/// PEM label for SEC1 EC private keys.
pub const EC_PEM_LABEL: &str = "EC PRIVATE KEY";
/// PEM label for PKCS#1 RSA private keys.
pub const RSA_PEM_LABEL: &str = "RSA PRIVATE KEY";

/// Bits of the service-account RSA key.
pub const SERVICE_ACCOUNT_RSA_BITS: usize = 4096;

/// Errors from generating, parsing or using a secrets bundle.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Key generation or certificate signing failed.
    #[error("crypto failure while {what}: {detail}")]
    Crypto {
        /// What was being done.
        what: &'static str,
        /// Underlying error text (never contains key material).
        detail: String,
    },
    /// secrets.yaml could not be parsed.
    #[error("secrets.yaml is not valid YAML of the expected shape: {0}")]
    Yaml(String),
    /// A field is missing or malformed.
    #[error("secrets bundle field {field} is invalid: {reason}")]
    Field {
        /// Dotted secrets.yaml field (`certs.os.key`).
        field: String,
        /// Why.
        reason: String,
    },
}

fn crypto(what: &'static str) -> impl FnOnce(rcgen::Error) -> SecretsError {
    move |e| SecretsError::Crypto {
        what,
        detail: e.to_string(),
    }
}

fn field(field: &str, reason: impl Into<String>) -> SecretsError {
    SecretsError::Field {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Source of "now" for certificate validity (inject a fixed clock in tests).
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that always returns the same instant.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// A PEM certificate with its PEM private key (plain PEM text, not base64).
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// Certificate, PEM.
    pub crt: String,
    /// Private key, PEM. Empty when only the certificate is known.
    pub key: String,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey")
            .field("crt", &format_args!("<{} bytes>", self.crt.len()))
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// All cluster secrets. `Debug` never prints key material or tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsBundle {
    /// Cluster id (URL-safe base64 of 32 bytes).
    pub cluster_id: String,
    /// Cluster secret (base64 of 32 bytes).
    pub cluster_secret: String,
    /// Kubernetes bootstrap token `[0-9a-z]{6}.[0-9a-z]{16}`.
    pub bootstrap_token: String,
    /// Secretbox encryption secret (base64 of 32 bytes); set for Talos >= 1.3 bundles.
    pub secretbox_encryption_secret: Option<String>,
    /// AES-CBC encryption secret; only in bundles made by old Talos versions.
    pub aescbc_encryption_secret: Option<String>,
    /// trustd token `[0-9a-z]{6}.[0-9a-z]{16}`.
    pub trustd_token: String,
    /// etcd CA.
    pub etcd_ca: CertAndKey,
    /// Kubernetes CA.
    pub k8s_ca: CertAndKey,
    /// Kubernetes aggregator (front-proxy) CA.
    pub k8s_aggregator_ca: CertAndKey,
    /// Kubernetes service-account private key, PEM.
    pub k8s_service_account_key: String,
    /// Talos API (OS) CA.
    pub os_ca: CertAndKey,
}

impl fmt::Debug for SecretsBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsBundle")
            .field("cluster_id", &"<redacted>")
            .field("cluster_secret", &"<redacted>")
            .field("bootstrap_token", &"<redacted>")
            .field("secretbox_encryption_secret", &"<redacted>")
            .field("trustd_token", &"<redacted>")
            .field("etcd_ca", &self.etcd_ca)
            .field("k8s_ca", &self.k8s_ca)
            .field("k8s_aggregator_ca", &self.k8s_aggregator_ca)
            .field("k8s_service_account_key", &"<redacted>")
            .field("os_ca", &self.os_ca)
            .finish()
    }
}

const TOKEN_CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn random_token_part(len: usize) -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut b = [0u8; 1];
        rng.fill_bytes(&mut b);
        // 252 = 7 * 36: reject the tail so every character is equally likely.
        if b[0] < 252 {
            out.push(char::from(
                TOKEN_CHARS[usize::from(b[0]) % TOKEN_CHARS.len()],
            ));
        }
    }
    out
}

/// A fresh token of the kubeadm/trustd form `[0-9a-z]{6}.[0-9a-z]{16}`.
pub fn generate_token() -> String {
    format!("{}.{}", random_token_part(6), random_token_part(16))
}

/// Whether `s` has the form `[0-9a-z]{6}.[0-9a-z]{16}`.
pub fn is_valid_token(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    };
    match s.split_once('.') {
        Some((a, b)) => ok(a, 6) && ok(b, 16),
        None => false,
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

fn random_serial() -> SerialNumber {
    let mut b = random_bytes::<16>();
    b[0] &= 0x7f; // positive
    if b[0] == 0 {
        b[0] = 1;
    }
    SerialNumber::from_slice(&b)
}

/// PKCS#8 v1 DER for an Ed25519 seed (the exact encoding Go's `MarshalPKCS8PrivateKey` emits).
fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// A freshly generated key: rcgen signer + Talos-style PEM.
struct GeneratedKey {
    pair: KeyPair,
    pem: String,
}

fn generate_ed25519() -> Result<GeneratedKey, SecretsError> {
    let seed = random_bytes::<32>();
    let der = ed25519_pkcs8_v1(&seed);
    let pair = KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.clone()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(crypto("generating an Ed25519 key"))?;
    Ok(GeneratedKey {
        pair,
        pem: pem::encode(ED25519_PEM_LABEL, &der),
    })
}

fn generate_p256() -> Result<GeneratedKey, SecretsError> {
    use p256::pkcs8::EncodePrivateKey as _;
    let sk = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
    let sec1 = sk.to_sec1_der().map_err(|e| SecretsError::Crypto {
        what: "encoding a P-256 key",
        detail: e.to_string(),
    })?;
    let pkcs8 = sk.to_pkcs8_der().map_err(|e| SecretsError::Crypto {
        what: "encoding a P-256 key",
        detail: e.to_string(),
    })?;
    let pair = KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()),
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )
    .map_err(crypto("loading a P-256 key"))?;
    Ok(GeneratedKey {
        pair,
        pem: pem::encode(EC_PEM_LABEL, &sec1),
    })
}

fn generate_rsa_pkcs1_pem(bits: usize) -> Result<String, SecretsError> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|e| {
        SecretsError::Crypto {
            what: "generating the RSA service-account key",
            detail: e.to_string(),
        }
    })?;
    let pem = key
        .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| SecretsError::Crypto {
            what: "encoding the RSA service-account key",
            detail: e.to_string(),
        })?;
    Ok(pem.to_string())
}

/// Subject of a CA: `O=<org>` or `CN=<cn>`.
enum Subject<'a> {
    Org(&'a str),
    CommonName(&'a str),
}

fn self_signed_ca(
    subject: Subject<'_>,
    key: GeneratedKey,
    now: OffsetDateTime,
) -> Result<CertAndKey, SecretsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    match subject {
        Subject::Org(o) => dn.push(DnType::OrganizationName, o),
        Subject::CommonName(cn) => dn.push(DnType::CommonName, cn),
    }
    params.distinguished_name = dn;
    params.not_before = now;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .self_signed(&key.pair)
        .map_err(crypto("self-signing a CA"))?;
    Ok(CertAndKey {
        crt: cert.pem(),
        key: key.pem,
    })
}

/// Loads a private key PEM as an rcgen signer. Supports Ed25519 (`ED25519 PRIVATE KEY` or
/// `PRIVATE KEY`, PKCS#8) and ECDSA P-256 (`EC PRIVATE KEY` SEC1 or PKCS#8).
pub(crate) fn signing_key_from_pem(key_pem: &str) -> Result<KeyPair, String> {
    let block = pem::decode_first(key_pem).ok_or("not a PEM private key")?;
    let pkcs8 = |der: Vec<u8>| rustls_pki_types::PrivatePkcs8KeyDer::from(der);
    match block.label.as_str() {
        ED25519_PEM_LABEL => {
            KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8(block.der), &rcgen::PKCS_ED25519)
                .map_err(|_| "not an Ed25519 PKCS#8 key".to_string())
        }
        EC_PEM_LABEL => {
            use p256::pkcs8::EncodePrivateKey as _;
            let sk = p256::SecretKey::from_sec1_der(&block.der)
                .map_err(|_| "not a P-256 SEC1 key".to_string())?;
            let der = sk
                .to_pkcs8_der()
                .map_err(|_| "cannot re-encode the P-256 key".to_string())?;
            KeyPair::from_pkcs8_der_and_sign_algo(
                &pkcs8(der.as_bytes().to_vec()),
                &rcgen::PKCS_ECDSA_P256_SHA256,
            )
            .map_err(|_| "unusable P-256 key".to_string())
        }
        "PRIVATE KEY" => {
            let der = block.der;
            KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8(der.clone()), &rcgen::PKCS_ED25519)
                .or_else(|_| {
                    KeyPair::from_pkcs8_der_and_sign_algo(
                        &pkcs8(der),
                        &rcgen::PKCS_ECDSA_P256_SHA256,
                    )
                })
                .map_err(|_| "PKCS#8 key is neither Ed25519 nor P-256".to_string())
        }
        other => Err(format!("unsupported private key type {other:?}")),
    }
}

/// Checks a CA's certificate parses, is a CA, and matches its key.
fn check_ca(name: &str, ca: &CertAndKey, need_key: bool) -> Result<(), SecretsError> {
    let block =
        pem::decode_first(&ca.crt).ok_or_else(|| field(&format!("{name}.crt"), "not PEM"))?;
    if block.label != "CERTIFICATE" {
        return Err(field(
            &format!("{name}.crt"),
            format!("PEM label is {:?}, expected CERTIFICATE", block.label),
        ));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&block.der).map_err(|e| {
        field(
            &format!("{name}.crt"),
            format!("not an X.509 certificate: {e}"),
        )
    })?;
    if !cert.is_ca() {
        return Err(field(&format!("{name}.crt"), "certificate is not a CA"));
    }
    if !need_key && ca.key.is_empty() {
        return Ok(());
    }
    let pair = signing_key_from_pem(&ca.key).map_err(|r| field(&format!("{name}.key"), r))?;
    let spki = cert.public_key().subject_public_key.data.as_ref();
    if pair.public_key_raw() != spki {
        return Err(field(
            &format!("{name}.key"),
            "private key does not match the certificate",
        ));
    }
    Ok(())
}

fn check_b64(name: &str, v: &str, url_safe: bool, len: Option<usize>) -> Result<(), SecretsError> {
    // The cluster id is URL-safe base64; accept standard base64 too (older bundles).
    let decoded = if url_safe {
        URL_SAFE.decode(v).or_else(|_| STANDARD.decode(v))
    } else {
        STANDARD.decode(v)
    }
    .map_err(|_| field(name, "not base64"))?;
    match len {
        Some(n) if decoded.len() != n => Err(field(
            name,
            format!("decodes to {} bytes, expected {n}", decoded.len()),
        )),
        _ if decoded.is_empty() => Err(field(name, "is empty")),
        _ => Ok(()),
    }
}

// ---- secrets.yaml wire format --------------------------------------------------------------

#[derive(Serialize, Deserialize, Default)]
struct WireBundle {
    #[serde(default)]
    cluster: Option<WireCluster>,
    #[serde(default)]
    secrets: Option<WireSecrets>,
    #[serde(default)]
    trustdinfo: Option<WireTrustd>,
    #[serde(default)]
    certs: Option<WireCerts>,
}

#[derive(Serialize, Deserialize, Default)]
struct WireCluster {
    #[serde(default)]
    id: String,
    #[serde(default)]
    secret: String,
}

#[derive(Serialize, Deserialize, Default)]
struct WireSecrets {
    #[serde(default)]
    bootstraptoken: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aescbcencryptionsecret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secretboxencryptionsecret: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct WireTrustd {
    #[serde(default)]
    token: String,
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct WirePair {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    crt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    key: String,
}

#[derive(Serialize, Deserialize, Default)]
struct WireCerts {
    #[serde(default)]
    etcd: Option<WirePair>,
    #[serde(default)]
    k8s: Option<WirePair>,
    #[serde(default)]
    k8saggregator: Option<WirePair>,
    #[serde(default)]
    k8sserviceaccount: Option<WirePair>,
    #[serde(default)]
    os: Option<WirePair>,
}

fn b64_pem(name: &str, v: &str) -> Result<String, SecretsError> {
    let bytes = STANDARD
        .decode(v.trim())
        .map_err(|_| field(name, "not base64-encoded PEM"))?;
    String::from_utf8(bytes).map_err(|_| field(name, "not base64-encoded PEM"))
}

fn pair_from_wire(name: &str, p: Option<WirePair>) -> Result<CertAndKey, SecretsError> {
    let p = p.ok_or_else(|| field(name, "is required"))?;
    if p.crt.is_empty() {
        return Err(field(&format!("{name}.crt"), "is required"));
    }
    if p.key.is_empty() {
        return Err(field(&format!("{name}.key"), "is required"));
    }
    Ok(CertAndKey {
        crt: b64_pem(&format!("{name}.crt"), &p.crt)?,
        key: b64_pem(&format!("{name}.key"), &p.key)?,
    })
}

fn pair_to_wire(p: &CertAndKey) -> WirePair {
    WirePair {
        crt: STANDARD.encode(p.crt.as_bytes()),
        key: STANDARD.encode(p.key.as_bytes()),
    }
}

impl SecretsBundle {
    /// Generates a new bundle. CAs are valid from `clock.now()` for [`CA_VALIDITY`].
    /// This generates an RSA-4096 key and takes a second or more.
    pub fn generate(clock: &dyn Clock) -> Result<Self, SecretsError> {
        let now = clock.now();
        Ok(SecretsBundle {
            cluster_id: URL_SAFE.encode(random_bytes::<32>()),
            cluster_secret: STANDARD.encode(random_bytes::<32>()),
            bootstrap_token: generate_token(),
            secretbox_encryption_secret: Some(STANDARD.encode(random_bytes::<32>())),
            aescbc_encryption_secret: None,
            trustd_token: generate_token(),
            etcd_ca: self_signed_ca(Subject::Org("etcd"), generate_p256()?, now)?,
            k8s_ca: self_signed_ca(Subject::Org("kubernetes"), generate_p256()?, now)?,
            k8s_aggregator_ca: self_signed_ca(
                Subject::CommonName("front-proxy"),
                generate_p256()?,
                now,
            )?,
            k8s_service_account_key: generate_rsa_pkcs1_pem(SERVICE_ACCOUNT_RSA_BITS)?,
            os_ca: self_signed_ca(Subject::Org("talos"), generate_ed25519()?, now)?,
        })
    }

    /// Parses Talos's `secrets.yaml` (as written by `talosctl gen secrets`) and validates it.
    pub fn from_yaml(text: &str) -> Result<Self, SecretsError> {
        let w: WireBundle =
            serde_yaml_ng::from_str(text).map_err(|e| SecretsError::Yaml(e.to_string()))?;
        let cluster = w.cluster.ok_or_else(|| field("cluster", "is required"))?;
        let secrets = w.secrets.ok_or_else(|| field("secrets", "is required"))?;
        let trustd = w
            .trustdinfo
            .ok_or_else(|| field("trustdinfo", "is required"))?;
        let certs = w.certs.ok_or_else(|| field("certs", "is required"))?;
        let sa = certs
            .k8sserviceaccount
            .ok_or_else(|| field("certs.k8sserviceaccount", "is required"))?;
        if sa.key.is_empty() {
            return Err(field("certs.k8sserviceaccount.key", "is required"));
        }
        let bundle = SecretsBundle {
            cluster_id: cluster.id,
            cluster_secret: cluster.secret,
            bootstrap_token: secrets.bootstraptoken,
            secretbox_encryption_secret: secrets
                .secretboxencryptionsecret
                .filter(|s| !s.is_empty()),
            aescbc_encryption_secret: secrets.aescbcencryptionsecret.filter(|s| !s.is_empty()),
            trustd_token: trustd.token,
            etcd_ca: pair_from_wire("certs.etcd", certs.etcd)?,
            k8s_ca: pair_from_wire("certs.k8s", certs.k8s)?,
            k8s_aggregator_ca: pair_from_wire("certs.k8saggregator", certs.k8saggregator)?,
            k8s_service_account_key: b64_pem("certs.k8sserviceaccount.key", &sa.key)?,
            os_ca: pair_from_wire("certs.os", certs.os)?,
        };
        bundle.validate()?;
        Ok(bundle)
    }

    /// Serialises to Talos's `secrets.yaml` format (PEMs base64-encoded).
    pub fn to_yaml(&self) -> Result<String, SecretsError> {
        let w = WireBundle {
            cluster: Some(WireCluster {
                id: self.cluster_id.clone(),
                secret: self.cluster_secret.clone(),
            }),
            secrets: Some(WireSecrets {
                bootstraptoken: self.bootstrap_token.clone(),
                aescbcencryptionsecret: self.aescbc_encryption_secret.clone(),
                secretboxencryptionsecret: self.secretbox_encryption_secret.clone(),
            }),
            trustdinfo: Some(WireTrustd {
                token: self.trustd_token.clone(),
            }),
            certs: Some(WireCerts {
                etcd: Some(pair_to_wire(&self.etcd_ca)),
                k8s: Some(pair_to_wire(&self.k8s_ca)),
                k8saggregator: Some(pair_to_wire(&self.k8s_aggregator_ca)),
                k8sserviceaccount: Some(WirePair {
                    crt: String::new(),
                    key: STANDARD.encode(self.k8s_service_account_key.as_bytes()),
                }),
                os: Some(pair_to_wire(&self.os_ca)),
            }),
        };
        serde_yaml_ng::to_string(&w).map_err(|e| SecretsError::Yaml(e.to_string()))
    }

    /// Checks every field: tokens, base64 secrets, CA certificates and that each key matches
    /// its certificate, and the service-account key parses.
    pub fn validate(&self) -> Result<(), SecretsError> {
        check_b64("cluster.id", &self.cluster_id, true, None)?;
        check_b64("cluster.secret", &self.cluster_secret, false, None)?;
        if !is_valid_token(&self.bootstrap_token) {
            return Err(field(
                "secrets.bootstraptoken",
                "expected the form [0-9a-z]{6}.[0-9a-z]{16}",
            ));
        }
        if !is_valid_token(&self.trustd_token) {
            return Err(field(
                "trustdinfo.token",
                "expected the form [0-9a-z]{6}.[0-9a-z]{16}",
            ));
        }
        match (
            &self.secretbox_encryption_secret,
            &self.aescbc_encryption_secret,
        ) {
            (Some(_), Some(_)) => {
                return Err(field(
                    "secrets",
                    "only one of secretboxencryptionsecret and aescbcencryptionsecret is allowed",
                ))
            }
            (None, None) => {
                return Err(field(
                    "secrets",
                    "one of secretboxencryptionsecret and aescbcencryptionsecret is required",
                ))
            }
            (Some(s), None) => check_b64("secrets.secretboxencryptionsecret", s, false, Some(32))?,
            (None, Some(s)) => check_b64("secrets.aescbcencryptionsecret", s, false, Some(32))?,
        }
        check_ca("certs.etcd", &self.etcd_ca, true)?;
        check_ca("certs.k8s", &self.k8s_ca, true)?;
        check_ca("certs.k8saggregator", &self.k8s_aggregator_ca, true)?;
        check_ca("certs.os", &self.os_ca, true)?;
        check_service_account_key(&self.k8s_service_account_key)?;
        Ok(())
    }

    /// A bundle of fixed, obviously fake values. It is NOT usable for a cluster: it exists so
    /// configuration can be rendered and checked at plan time (before secrets exist) and for
    /// deterministic snapshots. Every value is a distinct marker string.
    pub fn placeholder() -> Self {
        let pair = |n: &str| CertAndKey {
            crt: format!(
                "-----BEGIN CERTIFICATE-----\nPLACEHOLDER-{n}-CRT\n-----END CERTIFICATE-----\n"
            ),
            key: format!(
                "-----BEGIN PRIVATE KEY-----\nPLACEHOLDER-{n}-KEY\n-----END PRIVATE KEY-----\n"
            ),
        };
        SecretsBundle {
            cluster_id: "PLACEHOLDER-CLUSTER-ID".into(),
            cluster_secret: "PLACEHOLDER-CLUSTER-SECRET".into(),
            bootstrap_token: "aaaaaa.aaaaaaaaaaaaaaaa".into(),
            secretbox_encryption_secret: Some("PLACEHOLDER-SECRETBOX".into()),
            aescbc_encryption_secret: None,
            trustd_token: "bbbbbb.bbbbbbbbbbbbbbbb".into(),
            etcd_ca: pair("ETCD"),
            k8s_ca: pair("K8S"),
            k8s_aggregator_ca: pair("K8S-AGGREGATOR"),
            k8s_service_account_key: "-----BEGIN RSA PRIVATE KEY-----\nPLACEHOLDER-SA-KEY\n-----END RSA PRIVATE KEY-----\n".into(),
            os_ca: pair("OS"),
        }
    }

    /// Every secret value with a label, in the forms they appear in rendered configs
    /// (raw and base64-encoded). Certificates are included: they are not secret but are
    /// noisy and vary per bundle.
    fn secret_strings(&self) -> Vec<(String, String)> {
        let mut v: Vec<(&str, &str)> = vec![
            ("cluster-id", &self.cluster_id),
            ("cluster-secret", &self.cluster_secret),
            ("bootstrap-token", &self.bootstrap_token),
            ("trustd-token", &self.trustd_token),
            ("etcd-ca-crt", &self.etcd_ca.crt),
            ("etcd-ca-key", &self.etcd_ca.key),
            ("k8s-ca-crt", &self.k8s_ca.crt),
            ("k8s-ca-key", &self.k8s_ca.key),
            ("k8s-aggregator-ca-crt", &self.k8s_aggregator_ca.crt),
            ("k8s-aggregator-ca-key", &self.k8s_aggregator_ca.key),
            ("k8s-service-account-key", &self.k8s_service_account_key),
            ("os-ca-crt", &self.os_ca.crt),
            ("os-ca-key", &self.os_ca.key),
        ];
        if let Some(s) = &self.secretbox_encryption_secret {
            v.push(("secretbox-encryption-secret", s));
        }
        if let Some(s) = &self.aescbc_encryption_secret {
            v.push(("aescbc-encryption-secret", s));
        }
        let mut out = Vec::new();
        for (label, value) in v {
            if value.is_empty() {
                continue;
            }
            out.push((
                format!("<{label}:base64>"),
                STANDARD.encode(value.as_bytes()),
            ));
            out.push((format!("<{label}>"), value.to_string()));
        }
        // Longest first so a value never masks part of a longer one.
        out.sort_by_key(|e| std::cmp::Reverse(e.1.len()));
        out
    }

    /// Replaces every secret of this bundle found in `text` (raw or base64-encoded) by a
    /// label such as `<os-ca-key:base64>`. Use it before showing or logging rendered
    /// configuration.
    pub fn mask(&self, text: &str) -> String {
        let mut s = text.to_string();
        for (label, value) in self.secret_strings() {
            s = s.replace(&value, &label);
        }
        s
    }
}

fn check_service_account_key(key_pem: &str) -> Result<(), SecretsError> {
    let name = "certs.k8sserviceaccount.key";
    let block = pem::decode_first(key_pem).ok_or_else(|| field(name, "not PEM"))?;
    match block.label.as_str() {
        RSA_PEM_LABEL => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            rsa::RsaPrivateKey::from_pkcs1_der(&block.der)
                .map(|_| ())
                .map_err(|_| field(name, "not a PKCS#1 RSA key"))
        }
        EC_PEM_LABEL => p256::SecretKey::from_sec1_der(&block.der)
            .map(|_| ())
            .map_err(|_| field(name, "not a P-256 SEC1 key")),
        other => Err(field(name, format!("unsupported key type {other:?}"))),
    }
}

/// Issues a Talos API client certificate signed by the bundle's OS CA, the way
/// `talosctl gen config` does for talosconfig: Ed25519 key (PEM `ED25519 PRIVATE KEY`),
/// Organization = the role (e.g. `os:admin`), key usage digitalSignature, extended key
/// usage clientAuth, valid from `clock.now()` for `ttl`. One role per certificate.
pub fn issue_client_certificate(
    bundle: &SecretsBundle,
    role: &str,
    clock: &dyn Clock,
    ttl: Duration,
) -> Result<CertAndKey, SecretsError> {
    if !role.starts_with("os:") || role.len() <= 3 {
        return Err(field(
            "role",
            format!("{role:?} is not a Talos role (os:admin, os:operator, os:reader, ...)"),
        ));
    }
    let ca_key = signing_key_from_pem(&bundle.os_ca.key).map_err(|r| field("certs.os.key", r))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&bundle.os_ca.crt, ca_key)
        .map_err(|e| field("certs.os.crt", e.to_string()))?;
    let key = generate_ed25519()?;
    let now = clock.now();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, role);
    params.distinguished_name = dn;
    params.not_before = now;
    params.not_after = now + ttl;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key.pair, &issuer)
        .map_err(crypto("signing the client certificate"))?;
    Ok(CertAndKey {
        crt: cert.pem(),
        key: key.pem,
    })
}

/// Issues a Kubernetes admin client certificate signed by the bundle's Kubernetes CA, as
/// `talosctl kubeconfig` gets one from the node: ECDSA P-256 key, `CN=admin`,
/// `O=system:masters`, key usages digitalSignature and keyEncipherment, extended key usage
/// clientAuth, valid from `clock.now()` for `ttl`.
pub fn issue_kubernetes_admin_certificate(
    bundle: &SecretsBundle,
    clock: &dyn Clock,
    ttl: Duration,
) -> Result<CertAndKey, SecretsError> {
    let ca_key = signing_key_from_pem(&bundle.k8s_ca.key).map_err(|r| field("certs.k8s.key", r))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&bundle.k8s_ca.crt, ca_key)
        .map_err(|e| field("certs.k8s.crt", e.to_string()))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(crypto("generating the admin key"))?;
    let now = clock.now();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:masters");
    dn.push(DnType::CommonName, "admin");
    params.distinguished_name = dn;
    params.not_before = now;
    params.not_after = now + ttl;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(crypto("signing the admin certificate"))?;
    Ok(CertAndKey {
        crt: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A kubeconfig for `cluster_name` at `endpoint` (`https://<vip>:6443`) with `client` as the
/// admin user, trusting the bundle's Kubernetes CA; context `admin@<cluster_name>`.
pub fn admin_kubeconfig(
    bundle: &SecretsBundle,
    cluster_name: &str,
    endpoint: &str,
    client: &CertAndKey,
) -> String {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    let user = format!("admin@{cluster_name}");
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: {cluster_name}\n    cluster:\n      \
         server: {endpoint}\n      certificate-authority-data: {ca}\nusers:\n  - name: {user}\n    \
         user:\n      client-certificate-data: {crt}\n      client-key-data: {key}\ncontexts:\n  \
         - context:\n      cluster: {cluster_name}\n      namespace: default\n      user: {user}\n    \
         name: {user}\ncurrent-context: {user}\n",
        ca = b64(&bundle.k8s_ca.crt),
        crt = b64(&client.crt),
        key = b64(&client.key),
    )
}

/// The Talos role of the talosconfig admin certificate.
pub const ADMIN_ROLE: &str = "os:admin";

/// Default validity of the talosconfig client certificate (Talos: 1 year).
pub const CLIENT_CERT_TTL: Duration = Duration::hours(8760);
