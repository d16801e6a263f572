//! Data-path test: the real HAProxy with a rendered configuration on 127.30.1.1, TLS backends
//! (rustls, each with its own certificate from a test CA) on other 127.30.1.x addresses, and
//! real rustls clients.
//!
//! Shows: exact and wildcard names reach their backend (certificate and answer checked),
//! exact beats wildcard and the longest wildcard wins; `apps.example.org`,
//! `evilapps.example.org`, `apps.example.org.attacker.test`, unknown names, a ClientHello
//! without SNI and a plain-HTTP client are dropped (checked with a client that would accept
//! any certificate, so a wrong forward could not hide behind a verification failure); with
//! PROXY v2 the backend receives the client's address; port 80 is forwarded as plain TCP; the
//! log line carries the SNI. Every wait is bounded; HAProxy is killed at the end.

mod common;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::Command;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use waddle_haproxy::{render, FilePaths, LogTarget, ProcessSpec, ProxySpec, RouteSpec};

const T: Duration = Duration::from_secs(10);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 30, 1, last)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "waddle data-path test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }

    fn leaf(&self, sans: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// What a PROXY v2 header said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProxyInfo {
    src: SocketAddr,
    dst: SocketAddr,
}

/// Reads and parses a PROXY protocol v2 header (PROXY command, TCP over IPv4).
async fn read_proxy_v2(s: &mut TcpStream) -> Result<ProxyInfo, String> {
    const SIG: [u8; 12] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    let mut hdr = [0u8; 16];
    s.read_exact(&mut hdr).await.map_err(|e| e.to_string())?;
    if hdr[..12] != SIG {
        return Err(format!("bad PROXY v2 signature {:?}", &hdr[..12]));
    }
    if hdr[12] != 0x21 {
        return Err(format!("not a v2 PROXY command: {:#x}", hdr[12]));
    }
    if hdr[13] != 0x11 {
        return Err(format!("not TCP over IPv4: {:#x}", hdr[13]));
    }
    let len = u16::from_be_bytes([hdr[14], hdr[15]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    if len < 12 {
        return Err(format!("short IPv4 address block ({len})"));
    }
    let src_ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
    let dst_ip = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
    let src_port = u16::from_be_bytes([body[8], body[9]]);
    let dst_port = u16::from_be_bytes([body[10], body[11]]);
    Ok(ProxyInfo {
        src: SocketAddr::new(IpAddr::V4(src_ip), src_port),
        dst: SocketAddr::new(IpAddr::V4(dst_ip), dst_port),
    })
}

/// A TLS test backend: answers `backend=<name>` to every completed handshake.
struct TlsBackend {
    name: &'static str,
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    /// Completed TLS sessions (with the PROXY info if one was expected).
    sessions: Arc<Mutex<Vec<Option<ProxyInfo>>>>,
}

async fn tls_backend(
    name: &'static str,
    at: Ipv4Addr,
    sans: &[&str],
    ca: &Ca,
    expect_proxy_v2: bool,
) -> TlsBackend {
    tls_backend_mode(name, at, sans, ca, expect_proxy_v2, false).await
}

/// `echo`: after the greeting, echo everything back until the client closes (long-lived
/// sessions for the reload test) instead of closing.
async fn tls_backend_mode(
    name: &'static str,
    at: Ipv4Addr,
    sans: &[&str],
    ca: &Ca,
    expect_proxy_v2: bool,
    echo: bool,
) -> TlsBackend {
    let (cert, key) = ca.leaf(sans);
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind((at, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sessions: Arc<Mutex<Vec<Option<ProxyInfo>>>> = Arc::default();
    let rec = sessions.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let rec = rec.clone();
            tokio::spawn(async move {
                let _ = timeout(Duration::from_secs(30), async move {
                    // Health checks connect and close: every failure here is just ignored.
                    let info = if expect_proxy_v2 {
                        match read_proxy_v2(&mut tcp).await {
                            Ok(i) => Some(i),
                            Err(_) => return,
                        }
                    } else {
                        None
                    };
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    rec.lock().unwrap().push(info.clone());
                    let src = info.map(|i| i.src.to_string()).unwrap_or_default();
                    let _ = tls
                        .write_all(format!("backend={name} proxy_src={src}\n").as_bytes())
                        .await;
                    if echo {
                        let mut buf = [0u8; 256];
                        while let Ok(n) = tls.read(&mut buf).await {
                            if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                    let _ = tls.shutdown().await;
                })
                .await;
            });
        }
    });
    TlsBackend {
        name,
        addr,
        cert,
        sessions,
    }
}

/// Plain TCP backend for port 80: reads the request line, answers `http-backend`.
async fn plain_backend(at: Ipv4Addr) -> SocketAddr {
    let listener = TcpListener::bind((at, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = timeout(T, async move {
                    let mut r = BufReader::new(tcp);
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut tcp = r.into_inner();
                    let _ = tcp
                        .write_all(format!("http-backend got {}", line.trim()).as_bytes())
                        .await;
                    let _ = tcp.shutdown().await;
                })
                .await;
            });
        }
    });
    addr
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A stream whose first write sends only a few bytes and whose second write waits first, so
/// the ClientHello reaches HAProxy in two TCP segments 300 ms apart.
struct SplitFirstWrite {
    inner: TcpStream,
    writes: usize,
    delay: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for SplitFirstWrite {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SplitFirstWrite {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.writes == 0 {
            let n = buf.len().min(7);
            return match std::pin::Pin::new(&mut this.inner).poll_write(cx, &buf[..n]) {
                Poll::Ready(Ok(n)) => {
                    this.writes = 1;
                    this.delay = Some(Box::pin(tokio::time::sleep(Duration::from_millis(300))));
                    Poll::Ready(Ok(n))
                }
                other => other,
            };
        }
        if let Some(d) = this.delay.as_mut() {
            if d.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.delay = None;
        }
        this.writes += 1;
        std::pin::Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// TLS client whose ClientHello is split across two segments.
async fn split_hello_client(target: SocketAddr, sni: &str, ca: &Ca) -> Result<String, String> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.root_store())
        .with_no_client_auth();
    let tcp = timeout(T, TcpStream::connect(target))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let stream = SplitFirstWrite {
        inner: tcp,
        writes: 0,
        delay: None,
    };
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let mut tls = timeout(T, TlsConnector::from(Arc::new(cfg)).connect(name, stream))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake failed: {e}"))?;
    let mut buf = Vec::new();
    timeout(T, tls.read_to_end(&mut buf))
        .await
        .map_err(|_| "read timed out".to_string())?
        .map_err(|e| format!("read failed: {e}"))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[derive(Clone, Copy)]
enum Verify<'a> {
    /// Verify the chain against the test CA and the name.
    Ca(&'a Ca),
    /// Accept any certificate (negative tests: a wrong forward must still show up).
    Any,
}

struct Answer {
    text: String,
    peer_cert: CertificateDer<'static>,
    local: SocketAddr,
}

/// Connects from `127.30.1.200` to `target`, does a TLS handshake with `sni` (or none) and
/// reads the backend's answer.
async fn tls_client(
    target: SocketAddr,
    sni: Option<&str>,
    verify: Verify<'_>,
) -> Result<Answer, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut cfg = match verify {
        Verify::Ca(ca) => builder
            .with_root_certificates(ca.root_store())
            .with_no_client_auth(),
        Verify::Any => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth(),
    };
    cfg.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or("no-sni.invalid").to_string())
        .map_err(|e| e.to_string())?;
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip(200)), 0))
        .map_err(|e| e.to_string())?;
    let tcp = timeout(T, sock.connect(target))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    let mut tls = timeout(T, TlsConnector::from(Arc::new(cfg)).connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake failed: {e}"))?;
    let peer_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or("no peer certificate")?;
    let mut buf = Vec::new();
    timeout(T, tls.read_to_end(&mut buf))
        .await
        .map_err(|_| "read timed out".to_string())?
        .map_err(|e| format!("read failed: {e}"))?;
    Ok(Answer {
        text: String::from_utf8_lossy(&buf).into_owned(),
        peer_cert,
        local,
    })
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if let Ok(Ok(_)) = timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("haproxy never listened on {addr}");
}

