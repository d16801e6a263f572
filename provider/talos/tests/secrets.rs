mod common;

use ::time::Duration;
use waddle_talos::secrets::{
    is_valid_token, issue_client_certificate, FixedClock, ADMIN_ROLE, CLIENT_CERT_TTL,
};
use waddle_talos::SecretsBundle;
use x509_parser::prelude::*;

fn pem_block(pem: &str) -> (String, Vec<u8>) {
    let label = pem
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("-----BEGIN ")
        .trim_end_matches("-----")
        .to_string();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    (label, der)
}

fn cert(pem: &str) -> (String, Vec<u8>) {
    let (label, der) = pem_block(pem);
    assert_eq!(label, "CERTIFICATE");
    (label, der)
}

const OID_ED25519: &str = "1.3.101.112";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

fn check_ca(crt_pem: &str, org: Option<&str>, cn: Option<&str>, key_alg: &str) {
    let (_, der) = cert(crt_pem);
    let (_, c) = parse_x509_certificate(&der).unwrap();
    assert!(c.is_ca(), "CA flag");
    assert_eq!(c.subject(), c.issuer(), "self-signed");
    let orgs: Vec<_> = c
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    let cns: Vec<_> = c
        .subject()
        .iter_common_name()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    assert_eq!(orgs, org.map(|o| vec![o.to_string()]).unwrap_or_default());
    assert_eq!(cns, cn.map(|o| vec![o.to_string()]).unwrap_or_default());
    assert_eq!(c.public_key().algorithm.algorithm.to_id_string(), key_alg);
    if key_alg == OID_EC {
        let params = c.public_key().algorithm.parameters.as_ref().unwrap();
        assert_eq!(
            params.as_oid().unwrap().to_id_string(),
            OID_P256,
            "P-256 curve"
        );
    }
    // 10 years (87600h) from the injected clock.
    let nb = c.validity().not_before.timestamp();
    let na = c.validity().not_after.timestamp();
    assert_eq!(nb, common::NOW.unix_timestamp());
    assert_eq!(na - nb, 87600 * 3600);
    let ku = c.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_cert_sign());
    let eku = c.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    // the signature verifies with its own key
    c.verify_signature(None).expect("self-signature verifies");
}

#[test]
fn generated_key_types_match_talos() {
    let b = common::bundle();
    b.validate().unwrap();

    // OS CA: Ed25519, "ED25519 PRIVATE KEY" around PKCS#8 v1 DER (48 bytes, Go's encoding).
    check_ca(&b.os_ca.crt, Some("talos"), None, OID_ED25519);
    let (label, der) = pem_block(&b.os_ca.key);
    assert_eq!(label, "ED25519 PRIVATE KEY");
    assert_eq!(der.len(), 48);
    assert_eq!(
        &der[..16],
        &[
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20
        ]
    );

    // Kubernetes, aggregator, etcd CAs: ECDSA P-256, SEC1 "EC PRIVATE KEY".
    check_ca(&b.k8s_ca.crt, Some("kubernetes"), None, OID_EC);
    check_ca(&b.k8s_aggregator_ca.crt, None, Some("front-proxy"), OID_EC);
    check_ca(&b.etcd_ca.crt, Some("etcd"), None, OID_EC);
    for k in [&b.k8s_ca.key, &b.k8s_aggregator_ca.key, &b.etcd_ca.key] {
        let (label, der) = pem_block(k);
        assert_eq!(label, "EC PRIVATE KEY");
        p256::SecretKey::from_sec1_der(&der).expect("P-256 SEC1 key");
    }

    // Service account: RSA-4096 PKCS#1.
    let (label, der) = pem_block(&b.k8s_service_account_key);
    assert_eq!(label, "RSA PRIVATE KEY");
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPrivateKey::from_pkcs1_der(&der).unwrap();
    assert_eq!(key.size() * 8, 4096);

    // Tokens and secrets.
    for t in [&b.bootstrap_token, &b.trustd_token] {
        assert!(is_valid_token(t), "{t}");
        let (a, c) = t.split_once('.').unwrap();
        assert_eq!((a.len(), c.len()), (6, 16));
        assert!(t
            .chars()
            .all(|c| c == '.' || c.is_ascii_digit() || c.is_ascii_lowercase()));
    }
    assert_ne!(b.bootstrap_token, b.trustd_token);
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE
            .decode(&b.cluster_id)
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&b.cluster_secret)
            .unwrap()
            .len(),
        32
    );
    let sb = b.secretbox_encryption_secret.as_ref().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(sb)
            .unwrap()
            .len(),
        32
    );
    assert!(b.aescbc_encryption_secret.is_none());
}

