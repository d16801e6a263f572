//! HTTPS server: connections (keep-alive rules), request pipeline (auth, schema validation,
//! permissions, faults), responses with PVE's reason phrases.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::auth::{self, Caller};
use super::faults::FaultKind;
use super::handlers;
use super::state::{RequestRecord, ResponseViolation, Shared};
use crate::spec::{self, ErrorMap, MatchError, ParamValue, Params};

/// An error answer, as PVE gives it: status, reason phrase, optional `errors` map.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<ErrorMap>,
}

impl ApiError {
    pub fn new(status: u16, msg: impl Into<String>) -> Self {
        Self {
            status,
            message: msg.into(),
            errors: None,
        }
    }
    /// 500 with a message (PVE's `die "...\n"`).
    pub fn die(msg: impl Into<String>) -> Self {
        Self::new(500, msg)
    }
    /// 400 "Parameter verification failed." with errors.
    pub fn params(errors: ErrorMap) -> Self {
        Self {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(errors),
        }
    }
    /// 400 with one parameter error.
    pub fn param(name: &str, msg: impl Into<String>) -> Self {
        let mut e = ErrorMap::new();
        e.insert(name.to_string(), msg.into());
        Self::params(e)
    }
    pub fn forbidden(path: &str, privs: &str) -> Self {
        Self::new(403, format!("Permission check failed ({path}, {privs})"))
    }
}

/// The connection must be dropped without an answer.
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}
impl std::error::Error for Dropped {}

/// Per-request context handed to handlers.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub method: String,
    pub template: String,
    pub params: Params,
    pub caller: Caller,
    pub fail_task: Option<String>,
    pub slow_boot: Option<Duration>,
    /// Uploaded file (multipart `filename` part): (file name, bytes).
    pub upload: Option<(String, Vec<u8>)>,
}

impl Ctx {
    /// A parameter's (single) value.
    pub fn p(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(ParamValue::as_str)
    }
    /// Required parameter (validated by the schema already).
    pub fn req(&self, k: &str) -> Result<&str, ApiError> {
        self.p(k)
            .ok_or_else(|| ApiError::param(k, "property is missing and it is not optional"))
    }
    pub fn flag(&self, k: &str) -> Option<bool> {
        self.p(k)
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }
    /// Require a privilege (403 otherwise).
    pub fn require(&self, path: &str, privilege: &str) -> Result<(), ApiError> {
        if self.caller.has(path, privilege) {
            Ok(())
        } else {
            Err(ApiError::forbidden(path, privilege))
        }
    }
    /// Require any of the privileges.
    pub fn require_any(&self, path: &str, privs: &[&str]) -> Result<(), ApiError> {
        if privs.iter().any(|p| self.caller.has(path, p)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(path, &privs.join("|")))
        }
    }
}

struct ConnState {
    active: AtomicUsize,
    last: Mutex<Instant>,
}

impl ConnState {
    fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }
    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.last.lock().ok().map(|l| l.elapsed())
    }
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            acc = listener.accept() => {
                let Ok((stream, peer)) = acc else { continue };
                shared.conn_accepted();
                let Some(stream) = firewall_gate(&shared, stream, peer) else { continue };
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move { handle_conn(stream, acceptor, shared).await });
            }
        }
    }
}

/// The host firewall's say on a new connection (see `firewall::filter`): `None` when it is
/// not accepted. A rejected connection is reset at once; a dropped one gets silence (what it
/// sends is read and discarded) until the client gives up, as a dropped SYN would.
fn firewall_gate(
    shared: &Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) -> Option<tokio::net::TcpStream> {
    let local = stream.local_addr().ok()?;
    let verdict = super::firewall::admit(shared, peer.ip(), local);
    let name = match verdict {
        super::firewall::Verdict::Accept => return Some(stream),
        super::firewall::Verdict::Drop => "DROP",
        super::firewall::Verdict::Reject => "REJECT",
    };
    shared.st().fw_refused.push(super::state::FirewallRefusal {
        source: peer.ip(),
        verdict: name,
    });
    if verdict == super::firewall::Verdict::Reject {
        let _ = stream.set_zero_linger();
        drop(stream);
        return None;
    }
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut stream = stream;
        let mut buf = [0u8; 4096];
        let hold = tokio::time::sleep(Duration::from_secs(300));
        tokio::pin!(hold);
        loop {
            tokio::select! {
                _ = &mut hold => break,
                r = stream.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
            }
        }
    });
    None
}

