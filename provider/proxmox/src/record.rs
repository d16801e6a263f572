//! Request-recording hook.
//!
//! Install a [`RequestRecorder`] in [`crate::ClientConfig::recorder`] to observe every HTTP
//! exchange the client makes (including logins and retries). Intended for the schema contract
//! test (validate each request against `apischema.json`) and for counting API calls.

use std::sync::Mutex;

use serde_json::Value;

/// One HTTP exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// Path below `/api2/json`, as sent: each path segment percent-encoded (a volume id such as
    /// `local:iso/seed.iso` appears as `local:iso%2Fseed.iso`). Decode segments after matching
    /// them against a schema path template.
    pub path: String,
    /// Parameters as a JSON object (query for GET/DELETE, form body for POST/PUT). Values
    /// are typed: strings, integers, booleans, arrays for array parameters. Secrets (the
    /// password of `/access/ticket`) are replaced by `"***"`. For a multipart upload the file
    /// part is represented by its file name.
    pub params: Value,
    /// HTTP status, or `None` when the request failed below HTTP.
    pub status: Option<u16>,
    /// The decoded JSON response body (`{"data": ...}` or with `errors`), when there was one.
    pub response: Option<Value>,
}

/// Receives every HTTP exchange. Must be cheap and must not block.
pub trait RequestRecorder: Send + Sync {
    /// Called once per HTTP attempt, after the response was read (or the request failed).
    fn record(&self, request: &RecordedRequest);
}

/// A recorder that keeps everything in memory (handy in tests).
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    entries: Mutex<Vec<RecordedRequest>>,
}

impl MemoryRecorder {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Everything recorded so far.
    pub fn entries(&self) -> Vec<RecordedRequest> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
    /// Forget everything recorded so far.
    pub fn clear(&self) {
        if let Ok(mut e) = self.entries.lock() {
            e.clear();
        }
    }
}

impl RequestRecorder for MemoryRecorder {
    fn record(&self, request: &RecordedRequest) {
        if let Ok(mut e) = self.entries.lock() {
            e.push(request.clone());
        }
    }
}
