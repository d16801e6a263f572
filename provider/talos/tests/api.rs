//! Talos API client: proxy handshakes (SOCKS5, HTTP CONNECT) against tiny local proxies,
//! TLS modes and error mapping against an in-process MachineService, kubeconfig archive
//! extraction, cancellation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use waddle_talos::api::proto::common::Data;
use waddle_talos::api::proto::cosi::resource::state_server::{State, StateServer};
use waddle_talos::api::proto::cosi::resource::{self as cr};
use waddle_talos::api::proto::machine::machine_service_server::{
    MachineService, MachineServiceServer,
};
use waddle_talos::api::proto::machine::{self as pm};
use waddle_talos::api::proto::talos::resource::definitions::enums::RuntimeMachineStage;
use waddle_talos::api::proto::talos::resource::definitions::runtime as rt;
use waddle_talos::api::{
    extract_file, parse_endpoint, ApplyMode, ConnectOptions, MachineStage, MachineStatus, Proxy,
    ProxyKind, TalosClient, TalosError,
};

/// Echo server: answers every read with the same bytes.
async fn echo_server(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn pipe(mut a: TcpStream, mut b: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

/// A minimal SOCKS5 proxy (no auth or user/pass `u`/`p`), counting tunnels. Only
/// connects to 127.0.0.0/8.
async fn socks5_proxy(ip: &str, need_auth: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = c2.clone();
            tokio::spawn(async move {
                let mut h = [0u8; 2];
                s.read_exact(&mut h).await.unwrap();
                let mut methods = vec![0u8; h[1] as usize];
                s.read_exact(&mut methods).await.unwrap();
                let want = if need_auth { 2 } else { 0 };
                if !methods.contains(&want) {
                    s.write_all(&[5, 0xff]).await.unwrap();
                    return;
                }
                s.write_all(&[5, want]).await.unwrap();
                if need_auth {
                    let mut v = [0u8; 2];
                    s.read_exact(&mut v).await.unwrap();
                    let mut u = vec![0u8; v[1] as usize];
                    s.read_exact(&mut u).await.unwrap();
                    let mut pl = [0u8; 1];
                    s.read_exact(&mut pl).await.unwrap();
                    let mut p = vec![0u8; pl[0] as usize];
                    s.read_exact(&mut p).await.unwrap();
                    let ok = u == b"u" && p == b"p";
                    s.write_all(&[1, if ok { 0 } else { 1 }]).await.unwrap();
                    if !ok {
                        return;
                    }
                }
                let mut r = [0u8; 4];
                s.read_exact(&mut r).await.unwrap();
                assert_eq!(r[..3], [5, 1, 0]);
                assert_eq!(r[3], 1, "client must send an IPv4 address");
                let mut a = [0u8; 6];
                s.read_exact(&mut a).await.unwrap();
                let ip = std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                let port = u16::from_be_bytes([a[4], a[5]]);
                if ip.octets()[0] != 127 {
                    s.write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
                    return;
                }
                match TcpStream::connect((ip, port)).await {
                    Ok(up) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
                            .await
                            .unwrap();
                        pipe(s, up).await;
                    }
                    Err(_) => {
                        s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
                    }
                }
            });
        }
    });
    (addr, count)
}

/// A minimal HTTP CONNECT proxy, counting tunnels.
async fn connect_proxy(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = c2.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap() == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8(head).unwrap();
                let target = text.split_whitespace().nth(1).unwrap().to_string();
                if !text.starts_with("CONNECT ") || !target.starts_with("127.") {
                    s.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                        .await
                        .unwrap();
                    return;
                }
                let up = TcpStream::connect(&target).await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                pipe(s, up).await;
            });
        }
    });
    (addr, count)
}

async fn roundtrip(mut s: TcpStream) -> Vec<u8> {
    s.write_all(b"hello talos").await.unwrap();
    let mut b = [0u8; 11];
    s.read_exact(&mut b).await.unwrap();
    b.to_vec()
}

#[test]
fn proxy_urls_parse() {
    let p = Proxy::parse("socks5://u:p%40ss@127.0.0.1:1080").unwrap();
    assert_eq!(p.kind, ProxyKind::Socks5);
    assert_eq!(p.address, "127.0.0.1:1080");
    assert_eq!(p.auth, Some(("u".into(), "p@ss".into())));
    assert!(
        !format!("{p:?}").contains("p@ss"),
        "Debug must hide the password"
    );
    let h = Proxy::parse("http://127.0.0.1:3128").unwrap();
    assert_eq!(h.kind, ProxyKind::HttpConnect);
    assert_eq!(h.auth, None);
    assert!(Proxy::parse("ftp://127.0.0.1").is_err());
    assert!(Proxy::parse("not a url").is_err());
}

