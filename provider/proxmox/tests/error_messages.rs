//! Error texts tell the user what to change: a refused token names `api_token` and
//! PROXMOX_VE_API_TOKEN, an untrusted certificate names `ca_cert`, PROXMOX_VE_CA_CERT and
//! `insecure`. Servers on 127.10.200.30-31.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::{start, Action, Req};
use waddle_proxmox::{ApiErrorKind, Auth, Client, ClientConfig, Params, RetryPolicy};

const TOKEN: &str = "waddle@pve!ci=5f3c2a1e-0000-4000-8000-00000000abcd";

fn config(endpoint: &str, ca: &str) -> ClientConfig {
    let mut c = ClientConfig::new(endpoint, Auth::api_token(TOKEN).unwrap());
    c.ca_cert_pem = Some(ca.to_string());
    c.retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    c
}

#[tokio::test]
async fn a_refused_token_names_the_setting_to_fix() {
    let handler =
        Arc::new(|_: &Req| Action::error(401, "authentication failure", json!({"data": null})));
    let server = start("127.10.200.30", handler).await;
    let client = Client::new(config(&server.endpoint(), &server.ca_pem)).unwrap();
    let err = client
        .get::<serde_json::Value>("/version", &Params::new())
        .await
        .unwrap_err();
    assert_eq!(err.api_kind(), Some(ApiErrorKind::Auth));
    let text = err.to_string();
    for want in [
        "HTTP 401",
        "authentication failure",
        "`api_token`",
        "PROXMOX_VE_API_TOKEN",
    ] {
        assert!(text.contains(want), "{want:?} missing in: {text}");
    }
    assert!(
        !text.contains("secret") && !text.contains("5f3c2a1e"),
        "{text}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_names_ca_cert_and_insecure() {
    let handler = Arc::new(|_: &Req| Action::ok(json!({"version": "9.1.1"})));
    let server = start("127.10.200.31", handler).await;
    let other = support::pki("127.10.200.31");
    let client = Client::new(config(&server.endpoint(), &other.ca_pem)).unwrap();
    let err = client
        .get::<serde_json::Value>("/version", &Params::new())
        .await
        .unwrap_err();
    // Pinned to another CA of the same name (BadSignature), and no CA pinned at all: the
    // platform roots do not know the server's CA (UnknownIssuer).
    let mut unpinned = config(&server.endpoint(), "");
    unpinned.ca_cert_pem = None;
    let err2 = Client::new(unpinned)
        .unwrap()
        .get::<serde_json::Value>("/version", &Params::new())
        .await
        .unwrap_err();
    for text in [err.to_string(), err2.to_string()] {
        for want in ["`ca_cert`", "PROXMOX_VE_CA_CERT", "`insecure = true`"] {
            assert!(text.contains(want), "{want:?} missing in: {text}");
        }
    }
    assert!(err2.to_string().contains("UnknownIssuer"), "{err2}");
    assert!(server.requests().is_empty());
    // Other failures carry no such advice.
    let plain = waddle_proxmox::Error::Transport {
        method: "GET".into(),
        path: "/version".into(),
        message: "connection refused".into(),
        kind: waddle_proxmox::TransportKind::NotSent,
    };
    assert!(!plain.to_string().contains("ca_cert"), "{plain}");
}