#[test]
fn secrets_yaml_round_trip() {
    let b = common::bundle();
    let yaml = b.to_yaml().unwrap();
    for key in [
        "cluster:",
        "secrets:",
        "bootstraptoken:",
        "secretboxencryptionsecret:",
        "trustdinfo:",
        "certs:",
        "etcd:",
        "k8s:",
        "k8saggregator:",
        "k8sserviceaccount:",
        "os:",
    ] {
        assert!(yaml.contains(key), "{key} missing in\n{yaml}");
    }
    // PEMs are base64-encoded in the file, as talosctl writes them.
    assert!(!yaml.contains("BEGIN"));
    let back = SecretsBundle::from_yaml(&yaml).unwrap();
    assert_eq!(&back, b);
}

/// A secrets.yaml in the format `talosctl gen secrets` writes (4-space indent, ECDSA
/// service-account key as old Talos versions made), built from our own keys.
#[test]
fn imports_talosctl_layout_and_refuses_bad_bundles() {
    let b = common::bundle();
    use base64::Engine as _;
    let e = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let text = format!(
        "cluster:\n    id: {}\n    secret: {}\nsecrets:\n    bootstraptoken: {}\n    secretboxencryptionsecret: {}\ntrustdinfo:\n    token: {}\ncerts:\n    etcd:\n        crt: {}\n        key: {}\n    k8s:\n        crt: {}\n        key: {}\n    k8saggregator:\n        crt: {}\n        key: {}\n    k8sserviceaccount:\n        key: {}\n    os:\n        crt: {}\n        key: {}\n",
        b.cluster_id, b.cluster_secret, b.bootstrap_token, b.secretbox_encryption_secret.as_ref().unwrap(), b.trustd_token,
        e(&b.etcd_ca.crt), e(&b.etcd_ca.key), e(&b.k8s_ca.crt), e(&b.k8s_ca.key),
        e(&b.k8s_aggregator_ca.crt), e(&b.k8s_aggregator_ca.key), e(&b.etcd_ca.key),
        e(&b.os_ca.crt), e(&b.os_ca.key),
    );
    let imported = SecretsBundle::from_yaml(&text).unwrap();
    assert_eq!(imported.os_ca, b.os_ca);
    assert_eq!(imported.k8s_service_account_key, b.etcd_ca.key);

    // wrong token form
    let bad = text.replace(&b.bootstrap_token, "ABCDEF.0123456789abcdef");
    let err = SecretsBundle::from_yaml(&bad).unwrap_err().to_string();
    assert!(err.contains("secrets.bootstraptoken"), "{err}");
    // key that doesn't match its certificate
    let swapped = text.replacen(&e(&b.etcd_ca.key), &e(&b.k8s_ca.key), 1);
    let err = SecretsBundle::from_yaml(&swapped).unwrap_err().to_string();
    assert!(
        err.contains("certs.etcd.key") && err.contains("does not match"),
        "{err}"
    );
    // missing section
    let err = SecretsBundle::from_yaml("cluster:\n    id: x\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("secrets"), "{err}");
    // not YAML
    assert!(SecretsBundle::from_yaml("certs: [").is_err());
}

#[test]
fn debug_is_redacted() {
    let b = common::bundle();
    let dbg = format!("{b:?}");
    for secret in [
        &b.cluster_secret,
        &b.bootstrap_token,
        &b.trustd_token,
        b.secretbox_encryption_secret.as_ref().unwrap(),
    ] {
        assert!(!dbg.contains(secret.as_str()));
    }
    assert!(!dbg.contains("PRIVATE KEY"));
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn mask_hides_every_secret() {
    let b = common::bundle();
    let cfg = waddle_talos::render_node_config(&common::original_spec(), b, "cp1").unwrap();
    let masked = b.mask(&cfg);
    use base64::Engine as _;
    let e = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for s in [
        e(&b.os_ca.key),
        e(&b.k8s_ca.key),
        e(&b.etcd_ca.key),
        e(&b.k8s_service_account_key),
        b.bootstrap_token.clone(),
        b.trustd_token.clone(),
        b.cluster_secret.clone(),
    ] {
        assert!(cfg.contains(&s));
        assert!(!masked.contains(&s));
    }
    assert!(masked.contains("<os-ca-key:base64>"));
}

#[test]
fn admin_client_certificate() {
    let b = common::bundle();
    let clock = FixedClock(common::NOW);
    let client = issue_client_certificate(b, ADMIN_ROLE, &clock, CLIENT_CERT_TTL).unwrap();
    let (label, _) = pem_block(&client.key);
    assert_eq!(label, "ED25519 PRIVATE KEY");
    let (_, der) = cert(&client.crt);
    let (_, c) = parse_x509_certificate(&der).unwrap();
    let orgs: Vec<_> = c
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(orgs, vec!["os:admin"]);
    assert!(!c.is_ca());
    assert_eq!(
        c.public_key().algorithm.algorithm.to_id_string(),
        OID_ED25519
    );
    let eku = c.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert_eq!(
        c.validity().not_after.timestamp() - c.validity().not_before.timestamp(),
        Duration::hours(8760).whole_seconds()
    );
    // issued by the OS CA
    let (_, ca_der) = cert(&b.os_ca.crt);
    let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
    assert_eq!(c.issuer(), ca.subject());
    c.verify_signature(Some(ca.public_key()))
        .expect("client certificate is signed by the OS CA");
    // and not by another CA
    let (_, other_der) = cert(&b.k8s_ca.crt);
    let (_, other) = parse_x509_certificate(&other_der).unwrap();
    assert!(c.verify_signature(Some(other.public_key())).is_err());

    // talosconfig
    let tc = waddle_talos::talosconfig::talosconfig(
        "waddle",
        &["10.10.0.20".to_string()],
        &["10.10.0.10".to_string(), "10.10.0.11".to_string()],
        b,
        &client,
    )
    .unwrap();
    assert!(tc.starts_with("context: waddle\n"), "{tc}");
    let parsed = waddle_talos::talosconfig::TalosConfig::from_yaml(&tc).unwrap();
    let ctx = &parsed.contexts["waddle"];
    assert_eq!(ctx.endpoints, vec!["10.10.0.20"]);
    assert_eq!(ctx.nodes.len(), 2);
    assert_eq!(ctx.ca, b.os_ca.crt);
    assert_eq!(ctx.crt, client.crt);
    assert_eq!(ctx.key, client.key);
    assert!(!format!("{ctx:?}").contains("PRIVATE KEY"));
}

#[test]
fn client_certificate_roles_are_checked() {
    let clock = FixedClock(common::NOW);
    for bad in ["", "admin", "os:"] {
        let err = issue_client_certificate(common::bundle(), bad, &clock, CLIENT_CERT_TTL)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Talos role"), "{err}");
    }
    let reader =
        issue_client_certificate(common::bundle(), "os:reader", &clock, CLIENT_CERT_TTL).unwrap();
    let (_, der) = cert(&reader.crt);
    let (_, c) = parse_x509_certificate(&der).unwrap();
    let orgs: Vec<_> = c
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(orgs, vec!["os:reader"]);
}
