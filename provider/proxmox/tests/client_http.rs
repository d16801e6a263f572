//! Client behaviour against small purpose-built HTTPS servers on 127.10.200.x.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde_json::json;
use support::{start, Action, Req};
use waddle_proxmox::{
    ApiErrorKind, Auth, Client, ClientConfig, DiskSpec, Error, MemoryRecorder, NetSpec, Params,
    RetryPolicy, TransportKind, Upid, VmSpec, WaitOptions,
};

const TOKEN: &str = "waddle@pve!ci=5f3c2a1e-0000-4000-8000-00000000abcd";

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
    }
}

fn token_client(endpoint: &str, ca: &str) -> ClientConfig {
    let mut c = ClientConfig::new(endpoint, Auth::api_token(TOKEN).unwrap());
    c.ca_cert_pem = Some(ca.to_string());
    c.retry = fast_retry(4);
    c
}

fn version_handler() -> support::Handler {
    Arc::new(|req: &Req| {
        if req.path() == "/api2/json/version" {
            Action::ok(json!({"version": "9.1.1", "release": "9.1"}))
        } else {
            Action::error(501, "Method not implemented", json!({"data": null}))
        }
    })
}

#[tokio::test]
async fn token_header_and_pinned_ca() {
    let server = start("127.10.200.1", version_handler()).await;
    let client = Client::new(token_client(&server.endpoint(), &server.ca_pem)).unwrap();
    assert_eq!(client.version().await.unwrap(), "9.1.1");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("Authorization"),
        Some(format!("PVEAPIToken={TOKEN}").as_str())
    );
    assert!(reqs[0].header("CSRFPreventionToken").is_none());
    assert!(reqs[0].header("Cookie").is_none());
}

#[tokio::test]
async fn wrong_ca_and_default_roots_are_refused_insecure_only_by_opt_in() {
    let server = start("127.10.200.2", version_handler()).await;
    let other = support::pki("127.10.200.2");

    // Pinned to a different CA: refused, classified as TLS, not retried.
    let client = Client::new(token_client(&server.endpoint(), &other.ca_pem)).unwrap();
    let err = client
        .get::<serde_json::Value>("/version", &Params::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Tls,
                ..
            }
        ),
        "{err:?}"
    );

    // No CA given: the platform roots don't know the test CA.
    let mut cfg = token_client(&server.endpoint(), "");
    cfg.ca_cert_pem = None;
    let client = Client::new(cfg.clone()).unwrap();
    assert!(client
        .get::<serde_json::Value>("/version", &Params::new())
        .await
        .is_err());
    assert_eq!(
        server.requests().len(),
        0,
        "no request may pass an unverified TLS session"
    );

    // Explicit opt-in.
    cfg.insecure = true;
    let client = Client::new(cfg.clone()).unwrap();
    let v: serde_json::Value = client.get("/version", &Params::new()).await.unwrap();
    assert_eq!(v["release"], "9.1");

    // insecure + CA is ambiguous and refused; bad PEM refused at construction.
    cfg.ca_cert_pem = Some(server.ca_pem.clone());
    assert!(matches!(Client::new(cfg.clone()), Err(Error::Config(_))));
    cfg.insecure = false;
    cfg.ca_cert_pem = Some("not a pem".into());
    assert!(matches!(Client::new(cfg), Err(Error::Config(_))));
}

