//! The HTTP core: TLS, authentication, error decoding, safe retries, recording, per-node
//! concurrency limits.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::config::{Auth, ClientConfig, Secret, Timeouts};
use crate::error::{ApiError, ApiErrorKind, Error, Result, TransportKind};
use crate::params::Params;
use crate::record::{RecordedRequest, RequestRecorder};
use crate::retry::RetryPolicy;

/// Tickets are valid for two hours; renew well before that.
const TICKET_MAX_AGE: Duration = Duration::from_secs(90 * 60);
/// PVE closes idle keep-alive connections after 5 s.
const MAX_POOL_IDLE: Duration = Duration::from_secs(4);

#[derive(Clone)]
struct Ticket {
    cookie: Secret,
    csrf: Secret,
    obtained: Instant,
}

enum AuthState {
    Token(Secret),
    Password {
        username: String,
        password: Secret,
        ticket: tokio::sync::Mutex<Option<Ticket>>,
    },
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: AuthState,
    retry: RetryPolicy,
    timeouts: Timeouts,
    recorder: Option<Arc<dyn RequestRecorder>>,
    per_node: usize,
    node_limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Since when every connection attempt has failed (`None` once one got an answer).
    unreachable_since: Mutex<Option<Instant>>,
}

/// A Proxmox VE API client. Cheap to clone (shared connection pool, ticket and limits).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// A request body.
pub(crate) enum Body<'a> {
    /// Form-encoded parameters (or query string for GET/DELETE).
    Params(&'a Params),
    /// A multipart upload: leading text fields, then one file part named `filename`.
    Upload {
        fields: &'a Params,
        file_name: &'a str,
        data: bytes_like::Bytes,
    },
}

pub(crate) mod bytes_like {
    /// Shared immutable bytes (cheap clone per attempt).
    pub type Bytes = std::sync::Arc<Vec<u8>>;
}

fn classify_transport(err: &reqwest::Error) -> TransportKind {
    if err.is_timeout() {
        return TransportKind::Timeout;
    }
    let mut text = err.to_string().to_ascii_lowercase();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    let mut canceled = false;
    let mut incomplete = false;
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string().to_ascii_lowercase());
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            canceled |= h.is_canceled();
            incomplete |= h.is_incomplete_message();
        }
        source = s.source();
    }
    let tls = text.contains("certificate")
        || text.contains("tls handshake")
        || text.contains("handshake failure")
        || text.contains("unknownissuer")
        || text.contains("invalid peer");
    if tls {
        return TransportKind::Tls;
    }
    if err.is_connect() || canceled {
        return TransportKind::NotSent;
    }
    if incomplete {
        return TransportKind::MaybeSent;
    }
    TransportKind::MaybeSent
}