fn total_sessions(backends: &[&TlsBackend]) -> usize {
    backends
        .iter()
        .map(|b| b.sessions.lock().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_haproxy_routes_tls_by_sni() {
    timeout(Duration::from_secs(90), scenario())
        .await
        .expect("data-path scenario finished within 90s");
}

async fn scenario() {
    let ca = Ca::new();
    let teleport = tls_backend(
        "teleport",
        ip(11),
        &[
            "teleport.example.org",
            "*.teleport.example.org",
            "app1.kube.teleport.example.org",
            "proxmox.example.org",
        ],
        &ca,
        false,
    )
    .await;
    let apps = tls_backend(
        "apps",
        ip(12),
        &["*.apps.example.org", "a.b.apps.example.org"],
        &ca,
        false,
    )
    .await;
    let special = tls_backend(
        "special",
        ip(13),
        &["special.apps.example.org", "x.deep.apps.example.org"],
        &ca,
        false,
    )
    .await;
    let pp = tls_backend("proxied", ip(14), &["pp.example.org"], &ca, true).await;
    let http = plain_backend(ip(15)).await;

    let dir = tempfile::tempdir().unwrap();
    let https_port = free_port(ip(1));
    let http_port = free_port(ip(1));
    let spec = ProxySpec {
        routes: vec![
            RouteSpec::new(
                [
                    "teleport.example.org",
                    ".teleport.example.org",
                    "proxmox.example.org",
                ],
                &teleport.addr.to_string(),
            ),
            RouteSpec::new(["*.apps.example.org"], &apps.addr.to_string()),
            RouteSpec::new(
                ["special.apps.example.org", "*.deep.apps.example.org"],
                &special.addr.to_string(),
            ),
            RouteSpec::new(["pp.example.org"], &pp.addr.to_string()).with_proxy_protocol(true),
        ],
        http_backend: Some(http.to_string()),
        listen: waddle_haproxy::ListenSpec {
            address: Some(IpAddr::V4(ip(1))),
            https_port,
            http_port,
        },
        log: LogTarget::Stdout,
        paths: FilePaths::in_dir(dir.path()),
        process: ProcessSpec::unprivileged(),
        ..ProxySpec::default()
    };
    let rendered = render(&spec).unwrap();
    rendered.write_files().unwrap();

    let mut child = Command::new(common::haproxy_bin())
        .arg("-db")
        .arg("-f")
        .arg(&rendered.paths.config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("haproxy starts");
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.lock().unwrap().push(l);
            }
        });
    }
    let front = SocketAddr::new(IpAddr::V4(ip(1)), https_port);
    let front_http = SocketAddr::new(IpAddr::V4(ip(1)), http_port);
    wait_listening(front).await;

    // ---- positive: each name reaches its backend, with that backend's certificate ----
    let cases: &[(&str, &TlsBackend)] = &[
        ("teleport.example.org", &teleport),
        ("kube.teleport.example.org", &teleport),
        ("app1.kube.teleport.example.org", &teleport),
        ("proxmox.example.org", &teleport),
        ("TELEPORT.Example.ORG", &teleport),
        ("a.apps.example.org", &apps),
        ("a.b.apps.example.org", &apps),
        ("special.apps.example.org", &special),
        ("x.deep.apps.example.org", &special),
    ];
    for (sni, backend) in cases {
        let ans = tls_client(front, Some(sni), Verify::Ca(&ca))
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(
            ans.text,
            format!("backend={} proxy_src=\n", backend.name),
            "{sni}"
        );
        assert_eq!(ans.peer_cert, backend.cert, "{sni}: wrong certificate");
    }

    // ---- a ClientHello split over two segments is waited for, not misrouted ----
    let text = split_hello_client(front, "a.b.apps.example.org", &ca)
        .await
        .expect("split ClientHello");
    assert_eq!(text, "backend=apps proxy_src=\n");

    // ---- PROXY v2: the backend learns the client's address ----
    let ans = tls_client(front, Some("pp.example.org"), Verify::Ca(&ca))
        .await
        .expect("pp.example.org");
    assert_eq!(ans.peer_cert, pp.cert);
    assert_eq!(
        ans.text,
        format!("backend=proxied proxy_src={}\n", ans.local)
    );
    let seen = pp.sessions.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![Some(ProxyInfo {
            src: ans.local,
            dst: front
        })]
    );
    assert_eq!(ans.local.ip(), IpAddr::V4(ip(200)));

    // ---- negative: dropped, even for a client that accepts any certificate ----
    let all = [&teleport, &apps, &special, &pp];
    let before = total_sessions(&all);
    for sni in [
        Some("apps.example.org"),
        Some("evilapps.example.org"),
        Some("apps.example.org.attacker.test"),
        Some("teleport.example.org.attacker.test"),
        Some("eviltelepor.example.org"),
        Some("unknown.example.org"),
        Some("example.org"),
        None,
    ] {
        let res = tls_client(front, sni, Verify::Any).await;
        match res {
            Ok(a) => panic!("{sni:?} was forwarded: {}", a.text),
            Err(e) => assert!(
                !e.contains("timed out"),
                "{sni:?}: expected an immediate drop, got {e}"
            ),
        }
    }

    // ---- a plain HTTP client on the TLS port is dropped without an answer ----
    let mut tcp = timeout(T, TcpStream::connect(front))
        .await
        .unwrap()
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: teleport.example.org\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = timeout(T, tcp.read_to_end(&mut buf))
        .await
        .expect("non-TLS client closed within 10s");
    assert!(buf.is_empty(), "non-TLS client got {buf:?} ({read:?})");
    assert_eq!(
        total_sessions(&all),
        before,
        "a dropped client reached a backend"
    );

    // ---- port 80: plain TCP forward ----
    let mut tcp = timeout(T, TcpStream::connect(front_http))
        .await
        .unwrap()
        .unwrap();
    tcp.write_all(b"GET /.well-known/acme-challenge/x HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    timeout(T, tcp.read_to_string(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        buf,
        "http-backend got GET /.well-known/acme-challenge/x HTTP/1.1"
    );

    // ---- the log line carries the SNI and the chosen backend ----
    let mut found = false;
    for _ in 0..100 {
        {
            let l = log.lock().unwrap();
            found = l.iter().any(|l| {
                l.contains("sni=kube.teleport.example.org") && l.contains("be_route_0/s0")
            }) && l
                .iter()
                .any(|l| l.contains("sni=unknown.example.org") && l.contains("be_drop"));
        }
        if found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        found,
        "log lines missing:\n{}",
        log.lock().unwrap().join("\n")
    );

    child.kill().await.expect("haproxy killed");
    let _ = timeout(T, child.wait()).await;
}

