//! A tiny purpose-built HTTPS/1.1 server for client behaviour tests (not an emulator):
//! each test supplies a handler deciding the response (or a dropped connection) per request.
//! Listens on 127.10.200.x (the PVE test range), ephemeral port, with its own rcgen CA.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One received request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path including the query string.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Index of the TCP connection it arrived on.
    pub conn: usize,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// Form body or query parameters, decoded (repeated keys kept).
    pub fn form(&self) -> Vec<(String, String)> {
        let raw = if self.method == "GET" || self.method == "DELETE" {
            self.target
                .split_once('?')
                .map(|x| x.1)
                .unwrap_or("")
                .as_bytes()
                .to_vec()
        } else {
            self.body.clone()
        };
        url::form_urlencoded::parse(&raw).into_owned().collect()
    }
    pub fn param(&self, k: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v)
    }
}

/// What the server does with a request.
pub enum Action {
    /// Send a response. `close` drops the connection right after it (without announcing it),
    /// like PVE after an error or after its 5 s idle timeout.
    Respond {
        status: u16,
        reason: String,
        body: String,
        close: bool,
    },
    /// Drop the connection without any response.
    Drop,
}

impl Action {
    pub fn ok(data: serde_json::Value) -> Action {
        Action::Respond {
            status: 200,
            reason: "OK".into(),
            body: serde_json::json!({ "data": data }).to_string(),
            close: false,
        }
    }
    pub fn error(status: u16, reason: &str, body: serde_json::Value) -> Action {
        Action::Respond {
            status,
            reason: reason.into(),
            body: body.to_string(),
            close: true,
        }
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> Action + Send + Sync>;

/// A CA and a server certificate for `ip`.
pub struct Pki {
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

pub fn pki(ip: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "waddle test Proxmox Virtual Environment CA",
    );
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec![ip.to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "pve test node");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    Pki {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub log: Arc<Mutex<Vec<Req>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }
    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Start a server on `ip` (127.10.200.x) with `handler`.
pub async fn start(ip: &str, handler: Handler) -> Server {
    let pki = pki(ip);
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Arc<Mutex<Vec<Req>>> = Arc::default();
    let connections = Arc::new(AtomicUsize::new(0));
    let (log2, conns2, acceptor) = (log.clone(), connections.clone(), pki.acceptor.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let conn = conns2.fetch_add(1, Ordering::SeqCst);
            let (acceptor, handler, log) = (acceptor.clone(), handler.clone(), log2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut stream = BufReader::new(tls);
                loop {
                    let Some(req) = read_request(&mut stream, conn).await else {
                        return;
                    };
                    let action = handler(&req);
                    log.lock().unwrap().push(req);
                    match action {
                        Action::Drop => return,
                        Action::Respond {
                            status,
                            reason,
                            body,
                            close,
                        } => {
                            let head = format!(
                                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            let s = stream.get_mut();
                            if s.write_all(head.as_bytes()).await.is_err()
                                || s.write_all(body.as_bytes()).await.is_err()
                                || s.flush().await.is_err()
                            {
                                return;
                            }
                            if close {
                                let _ = s.shutdown().await;
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Server {
        addr,
        ca_pem: pki.ca_pem,
        log,
        connections,
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
    conn: usize,
) -> Option<Req> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if stream.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(Req {
        method,
        target,
        headers,
        body,
        conn,
    })
}