#[tokio::test]
async fn ticket_login_csrf_and_relogin_on_expiry() {
    struct State {
        logins: usize,
        valid: Option<(String, String)>,
    }
    let state = Arc::new(Mutex::new(State {
        logins: 0,
        valid: None,
    }));
    let st = state.clone();
    let handler: support::Handler = Arc::new(move |req: &Req| {
        let mut s = st.lock().unwrap();
        if req.path() == "/api2/json/access/ticket" && req.method == "POST" {
            if req.param("username").as_deref() == Some("root@pam")
                && req.param("password").as_deref() == Some("s3cret pass")
            {
                s.logins += 1;
                let t = format!("PVE:root@pam:6600000{}::c2lnbmF0dXJl", s.logins);
                let c = format!("6600000{}:csrf", s.logins);
                s.valid = Some((t.clone(), c.clone()));
                return Action::ok(
                    json!({"ticket": t, "CSRFPreventionToken": c, "username": "root@pam"}),
                );
            }
            return Action::error(401, "authentication failure", json!({"data": null}));
        }
        let Some((ticket, csrf)) = s.valid.clone() else {
            return Action::error(401, "No ticket", json!({"data": null}));
        };
        if req.header("Cookie") != Some(format!("PVEAuthCookie={ticket}").as_str()) {
            return Action::error(401, "No ticket", json!({"data": null}));
        }
        if req.method != "GET" && req.header("CSRFPreventionToken") != Some(csrf.as_str()) {
            return Action::error(
                401,
                "Permission denied - invalid csrf token",
                json!({"data": null}),
            );
        }
        if req.path() == "/api2/json/expire" {
            // Server-side expiry: the current ticket stops being valid.
            s.valid = Some(("expired".into(), "expired".into()));
            return Action::ok(json!(null));
        }
        Action::ok(json!({"method": req.method}))
    });
    let server = start("127.10.200.3", handler).await;
    let recorder = Arc::new(MemoryRecorder::new());
    let mut cfg = ClientConfig::new(server.endpoint(), Auth::password("root@pam", "s3cret pass"));
    cfg.ca_cert_pem = Some(server.ca_pem.clone());
    cfg.recorder = Some(recorder.clone());
    let client = Client::new(cfg).unwrap();

    let v: serde_json::Value = client.get("/nodes", &Params::new()).await.unwrap();
    assert_eq!(v["method"], "GET");
    let v = client
        .post("/nodes/pve/x", &Params::new().str("a", "b"))
        .await
        .unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(state.lock().unwrap().logins, 1, "ticket reused");
    client.put("/expire", &Params::new()).await.unwrap();
    let v = client.put("/nodes/pve/y", &Params::new()).await.unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(state.lock().unwrap().logins, 2, "re-login after 401");

    let reqs = server.requests();
    let post = reqs
        .iter()
        .find(|r| r.path() == "/api2/json/nodes/pve/x")
        .unwrap();
    assert_eq!(post.header("CSRFPreventionToken"), Some("66000001:csrf"));
    let get = reqs
        .iter()
        .find(|r| r.path() == "/api2/json/nodes")
        .unwrap();
    assert!(
        get.header("CSRFPreventionToken").is_none(),
        "no CSRF header on GET"
    );

    // The password never reaches the recorder.
    let logins: Vec<_> = recorder
        .entries()
        .into_iter()
        .filter(|e| e.path == "/access/ticket")
        .collect();
    assert_eq!(logins.len(), 2);
    for l in logins {
        assert_eq!(l.params["password"], "***");
        assert_eq!(l.params["username"], "root@pam");
    }

    // Wrong password: Auth error, no retry storm.
    let mut cfg = ClientConfig::new(server.endpoint(), Auth::password("root@pam", "wrong"));
    cfg.ca_cert_pem = Some(server.ca_pem.clone());
    let before = server.requests().len();
    let err = Client::new(cfg)
        .unwrap()
        .get::<serde_json::Value>("/nodes", &Params::new())
        .await
        .unwrap_err();
    assert_eq!(err.api_kind(), Some(ApiErrorKind::Auth), "{err}");
    assert!(server.requests().len() - before <= 2);
}