/// Route change applied with the update script and a real master-worker reload: the new route
/// works and a session established before the reload keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_established_sessions() {
    timeout(Duration::from_secs(90), reload_scenario())
        .await
        .expect("reload scenario finished within 90s");
}

async fn reload_scenario() {
    let ca = Ca::new();
    let old = tls_backend_mode("old", ip(21), &["svc.example.org"], &ca, false, true).await;
    let new = tls_backend("new", ip(22), &["new.example.org"], &ca, false).await;

    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("waddle-config.sha256");
    let https_port = free_port(ip(2));
    let mut spec = ProxySpec {
        routes: vec![RouteSpec::new(["svc.example.org"], &old.addr.to_string())],
        listen: waddle_haproxy::ListenSpec {
            address: Some(IpAddr::V4(ip(2))),
            https_port,
            http_port: 80,
        },
        log: LogTarget::Disabled,
        paths: FilePaths::in_dir(dir.path()),
        process: ProcessSpec::unprivileged(),
        ..ProxySpec::default()
    };
    let v1 = waddle_haproxy::render_versioned(&spec).unwrap();
    v1.write_files().unwrap();

    let mut child = Command::new(common::haproxy_bin())
        .args(["-W", "-db", "-f"])
        .arg(&v1.paths.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("haproxy starts");
    let master = child.id().expect("pid");
    let front = SocketAddr::new(IpAddr::V4(ip(2)), https_port);
    wait_listening(front).await;

    // A long-lived session through the first config.
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.root_store())
        .with_no_client_auth();
    let tcp = timeout(T, TcpStream::connect(front))
        .await
        .unwrap()
        .unwrap();
    let mut session = timeout(
        T,
        TlsConnector::from(Arc::new(cfg)).connect(
            ServerName::try_from("svc.example.org".to_string()).unwrap(),
            tcp,
        ),
    )
    .await
    .unwrap()
    .expect("handshake through v1");
    let mut reader = BufReader::new(&mut session);
    let mut greeting = String::new();
    timeout(T, reader.read_line(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(greeting, "backend=old proxy_src=\n");

    // Before the change the new name is dropped.
    assert!(tls_client(front, Some("new.example.org"), Verify::Any)
        .await
        .is_err());

    // Route change: new maps beside the old ones, config staged as .new, checked, swapped,
    // master-worker reload (SIGUSR2 to the master).
    spec.routes
        .push(RouteSpec::new(["new.example.org"], &new.addr.to_string()));
    let v2 = waddle_haproxy::render_versioned(&spec).unwrap();
    std::fs::write(&v2.paths.exact_map, &v2.exact_map).unwrap();
    std::fs::write(&v2.paths.wildcard_map, &v2.wildcard_map).unwrap();
    std::fs::write(format!("{}.new", v2.paths.config), &v2.haproxy_cfg).unwrap();
    std::fs::write(
        format!("{}.new", marker.display()),
        format!("{}\n", v2.config_hash),
    )
    .unwrap();
    let script = waddle_haproxy::update_script(
        &v2,
        &marker.to_string_lossy(),
        &format!("kill -USR2 {master}"),
    );
    let bin_dir = std::path::Path::new(&common::haproxy_bin())
        .parent()
        .unwrap()
        .to_path_buf();
    let out = timeout(
        T,
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "update failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!std::path::Path::new(&v1.paths.exact_map).exists());

    // The new route works once the new worker is up (bounded retries).
    let mut routed = None;
    for _ in 0..100 {
        if let Ok(a) = tls_client(front, Some("new.example.org"), Verify::Ca(&ca)).await {
            routed = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let routed = routed.expect("new route reachable after reload");
    assert_eq!(routed.text, "backend=new proxy_src=\n");
    assert_eq!(routed.peer_cert, new.cert);

    // The session established before the reload still flows, through the old worker.
    let session = reader.into_inner();
    session.write_all(b"still here\n").await.unwrap();
    let mut echoed = [0u8; 11];
    timeout(T, session.read_exact(&mut echoed))
        .await
        .expect("echo within 10s")
        .expect("established session survived the reload");
    assert_eq!(&echoed, b"still here\n");
    assert_eq!(old.sessions.lock().unwrap().len(), 1);

    child.kill().await.expect("haproxy killed");
    let _ = timeout(T, child.wait()).await;
}
