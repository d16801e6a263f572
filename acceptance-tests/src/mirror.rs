//! A provider network mirror over HTTPS on loopback, serving a release directory the way a
//! registry mirror does (the protocol Terraform and OpenTofu use for
//! `provider_installation { network_mirror { url = ... } }`):
//!
//! * `<host>/<namespace>/<type>/index.json`: `{"versions": {"0.2.0": {}}}`
//! * `<host>/<namespace>/<type>/<version>.json`: `{"archives": {"linux_amd64": {"url", "hashes"}}}`
//!   with the package's `h1:` (hash of the unpacked files) and `zh:` (hash of the zip) hashes,
//! * the zip files themselves, relative to the version document.
//!
//! The mirror has its own CA; a CLI trusts it through `SSL_CERT_FILE`. Tests can serve different
//! bytes than the hashes describe ([`MirrorFiles::tamper`]) to prove that installation refuses them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

use crate::pve::tls::ServerTls;

/// Errors building or serving a mirror.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("release directory {0} holds no zip for version {1}")]
    NoArchives(String, String),
    #[error("reading zip {0}: {1}")]
    Zip(String, String),
    #[error("mirror TLS: {0}")]
    Tls(String),
}

/// The documents and archives of one provider version, keyed by URL path (no leading `/`).
#[derive(Debug, Clone, Default)]
pub struct MirrorFiles {
    pub files: BTreeMap<String, Vec<u8>>,
    /// `OS_ARCH` -> (zip path in `files`, `h1:` hash, `zh:` hash).
    pub archives: BTreeMap<String, (String, String, String)>,
}

impl MirrorFiles {
    /// Serves `<release_dir>/<package>_<version>_<os>_<arch>.zip` under every registry `hosts`
    /// entry for `namespace/type_name`.
    pub fn from_release(
        release_dir: &Path,
        package: &str,
        version: &str,
        hosts: &[&str],
        namespace: &str,
        type_name: &str,
    ) -> Result<MirrorFiles, MirrorError> {
        let prefix = format!("{package}_{version}_");
        let read_dir = std::fs::read_dir(release_dir).map_err(|source| MirrorError::Io {
            path: release_dir.display().to_string(),
            source,
        })?;
        let mut zips = BTreeMap::new();
        for entry in read_dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(platform) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".zip"))
            else {
                continue;
            };
            let bytes = std::fs::read(entry.path()).map_err(|source| MirrorError::Io {
                path: entry.path().display().to_string(),
                source,
            })?;
            zips.insert(platform.to_string(), (name, bytes));
        }
        if zips.is_empty() {
            return Err(MirrorError::NoArchives(
                release_dir.display().to_string(),
                version.to_string(),
            ));
        }
        let mut out = MirrorFiles::default();
        let mut archives_doc = serde_json::Map::new();
        for (platform, (name, bytes)) in &zips {
            let h1 = h1_of_zip(&release_dir.join(name))?;
            let zh = format!("zh:{}", hex::encode(Sha256::digest(bytes)));
            archives_doc.insert(
                platform.clone(),
                serde_json::json!({ "url": name, "hashes": [h1, zh] }),
            );
            out.archives
                .insert(platform.clone(), (name.clone(), h1.clone(), zh.clone()));
        }
        let index = serde_json::json!({ "versions": { version: {} } });
        let version_doc = serde_json::json!({ "archives": archives_doc });
        for host in hosts {
            let base = format!("{host}/{namespace}/{type_name}");
            out.files
                .insert(format!("{base}/index.json"), index.to_string().into_bytes());
            out.files.insert(
                format!("{base}/{version}.json"),
                version_doc.to_string().into_bytes(),
            );
            for (name, bytes) in zips.values() {
                out.files.insert(format!("{base}/{name}"), bytes.clone());
            }
        }
        Ok(out)
    }

    /// Replaces every served copy of the zip for `platform` with `bytes`, leaving the hashes in
    /// the version documents as they were.
    pub fn tamper(&mut self, platform: &str, bytes: Vec<u8>) {
        if let Some((name, _, _)) = self.archives.get(platform) {
            let suffix = format!("/{name}");
            for (path, content) in self.files.iter_mut() {
                if path.ends_with(&suffix) {
                    *content = bytes.clone();
                }
            }
        }
    }
}

/// The `h1:` hash of a provider package: SHA-256 over the sorted lines
/// `"<sha256 hex>  <file name>\n"` of the files inside the zip, base64-encoded. The zip is read
/// by Python's `zipfile` (python3 is on every machine the tests run on).
pub fn h1_of_zip(zip: &Path) -> Result<String, MirrorError> {
    let script = "import sys, zipfile, hashlib\n\
                  with zipfile.ZipFile(sys.argv[1]) as z:\n\
                  \x20   for n in sorted(i.filename for i in z.infolist() if not i.is_dir()):\n\
                  \x20       print(hashlib.sha256(z.read(n)).hexdigest() + '  ' + n)\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(zip)
        .output()
        .map_err(|source| MirrorError::Io {
            path: "python3".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(MirrorError::Zip(
            zip.display().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let summary = String::from_utf8_lossy(&out.stdout);
    if summary.trim().is_empty() {
        return Err(MirrorError::Zip(
            zip.display().to_string(),
            "no files in the archive".into(),
        ));
    }
    let digest = Sha256::digest(summary.as_bytes());
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    ))
}

/// A running mirror; stops when dropped.
pub struct MirrorServer {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MirrorServer {
    /// Starts serving `files` over HTTPS on `ip` (a loopback address), on an ephemeral port, on
    /// the current tokio runtime.
    pub async fn start(ip: IpAddr, files: MirrorFiles) -> Result<MirrorServer, MirrorError> {
        let tls = ServerTls::generate(ip, &["localhost".to_string()])
            .map_err(|e| MirrorError::Tls(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|source| MirrorError::Io {
                path: format!("bind {ip}"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| MirrorError::Io {
            path: format!("bind {ip}"),
            source,
        })?;
        let files = Arc::new(files.files);
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let acceptor = tls.acceptor.clone();
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    acc = listener.accept() => {
                        let Ok((stream, _)) = acc else { continue };
                        let acceptor = acceptor.clone();
                        let files = files.clone();
                        let log = log.clone();
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(stream).await else { return };
                            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                                let files = files.clone();
                                let log = log.clone();
                                async move { Ok::<_, std::convert::Infallible>(respond(&req, &files, &log)) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tls), svc)
                                .await;
                        });
                    }
                }
            }
        });
        Ok(MirrorServer {
            addr,
            ca_pem: tls.ca_pem,
            requests,
            stop: Some(stop),
        })
    }

    /// The mirror's base URL (with a trailing slash, as the CLI configuration wants it).
    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    /// Every request path served so far, in order (with the status code).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn respond(
    req: &Request<Incoming>,
    files: &BTreeMap<String, Vec<u8>>,
    log: &std::sync::Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_start_matches('/');
    let (status, body, kind) = match (req.method() == hyper::Method::GET, files.get(path)) {
        (true, Some(bytes)) => {
            let kind = if path.ends_with(".json") {
                "application/json"
            } else {
                "application/zip"
            };
            (StatusCode::OK, bytes.clone(), kind)
        }
        (false, _) => (
            StatusCode::METHOD_NOT_ALLOWED,
            b"GET only".to_vec(),
            "text/plain",
        ),
        (true, None) => (StatusCode::NOT_FOUND, b"not found".to_vec(), "text/plain"),
    };
    if let Ok(mut l) = log.lock() {
        l.push(format!("{} /{path}", status.as_u16()));
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