#[tokio::test]
async fn reason_phrase_and_parameter_errors_are_surfaced() {
    let handler: support::Handler = Arc::new(|req: &Req| match req.path() {
        "/api2/json/nodes/pve/qemu" => Action::error(
            400,
            "Parameter verification failed.",
            json!({"data": null, "errors": {
                "memory": "value must have a minimum value of 16\n",
                "net0": "invalid format - format error\nnet0.bridge: value does not match the regex pattern\n"
            }}),
        ),
        "/api2/json/nodes/pve/qemu/999/config" => Action::error(
            500,
            "Configuration file 'nodes/pve/qemu-server/999.conf' does not exist",
            json!({"data": null}),
        ),
        "/api2/json/nodes/pve/qemu/100/status/start" => Action::error(
            403,
            "Permission check failed (/vms/100, VM.PowerMgmt)",
            json!({"data": null}),
        ),
        _ => Action::error(501, "Method not implemented", json!({"data": null})),
    });
    let server = start("127.10.200.4", handler).await;
    let client = Client::new(token_client(&server.endpoint(), &server.ca_pem)).unwrap();

    let err = client
        .post("/nodes/pve/qemu", &Params::new().int("vmid", 100))
        .await
        .unwrap_err();
    let Error::Api(api) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api.status, 400);
    assert_eq!(api.kind, ApiErrorKind::Validation);
    assert_eq!(api.message, "Parameter verification failed.");
    assert_eq!(
        api.errors.get("memory").map(String::as_str),
        Some("value must have a minimum value of 16")
    );
    assert!(api.errors["net0"].contains("net0.bridge"));
    let text = err.to_string();
    assert!(text.contains("Parameter verification failed.") && text.contains("memory: value must"));

    let err = client.vm_config("pve", 999).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("999.conf' does not exist"));

    let err = client
        .post("/nodes/pve/qemu/100/status/start", &Params::new())
        .await
        .unwrap_err();
    assert_eq!(err.api_kind(), Some(ApiErrorKind::Permission));
    assert!(err.to_string().contains("VM.PowerMgmt"));
}