#[tokio::test]
async fn socks5_tunnel_with_and_without_auth() {
    let echo = echo_server("127.0.0.1").await;
    let (paddr, count) = socks5_proxy("127.0.0.1", false).await;
    let p = Proxy::parse(&format!("socks5://{paddr}")).unwrap();
    let s = p.connect(echo).await.unwrap();
    assert_eq!(roundtrip(s).await, b"hello talos");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let (paddr, count) = socks5_proxy("127.0.0.1", true).await;
    let good = Proxy::parse(&format!("socks5://u:p@{paddr}")).unwrap();
    assert_eq!(
        roundtrip(good.connect(echo).await.unwrap()).await,
        b"hello talos"
    );
    let bad = Proxy::parse(&format!("socks5://u:wrong@{paddr}")).unwrap();
    let e = bad.connect(echo).await.unwrap_err();
    assert!(e.to_string().contains("authentication failed"), "{e}");
    let none = Proxy::parse(&format!("socks5://{paddr}")).unwrap();
    let e = none.connect(echo).await.unwrap_err();
    assert!(
        e.to_string().contains("no acceptable authentication"),
        "{e}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn socks5_reports_refusals() {
    let (paddr, _) = socks5_proxy("127.0.0.1", false).await;
    // Nothing listens on that port.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let p = Proxy::parse(&format!("socks5://{paddr}")).unwrap();
    let e = p.connect(closed).await.unwrap_err();
    assert!(e.to_string().contains("connection refused"), "{e}");
}

#[tokio::test]
async fn http_connect_tunnel_and_refusal() {
    let echo = echo_server("127.0.0.1").await;
    let (paddr, count) = connect_proxy("127.0.0.1").await;
    let p = Proxy::parse(&format!("http://{paddr}")).unwrap();
    assert_eq!(
        roundtrip(p.connect(echo).await.unwrap()).await,
        b"hello talos"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // A proxy that is not there.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let p = Proxy::parse(&format!("http://{closed}")).unwrap();
    assert!(p.connect(echo).await.is_err());
}

#[test]
fn endpoints_parse_with_default_port() {
    assert_eq!(
        parse_endpoint("10.10.0.10").unwrap(),
        "10.10.0.10:50000".parse().unwrap()
    );
    assert_eq!(
        parse_endpoint("127.20.0.5:50001").unwrap(),
        "127.20.0.5:50001".parse().unwrap()
    );
    assert!(parse_endpoint("node1.example").is_err());
}

fn tar_gz(name: &str, data: &[u8]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn kubeconfig_archive_extraction() {
    assert_eq!(
        extract_file(&tar_gz("kubeconfig", b"apiVersion: v1\n"), "kubeconfig").unwrap(),
        b"apiVersion: v1\n"
    );
    assert_eq!(
        extract_file(&tar_gz("./kubeconfig", b"x"), "kubeconfig").unwrap(),
        b"x"
    );
    let e = extract_file(&tar_gz("other", b"x"), "kubeconfig").unwrap_err();
    assert!(e.contains("no file"), "{e}");
    assert!(extract_file(b"not gzip", "kubeconfig").is_err());
}

// ---- an in-process MachineService over TLS (maintenance-style) ----

struct Fake {
    delay: Duration,
}

#[tonic::async_trait]
impl MachineService for Fake {
    async fn apply_configuration(
        &self,
        r: tonic::Request<pm::ApplyConfigurationRequest>,
    ) -> Result<tonic::Response<pm::ApplyConfigurationResponse>, tonic::Status> {
        let r = r.into_inner();
        if r.data.is_empty() {
            return Err(tonic::Status::invalid_argument("config is empty"));
        }
        Ok(tonic::Response::new(pm::ApplyConfigurationResponse {
            messages: vec![pm::ApplyConfiguration {
                metadata: None,
                warnings: vec![],
                mode: r.mode,
                mode_details: format!("dry_run={}", r.dry_run),
            }],
        }))
    }

    async fn bootstrap(
        &self,
        _r: tonic::Request<pm::BootstrapRequest>,
    ) -> Result<tonic::Response<pm::BootstrapResponse>, tonic::Status> {
        tokio::time::sleep(self.delay).await;
        Err(tonic::Status::already_exists(
            "etcd data directory is not empty",
        ))
    }

    async fn kubeconfig(
        &self,
        _r: tonic::Request<()>,
    ) -> Result<tonic::Response<tonic::codegen::BoxStream<Data>>, tonic::Status> {
        let a = tar_gz("kubeconfig", b"kind: Config\n");
        let (x, y) = a.split_at(a.len() / 2);
        let items = vec![
            Ok(Data {
                metadata: None,
                bytes: x.to_vec(),
            }),
            Ok(Data {
                metadata: None,
                bytes: y.to_vec(),
            }),
        ];
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn version(
        &self,
        _r: tonic::Request<()>,
    ) -> Result<tonic::Response<pm::VersionResponse>, tonic::Status> {
        Ok(tonic::Response::new(pm::VersionResponse {
            messages: vec![pm::Version {
                metadata: Some(waddle_talos::api::proto::common::Metadata {
                    hostname: "n".into(),
                    error: "node is sad".into(),
                    status: None,
                }),
                version: None,
                platform: None,
                features: None,
            }],
        }))
    }
}

/// `cosi.resource.State`: MachineStatus booting (proto spec), then running (YAML spec only).
#[derive(Default)]
struct FakeState {
    calls: AtomicUsize,
}

#[tonic::async_trait]
impl State for FakeState {
    async fn get(
        &self,
        r: tonic::Request<cr::GetRequest>,
    ) -> Result<tonic::Response<cr::GetResponse>, tonic::Status> {
        use prost::Message as _;
        let r = r.into_inner();
        if (r.namespace.as_str(), r.r#type.as_str(), r.id.as_str())
            != ("runtime", "MachineStatuses.runtime.talos.dev", "machine")
        {
            return Err(tonic::Status::not_found(format!(
                "resource {}/{}/{} not found",
                r.namespace, r.r#type, r.id
            )));
        }
        let spec = if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            cr::Spec {
                proto_spec: rt::MachineStatusSpec {
                    stage: RuntimeMachineStage::MachineStageBooting as i32,
                    status: Some(rt::MachineStatusStatus {
                        ready: false,
                        unmet_conditions: vec![rt::UnmetCondition {
                            name: "nodeReady".into(),
                            reason: "node not ready".into(),
                        }],
                    }),
                }
                .encode_to_vec(),
                yaml_spec: String::new(),
            }
        } else {
            cr::Spec {
                proto_spec: vec![],
                yaml_spec: "stage: running\nstatus:\n    ready: true\n    unmetConditions: []\n"
                    .into(),
            }
        };
        Ok(tonic::Response::new(cr::GetResponse {
            resource: Some(cr::Resource {
                metadata: Some(cr::Metadata {
                    namespace: r.namespace,
                    r#type: r.r#type,
                    id: r.id,
                    version: "3".into(),
                }),
                spec: Some(spec),
            }),
        }))
    }
}

async fn fake_server(delay: Duration) -> SocketAddr {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = params.self_signed(&key).unwrap();
    let chain = vec![cert.der().clone()];
    let pk = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(waddle_talos::api::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, pk)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<_, std::io::Error>>(8);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            if let Ok(t) = acceptor.accept(s).await {
                let _ = tx.send(Ok(t)).await;
            }
        }
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(MachineServiceServer::new(Fake { delay }))
            .add_service(StateServer::new(FakeState::default()))
            .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap();
    });
    addr
}

#[tokio::test]
async fn maintenance_client_calls_map_replies_and_errors() {
    let addr = fake_server(Duration::ZERO).await;
    let (paddr, count) = socks5_proxy("127.0.0.1", false).await;
    let opts = ConnectOptions {
        proxy: Some(Proxy::parse(&format!("socks5://{paddr}")).unwrap()),
        ..ConnectOptions::default()
    };
    let c = TalosClient::connect_maintenance(addr, &opts).await.unwrap();
    assert!(!c.is_authenticated());
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "connection went through the proxy"
    );

    let out = c
        .apply_configuration("version: v1alpha1", ApplyMode::Auto)
        .await
        .unwrap();
    assert_eq!(out.mode, Some(ApplyMode::Auto));
    assert_eq!(out.mode_details, "dry_run=false");

    let e = c
        .apply_configuration("", ApplyMode::Auto)
        .await
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert_eq!(e.rpc_message(), Some("config is empty"));

    let e = c.bootstrap().await.unwrap_err();
    assert!(e.is_already_exists(), "{e}");

    assert_eq!(c.kubeconfig().await.unwrap(), b"kind: Config\n");

    // A reply carrying a node error in its metadata is an error.
    let e = c.version().await.unwrap_err();
    assert!(
        matches!(e, TalosError::Node { ref message, .. } if message == "node is sad"),
        "{e}"
    );

    // Unimplemented RPCs keep their code.
    let e = c.services().await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unimplemented));

    // MachineStatus through cosi.resource.State/Get: proto spec first, then YAML spec.
    let st = c.machine_status().await.unwrap();
    assert_eq!(
        st,
        MachineStatus {
            stage: MachineStage::Booting,
            ready: false,
            unmet_conditions: vec![("nodeReady".into(), "node not ready".into())],
        }
    );
    assert!(!st.is_booted());
    assert_eq!(
        st.to_string(),
        "stage booting, not ready: nodeReady: node not ready"
    );
    let st = c.machine_status().await.unwrap();
    assert_eq!(st.stage, MachineStage::Running);
    assert!(st.ready && st.unmet_conditions.is_empty());
    assert!(st.is_booted());
}

