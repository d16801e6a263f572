//! Error types and their classification.
//!
//! Proxmox VE reports errors in two places: the HTTP *reason phrase* (for example
//! `500 can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout`) and, for
//! parameter validation failures (HTTP 400), a per-parameter `errors` map in the JSON body
//! (`{"data":null,"errors":{"memory":"value must have a minimum value of 16"}}`).
//! [`ApiError`] keeps both so the provider can attach each message to the attribute path the
//! parameter came from ([`Error::parameter_errors`]).

use std::collections::BTreeMap;
use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Classification of an HTTP-level error returned by the Proxmox API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorKind {
    /// 401: bad credentials, expired ticket, unknown token.
    Auth,
    /// 403: authenticated but lacking a privilege.
    Permission,
    /// The object does not exist (HTTP 404, or PVE's 500 "Configuration file ... does not
    /// exist" / "no such ..." messages).
    NotFound,
    /// 400 with a per-parameter `errors` map (or a plain 400).
    Validation,
    /// "can't lock file ... got timeout": another operation holds the lock; nothing was done.
    LockTimeout,
    /// 5xx "got no worker upid": the worker could not be started.
    NoWorkerUpid,
    /// "... already exists" (for example a VMID taken between `nextid` and create).
    AlreadyExists,
    /// 595/596: pveproxy could not reach the target node (cluster-internal proxying).
    ProxyUnreachable,
    /// Anything else.
    Other,
}

/// An error response from the Proxmox API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP method of the failed request.
    pub method: String,
    /// API path (below `/api2/json`) of the failed request.
    pub path: String,
    /// HTTP status code.
    pub status: u16,
    /// PVE's message: the reason phrase (falls back to the canonical reason, then to a
    /// `message` field in the body).
    pub message: String,
    /// Per-parameter validation messages from the body's `errors` map (parameter name ->
    /// message). Empty when the response had none.
    pub errors: BTreeMap<String, String>,
    /// Classification, see [`ApiErrorKind`].
    pub kind: ApiErrorKind,
}