fn error_chain(err: &reqwest::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Make rustls' ring back-end the process-wide default crypto provider unless one is
/// already installed, and return the provider in effect.
///
/// reqwest is built with `rustls-no-provider` so that the provider binary links a single
/// crypto back-end (ring, which the plugin server and the Talos client use too) instead of
/// also carrying aws-lc. Without a default, reqwest's client builder panics, so every code
/// path that builds a reqwest client must call this first: [`Client::new`] does, and the
/// provider's `main` calls it before anything else so other reqwest clients in the process
/// are covered as well. reqwest keeps doing the verification itself (platform roots,
/// pinned CA via `tls_certs_only`, explicit `insecure` opt-in), only the primitives come
/// from ring. Idempotent and safe to call from several threads: when another thread wins
/// the race, its provider is kept.
pub fn install_crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    if let Some(p) = rustls::crypto::CryptoProvider::get_default() {
        return p.clone();
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    match rustls::crypto::CryptoProvider::get_default() {
        Some(p) => p.clone(),
        // Unreachable: install_default only fails when a default is already set.
        None => Arc::new(rustls::crypto::ring::default_provider()),
    }
}

impl Client {
    /// Build a client. Validates the endpoint, credentials, CA PEM and proxy URL; makes no
    /// network call.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let base = config.api_base()?;
        if config.insecure && config.ca_cert_pem.is_some() {
            return Err(Error::Config(
                "insecure and ca_cert are mutually exclusive: pin the CA or disable verification, not both"
                    .into(),
            ));
        }
        if config.per_node_concurrency == 0 {
            return Err(Error::Config(
                "per_node_concurrency must be at least 1".into(),
            ));
        }
        install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .http1_only()
            .user_agent(concat!("waddle-proxmox/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeouts.connect)
            .pool_idle_timeout(config.timeouts.pool_idle.min(MAX_POOL_IDLE))
            .pool_max_idle_per_host(16)
            .local_address(config.local_address);
        if config.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        } else if let Some(pem) = &config.ca_cert_pem {
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(Error::Config(
                    "ca_cert must be a PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| Error::Config(format!("ca_cert is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config("ca_cert contains no certificate".into()));
            }
            b = b.tls_certs_only(certs);
        }
        match &config.proxy_url {
            Some(p) => {
                let u = url::Url::parse(p)
                    .map_err(|e| Error::Config(format!("proxy_url {p:?} is not a URL: {e}")))?;
                if !matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") {
                    return Err(Error::Config(format!(
                        "proxy_url {p:?}: scheme must be http, https, socks5 or socks5h"
                    )));
                }
                let proxy = reqwest::Proxy::all(p)
                    .map_err(|e| Error::Config(format!("proxy_url {p:?}: {e}")))?;
                b = b.proxy(proxy);
            }
            None => b = b.no_proxy(),
        }
        let http = b
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {}", error_chain(&e))))?;
        let auth = match config.auth {
            Auth::ApiToken(t) => AuthState::Token(Secret::new(t.header_value())),
            Auth::Password { username, password } => {
                if !username.contains('@') {
                    return Err(Error::Config(format!(
                        "username {username:?} must be USER@REALM (e.g. root@pam)"
                    )));
                }
                AuthState::Password {
                    username,
                    password,
                    ticket: tokio::sync::Mutex::new(None),
                }
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: base.as_str().trim_end_matches('/').to_string(),
                auth,
                retry: config.retry,
                timeouts: config.timeouts,
                recorder: config.recorder,
                per_node: config.per_node_concurrency,
                node_limits: Mutex::new(HashMap::new()),
                key_locks: Mutex::new(HashMap::new()),
                unreachable_since: Mutex::new(None),
            }),
        })
    }

    /// The API base URL (`https://host:port/api2/json`).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The configured timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.inner.timeouts
    }

    /// The configured retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Acquire one of the node's permits for a mutating operation. High-level helpers hold it
    /// across the API call *and* the task it starts, so at most `per_node_concurrency`
    /// mutating operations run on a node at once. Low-level calls don't take permits.
    pub async fn node_permit(&self, node: &str) -> OwnedSemaphorePermit {
        let sem = {
            let mut map = match self.inner.node_limits.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(node.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.inner.per_node)))
                .clone()
        };
        // The semaphore is never closed, so acquire cannot fail.
        match sem.acquire_owned().await {
            Ok(p) => p,
            Err(_) => unreachable_permit(),
        }
    }

    /// An in-process mutex per key (e.g. one image download per node/storage/file).
    pub(crate) async fn key_lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = match self.inner.key_locks.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(key.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        m.lock_owned().await
    }

    /// `GET` returning `data` deserialised as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, params: &Params) -> Result<T> {
        let v = self.call(Method::GET, path, params, true).await?;
        from_data(path, v)
    }

    /// `POST`, not idempotent: retried only when the request was certainly not acted upon
    /// (never sent, or a lock timeout).
    pub async fn post(&self, path: &str, params: &Params) -> Result<Value> {
        self.call(Method::POST, path, params, false).await
    }

    /// `POST` of an idempotent action (e.g. agent ping, reading through POST).
    pub async fn post_idempotent(&self, path: &str, params: &Params) -> Result<Value> {
        self.call(Method::POST, path, params, true).await
    }

    /// `PUT` (config updates and applies are idempotent).
    pub async fn put(&self, path: &str, params: &Params) -> Result<Value> {
        self.call(Method::PUT, path, params, true).await
    }

    /// `DELETE`, not retried after the request may have been acted upon.
    pub async fn delete(&self, path: &str, params: &Params) -> Result<Value> {
        self.call(Method::DELETE, path, params, false).await
    }

    /// Make a call with the retry policy. `idempotent` decides which failures are retried
    /// (see [`Error::is_retryable`]). Returns the response's `data` member.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        params: &Params,
        idempotent: bool,
    ) -> Result<Value> {
        self.call_body(method, path, Body::Params(params), idempotent)
            .await
    }

    pub(crate) async fn call_body(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        idempotent: bool,
    ) -> Result<Value> {
        let policy = self.inner.retry;
        let mut attempt: u32 = 0;
        let mut relogged = false;
        loop {
            let res = self.send_once(&method, path, &body).await;
            let res = self.track_reachability(res);
            match res {
                Ok(v) => return Ok(v),
                Err(Error::Api(e))
                    if e.kind == ApiErrorKind::Auth
                        && !relogged
                        && matches!(self.inner.auth, AuthState::Password { .. }) =>
                {
                    // Ticket expired or revoked: log in again once.
                    relogged = true;
                    self.invalidate_ticket().await;
                    tracing::debug!(path, "ticket rejected, logging in again");
                }
                Err(e) if attempt + 1 < policy.max_attempts && e.is_retryable(idempotent) => {
                    let delay = policy.delay(attempt);
                    tracing::debug!(
                        method = %method,
                        path,
                        attempt = attempt + 1,
                        delay_ms = delay.as_millis() as u64,
                        error = %e,
                        "retrying Proxmox API call"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Notes whether the API answered. A connection failure (never sent) after the API has
    /// failed every connection for longer than [`Timeouts::unreachable`] becomes
    /// [`Error::Unreachable`], which nothing retries.
    fn track_reachability(&self, res: Result<Value>) -> Result<Value> {
        let mut since = match self.inner.unreachable_since.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let err = match res {
            Err(
                e @ Error::Transport {
                    kind: TransportKind::NotSent,
                    ..
                },
            ) => e,
            other => {
                // An answer (even an error status) or a request that got through.
                *since = None;
                return other;
            }
        };
        let first = *since.get_or_insert_with(Instant::now);
        let down = first.elapsed();
        let limit = self.inner.timeouts.unreachable;
        if down < limit {
            return Err(err);
        }
        Err(Error::Unreachable {
            endpoint: self.inner.base.clone(),
            seconds: down.as_secs(),
            limit: limit.as_secs(),
            last: Box::new(err),
        })
    }

    async fn invalidate_ticket(&self) {
        if let AuthState::Password { ticket, .. } = &self.inner.auth {
            *ticket.lock().await = None;
        }
    }

    async fn current_ticket(&self) -> Result<Option<Ticket>> {
        let AuthState::Password {
            username,
            password,
            ticket,
        } = &self.inner.auth
        else {
            return Ok(None);
        };
        let mut guard = ticket.lock().await;
        if let Some(t) = guard.as_ref() {
            if t.obtained.elapsed() < TICKET_MAX_AGE {
                return Ok(Some(t.clone()));
            }
        }
        let t = self.login(username, password).await?;
        *guard = Some(t.clone());
        Ok(Some(t))
    }

    async fn login(&self, username: &str, password: &Secret) -> Result<Ticket> {
        let path = "/access/ticket";
        let url = format!("{}{}", self.inner.base, path);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("username", username)
            .append_pair("password", password.expose())
            .finish();
        let recorded_params = serde_json::json!({"username": username, "password": "***"});
        let resp = self
            .inner
            .http
            .post(&url)
            .timeout(self.inner.timeouts.request)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await;
        let data = self
            .finish_response("POST", path, recorded_params, resp)
            .await?;
        let ticket = data
            .get("ticket")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::decode(path, "no ticket in login response"))?;
        let csrf = data
            .get("CSRFPreventionToken")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::decode(path, "no CSRFPreventionToken in login response"))?;
        Ok(Ticket {
            cookie: Secret::new(ticket),
            csrf: Secret::new(csrf),
            obtained: Instant::now(),
        })
    }

    async fn send_once(&self, method: &Method, path: &str, body: &Body<'_>) -> Result<Value> {
        let mut url = format!("{}{}", self.inner.base, path);
        let (recorded, timeout) = match body {
            Body::Params(p) => (p.to_json(), self.inner.timeouts.request),
            Body::Upload {
                fields, file_name, ..
            } => {
                let mut j = fields.to_json();
                if let Value::Object(m) = &mut j {
                    m.insert("filename".into(), Value::String((*file_name).to_string()));
                }
                (j, self.inner.timeouts.upload)
            }
        };
        let query_style = matches!(*method, Method::GET | Method::DELETE);
        if let (true, Body::Params(p)) = (query_style, body) {
            if !p.is_empty() {
                url.push('?');
                url.push_str(&p.encode());
            }
        }
        let mut req = self
            .inner
            .http
            .request(method.clone(), &url)
            .timeout(timeout);
        match &self.inner.auth {
            AuthState::Token(h) => {
                req = req.header("Authorization", h.expose());
            }
            AuthState::Password { .. } => {
                if let Some(t) = self.current_ticket().await? {
                    req = req.header("Cookie", format!("PVEAuthCookie={}", t.cookie.expose()));
                    if *method != Method::GET {
                        req = req.header("CSRFPreventionToken", t.csrf.expose());
                    }
                }
            }
        }
        match body {
            Body::Params(p) => {
                if !query_style {
                    req = req
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(p.encode());
                }
            }
            Body::Upload {
                fields,
                file_name,
                data,
            } => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in fields.wire_pairs() {
                    form = form.text(k, v);
                }
                let part = reqwest::multipart::Part::bytes(data.as_ref().clone())
                    .file_name(file_name.to_string())
                    .mime_str("application/octet-stream")
                    .map_err(|e| Error::InvalidArgument(format!("multipart: {e}")))?;
                form = form.part("filename", part);
                req = req.multipart(form);
            }
        }
        let started = Instant::now();
        let resp = req.send().await;
        let status = resp.as_ref().ok().map(|r| r.status().as_u16()).unwrap_or(0);
        let out = self
            .finish_response(method.as_str(), path, recorded, resp)
            .await;
        // Method, path, status and duration only: parameters, bodies and headers (the token, the
        // ticket) are never logged.
        let duration_ms = started.elapsed().as_millis() as u64;
        match &out {
            Ok(Value::String(upid)) if upid.starts_with("UPID:") => {
                tracing::debug!(method = %method, path, status, duration_ms, upid = %upid, "Proxmox API call started a task");
            }
            Ok(_) => {
                tracing::debug!(method = %method, path, status, duration_ms, "Proxmox API call")
            }
            Err(e) => {
                tracing::debug!(method = %method, path, status, duration_ms, error = %e, "Proxmox API call failed");
            }
        }
        out
    }

    async fn finish_response(
        &self,
        method: &str,
        path: &str,
        recorded_params: Value,
        resp: std::result::Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Value> {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let kind = classify_transport(&e);
                self.record(method, path, recorded_params, None, None);
                return Err(Error::Transport {
                    method: method.to_string(),
                    path: path.to_string(),
                    message: error_chain(&e),
                    kind,
                });
            }
        };
        let status = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let kind = classify_transport(&e);
                self.record(method, path, recorded_params, Some(status.as_u16()), None);
                return Err(Error::Transport {
                    method: method.to_string(),
                    path: path.to_string(),
                    message: format!("reading response body: {}", error_chain(&e)),
                    kind: if kind == TransportKind::NotSent {
                        TransportKind::MaybeSent
                    } else {
                        kind
                    },
                });
            }
        };
        let json: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        self.record(
            method,
            path,
            recorded_params,
            Some(status.as_u16()),
            json.clone(),
        );
        if status.is_success() {
            let Some(mut json) = json else {
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                return Err(Error::decode(path, "response body is not JSON"));
            };
            return Ok(json.get_mut("data").map(Value::take).unwrap_or(Value::Null));
        }
        let mut errors = BTreeMap::new();
        if let Some(Value::Object(m)) = json.as_ref().and_then(|j| j.get("errors")) {
            for (k, v) in m {
                let msg = match v {
                    Value::String(s) => s.trim_end().to_string(),
                    other => other.to_string(),
                };
                errors.insert(k.clone(), msg);
            }
        }
        let mut message = reason;
        if message.is_empty() {
            if let Some(m) = json
                .as_ref()
                .and_then(|j| j.get("message"))
                .and_then(Value::as_str)
            {
                message = m.trim_end().to_string();
            }
        }
        Err(Error::Api(ApiError::new(
            method,
            path,
            status.as_u16(),
            message,
            errors,
        )))
    }

    fn record(
        &self,
        method: &str,
        path: &str,
        params: Value,
        status: Option<u16>,
        response: Option<Value>,
    ) {
        if let Some(r) = &self.inner.recorder {
            r.record(&RecordedRequest {
                method: method.to_string(),
                path: path.to_string(),
                params,
                status,
                response,
            });
        }
    }
}