#[tokio::test]
async fn lock_timeouts_are_retried_until_they_converge() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler: support::Handler = Arc::new(move |req: &Req| {
        if req.path() == "/api2/json/nodes/pve/qemu/100/config" {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                return Action::error(
                    500,
                    "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
                    json!({"data": null}),
                );
            }
            return Action::ok(json!(null));
        }
        if req.path() == "/api2/json/nodes/pve/qemu" {
            return Action::error(
                500,
                "got no worker upid - start worker failed",
                json!({"data": null}),
            );
        }
        Action::error(501, "Method not implemented", json!({"data": null}))
    });
    let server = start("127.10.200.5", handler).await;
    let client = Client::new(token_client(&server.endpoint(), &server.ca_pem)).unwrap();
    client
        .update_vm_config("pve", 100, &Params::new().int("cores", 4))
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two lock timeouts then success"
    );
    let puts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert!(puts
        .iter()
        .all(|r| r.param("cores").as_deref() == Some("4")));

    // Bounded: with 2 attempts the lock error surfaces.
    calls.store(0, Ordering::SeqCst);
    let mut cfg = token_client(&server.endpoint(), &server.ca_pem);
    cfg.retry = fast_retry(2);
    let err = Client::new(cfg)
        .unwrap()
        .update_vm_config("pve", 100, &Params::new().int("cores", 4))
        .await
        .unwrap_err();
    assert!(err.is_lock_timeout(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // "got no worker upid" on a plain non-idempotent POST is not blindly retried.
    let before = server.requests().len();
    let err = client
        .post("/nodes/pve/qemu", &Params::new())
        .await
        .unwrap_err();
    assert_eq!(err.api_kind(), Some(ApiErrorKind::NoWorkerUpid));
    assert_eq!(server.requests().len() - before, 1);
}

#[tokio::test]
async fn connections_closed_by_the_server_are_handled() {
    // Every response is followed by the server closing the connection (as PVE does after an
    // error or 5 s idle), without a Connection: close header.
    let handler: support::Handler = Arc::new(|_req: &Req| Action::Respond {
        status: 200,
        reason: "OK".into(),
        body: json!({"data": "pong"}).to_string(),
        close: true,
    });
    let server = start("127.10.200.6", handler).await;
    let client = Client::new(token_client(&server.endpoint(), &server.ca_pem)).unwrap();
    for _ in 0..5 {
        let v: String = client.get("/ping", &Params::new()).await.unwrap();
        assert_eq!(v, "pong");
        // Let the client observe the close sometimes, and sometimes not.
        tokio::task::yield_now().await;
    }
    assert_eq!(
        server.requests().len(),
        5,
        "each request answered exactly once"
    );
    assert_eq!(server.connection_count(), 5);
}

#[tokio::test]
async fn dropped_before_response_retried_only_when_idempotent() {
    // The first request on each new connection is dropped without an answer when it is the
    // first or second request overall; later ones are answered.
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let handler: support::Handler = Arc::new(move |_req: &Req| {
        if s.fetch_add(1, Ordering::SeqCst) == 0 {
            Action::Drop
        } else {
            Action::ok(json!("fine"))
        }
    });
    let server = start("127.10.200.7", handler).await;
    let client = Client::new(token_client(&server.endpoint(), &server.ca_pem)).unwrap();
    let v: String = client.get("/cluster/status", &Params::new()).await.unwrap();
    assert_eq!(v, "fine");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "GET retried once after the drop"
    );

    // A POST whose connection drops after sending is NOT retried (outcome unknown).
    seen.store(0, Ordering::SeqCst);
    let err = client
        .post("/nodes/pve/qemu/100/status/start", &Params::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::MaybeSent,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

fn upid(n: u32, kind: &str, id: &str) -> String {
    format!("UPID:pve:{n:08X}:0000ABCD:6600{n:04X}:{kind}:{id}:waddle@pve!ci:")
}

#[tokio::test]
async fn create_vm_retries_taken_vmid_and_waits_for_task() {
    let nextid = Arc::new(AtomicUsize::new(100));
    let polls = Arc::new(AtomicUsize::new(0));
    let (n2, p2) = (nextid.clone(), polls.clone());
    let handler: support::Handler = Arc::new(move |req: &Req| {
        let path = req.path().to_string();
        match (req.method.as_str(), path.as_str()) {
            ("GET", "/api2/json/cluster/nextid") => {
                Action::ok(json!(n2.fetch_add(1, Ordering::SeqCst).to_string()))
            }
            ("POST", "/api2/json/nodes/pve/qemu") => {
                let vmid = req.param("vmid").unwrap();
                if vmid == "100" {
                    Action::error(
                        500,
                        "unable to create VM 100 - VM 100 already exists on node 'pve'",
                        json!({"data": null}),
                    )
                } else {
                    Action::ok(json!(upid(1, "qmcreate", &vmid)))
                }
            }
            ("GET", p) if p.ends_with("/status") && p.contains("/tasks/") => {
                if p2.fetch_add(1, Ordering::SeqCst) < 2 {
                    Action::ok(json!({"status": "running"}))
                } else {
                    Action::ok(json!({"status": "stopped", "exitstatus": "OK"}))
                }
            }
            _ => Action::error(501, "Method not implemented", json!({"data": null})),
        }
    });
    let server = start("127.10.200.8", handler).await;
    let recorder = Arc::new(MemoryRecorder::new());
    let mut cfg = token_client(&server.endpoint(), &server.ca_pem);
    cfg.recorder = Some(recorder.clone());
    let client = Client::new(cfg).unwrap();

    let mut spec = VmSpec::new("sni-proxy", 1, 512);
    spec.disks.push(DiskSpec::import(
        0,
        "local-lvm",
        "local:import/debian-12.qcow2",
    ));
    let mut nic = NetSpec::virtio(0, "vmbr0");
    nic.mac = Some("BC:24:11:AA:00:01".into());
    spec.nets.push(nic);
    let vmid = client.create_vm("pve", &spec).await.unwrap();
    assert_eq!(vmid, 101);
    assert_eq!(polls.load(Ordering::SeqCst), 3);

    let entries = recorder.entries();
    let create = entries
        .iter()
        .filter(|e| e.method == "POST" && e.path == "/nodes/pve/qemu")
        .collect::<Vec<_>>();
    assert_eq!(create.len(), 2);
    assert_eq!(create[0].status, Some(500));
    assert_eq!(create[1].params["vmid"], 101);
    assert_eq!(
        create[1].params["scsi0"],
        "local-lvm:0,import-from=local:import/debian-12.qcow2,discard=on"
    );
    assert_eq!(
        create[1].params["net0"],
        "virtio=BC:24:11:AA:00:01,bridge=vmbr0"
    );
    assert_eq!(
        create[1].response.as_ref().unwrap()["data"],
        upid(1, "qmcreate", "101")
    );
    let task_path = entries.iter().find(|e| e.path.contains("/tasks/")).unwrap();
    assert_eq!(
        task_path.path,
        format!("/nodes/pve/tasks/{}/status", upid(1, "qmcreate", "101"))
    );
    // Every exchange was recorded: 2 nextid + 2 creates + 3 polls.
    assert_eq!(entries.len(), 7);
}

#[tokio::test]
async fn failed_task_reports_exitstatus_and_log_tail_and_wait_is_cancellable() {
    let handler: support::Handler = Arc::new(|req: &Req| {
        let p = req.path();
        if p.contains(":qmstart:") && p.ends_with("/status") {
            return Action::ok(
                json!({"status": "stopped", "exitstatus": "start failed: QEMU exited with code 1"}),
            );
        }
        if p.contains(":qmstart:") && p.ends_with("/log") {
            let lines: Vec<_> = (1..=30)
                .map(|n| json!({"n": n, "t": format!("log line {n}")}))
                .collect();
            return Action::ok(json!(lines));
        }
        if p.contains(":download:") && p.ends_with("/status") {
            return Action::ok(json!({"status": "stopped", "exitstatus": "WARNINGS: 2"}));
        }
        if p.contains(":qmshutdown:") {
            return Action::ok(json!({"status": "running"}));
        }
        Action::error(501, "Method not implemented", json!({"data": null}))
    });
    let server = start("127.10.200.9", handler).await;
    let client = Client::new(token_client(&server.endpoint(), &server.ca_pem)).unwrap();

    let u: Upid = upid(2, "qmstart", "100").parse().unwrap();
    let err = client
        .wait_task(&u, &WaitOptions::default())
        .await
        .unwrap_err();
    let Error::TaskFailed {
        exitstatus,
        log_tail,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(exitstatus, "start failed: QEMU exited with code 1");
    assert_eq!(log_tail.len(), 20);
    assert_eq!(log_tail.last().map(String::as_str), Some("log line 30"));
    assert_eq!(log_tail.first().map(String::as_str), Some("log line 11"));
    assert!(err.to_string().contains("log line 30"));

    let u: Upid = upid(3, "download", "local").parse().unwrap();
    let ok = client.wait_task(&u, &WaitOptions::default()).await.unwrap();
    assert_eq!(ok.warnings, Some(2));

    let u: Upid = upid(4, "qmshutdown", "100").parse().unwrap();
    let cancel = waddle_proxmox::CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c2.cancel();
    });
    let err = client
        .wait_task(&u, &WaitOptions::with_cancel(cancel))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");

    let opts = WaitOptions {
        timeout: Some(Duration::from_millis(150)),
        ..Default::default()
    };
    let err = client.wait_task(&u, &opts).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn agent_exec_sends_command_array_and_collects_output() {
    let polls = Arc::new(AtomicUsize::new(0));
    let p2 = polls.clone();
    let handler: support::Handler = Arc::new(move |req: &Req| match req.path() {
        "/api2/json/nodes/pve/qemu/105/agent/exec" => Action::ok(json!({"pid": 4242})),
        "/api2/json/nodes/pve/qemu/105/agent/exec-status" => {
            assert_eq!(req.param("pid").as_deref(), Some("4242"));
            if p2.fetch_add(1, Ordering::SeqCst) == 0 {
                Action::ok(json!({"exited": 0}))
            } else {
                Action::ok(
                    json!({"exited": 1, "exitcode": 3, "out-data": "checked\n", "err-data": "warn\n"}),
                )
            }
        }
        "/api2/json/nodes/pve/qemu/105/agent/file-write" => Action::ok(json!(null)),
        _ => Action::error(501, "Method not implemented", json!({"data": null})),
    });
    let server = start("127.10.200.10", handler).await;
    let client = Client::new(token_client(&server.endpoint(), &server.ca_pem)).unwrap();
    let cmd: Vec<String> = ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = client
        .agent_exec(
            "pve",
            105,
            &cmd,
            Some("stdin text"),
            Duration::from_secs(10),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.exitcode, Some(3));
    assert_eq!(r.out_data, "checked\n");
    assert_eq!(r.err_data, "warn\n");
    assert!(!r.success());
    let exec = server
        .requests()
        .into_iter()
        .find(|r| r.path().ends_with("/agent/exec"))
        .unwrap();
    let command: Vec<String> = exec
        .form()
        .into_iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(command, cmd, "command sent as a repeated (array) parameter");
    assert_eq!(exec.param("input-data").as_deref(), Some("stdin text"));

    client
        .agent_file_write(
            "pve",
            105,
            "/etc/haproxy/maps/exact.map",
            "a.example.org be1\n",
            true,
        )
        .await
        .unwrap();
    let fw = server
        .requests()
        .into_iter()
        .find(|r| r.path().ends_with("/agent/file-write"))
        .unwrap();
    assert_eq!(fw.param("content").as_deref(), Some("a.example.org be1\n"));
    assert_eq!(
        fw.param("encode"),
        None,
        "PVE's default encode=1 is left implicit"
    );
    assert!(client
        .agent_file_write("pve", 105, "relative/path", "x", true)
        .await
        .is_err());
}

#[tokio::test]
async fn per_node_permits_bound_concurrency() {
    let mut cfg = ClientConfig::new(
        "https://127.10.200.11:8006",
        Auth::api_token(TOKEN).unwrap(),
    );
    cfg.per_node_concurrency = 2;
    let client = Client::new(cfg).unwrap();
    let a = client.node_permit("pve1").await;
    let _b = client.node_permit("pve1").await;
    assert!(
        client.node_permit("pve1").now_or_never().is_none(),
        "third permit must wait"
    );
    assert!(
        client.node_permit("pve2").now_or_never().is_some(),
        "other nodes unaffected"
    );
    drop(a);
    assert!(client.node_permit("pve1").now_or_never().is_some());
}

/// A minimal forwarding proxy speaking HTTP CONNECT or SOCKS5 (no auth), counting tunnels.
async fn start_proxy(ip: &str, socks: bool) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let t2 = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let t = t2.clone();
            tokio::spawn(async move {
                let target = if socks {
                    let mut hello = [0u8; 2];
                    inbound.read_exact(&mut hello).await.ok()?;
                    let mut methods = vec![0u8; hello[1] as usize];
                    inbound.read_exact(&mut methods).await.ok()?;
                    inbound.write_all(&[5, 0]).await.ok()?;
                    let mut head = [0u8; 4];
                    inbound.read_exact(&mut head).await.ok()?;
                    let host = match head[3] {
                        1 => {
                            let mut a = [0u8; 4];
                            inbound.read_exact(&mut a).await.ok()?;
                            std::net::Ipv4Addr::from(a).to_string()
                        }
                        3 => {
                            let mut l = [0u8; 1];
                            inbound.read_exact(&mut l).await.ok()?;
                            let mut n = vec![0u8; l[0] as usize];
                            inbound.read_exact(&mut n).await.ok()?;
                            String::from_utf8(n).ok()?
                        }
                        _ => return None,
                    };
                    let mut port = [0u8; 2];
                    inbound.read_exact(&mut port).await.ok()?;
                    inbound
                        .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
                        .await
                        .ok()?;
                    format!("{host}:{}", u16::from_be_bytes(port))
                } else {
                    let mut buf = Vec::new();
                    let mut b = [0u8; 1];
                    while !buf.ends_with(b"\r\n\r\n") {
                        inbound.read_exact(&mut b).await.ok()?;
                        buf.push(b[0]);
                    }
                    let head = String::from_utf8(buf).ok()?;
                    let target = head
                        .strip_prefix("CONNECT ")?
                        .split(' ')
                        .next()?
                        .to_string();
                    inbound
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .ok()?;
                    target
                };
                assert!(
                    target.starts_with("127.10.200."),
                    "proxy asked for {target}"
                );
                let mut outbound = tokio::net::TcpStream::connect(&target).await.ok()?;
                t.fetch_add(1, Ordering::SeqCst);
                tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                    .await
                    .ok()?;
                Some(())
            });
        }
    });
    let scheme = if socks { "socks5" } else { "http" };
    (format!("{scheme}://{addr}"), tunnels)
}

