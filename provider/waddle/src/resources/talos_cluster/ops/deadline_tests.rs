use super::address::{apply_maintenance_vm, VmNic};
use super::*;

fn env(deadline: Duration) -> Env {
    Env {
        pve: None,
        connect: ConnectOptions::default(),
        creds: Credentials {
            ca: String::new(),
            crt: String::new(),
            key: String::new(),
        },
        deadline: Instant::now() + deadline,
        poll: Poll::default(),
        cancel: waddle_proxmox::CancellationToken::new(),
        proxy_url: None,
        default_node: None,
    }
}

#[tokio::test]
async fn a_deadline_error_keeps_the_last_real_cause() {
    // The first attempt fails with a real cause; the second hangs until the deadline.
    let e = env(Duration::from_millis(300));
    let calls = std::sync::atomic::AtomicU32::new(0);
    let err = e
        .retry("cluster health", || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    Attempt::<()>::Again("Kubernetes API https://10.10.0.5:6443/readyz: error sending request: connection refused".into())
                } else {
                    std::future::pending().await
                }
            }
        })
        .await
        .expect_err("times out")
        .to_string();
    assert!(err.starts_with("cluster health: timed out"), "{err}");
    assert!(err.contains("/readyz"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(!err.contains("deadline reached"), "{err}");
}

/// A loopback port nobody listens on (bound, then closed).
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn an_unreachable_proxmox_api_stops_the_retry_with_that_cause() {
    waddle_proxmox::install_crypto_provider();
    // Neither the node's Talos API nor the Proxmox VE API answers; the operation's own
    // deadline is ten minutes, the API's unreachable limit one second.
    let mut cfg = waddle_proxmox::ClientConfig::new(
        format!("https://127.0.0.1:{}", refused_port()),
        waddle_proxmox::Auth::api_token("waddle@pve!ci=5f3c2a1e-0000-4000-8000-00000000abcd")
            .expect("token"),
    );
    cfg.insecure = true;
    cfg.retry.max_attempts = 1;
    cfg.timeouts.unreachable = Duration::from_secs(1);
    let pve = waddle_proxmox::Client::new(cfg).expect("client");
    let vm = VmNic {
        pve: &pve,
        node: "pve",
        vmid: 100,
        mac: None,
    };
    let ip = format!("127.0.0.1:{}", refused_port());
    // A bound on the test, not an assertion on time: without the fix the retry runs to
    // its ten-minute deadline.
    let res = tokio::time::timeout(
        Duration::from_secs(300),
        apply_maintenance_vm(
            &env(Duration::from_secs(600)),
            "cp1",
            &ip,
            &vm,
            "version: v1alpha1",
        ),
    )
    .await
    .expect("the retry stops once the Proxmox VE API has been unreachable for its limit");
    let err = res.expect_err("nothing answers").to_string();
    assert!(err.contains("has been unreachable for"), "{err}");
    assert!(!err.contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_refused_readyz_names_the_refusal() {
    waddle_proxmox::install_crypto_provider();
    // A loopback port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let bundle = SecretsBundle::generate(&SystemClock).expect("bundle");
    let err = readyz(
        &env(Duration::from_secs(30)),
        &format!("https://127.0.0.1:{port}"),
        &bundle,
    )
    .await
    .expect_err("nothing listens")
    .to_string();
    assert!(
        err.to_ascii_lowercase().contains("connection refused"),
        "{err}"
    );
}
