use super::*;
use base64::Engine as _;
use waddle_talos::secrets::SecretsBundle;

fn config(bundle: &SecretsBundle, attrs: &[(&str, Value)]) -> Value {
    let mut v = schema().null_value();
    let yaml = bundle.to_yaml().expect("secrets yaml");
    assert!(v.set_path(&AttributePath::attr("machine_secrets"), Value::from(yaml)));
    assert!(v.set_path(&AttributePath::attr("cluster_name"), Value::from("waddle")));
    assert!(v.set_path(
        &AttributePath::attr("endpoint"),
        Value::from("https://10.10.0.20:6443")
    ));
    for (k, val) in attrs {
        assert!(v.set_path(&AttributePath::attr(*k), val.clone()), "{k}");
    }
    v
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

fn b64(yaml: &serde_yaml_ng::Value, path: &[&str]) -> String {
    let mut v = yaml;
    for p in path {
        v = match p.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*p],
        };
    }
    let raw = v.as_str().unwrap_or_else(|| panic!("{path:?} missing"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("base64"),
    )
    .expect("utf8")
}

#[test]
fn opens_an_admin_kubeconfig_signed_by_the_cluster_ca() {
    let bundle = SecretsBundle::generate(&SystemClock).expect("bundle");
    let mut diags = Diagnostics::new();
    let out = open(&config(&bundle, &[("ttl", Value::from("2h"))]), &mut diags)
        .unwrap_or_else(|| panic!("{diags:?}"));
    assert!(!diags.has_errors(), "{diags:?}");
    let kc = out
        .get_attr("kubeconfig")
        .and_then(Value::as_str)
        .expect("kubeconfig");
    let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(kc).expect("kubeconfig is YAML");
    assert_eq!(y["current-context"].as_str(), Some("admin@waddle"));
    assert_eq!(
        y["clusters"][0]["cluster"]["server"].as_str(),
        Some("https://10.10.0.20:6443")
    );
    assert_eq!(
        b64(
            &y,
            &["clusters", "0", "cluster", "certificate-authority-data"]
        ),
        bundle.k8s_ca.crt,
        "trusts the cluster's Kubernetes CA"
    );

    let crt = b64(&y, &["users", "0", "user", "client-certificate-data"]);
    let key = b64(&y, &["users", "0", "user", "client-key-data"]);
    assert!(key.contains("PRIVATE KEY"), "client key is PEM");
    let der = pem_der(&crt);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("client cert");
    let ca_der = pem_der(&bundle.k8s_ca.crt);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("ca cert");
    cert.verify_signature(Some(ca.public_key()))
        .expect("signed by the Kubernetes CA");
    let subject = cert.subject().to_string();
    assert!(subject.contains("O=system:masters"), "{subject}");
    assert!(subject.contains("CN=admin"), "{subject}");
    let eku = cert
        .extended_key_usage()
        .expect("eku")
        .expect("eku present");
    assert!(eku.value.client_auth && !eku.value.server_auth);
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(life, 2 * 3600, "valid for the ttl");
    let expires = out
        .get_attr("expires_at")
        .and_then(Value::as_str)
        .expect("expires_at");
    let exp = time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert!((exp.unix_timestamp() - cert.validity().not_after.timestamp()).abs() <= 2);

    // A second open signs a new certificate (nothing is cached).
    let again = open(&config(&bundle, &[]), &mut diags).expect("second open");
    assert_ne!(again.get_attr("kubeconfig"), out.get_attr("kubeconfig"));
    assert_eq!(
        again.get_attr("ttl").and_then(Value::as_str),
        Some(DEFAULT_TTL)
    );
}

#[test]
fn bad_input_is_refused_with_its_path_and_no_secret() {
    let bundle = SecretsBundle::generate(&SystemClock).expect("bundle");
    for (attr, val, want) in [
        ("ttl", "10s", "between 1m and 168h"),
        ("ttl", "8d", "not a duration"),
        ("ttl", "200h", "between 1m and 168h"),
        ("endpoint", "http://10.10.0.20:6443", "https:// URL"),
        ("cluster_name", "Bad_Name", "lower-case"),
    ] {
        let mut diags = Diagnostics::new();
        let out = open(&config(&bundle, &[(attr, Value::from(val))]), &mut diags);
        assert!(out.is_none(), "{attr}={val} accepted");
        let e = diags.iter().find(|d| d.is_error()).expect("an error");
        assert_eq!(e.attribute, Some(AttributePath::attr(attr)), "{e:?}");
        assert!(e.detail.contains(want), "{attr}={val}: {}", e.detail);
    }
    let mut diags = Diagnostics::new();
    let mut c = config(&bundle, &[]);
    let broken = bundle
        .to_yaml()
        .expect("yaml")
        .replace("k8s:", "k8s_removed:");
    assert!(c.set_path(
        &AttributePath::attr("machine_secrets"),
        Value::from(broken.clone())
    ));
    assert!(open(&c, &mut diags).is_none());
    let e = diags.iter().find(|d| d.is_error()).expect("an error");
    assert_eq!(e.attribute, Some(AttributePath::attr("machine_secrets")));
    assert!(
        !e.detail.contains(&bundle.k8s_ca.key) && !e.summary.contains("PRIVATE"),
        "the error must not echo secrets: {e:?}"
    );
}