impl ApiError {
    /// Build an error from the response parts and classify it.
    pub fn new(
        method: impl Into<String>,
        path: impl Into<String>,
        status: u16,
        message: impl Into<String>,
        errors: BTreeMap<String, String>,
    ) -> Self {
        let message = message.into();
        let kind = classify(status, &message, &errors);
        ApiError {
            method: method.into(),
            path: path.into(),
            status,
            message,
            errors,
            kind,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Proxmox API {} {} failed: HTTP {}: {}",
            self.method,
            self.path,
            self.status,
            self.message.trim_end()
        )?;
        for (param, msg) in &self.errors {
            write!(f, "; {param}: {}", msg.trim_end())?;
        }
        if self.kind == ApiErrorKind::Auth {
            f.write_str(AUTH_HINT)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Classify a PVE error by status and message. Public so callers (and tests) can classify
/// messages found elsewhere, e.g. in a task's exit status.
pub fn classify(status: u16, message: &str, errors: &BTreeMap<String, String>) -> ApiErrorKind {
    let lower = message.to_ascii_lowercase();
    if lower.contains("can't lock file") && lower.contains("got timeout") {
        return ApiErrorKind::LockTimeout;
    }
    if lower.contains("got no worker upid") {
        return ApiErrorKind::NoWorkerUpid;
    }
    match status {
        401 => return ApiErrorKind::Auth,
        403 => return ApiErrorKind::Permission,
        404 => return ApiErrorKind::NotFound,
        400 if !errors.is_empty() => return ApiErrorKind::Validation,
        595 | 596 => return ApiErrorKind::ProxyUnreachable,
        _ => {}
    }
    if lower.contains("already exists") {
        return ApiErrorKind::AlreadyExists;
    }
    if status >= 500
        && ((lower.contains("configuration file") && lower.contains("does not exist"))
            || lower.contains("no such vm")
            || lower.contains("no such volume")
            || lower.contains("no such storage")
            || lower.contains("does not exist"))
    {
        return ApiErrorKind::NotFound;
    }
    if status == 400 {
        return ApiErrorKind::Validation;
    }
    ApiErrorKind::Other
}

/// How far a failed transport-level request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The request never reached the server (connect refused, TLS failure, pooled connection
    /// found closed before the request was written). Always safe to retry.
    NotSent,
    /// The connection was closed or reset after the request may have been written: the server
    /// may or may not have acted on it. Safe to retry only for idempotent calls.
    MaybeSent,
    /// The request timed out.
    Timeout,
    /// The TLS handshake failed (for example the server certificate is not signed by the pinned
    /// CA). Never retried.
    Tls,
}

/// Every error this crate returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client configuration is invalid (endpoint, token format, CA PEM, proxy URL).
    #[error("invalid Proxmox client configuration: {0}")]
    Config(String),
    /// An argument to an operation is invalid (checked before any API call).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The API answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request failed below HTTP (connection, TLS, timeout).
    #[error("Proxmox API {method} {path}: connection error: {message}{}", transport_hint(*.kind, .message))]
    Transport {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// Error chain rendered as text.
        message: String,
        /// How far the request got.
        kind: TransportKind,
    },
    /// A worker task finished with an error exit status.
    #[error("Proxmox task {upid} failed: {exitstatus}{}", render_tail(.log_tail))]
    TaskFailed {
        /// The task's UPID.
        upid: String,
        /// The exit status reported by PVE (the error message).
        exitstatus: String,
        /// The last lines of the task log.
        log_tail: Vec<String>,
    },
    /// Waiting for something (a task, a guest agent, a shutdown) exceeded its deadline.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// The deadline in seconds.
        seconds: u64,
    },
    /// The operation was cancelled through its cancellation token.
    #[error("operation cancelled")]
    Cancelled,
    /// The response did not have the expected shape.
    #[error("unexpected response from Proxmox API {path}: {message}")]
    Decode {
        /// API path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The API refused or failed every connection for longer than
    /// [`crate::Timeouts::unreachable`]: the operation fails instead of retrying on.
    #[error(
        "the Proxmox VE API at {endpoint} has been unreachable for {seconds}s (limit {limit}s); last error: {last}"
    )]
    Unreachable {
        /// The API base URL.
        endpoint: String,
        /// How long connections have been failing.
        seconds: u64,
        /// The configured limit in seconds.
        limit: u64,
        /// The last connection error (its cause chain included).
        #[source]
        last: Box<Error>,
    },
    /// A VM is not marked as owned by the caller: it is neither adopted nor deleted.
    #[error(
        "VM {vmid}{} is not owned by {expected}: it carries {}; refusing to adopt or delete it",
        .name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
        .found.as_deref().map(|f| format!("the mark \"waddle-owner: {f}\"")).unwrap_or_else(|| "no waddle-owner mark".into())
    )]
    NotOwned {
        /// The VMID.
        vmid: u32,
        /// The VM's name, when it has one.
        name: Option<String>,
        /// The owner the caller expected.
        expected: String,
        /// The owner mark the VM carries, if any.
        found: Option<String>,
    },
    /// The VM was created, but a later step of the create (disk resize, wait) failed. The
    /// caller owns the VM and must record it.
    #[error("VM {vmid} was created, but: {source}")]
    CreatedIncomplete {
        /// The VMID of the VM that exists.
        vmid: u32,
        /// What failed after the VM existed.
        source: Box<Error>,
    },
    /// A guest agent command ran but failed (non-zero exit, signal).
    #[error("guest command failed with exit code {exitcode:?}: {stderr}")]
    GuestCommand {
        /// Exit code, when the process exited.
        exitcode: Option<i64>,
        /// Captured standard error (possibly truncated).
        stderr: String,
    },
}