fn unreachable_permit() -> OwnedSemaphorePermit {
    // Semaphores created by this module are never closed; if that ever changes, fail loudly
    // in debug builds and fall back to a fresh single-permit semaphore otherwise.
    debug_assert!(false, "node semaphore closed");
    let sem = Arc::new(Semaphore::new(1));
    match sem.try_acquire_owned() {
        Ok(p) => p,
        Err(_) => unreachable!("fresh semaphore has a permit"),
    }
}

/// Deserialize a `data` value, mapping failures to [`Error::Decode`].
pub(crate) fn from_data<T: DeserializeOwned>(path: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::decode(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiToken;

    #[test]
    fn ring_is_installed_as_the_process_crypto_provider() {
        // reqwest is built without a crypto provider of its own; building a client must
        // not panic, and afterwards ring (the only back-end linked in) is the default.
        let cfg = ClientConfig::new(
            "https://127.10.99.1:8006",
            Auth::ApiToken(
                ApiToken::parse("root@pam!t=00000000-0000-0000-0000-000000000000").unwrap(),
            ),
        );
        Client::new(cfg).expect("client builds");
        let installed = rustls::crypto::CryptoProvider::get_default().expect("a default provider");
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(installed.cipher_suites, ring.cipher_suites);
        assert!(Arc::ptr_eq(installed, &install_crypto_provider()));
    }
}
