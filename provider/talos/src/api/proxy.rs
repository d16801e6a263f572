//! TCP connections, optionally through a SOCKS5 (RFC 1928/1929) or HTTP CONNECT proxy.
//!
//! Talos nodes sit on a private network; the provider reaches them through the operator's
//! `proxy_url`: `socks5://[user:pass@]host:port`, `socks5h://...` (same here: we always
//! connect by IP address) or `http://[user:pass@]host:port` (CONNECT).

use std::fmt;
use std::net::SocketAddr;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy to tunnel Talos API connections through.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Protocol spoken to the proxy.
    pub kind: ProxyKind,
    /// `host:port` of the proxy.
    pub address: String,
    /// Optional user name and password.
    pub auth: Option<(String, String)>,
}

/// Proxy protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5 CONNECT.
    Socks5,
    /// HTTP/1.1 CONNECT.
    HttpConnect,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Errors from proxy URLs and handshakes.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy URL is not usable.
    #[error("invalid proxy URL: {0}")]
    InvalidUrl(String),
    /// Socket error talking to the proxy.
    #[error("proxy {address}: {source}")]
    Io {
        /// Proxy address.
        address: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Direct (unproxied) connection failed.
    #[error("{address}: {source}")]
    Direct {
        /// Target address.
        address: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The proxy refused or answered nonsense.
    #[error("proxy {address} refused the connection to {target}: {reason}")]
    Refused {
        /// Proxy address.
        address: String,
        /// Where we wanted to go.
        target: SocketAddr,
        /// Why.
        reason: String,
    },
}

impl Proxy {
    /// Parses `socks5://`, `socks5h://` or `http://` proxy URLs.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let u = url::Url::parse(url).map_err(|e| ProxyError::InvalidUrl(e.to_string()))?;
        let kind = match u.scheme() {
            "socks5" | "socks5h" => ProxyKind::Socks5,
            "http" => ProxyKind::HttpConnect,
            other => {
                return Err(ProxyError::InvalidUrl(format!(
                    "unsupported scheme {other:?} (use socks5://, socks5h:// or http://)"
                )))
            }
        };
        let host = u
            .host_str()
            .ok_or_else(|| ProxyError::InvalidUrl("missing host".into()))?;
        let port = u.port_or_known_default().unwrap_or(1080);
        let auth = if u.username().is_empty() {
            None
        } else {
            let dec = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Some((dec(u.username()), dec(u.password().unwrap_or(""))))
        };
        Ok(Proxy {
            kind,
            address: format!("{host}:{port}"),
            auth,
        })
    }

    fn io(&self) -> impl Fn(std::io::Error) -> ProxyError + '_ {
        move |source| ProxyError::Io {
            address: self.address.clone(),
            source,
        }
    }

    fn refused(&self, target: SocketAddr, reason: impl Into<String>) -> ProxyError {
        ProxyError::Refused {
            address: self.address.clone(),
            target,
            reason: reason.into(),
        }
    }

    /// Opens a TCP tunnel to `target` through this proxy.
    pub async fn connect(&self, target: SocketAddr) -> Result<TcpStream, ProxyError> {
        let mut s = TcpStream::connect(&self.address).await.map_err(self.io())?;
        let _ = s.set_nodelay(true);
        match self.kind {
            ProxyKind::Socks5 => self.socks5(&mut s, target).await?,
            ProxyKind::HttpConnect => self.http_connect(&mut s, target).await?,
        }
        Ok(s)
    }

    async fn socks5(&self, s: &mut TcpStream, target: SocketAddr) -> Result<(), ProxyError> {
        let method = if self.auth.is_some() { 0x02 } else { 0x00 };
        s.write_all(&[0x05, 0x01, method])
            .await
            .map_err(self.io())?;
        let mut rep = [0u8; 2];
        s.read_exact(&mut rep).await.map_err(self.io())?;
        if rep[0] != 0x05 {
            return Err(self.refused(target, "not a SOCKS5 proxy"));
        }
        if rep[1] != method {
            return Err(self.refused(target, "no acceptable authentication method"));
        }
        if let Some((user, pass)) = &self.auth {
            if user.len() > 255 || pass.len() > 255 {
                return Err(self.refused(target, "user name or password too long"));
            }
            let mut m = vec![0x01, user.len() as u8];
            m.extend_from_slice(user.as_bytes());
            m.push(pass.len() as u8);
            m.extend_from_slice(pass.as_bytes());
            s.write_all(&m).await.map_err(self.io())?;
            s.read_exact(&mut rep).await.map_err(self.io())?;
            if rep[1] != 0x00 {
                return Err(self.refused(target, "authentication failed"));
            }
        }
        let mut req = vec![0x05, 0x01, 0x00];
        match target {
            SocketAddr::V4(a) => {
                req.push(0x01);
                req.extend_from_slice(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                req.push(0x04);
                req.extend_from_slice(&a.ip().octets());
            }
        }
        req.extend_from_slice(&target.port().to_be_bytes());
        s.write_all(&req).await.map_err(self.io())?;
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.map_err(self.io())?;
        if head[0] != 0x05 {
            return Err(self.refused(target, "malformed SOCKS5 reply"));
        }
        if head[1] != 0x00 {
            let why = match head[1] {
                0x01 => "general failure",
                0x02 => "not allowed by ruleset",
                0x03 => "network unreachable",
                0x04 => "host unreachable",
                0x05 => "connection refused",
                0x06 => "TTL expired",
                0x07 => "command not supported",
                0x08 => "address type not supported",
                _ => "unknown error",
            };
            return Err(self.refused(target, format!("SOCKS5 reply {:#04x} ({why})", head[1])));
        }
        let skip = match head[3] {
            0x01 => 4 + 2,
            0x04 => 16 + 2,
            0x03 => {
                let mut n = [0u8; 1];
                s.read_exact(&mut n).await.map_err(self.io())?;
                usize::from(n[0]) + 2
            }
            _ => return Err(self.refused(target, "malformed SOCKS5 bound address")),
        };
        let mut rest = vec![0u8; skip];
        s.read_exact(&mut rest).await.map_err(self.io())?;
        Ok(())
    }

    async fn http_connect(&self, s: &mut TcpStream, target: SocketAddr) -> Result<(), ProxyError> {
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some((u, p)) = &self.auth {
            let cred = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req.push_str(&format!("Proxy-Authorization: Basic {cred}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.map_err(self.io())?;
        // Read the response head byte by byte so no tunnel bytes are consumed.
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(self.refused(target, "response head too long"));
            }
            let n = s.read(&mut b).await.map_err(self.io())?;
            if n == 0 {
                return Err(self.refused(target, "connection closed during CONNECT"));
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head);
        let status_line = text.lines().next().unwrap_or("");
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or("");
        let code = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") || !code.starts_with('2') || code.len() != 3 {
            return Err(self.refused(target, format!("CONNECT answered {status_line:?}")));
        }
        Ok(())
    }
}

/// Connects to `target` directly or through `proxy`.
pub async fn connect_tcp(
    target: SocketAddr,
    proxy: Option<&Proxy>,
) -> Result<TcpStream, ProxyError> {
    match proxy {
        Some(p) => p.connect(target).await,
        None => {
            let s = TcpStream::connect(target)
                .await
                .map_err(|source| ProxyError::Io {
                    address: target.to_string(),
                    source,
                })?;
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}