async fn handle_conn(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        _ => return,
    };
    let cs = Arc::new(ConnState {
        active: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
    });
    let svc_cs = cs.clone();
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let cs = svc_cs.clone();
        let shared = svc_shared.clone();
        async move {
            cs.active.fetch_add(1, Ordering::SeqCst);
            cs.touch();
            let r = handle(req, shared).await;
            cs.touch();
            cs.active.fetch_sub(1, Ordering::SeqCst);
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    let idle = shared.cfg.timings.idle_timeout;
    let tick = (idle / 5).max(Duration::from_millis(10));
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = tokio::time::sleep(tick), if !closing => {
                if cs.idle_for().map(|d| d >= idle).unwrap_or(false) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

fn reason_ok(s: &str) -> String {
    let cleaned: String = s
        .trim_end_matches('\n')
        .chars()
        .map(|c| {
            if c == '\n' || c == '\r' || (c as u32) < 0x20 || c as u32 == 0x7f {
                ' '
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "Error".into()
    } else {
        cleaned
    }
}

fn respond(status: u16, reason: Option<&str>, body: Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"data\":null}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    h.insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("max-age=0"),
    );
    if status >= 400 {
        // PVE closes the connection after every error response.
        h.insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    if let Some(r) = reason {
        if let Ok(rp) = hyper::ext::ReasonPhrase::try_from(reason_ok(r)) {
            resp.extensions_mut().insert(rp);
        }
    }
    resp
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let mut body = json!({"data": null});
    if let Some(errs) = &e.errors {
        body["errors"] = json!(errs);
    }
    if e.status != 400 {
        body["message"] = json!(format!("{}\n", e.message.trim_end_matches('\n')));
    }
    respond(e.status, Some(&e.message), body)
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    for v in req.headers().get_all(hyper::header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, val)) = part.trim().split_once('=') {
                if k == name {
                    return Some(
                        url::form_urlencoded::parse(format!("x={val}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default(),
                    );
                }
            }
        }
    }
    None
}

fn authenticate(
    req: &Request<Incoming>,
    shared: &Shared,
    method: &str,
) -> Result<Caller, ApiError> {
    if let Some(a) = header(req, "authorization") {
        let Some(tok) = a
            .strip_prefix("PVEAPIToken=")
            .or_else(|| a.strip_prefix("PVEAPIToken "))
        else {
            return Err(ApiError::new(401, "authentication failure"));
        };
        let Some((id, secret)) = tok.trim().split_once('=') else {
            return Err(ApiError::new(401, "authentication failure"));
        };
        let st = shared.st();
        return match st.access.token_auth(id, secret) {
            Some(id) => Ok(Caller {
                id,
                access: Arc::new(st.access.clone()),
                is_ticket: false,
            }),
            None => Err(ApiError::new(401, "authentication failure")),
        };
    }
    if let Some(ticket) = cookie(req, "PVEAuthCookie") {
        let user = auth::verify_ticket(&shared.ticket_secret, &ticket, super::state::now(), 7200)
            .ok_or_else(|| ApiError::new(401, "authentication failure"))?;
        let access = {
            let st = shared.st();
            if !st.access.user_active(&user) {
                return Err(ApiError::new(401, "authentication failure"));
            }
            Arc::new(st.access.clone())
        };
        if method != "GET" {
            let ok = header(req, "csrfpreventiontoken")
                .map(|t| auth::verify_csrf(&shared.ticket_secret, t, &user))
                .unwrap_or(false);
            if !ok {
                return Err(ApiError::new(401, "Permission denied - invalid csrf token"));
            }
        }
        return Ok(Caller {
            id: user,
            access,
            is_ticket: true,
        });
    }
    Err(ApiError::new(401, "No ticket"))
}

async fn read_params(
    req: Request<Incoming>,
    shared: &Shared,
    method: &str,
    template: &str,
) -> Result<(Params, Option<(String, Vec<u8>)>), ApiError> {
    let mut params = req
        .uri()
        .query()
        .map(|q| spec::params_from_form(q.as_bytes()))
        .unwrap_or_default();
    if method == "GET" || method == "DELETE" {
        return Ok((params, None));
    }
    let ctype = header(&req, "content-type").unwrap_or("").to_string();
    let limited = Limited::new(req.into_body(), shared.cfg.max_body);
    let body = limited
        .collect()
        .await
        .map_err(|e| ApiError::new(413, format!("request body: {e}")))?
        .to_bytes();
    let mut upload = None;
    if ctype.starts_with("multipart/form-data") {
        if template != "/nodes/{node}/storage/{storage}/upload" {
            return Err(ApiError::new(501, "multipart upload not supported here"));
        }
        let boundary = multer::parse_boundary(&ctype)
            .map_err(|e| ApiError::new(400, format!("bad multipart: {e}")))?;
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut mp = multer::Multipart::new(stream, boundary);
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| ApiError::new(400, format!("bad multipart: {e}")))?
        {
            let name = field.name().unwrap_or("").to_string();
            let fname = field.file_name().map(str::to_string);
            let data = field
                .bytes()
                .await
                .map_err(|e| ApiError::new(400, format!("bad multipart: {e}")))?;
            if name == "filename" && fname.is_some() {
                let f = fname.unwrap_or_default();
                params.insert("filename".into(), ParamValue::One(f.clone()));
                upload = Some((f, data.to_vec()));
            } else {
                params.insert(
                    name,
                    ParamValue::One(String::from_utf8_lossy(&data).into_owned()),
                );
            }
        }
    } else if ctype.starts_with("application/json") {
        if !body.is_empty() {
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::new(400, format!("malformed JSON body: {e}")))?;
            for (k, v) in spec::params_from_json(&v).map_err(|e| ApiError::new(400, e))? {
                params.insert(k, v);
            }
        }
    } else {
        for (k, v) in spec::params_from_form(&body) {
            params.insert(k, v);
        }
    }
    Ok((params, upload))
}

fn redact(params: &Params) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|(k, v)| {
            let s = if matches!(
                k.as_str(),
                "password" | "cipassword" | "content" | "input-data" | "new-password"
            ) {
                "<redacted>".to_string()
            } else {
                match v {
                    ParamValue::One(s) => s.clone(),
                    ParamValue::Many(m) => m.join("\u{0}"),
                }
            };
            (k.clone(), s)
        })
        .collect()
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let method = req.method().as_str().to_ascii_uppercase();
    let full_path = req.uri().path().to_string();
    let mut record = RequestRecord {
        method: method.clone(),
        path: full_path.clone(),
        template: None,
        params: BTreeMap::new(),
        status: 0,
        user: None,
    };
    let result = pipeline(req, &shared, &method, &full_path, &mut record).await;
    let (resp, drop_after) = match result {
        Ok((data, ep, drop_after)) => {
            if shared.cfg.validate_responses {
                if let Err(errors) = shared.schema.validate_returns(&ep, &data) {
                    shared.st().violations.push(ResponseViolation {
                        method: method.clone(),
                        path: full_path.clone(),
                        template: ep.path.clone(),
                        errors,
                        data: data.clone(),
                    });
                }
            }
            record.status = 200;
            (respond(200, None, json!({ "data": data })), drop_after)
        }
        Err(Err(Dropped)) => {
            record.status = 0;
            shared.st().requests.push(record);
            return Err(Dropped);
        }
        Err(Ok(e)) => {
            record.status = e.status;
            (error_response(&e), false)
        }
    };
    shared.st().requests.push(record);
    if drop_after {
        return Err(Dropped);
    }
    Ok(resp)
}

