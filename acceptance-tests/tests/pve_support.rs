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

    /// `POST /access/ticket` without a token: a login as `username` with `password` (a
    /// password or a ticket to renew).
    pub async fn login(&self, username: &str, password: &str) -> Resp {
        self.call_with(
            None,
            "POST",
            "/access/ticket",
            &[("username", username), ("password", password)],
        )
        .await
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

// ---------------------------------------------------------------- Talos guests

/// A Talos Image Factory nocloud image URL (the Talos appliance matches it).
pub const TALOS_IMAGE_URL: &str = "https://factory.talos.dev/image/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515/v1.12.11/nocloud-amd64.qcow2";

/// Downloads `url` to `local:import/<filename>`.
pub async fn download(api: &Api, filename: &str, url: &str) {
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/storage/local/download-url",
            &[("content", "import"), ("filename", filename), ("url", url)],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
}

/// Uploads `iso` as `local:iso/<filename>`.
pub async fn upload_iso(api: &Api, filename: &str, iso: Vec<u8>) {
    let part = reqwest::multipart::Part::bytes(iso).file_name(filename.to_string());
    let form = reqwest::multipart::Form::new()
        .text("content", "iso")
        .part("filename", part);
    let r = api
        .http
        .post(api.url("/nodes/pve/storage/local/upload"))
        .header("Authorization", format!("PVEAPIToken={}", api.token))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let r = into_resp(r).await;
    assert_eq!(r.status, 200, "{} {}", r.reason, r.body);
    assert_eq!(
        api.wait_task(r.body["data"].as_str().expect("upid")).await,
        "OK"
    );
}

/// Creates VM `vmid` from `local:import/<image>` with one NIC (`mac` on `bridge`) plus the
/// `extra` parameters, and starts it.
pub async fn create_and_start_on(
    api: &Api,
    vmid: &str,
    image: &str,
    mac: &str,
    bridge: &str,
    extra: &[(&str, &str)],
) {
    let scsi0 = format!("local-lvm:0,import-from=local:import/{image},iothread=1");
    let net0 = format!("virtio={mac},bridge={bridge}");
    let name = format!("vm-{vmid}");
    let mut form = vec![
        ("vmid", vmid),
        ("name", name.as_str()),
        ("memory", "2048"),
        ("cores", "2"),
        ("agent", "1"),
        ("scsihw", "virtio-scsi-single"),
        ("scsi0", scsi0.as_str()),
        ("net0", net0.as_str()),
    ];
    form.extend_from_slice(extra);
    let upid = api.ok("POST", "/nodes/pve/qemu", &form).await;
    assert_eq!(api.wait_task(upid.as_str().unwrap()).await, "OK");
    let upid = api
        .ok("POST", &format!("/nodes/pve/qemu/{vmid}/status/start"), &[])
        .await;
    assert_eq!(api.wait_task(upid.as_str().unwrap()).await, "OK");
}

/// [`create_and_start_on`] on `vmbr0` without extra parameters.
pub async fn create_and_start(api: &Api, vmid: &str, image: &str, mac: &str) {
    create_and_start_on(api, vmid, image, mac, "vmbr0", &[]).await;
}

/// The IPv4 addresses the guest agent reports on the NIC with `mac` (`None` while the agent
/// does not answer).
pub async fn agent_ipv4s(api: &Api, vmid: &str, mac: &str) -> Option<Vec<std::net::Ipv4Addr>> {
    let r = api
        .call(
            "GET",
            &format!("/nodes/pve/qemu/{vmid}/agent/network-get-interfaces"),
            &[],
        )
        .await;
    if r.status != 200 {
        return None;
    }
    let ifs = r.body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Some(
        ifs.iter()
            .filter(|i| i["hardware-address"].as_str() == Some(&mac.to_ascii_lowercase()))
            .flat_map(|i| i["ip-addresses"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["ip-address-type"] == "ipv4")
            .filter_map(|a| a["ip-address"].as_str().and_then(|s| s.parse().ok()))
            .collect(),
    )
}

/// The IPv4 address the guest agent reports on the NIC with `mac`, once there is one
/// matching `want` (polls; bounded).
pub async fn agent_ipv4(
    api: &Api,
    vmid: &str,
    mac: &str,
    want: impl Fn(std::net::Ipv4Addr) -> bool,
) -> std::net::Ipv4Addr {
    for _ in 0..500 {
        if let Some(ip) = agent_ipv4s(api, vmid, mac)
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|ip| want(*ip))
        {
            return ip;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("guest agent never reported a matching address");
}