/// What to check after HTTP 401: the credentials, named as the provider and the environment
/// take them.
const AUTH_HINT: &str = " (the credentials were refused: check the API token, the provider's \
     `api_token` or PROXMOX_VE_API_TOKEN, in the form USER@REALM!TOKENID=SECRET; it may be \
     mistyped, expired or deleted)";

/// What to do about a TLS failure, when the cause is recognisable.
fn transport_hint(kind: TransportKind, message: &str) -> &'static str {
    if kind != TransportKind::Tls {
        return "";
    }
    let m = message.to_ascii_lowercase().replace(['_', ' '], "");
    let untrusted = ["unknownissuer", "selfsigned", "unknownca", "badsignature"];
    if untrusted.iter().any(|u| m.contains(u)) {
        " (the server's certificate is not signed by a trusted CA: pin the Proxmox VE CA with \
         the provider's `ca_cert` or PROXMOX_VE_CA_CERT, or set `insecure = true` or \
         PROXMOX_VE_INSECURE to skip verification)"
    } else if m.contains("notvalidforname") {
        " (the server's certificate does not name the endpoint's host: use a host name the \
         certificate is issued for in `endpoint` / PROXMOX_VE_ENDPOINT)"
    } else {
        ""
    }
}

fn render_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(
            "\ntask log (last {} lines):\n{}",
            lines.len(),
            lines.join("\n")
        )
    }
}

impl Error {
    /// The VMID of a VM that exists although the create failed ([`Error::CreatedIncomplete`]).
    pub fn created_vmid(&self) -> Option<u32> {
        match self {
            Error::CreatedIncomplete { vmid, .. } => Some(*vmid),
            _ => None,
        }
    }

    /// The API error classification, when this is an API error.
    pub fn api_kind(&self) -> Option<ApiErrorKind> {
        match self {
            Error::Api(e) => Some(e.kind),
            _ => None,
        }
    }

    /// True when the object addressed does not exist.
    pub fn is_not_found(&self) -> bool {
        self.api_kind() == Some(ApiErrorKind::NotFound)
    }

    /// True for a lock timeout (from the API or as a task's exit status).
    pub fn is_lock_timeout(&self) -> bool {
        match self {
            Error::Api(e) => e.kind == ApiErrorKind::LockTimeout,
            Error::TaskFailed { exitstatus, .. } => {
                classify(500, exitstatus, &BTreeMap::new()) == ApiErrorKind::LockTimeout
            }
            _ => false,
        }
    }

    /// Per-parameter validation messages (parameter name -> message), for mapping to
    /// attribute paths. Empty for errors that carry none.
    pub fn parameter_errors(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        match self {
            Error::Api(e) => &e.errors,
            _ => &EMPTY,
        }
    }

    /// Whether retrying the same request is safe and may succeed.
    ///
    /// `idempotent` says whether repeating the call has the same effect as doing it once
    /// (GET, PUT of a config, agent ping). Lock timeouts are retryable for every call because
    /// PVE gives up before acting; "got no worker upid" and connection drops after the request
    /// may have been sent are retryable only for idempotent calls; a request that was never
    /// sent is always retryable.
    pub fn is_retryable(&self, idempotent: bool) -> bool {
        match self {
            Error::Api(e) => match e.kind {
                ApiErrorKind::LockTimeout => true,
                ApiErrorKind::NoWorkerUpid | ApiErrorKind::ProxyUnreachable => idempotent,
                _ => false,
            },
            Error::Transport { kind, .. } => match kind {
                TransportKind::NotSent => true,
                TransportKind::MaybeSent | TransportKind::Timeout => idempotent,
                TransportKind::Tls => false,
            },
            _ => false,
        }
    }