#[tokio::test]
async fn requests_go_through_http_and_socks5_proxies() {
    let server = start("127.10.200.12", version_handler()).await;
    for (ip, socks) in [("127.10.200.13", false), ("127.10.200.14", true)] {
        let (proxy_url, tunnels) = start_proxy(ip, socks).await;
        let mut cfg = token_client(&server.endpoint(), &server.ca_pem);
        cfg.proxy_url = Some(proxy_url.clone());
        let client = Client::new(cfg).unwrap();
        let v: serde_json::Value = client.get("/version", &Params::new()).await.unwrap();
        assert_eq!(v["version"], "9.1.1", "{proxy_url}");
        assert_eq!(tunnels.load(Ordering::SeqCst), 1, "{proxy_url} used");
    }
    assert_eq!(server.requests().len(), 2);
    let mut cfg = token_client(&server.endpoint(), &server.ca_pem);
    cfg.proxy_url = Some("ftp://127.10.200.13:1".into());
    assert!(matches!(Client::new(cfg), Err(Error::Config(_))));
}

#[tokio::test]
async fn create_vm_with_unknown_outcome_checks_state_instead_of_reposting() {
    // The create POST is processed but its connection drops before the answer; the VM then
    // shows up (locked while the create task runs). The client must not POST again.
    let posts = Arc::new(AtomicUsize::new(0));
    let config_reads = Arc::new(AtomicUsize::new(0));
    let (p2, c2) = (posts.clone(), config_reads.clone());
    let handler: support::Handler =
        Arc::new(move |req: &Req| match (req.method.as_str(), req.path()) {
            ("POST", "/api2/json/nodes/pve2/qemu") => {
                p2.fetch_add(1, Ordering::SeqCst);
                Action::Drop
            }
            ("GET", "/api2/json/nodes/pve2/qemu/321/config") => {
                if c2.fetch_add(1, Ordering::SeqCst) < 2 {
                    Action::ok(json!({"name": "teleport", "lock": "create"}))
                } else {
                    Action::ok(json!({"name": "teleport", "digest": "x"}))
                }
            }
            ("GET", "/api2/json/nodes/pve2/qemu/322/config") => Action::error(
                500,
                "Configuration file 'nodes/pve2/qemu-server/322.conf' does not exist",
                json!({"data": null}),
            ),
            _ => Action::error(501, "Method not implemented", json!({"data": null})),
        });
    let server = start("127.10.200.15", handler).await;
    let client = Client::new(token_client(&server.endpoint(), &server.ca_pem)).unwrap();
    let mut spec = VmSpec::new("teleport", 2, 2048);
    spec.vmid = Some(321);
    let vmid = client.create_vm("pve2", &spec).await.unwrap();
    assert_eq!(vmid, 321);
    assert_eq!(posts.load(Ordering::SeqCst), 1, "create was not re-posted");
    assert_eq!(
        config_reads.load(Ordering::SeqCst),
        3,
        "waited for the create lock to clear"
    );

    // Same failure but the VM never appears: the create is retried, bounded.
    posts.store(0, Ordering::SeqCst);
    let mut spec = VmSpec::new("other", 1, 512);
    spec.vmid = Some(322);
    let err = client.create_vm("pve2", &spec).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(
        posts.load(Ordering::SeqCst),
        4,
        "max_attempts bounded the retries"
    );
}

