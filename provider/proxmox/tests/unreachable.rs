//! An API that refuses every connection fails the operation, with that cause, once it has been
//! unreachable for `Timeouts::unreachable`, even inside a wait that retries on errors (here a
//! guest-agent wait with a ten-minute timeout). The port is on loopback and nothing listens.

use std::time::Duration;

use waddle_proxmox::{Auth, Client, ClientConfig, Error, RetryPolicy};

const TOKEN: &str = "waddle@pve!ci=5f3c2a1e-0000-4000-8000-00000000abcd";

/// A loopback port that refuses connections (bound, then closed).
fn refused_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    format!("https://127.0.0.1:{port}")
}

fn client(endpoint: &str, unreachable: Duration) -> Client {
    let mut c = ClientConfig::new(endpoint, Auth::api_token(TOKEN).expect("token"));
    c.insecure = true;
    c.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    };
    c.timeouts.unreachable = unreachable;
    Client::new(c).expect("client")
}

#[tokio::test]
async fn a_refusing_api_fails_a_long_wait_with_the_refusal() {
    let endpoint = refused_endpoint();
    let c = client(&endpoint, Duration::from_secs(1));
    // Generous bound: the wait's own timeout is ten minutes; it must end long before that.
    let res = tokio::time::timeout(
        Duration::from_secs(120),
        c.wait_agent("pve", 100, Duration::from_secs(600), None),
    )
    .await
    .expect("the wait ends once the API has been unreachable for the limit");
    let err = res.expect_err("nothing listens");
    assert!(err.is_unreachable(), "{err:?}");
    assert!(!err.is_retryable(true), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&endpoint), "{text}");
    assert!(text.contains("limit 1s"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection refused"),
        "the cause is named: {text}"
    );
    let Error::Unreachable { last, .. } = &err else {
        unreachable!("checked above");
    };
    assert!(
        matches!(**last, Error::Transport { .. }),
        "the source is the connection error: {last:?}"
    );
}

#[tokio::test]
async fn a_single_refused_call_is_still_a_plain_connection_error() {
    let c = client(&refused_endpoint(), Duration::from_secs(600));
    let err = c.version().await.expect_err("nothing listens");
    assert!(
        matches!(err, Error::Transport { .. }),
        "below the limit the error is the connection error itself: {err:?}"
    );
}