    /// The API has been unreachable for longer than the client's limit: waits that retry
    /// on errors must stop and report this.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    pub(crate) fn decode(path: &str, message: impl Into<String>) -> Self {
        Error::Decode {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_errors() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn classifies_pve_messages() {
        let e = no_errors();
        assert_eq!(
            classify(
                500,
                "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
                &e
            ),
            ApiErrorKind::LockTimeout
        );
        assert_eq!(
            classify(500, "got no worker upid - start worker failed", &e),
            ApiErrorKind::NoWorkerUpid
        );
        assert_eq!(
            classify(
                500,
                "Configuration file 'nodes/pve/qemu-server/999.conf' does not exist",
                &e
            ),
            ApiErrorKind::NotFound
        );
        assert_eq!(
            classify(
                500,
                "unable to create VM 100 - VM 100 already exists on node 'pve'",
                &e
            ),
            ApiErrorKind::AlreadyExists
        );
        assert_eq!(
            classify(401, "authentication failure", &e),
            ApiErrorKind::Auth
        );
        assert_eq!(
            classify(403, "Permission check failed (/vms/100, VM.Allocate)", &e),
            ApiErrorKind::Permission
        );
        assert_eq!(classify(404, "Not Found", &e), ApiErrorKind::NotFound);
        assert_eq!(
            classify(596, "Connection timed out", &e),
            ApiErrorKind::ProxyUnreachable
        );
        let mut m = no_errors();
        m.insert(
            "memory".into(),
            "value must have a minimum value of 16".into(),
        );
        assert_eq!(
            classify(400, "Parameter verification failed.", &m),
            ApiErrorKind::Validation
        );
        assert_eq!(classify(500, "something broke", &e), ApiErrorKind::Other);
    }

    #[test]
    fn display_includes_reason_and_each_parameter() {
        let mut m = BTreeMap::new();
        m.insert("net0".to_string(), "invalid format - bad mac\n".to_string());
        m.insert("cores".to_string(), "must be >= 1".to_string());
        let err = ApiError::new(
            "POST",
            "/nodes/pve/qemu",
            400,
            "Parameter verification failed.",
            m,
        );
        let text = err.to_string();
        assert!(text.contains("HTTP 400: Parameter verification failed."));
        assert!(text.contains("; cores: must be >= 1"));
        assert!(text.contains("; net0: invalid format - bad mac"));
        let e = Error::from(err);
        assert_eq!(e.parameter_errors().len(), 2);
        assert_eq!(e.api_kind(), Some(ApiErrorKind::Validation));
    }

    #[test]
    fn retry_classification() {
        let lock = Error::from(ApiError::new(
            "POST",
            "/x",
            500,
            "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout",
            BTreeMap::new(),
        ));
        assert!(lock.is_retryable(false));
        assert!(lock.is_retryable(true));
        let worker = Error::from(ApiError::new(
            "POST",
            "/x",
            500,
            "got no worker upid - fork failed",
            BTreeMap::new(),
        ));
        assert!(!worker.is_retryable(false));
        assert!(worker.is_retryable(true));
        let not_sent = Error::Transport {
            method: "POST".into(),
            path: "/x".into(),
            message: "connection refused".into(),
            kind: TransportKind::NotSent,
        };
        assert!(not_sent.is_retryable(false));
        let maybe = Error::Transport {
            method: "POST".into(),
            path: "/x".into(),
            message: "connection reset".into(),
            kind: TransportKind::MaybeSent,
        };
        assert!(!maybe.is_retryable(false));
        assert!(maybe.is_retryable(true));
        let tls = Error::Transport {
            method: "GET".into(),
            path: "/x".into(),
            message: "invalid peer certificate".into(),
            kind: TransportKind::Tls,
        };
        assert!(!tls.is_retryable(true));
        let validation = Error::from(ApiError::new("GET", "/x", 400, "bad", BTreeMap::new()));
        assert!(!validation.is_retryable(true));
        let task = Error::TaskFailed {
            upid: "UPID:x".into(),
            exitstatus: "can't lock file '/var/lock/qemu-server/lock-5.conf' - got timeout".into(),
            log_tail: vec![],
        };
        assert!(task.is_lock_timeout());
        assert!(task.to_string().contains("got timeout"));
    }
}