type PipelineResult = Result<(Value, Arc<spec::Endpoint>, bool), Result<ApiError, Dropped>>;

async fn pipeline(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    method: &str,
    full_path: &str,
    record: &mut RequestRecord,
) -> PipelineResult {
    let Some(path) = full_path.strip_prefix("/api2/json") else {
        return Err(Ok(ApiError::new(
            501,
            format!("Unsupported API path '{full_path}'"),
        )));
    };
    let matched = match shared.schema.match_path(method, path) {
        Ok(m) => m,
        Err(MatchError::NoPath) | Err(MatchError::NoMethod) => {
            return Err(Ok(ApiError::new(
                501,
                format!("Method '{method} {path}' not implemented"),
            )));
        }
    };
    let ep = matched.endpoint.clone();
    record.template = Some(ep.path.clone());
    let world = ep
        .permissions()
        .and_then(|p| p.get("user"))
        .and_then(Value::as_str)
        == Some("world");
    let caller = if world {
        Caller::anonymous()
    } else {
        let c = authenticate(&req, shared, method).map_err(Ok)?;
        if !c.is_ticket && !ep.allow_token() {
            return Err(Ok(ApiError::new(
                401,
                "API tokens are not allowed for this endpoint",
            )));
        }
        c
    };
    record.user = (!caller.id.is_empty()).then(|| caller.id.clone());
    let (mut params, upload) = read_params(req, shared, method, &ep.path)
        .await
        .map_err(Ok)?;
    for (k, v) in &matched.path_params {
        params.insert(k.clone(), ParamValue::One(v.clone()));
    }
    record.params = redact(&params);
    shared
        .schema
        .validate_params(&ep, &params)
        .map_err(|e| Ok(ApiError::params(e)))?;
    let flat: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().to_string()))
        .collect();
    if let Some(check) = ep.permissions().and_then(|p| p.get("check")) {
        auth::eval_check(check, &caller, &flat)
            .map_err(|(p, privs)| Ok(ApiError::forbidden(&p, &privs)))?;
    }
    let faults = {
        let mut st = shared.st();
        st.faults.draw(method, &ep.path, path)
    };
    let mut ctx = Ctx {
        shared: shared.clone(),
        method: method.to_string(),
        template: ep.path.clone(),
        params,
        caller,
        fail_task: None,
        slow_boot: None,
        upload,
    };
    let mut drop_after = false;
    for f in faults {
        match f {
            FaultKind::Latency(d) => tokio::time::sleep(d).await,
            FaultKind::DropConnection => return Err(Err(Dropped)),
            FaultKind::DropResponse => drop_after = true,
            FaultKind::LockTimeout => {
                let what = match ctx.p("vmid") {
                    Some(v) => format!("/var/lock/qemu-server/lock-{v}.conf"),
                    None => "/var/lock/pve-manager/pve-config.lck".to_string(),
                };
                return Err(Ok(ApiError::die(format!(
                    "can't lock file '{what}' - got timeout"
                ))));
            }
            FaultKind::NoWorkerUpid => {
                return Err(Ok(ApiError::die(
                    "got no worker upid - start worker failed",
                )));
            }
            FaultKind::Error { status, reason } => return Err(Ok(ApiError::new(status, reason))),
            FaultKind::FailTask(m) => ctx.fail_task = Some(m),
            FaultKind::SlowBoot(d) => ctx.slow_boot = Some(d),
        }
    }
    let data = handlers::dispatch(&mut ctx).await.map_err(Ok)?;
    Ok((data, ep, drop_after))
}
