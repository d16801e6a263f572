//! Shared helpers for the PVE emulator tests (included with `#[path]` by the others).
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use waddle_acceptance::pve::{EmulatorConfig, PveEmulator, Timings};

pub struct Api {
    pub emu: PveEmulator,
    pub http: reqwest::Client,
    pub token: String,
}

pub struct Resp {
    pub status: u16,
    pub reason: String,
    pub body: Value,
}

pub fn client(ca_pem: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca pem");
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub async fn start(cfg: EmulatorConfig) -> Api {
    let emu = PveEmulator::start(cfg).await.expect("emulator starts");
    let http = client(emu.ca_pem());
    let token = emu.api_token().expect("token");
    Api { emu, http, token }
}

pub fn fast() -> waddle_acceptance::pve::EmulatorBuilder {
    EmulatorConfig::builder().timings(Timings::fast())
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api2/json{}", self.emu.endpoint(), path)
    }

    pub async fn call_with(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Resp {
        raw_call(&self.http, &self.emu.endpoint(), token, method, path, form).await
    }

    pub async fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Resp {
        self.call_with(Some(&self.token.clone()), method, path, form)
            .await
    }

    pub async fn ok(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        let r = self.call(method, path, form).await;
        assert_eq!(r.status, 200, "{method} {path}: {} {}", r.reason, r.body);
        r.body["data"].clone()
    }

    /// Wait for a task to stop; returns its exitstatus.
    pub async fn wait_task(&self, upid: &str) -> String {
        let node = upid.split(':').nth(1).expect("node in upid").to_string();
        let enc = url_encode(upid);
        for _ in 0..500 {
            let st = self
                .ok("GET", &format!("/nodes/{node}/tasks/{enc}/status"), &[])
                .await;
            if st["status"] == "stopped" {
                return st["exitstatus"].as_str().unwrap_or("").to_string();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {upid} did not finish");
    }

    pub fn assert_no_violations(&self) {
        let v = self.emu.response_violations();
        assert!(v.is_empty(), "responses not matching `returns`: {v:#?}");
    }
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let reason = r
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
        .unwrap_or_else(|| r.status().canonical_reason().unwrap_or("").to_string());
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Resp {
        status,
        reason,
        body,
    }
}

pub fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One API call against `endpoint` (`https://ip:port`).
pub async fn raw_call(
    http: &reqwest::Client,
    endpoint: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Resp {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = http.request(m, format!("{endpoint}/api2/json{path}"));
    if let Some(t) = token {
        rb = rb.header("Authorization", format!("PVEAPIToken={t}"));
    }
    if method == "GET" || method == "DELETE" {
        rb = rb.query(form);
    } else {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        rb = rb
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
    }
    let r = rb.send().await.expect("request");
    into_resp(r).await
}