#[tokio::test]
async fn parallel_creates_respect_the_per_node_limit() {
    // Each create task runs for three status polls. Track how many tasks are in flight on the
    // node at once: it must never exceed per_node_concurrency.
    #[derive(Default)]
    struct S {
        next_upid: u32,
        running: std::collections::HashMap<String, u32>,
        max_in_flight: usize,
    }
    let state = Arc::new(Mutex::new(S::default()));
    let st = state.clone();
    let handler: support::Handler = Arc::new(move |req: &Req| {
        let mut s = st.lock().unwrap();
        let p = req.path().to_string();
        if req.method == "POST" && p == "/api2/json/nodes/pve/qemu" {
            s.next_upid += 1;
            let u = upid(s.next_upid, "qmcreate", &req.param("vmid").unwrap());
            s.running.insert(u.clone(), 0);
            s.max_in_flight = s.max_in_flight.max(s.running.len());
            return Action::ok(json!(u));
        }
        if p.contains("/tasks/") && p.ends_with("/status") {
            let u = p
                .trim_start_matches("/api2/json/nodes/pve/tasks/")
                .trim_end_matches("/status")
                .to_string();
            let polls = s.running.get_mut(&u).map(|n| {
                *n += 1;
                *n
            });
            return match polls {
                Some(n) if n < 3 => Action::ok(json!({"status": "running"})),
                Some(_) => {
                    s.running.remove(&u);
                    Action::ok(json!({"status": "stopped", "exitstatus": "OK"}))
                }
                None => Action::error(500, "no such task", json!({"data": null})),
            };
        }
        Action::error(501, "Method not implemented", json!({"data": null}))
    });
    let server = start("127.10.200.16", handler).await;
    let mut cfg = token_client(&server.endpoint(), &server.ca_pem);
    cfg.per_node_concurrency = 2;
    let client = Client::new(cfg).unwrap();
    let mut joins = Vec::new();
    for i in 0..6u32 {
        let c = client.clone();
        joins.push(tokio::spawn(async move {
            let mut spec = VmSpec::new(&format!("vm-{i}"), 1, 512);
            spec.vmid = Some(200 + i);
            c.create_vm_with(
                "pve",
                &spec,
                &WaitOptions {
                    initial_poll: Duration::from_millis(5),
                    max_poll: Duration::from_millis(10),
                    ..Default::default()
                },
            )
            .await
        }));
    }
    let mut ids = Vec::new();
    for j in joins {
        ids.push(j.await.unwrap().unwrap());
    }
    ids.sort();
    assert_eq!(ids, (200..206).collect::<Vec<_>>());
    let s = state.lock().unwrap();
    assert_eq!(s.next_upid, 6);
    assert!(s.running.is_empty());
    assert_eq!(
        s.max_in_flight, 2,
        "never more than 2 create tasks at once on the node"
    );
}