#[test]
fn machine_status_specs_decode() {
    let st =
        MachineStatus::from_spec(b"", "stage: rebooting\nstatus:\n    ready: false\n").unwrap();
    assert_eq!(st.stage, MachineStage::Rebooting);
    assert!(!st.is_booted());
    let st = MachineStatus::from_spec(
        b"",
        "stage: running\nstatus:\n    ready: false\n    unmetConditions:\n        - name: time\n          reason: time is not in sync\n",
    )
    .unwrap();
    assert!(!st.is_booted(), "running but not ready is not booted");
    assert_eq!(
        st.unmet_conditions,
        vec![("time".to_string(), "time is not in sync".to_string())]
    );
    assert!(MachineStatus::from_spec(b"", "").is_err());
    assert!(MachineStatus::from_spec(&[0xff, 0xff], "").is_err());
}

#[tokio::test]
async fn calls_are_cancellable_and_time_out() {
    let addr = fake_server(Duration::from_secs(30)).await;
    let cancel = CancellationToken::new();
    let opts = ConnectOptions {
        cancel: cancel.clone(),
        request_timeout: None,
        ..ConnectOptions::default()
    };
    let c = TalosClient::connect_maintenance(addr, &opts).await.unwrap();
    let task = tokio::spawn({
        let c = c.clone();
        async move { c.bootstrap().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("cancellation ends the call")
        .unwrap();
    assert!(
        matches!(
            r,
            Err(TalosError::Cancelled {
                method: "Bootstrap",
                ..
            })
        ),
        "{r:?}"
    );

    let opts = ConnectOptions {
        request_timeout: Some(Duration::from_millis(100)),
        ..ConnectOptions::default()
    };
    let c = TalosClient::connect_maintenance(addr, &opts).await.unwrap();
    let e = c.bootstrap().await.unwrap_err();
    assert!(matches!(e, TalosError::Timeout { .. }), "{e}");
    assert!(e.is_transient());
}

#[tokio::test]
async fn connect_errors_are_typed() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let e = TalosClient::connect_maintenance(closed, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, TalosError::Connect { .. }), "{e}");
    assert!(e.is_transient());

    // mTLS to a server whose certificate is not from the expected CA fails the handshake.
    let addr = fake_server(Duration::ZERO).await;
    let ca = rcgen::CertificateParams::default()
        .self_signed(&rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let crt = rcgen::CertificateParams::default()
        .self_signed(&key)
        .unwrap();
    let creds = waddle_talos::api::Credentials::new(ca.pem(), crt.pem(), key.serialize_pem());
    assert!(!format!("{creds:?}").contains("PRIVATE"));
    let e = TalosClient::connect(addr, &creds, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, TalosError::Connect { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    let bad = waddle_talos::api::Credentials::new("nope", "nope", "nope");
    let e = TalosClient::connect(addr, &bad, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, TalosError::Credentials(_)), "{e}");
}

/// Wire facts of the COSI resource API (cosi-project/runtime api/v1alpha1) and Talos's
/// MachineStatus spec (api/resource/definitions/runtime, enums): field numbers and values.
#[test]
fn resource_wire_format_matches_talos() {
    use prost::Message as _;
    let req = cr::GetRequest {
        namespace: "n".into(),
        r#type: "t".into(),
        id: "i".into(),
        options: Some(cr::GetOptions {}),
    };
    // namespace=1, type=2, id=3, options=4.
    assert_eq!(
        req.encode_to_vec(),
        [0x0a, 1, b'n', 0x12, 1, b't', 0x1a, 1, b'i', 0x22, 0]
    );
    let spec = cr::Spec {
        proto_spec: vec![7],
        yaml_spec: "y".into(),
    };
    // proto_spec=1, yaml_spec=2.
    assert_eq!(spec.encode_to_vec(), [0x0a, 1, 7, 0x12, 1, b'y']);
    assert_eq!(RuntimeMachineStage::MachineStageBooting as i32, 1);
    assert_eq!(RuntimeMachineStage::MachineStageMaintenance as i32, 3);
    assert_eq!(RuntimeMachineStage::MachineStageRunning as i32, 4);
    assert_eq!(RuntimeMachineStage::MachineStageUpgrading as i32, 8);
    let ms = rt::MachineStatusSpec {
        stage: RuntimeMachineStage::MachineStageRunning as i32,
        status: Some(rt::MachineStatusStatus {
            ready: true,
            unmet_conditions: vec![rt::UnmetCondition {
                name: "a".into(),
                reason: "b".into(),
            }],
        }),
    };
    // stage=1, status=2 {ready=1, unmet_conditions=2 {name=1, reason=2}}.
    assert_eq!(
        ms.encode_to_vec(),
        [0x08, 4, 0x12, 10, 0x08, 1, 0x12, 6, 0x0a, 1, b'a', 0x12, 1, b'b']
    );
}

/// Wire facts of the Talos API (siderolabs/talos api/machine/machine.proto): enum values and
/// field numbers, checked on the encoded bytes.
#[test]
fn wire_format_matches_talos() {
    use prost::Message as _;
    use waddle_talos::api::proto::machine::apply_configuration_request::Mode;
    assert_eq!(
        [
            Mode::Reboot,
            Mode::Auto,
            Mode::NoReboot,
            Mode::Staged,
            Mode::Try
        ]
        .map(|m| m as i32),
        [0, 1, 2, 3, 4]
    );
    let req = pm::ApplyConfigurationRequest {
        data: b"x".to_vec(),
        mode: Mode::Auto as i32,
        dry_run: true,
        try_mode_timeout: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
    };
    // data=1 (len), mode=4 (varint), dry_run=5 (varint), try_mode_timeout=6 (len).
    assert_eq!(
        req.encode_to_vec(),
        [0x0a, 1, b'x', 0x20, 1, 0x28, 1, 0x32, 2, 0x08, 1]
    );
    let m = pm::EtcdMember {
        id: 7,
        hostname: "a".into(),
        peer_urls: vec![],
        client_urls: vec![],
        is_learner: true,
    };
    // id=2, hostname=3, is_learner=6.
    assert_eq!(m.encode_to_vec(), [0x10, 7, 0x1a, 1, b'a', 0x30, 1]);
    let r = pm::ResetRequest {
        graceful: true,
        reboot: true,
        system_partitions_to_wipe: vec![pm::ResetPartitionSpec {
            label: "S".into(),
            wipe: true,
        }],
        user_disks_to_wipe: vec![],
        mode: pm::reset_request::WipeMode::SystemDisk as i32,
    };
    assert_eq!(
        r.encode_to_vec(),
        [0x08, 1, 0x10, 1, 0x1a, 5, 0x0a, 1, b'S', 0x10, 1, 0x28, 1]
    );
    let d = waddle_talos::api::proto::common::Data {
        metadata: Some(waddle_talos::api::proto::common::Metadata {
            hostname: "h".into(),
            error: String::new(),
            status: None,
        }),
        bytes: b"z".to_vec(),
    };
    assert_eq!(d.encode_to_vec(), [0x0a, 3, 0x0a, 1, b'h', 0x12, 1, b'z']);
    assert_eq!(
        pm::EtcdRemoveMemberByIdRequest { member_id: 9 }.encode_to_vec(),
        [0x08, 9]
    );
}
