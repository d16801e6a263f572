//! A Teleport 18 stand-in for the emulator's Debian guest (`pve::DebianAppliance`): what a
//! provider can observe of Teleport Community installed from Teleport's apt repository.
//!
//! * **apt**: `apt-get update` reads the source lists; the repository
//!   (`https://apt.releases.teleport.dev/debian bookworm stable/v<major>`) is only usable when
//!   its `signed-by` key file holds the key `curl` fetched from
//!   `https://apt.releases.teleport.dev/gpg`; `apt-get install teleport=<v>` needs `<v>` in the
//!   channel of its major (a published version, [`PUBLISHED`]) and refuses a downgrade without
//!   `--allow-downgrades`.
//! * **start** (`systemctl start|restart|reload teleport`, `teleport configure --test`):
//!   `teleport.yaml` is parsed strictly ([`config::parse`], key set in [`keys`]); a major
//!   version more than one above (or below) the one that last ran on the data directory
//!   refuses to start, as Teleport does; the kubeconfig file must exist.
//! * **serving**, only after a valid start: `/readyz` on `diag_addr`, `/webapi/ping` on the
//!   web port (auth type, connector name; PROXY protocol must match `proxy_protocol`), and
//!   `tctl create|get|rm` with the connector (`kind: github`, `version: v3`, client id and
//!   secret, redirect URL, `teams_to_roles`) and role (`kind: role`, `version: v3`..`v8`)
//!   checks; `tctl get` never prints the client secret.
//! * **GitHub**: `curl` to `https://github.com/login/oauth/access_token` answers as GitHub
//!   does for the sandbox's one registered OAuth app ([`SANDBOX_GITHUB_CLIENT_ID`] /
//!   [`SANDBOX_GITHUB_CLIENT_SECRET`]): `bad_verification_code` for the right credentials and a
//!   made-up code, `incorrect_client_credentials` for anything else.
//!
//! Nothing here uses the provider's code (`waddle-teleport`): the checks are written from
//! Teleport's documentation independently.

pub mod config;
pub mod keys;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value as Json};

use crate::pve::ExecOutcome;

/// The OAuth app registered in the sandbox's GitHub.
pub const SANDBOX_GITHUB_CLIENT_ID: &str = "Iv1.5a4db0x5andb0x1";
/// Its client secret.
pub const SANDBOX_GITHUB_CLIENT_SECRET: &str = "0b5c1e7a2d94f83e6c17b0a9d25e48f16c3a7d90";

/// Teleport releases the sandbox's apt repository publishes.
pub const PUBLISHED: &[&str] = &[
    "16.5.18", "17.7.2", "17.7.23", "18.0.0", "18.7.6", "18.8.0", "18.8.1", "18.8.2", "19.0.1",
];

/// The repository's key as the sandbox serves it.
pub const REPO_KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBsandboxTeleportReleaseKey\n-----END PGP PUBLIC KEY BLOCK-----\n";
const REPO_URL: &str = "https://apt.releases.teleport.dev/debian";

/// The guest's file system as the stand-in sees it.
pub trait GuestFs {
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    fn write(&self, path: &str, data: &[u8]) -> Result<(), String>;
    /// The files of a directory (full guest paths).
    fn list(&self, dir: &str) -> Vec<String>;
}

#[derive(Debug, Default)]
struct Inner {
    /// Majors whose channel `apt-get update` indexed (signed).
    indexed: Vec<u32>,
    installed: Option<String>,
    running: Option<config::Parsed>,
    /// The major that last ran on each data directory.
    data_major: BTreeMap<String, u32>,
    /// (kind, name) -> resource as stored.
    resources: BTreeMap<(String, String), Json>,
    revision: u64,
}

/// The Teleport stand-in of one guest.
#[derive(Debug, Default)]
pub struct TeleportStandIn {
    inner: Mutex<Inner>,
}

fn major(v: &str) -> Option<u32> {
    v.split('.').next()?.parse().ok()
}

fn cmp_version(a: &str, b: &str) -> std::cmp::Ordering {
    let p = |v: &str| -> Vec<u32> { v.split('.').map(|x| x.parse().unwrap_or(0)).collect() };
    p(a).cmp(&p(b))
}

fn fail(code: i32, msg: impl Into<String>) -> ExecOutcome {
    ExecOutcome::fail(code, msg)
}

impl TeleportStandIn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The installed version.
    pub fn installed(&self) -> Option<String> {
        self.lock().installed.clone()
    }
    /// Whether Teleport runs (after a valid start).
    pub fn running(&self) -> bool {
        self.lock().running.is_some()
    }
    /// A stored resource (`kind`, `name`), secrets included (for tests).
    pub fn resource(&self, kind: &str, name: &str) -> Option<Json> {
        self.lock()
            .resources
            .get(&(kind.into(), name.into()))
            .cloned()
    }

    /// `apt-get update`: index the Teleport channels of the source lists whose key is there.
    pub fn apt_update(&self, fs: &dyn GuestFs) -> ExecOutcome {
        let mut lists = fs.list("/etc/apt/sources.list.d");
        lists.push("/etc/apt/sources.list".into());
        let mut indexed = Vec::new();
        let mut out = String::new();
        for l in lists.iter().filter(|l| l.ends_with(".list")) {
            let text = fs
                .read(l)
                .map(|d| String::from_utf8_lossy(&d).into_owned())
                .unwrap_or_default();
            for line in text
                .lines()
                .map(str::trim)
                .filter(|x| x.starts_with("deb "))
            {
                let rest = line.trim_start_matches("deb ").trim();
                let (opts, rest) = match rest.strip_prefix('[') {
                    Some(r) => match r.split_once(']') {
                        Some((o, r)) => (o.to_string(), r.trim().to_string()),
                        None => return fail(100, format!("E: Malformed entry in list file {l}\n")),
                    },
                    None => (String::new(), rest.to_string()),
                };
                let words: Vec<&str> = rest.split_whitespace().collect();
                let [url, suite, comps @ ..] = words.as_slice() else {
                    return fail(100, format!("E: Malformed entry in list file {l}\n"));
                };
                if *url != REPO_URL {
                    continue;
                }
                let key = opts
                    .split_whitespace()
                    .find_map(|o| o.strip_prefix("signed-by="))
                    .map(String::from);
                let key_ok = key
                    .as_deref()
                    .and_then(|k| fs.read(k))
                    .is_some_and(|d| d == REPO_KEY.as_bytes());
                if !key_ok {
                    return fail(
                        100,
                        format!(
                            "W: GPG error: {url} {suite} InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY C87ED53A6282C411\nE: The repository '{url} {suite} InRelease' is not signed.\n"
                        ),
                    );
                }
                if *suite != "bookworm" {
                    return fail(100, format!("E: The repository '{url} {suite} Release' does not have a Release file.\n"));
                }
                for c in comps {
                    match c
                        .strip_prefix("stable/v")
                        .and_then(|m| m.parse::<u32>().ok())
                    {
                        Some(m) if PUBLISHED.iter().any(|v| major(v) == Some(m)) => indexed.push(m),
                        _ => {
                            return fail(
                                100,
                                format!(
                                "E: The repository '{url} {suite} Release' has no component {c}.\n"
                            ),
                            )
                        }
                    }
                }
                out.push_str(&format!("Hit:1 {url} {suite} InRelease\n"));
            }
        }
        self.lock().indexed = indexed;
        ExecOutcome::ok(format!("{out}Reading package lists... Done\n"))
    }

    /// `apt-get install [flags] teleport[=version]`.
    pub fn apt_install(&self, spec: &str, allow_downgrades: bool) -> ExecOutcome {
        let mut inner = self.lock();
        let want = match spec.split_once('=') {
            Some((_, v)) => v.to_string(),
            None => match PUBLISHED
                .iter()
                .filter(|v| major(v).is_some_and(|m| inner.indexed.contains(&m)))
                .max_by(|a, b| cmp_version(a, b))
            {
                Some(v) => v.to_string(),
                None => return fail(100, "E: Unable to locate package teleport\n"),
            },
        };
        if inner.indexed.is_empty() {
            return fail(100, "E: Unable to locate package teleport\n");
        }
        let in_channel = major(&want).is_some_and(|m| inner.indexed.contains(&m));
        if !in_channel || !PUBLISHED.contains(&want.as_str()) {
            return fail(
                100,
                format!("E: Version '{want}' for 'teleport' was not found\n"),
            );
        }
        if let Some(cur) = &inner.installed {
            if cmp_version(&want, cur).is_lt() && !allow_downgrades {
                return fail(
                    100,
                    "E: Packages were downgraded and -y was used without --allow-downgrades.\n",
                );
            }
        }
        inner.installed = Some(want.clone());
        ExecOutcome::ok(format!("Setting up teleport ({want}) ...\n"))
    }

    /// Check a start with the file at `config_path` (`Ok`: what would run).
    fn check_start(&self, fs: &dyn GuestFs, config_path: &str) -> Result<config::Parsed, String> {
        let inner = self.lock();
        let Some(version) = inner.installed.clone() else {
            return Err("teleport: command not found".into());
        };
        let text = fs.read(config_path).ok_or_else(|| {
            format!("failed to open file for Teleport configuration at {config_path}")
        })?;
        let parsed = config::parse(&String::from_utf8_lossy(&text))?;
        let m = major(&version).unwrap_or(0);
        if let Some(last) = inner.data_major.get(&parsed.data_dir) {
            if m > last + 1 {
                return Err(format!(
                    "Teleport {version} cannot start on {}: it was last used by Teleport {last}, and upgrading more than one major version at a time is not supported; upgrade to {}.x first",
                    parsed.data_dir,
                    last + 1
                ));
            }
            if m < *last {
                return Err(format!(
                    "Teleport {version} cannot start on {}: it was last used by the newer Teleport {last}; downgrading a major version is not supported",
                    parsed.data_dir
                ));
            }
        }
        if let Some(k) = &parsed.kubeconfig_file {
            if fs.read(k).is_none() {
                return Err(format!(
                    "failed to load kubeconfig {k}: open {k}: no such file or directory"
                ));
            }
        }
        Ok(parsed)
    }

    /// `systemctl start|restart|reload teleport`.
    pub fn start(&self, fs: &dyn GuestFs) -> Result<(), String> {
        let parsed = self.check_start(fs, "/etc/teleport.yaml")?;
        let mut inner = self.lock();
        let m = inner.installed.as_deref().and_then(major).unwrap_or(0);
        inner.data_major.insert(parsed.data_dir.clone(), m);
        inner.running = Some(parsed);
        Ok(())
    }

    /// `systemctl stop teleport` (or the VM stopping).
    pub fn stop(&self) {
        self.lock().running = None;
    }

    /// A command this stand-in answers (`None`: not Teleport's).
    pub fn exec(&self, fs: &dyn GuestFs, cmd: &str, args: &[String]) -> Option<ExecOutcome> {
        Some(match cmd {
            "teleport" => self.teleport_cmd(fs, args),
            "tctl" => self.tctl(fs, args),
            "curl" => self.curl(fs, args),
            "dpkg-query" if args.last().map(String::as_str) == Some("teleport") => {
                match self.installed() {
                    Some(v) => ExecOutcome::ok(if args.iter().any(|a| a.starts_with("-f")) {
                        v
                    } else {
                        format!("teleport\t{v}\n")
                    }),
                    None => fail(1, "dpkg-query: no packages found matching teleport\n"),
                }
            }
            _ => return None,
        })
    }

    fn teleport_cmd(&self, fs: &dyn GuestFs, args: &[String]) -> ExecOutcome {
        let Some(version) = self.installed() else {
            return fail(127, "sh: 1: teleport: not found\n");
        };
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["version", ..] => ExecOutcome::ok(format!(
                "Teleport v{version} git:v{version}-0-g0000000 go1.24.5\n"
            )),
            ["configure", "--test", path] => match self.fs_config(fs, path) {
                Ok(_) => ExecOutcome::ok(""),
                Err(e) => fail(1, format!("ERROR: {e}\n")),
            },
            _ => fail(
                1,
                "teleport: only `version` and `configure --test FILE` are emulated\n",
            ),
        }
    }

    fn fs_config(&self, fs: &dyn GuestFs, path: &str) -> Result<config::Parsed, String> {
        let text = fs
            .read(path)
            .ok_or_else(|| format!("open {path}: no such file or directory"))?;
        config::parse(&String::from_utf8_lossy(&text))
    }

    fn tctl(&self, fs: &dyn GuestFs, args: &[String]) -> ExecOutcome {
        if self.installed().is_none() {
            return fail(127, "sh: 1: tctl: not found\n");
        }
        if !self.running() {
            return fail(1, "ERROR: failed to connect to the auth service at 127.0.0.1:3025: connection refused\n");
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["create", rest @ ..] => {
                let force = rest.contains(&"-f") || rest.contains(&"--force");
                let Some(path) = rest.iter().find(|x| !x.starts_with('-')) else {
                    return fail(1, "ERROR: tctl create needs a file\n");
                };
                let Some(data) = fs.read(path) else {
                    return fail(
                        1,
                        format!("ERROR: open {path}: no such file or directory\n"),
                    );
                };
                self.create(&String::from_utf8_lossy(&data), force)
            }
            ["get", what, rest @ ..] => {
                let Some((kind, name)) = what.split_once('/') else {
                    return fail(1, "ERROR: expected <kind>/<name>\n");
                };
                let json_out = rest.contains(&"--format=json");
                let with_secrets = rest.contains(&"--with-secrets");
                let inner = self.lock();
                let Some(doc) = inner.resources.get(&(kind.to_string(), name.to_string())) else {
                    return fail(1, format!("ERROR: {kind} \"{name}\" doesn't exist\n"));
                };
                let mut doc = doc.clone();
                if kind == "github" && !with_secrets {
                    if let Some(spec) = doc.get_mut("spec").and_then(Json::as_object_mut) {
                        spec.remove("client_secret");
                    }
                }
                let out = if json_out {
                    serde_json::to_string_pretty(&json!([doc])).unwrap_or_default()
                } else {
                    serde_yaml_ng::to_string(&doc).unwrap_or_default()
                };
                ExecOutcome::ok(format!("{out}\n"))
            }
            ["rm", what] => {
                let Some((kind, name)) = what.split_once('/') else {
                    return fail(1, "ERROR: expected <kind>/<name>\n");
                };
                match self
                    .lock()
                    .resources
                    .remove(&(kind.to_string(), name.to_string()))
                {
                    Some(_) => ExecOutcome::ok(format!("{kind} \"{name}\" has been deleted\n")),
                    None => fail(1, format!("ERROR: {kind} \"{name}\" doesn't exist\n")),
                }
            }
            _ => fail(1, "tctl: only create, get and rm are emulated\n"),
        }
    }

    fn create(&self, text: &str, force: bool) -> ExecOutcome {
        let mut docs = Vec::new();
        for d in serde_yaml_ng::Deserializer::from_str(text) {
            match <serde_yaml_ng::Value as serde::Deserialize>::deserialize(d) {
                Ok(serde_yaml_ng::Value::Null) => {}
                Ok(v) => match serde_json::to_value(&v) {
                    Ok(j) => docs.push(j),
                    Err(e) => return fail(1, format!("ERROR: {e}\n")),
                },
                Err(e) => return fail(1, format!("ERROR: failed to parse the resource: {e}\n")),
            }
        }
        let mut checked = Vec::new();
        for d in docs {
            match check_resource(&d) {
                Ok(key) => checked.push((key, d)),
                Err(e) => return fail(1, format!("ERROR: {e}\n")),
            }
        }
        let mut out = String::new();
        let mut inner = self.lock();
        for ((kind, name), mut d) in checked {
            let exists = inner.resources.contains_key(&(kind.clone(), name.clone()));
            if exists && !force {
                return fail(1, format!("ERROR: {kind} \"{name}\" already exists\n"));
            }
            inner.revision += 1;
            if let Some(m) = d.get_mut("metadata").and_then(Json::as_object_mut) {
                m.insert("revision".into(), json!(format!("rev-{}", inner.revision)));
            }
            if kind == "github" {
                if let Some(s) = d.get_mut("spec").and_then(Json::as_object_mut) {
                    s.entry("endpoint_url").or_insert(json!(""));
                    s.entry("api_endpoint_url").or_insert(json!(""));
                }
            }
            if kind == "role" {
                if let Some(s) = d.get_mut("spec").and_then(Json::as_object_mut) {
                    s.entry("deny").or_insert(json!({}));
                    s.entry("options")
                        .or_insert(json!({"max_session_ttl": "30h0m0s", "forward_agent": false}));
                }
            }
            inner.resources.insert((kind.clone(), name.clone()), d);
            let word = if kind == "github" {
                "authentication connector"
            } else {
                kind.as_str()
            };
            let verb = if exists {
                "has been updated"
            } else {
                "has been created"
            };
            out.push_str(&format!("{word} \"{name}\" {verb}\n"));
        }
        ExecOutcome::ok(out)
    }

    fn curl(&self, fs: &dyn GuestFs, args: &[String]) -> ExecOutcome {
        let mut out_file = None;
        let mut data = None;
        let mut method = "GET".to_string();
        let mut proxy_header = false;
        let mut url = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-o" | "--output" => out_file = it.next().cloned(),
                "-X" | "--request" => method = it.next().cloned().unwrap_or_default(),
                "-H" | "--header" => {
                    it.next();
                }
                "-d" | "--data" | "--data-binary" => {
                    data = it.next().cloned();
                    if method == "GET" {
                        method = "POST".into();
                    }
                }
                "--haproxy-protocol" => proxy_header = true,
                x if x.starts_with('-') => {}
                x => url = Some(x.to_string()),
            }
        }
        let Some(url) = url else {
            return fail(2, "curl: no URL specified\n");
        };
        let refused = |host: &str, port: &str| {
            fail(7, format!("curl: (7) Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server\n"))
        };
        let running = self.lock().running.clone();
        if url == "https://apt.releases.teleport.dev/gpg" {
            return match out_file {
                Some(f) => match fs.write(&f, REPO_KEY.as_bytes()) {
                    Ok(()) => ExecOutcome::ok(""),
                    Err(e) => fail(
                        23,
                        format!("curl: (23) Failure writing output to destination: {e}\n"),
                    ),
                },
                None => ExecOutcome::ok(REPO_KEY),
            };
        }
        if url == "https://github.com/login/oauth/access_token" {
            let body = match data.as_deref() {
                Some(d) if d.starts_with('@') => match fs.read(&d[1..]) {
                    Some(b) => String::from_utf8_lossy(&b).into_owned(),
                    None => {
                        return fail(
                            26,
                            format!(
                            "curl: (26) Failed to open/read local data from file/application {}\n",
                            &d[1..]
                        ),
                        )
                    }
                },
                Some(d) => d.to_string(),
                None => String::new(),
            };
            if method != "POST" {
                return ExecOutcome::ok(r#"{"error":"not_found"}"#);
            }
            return ExecOutcome::ok(github_token_answer(&body));
        }
        let Some((host, port, path)) = split_url(&url) else {
            return fail(3, format!("curl: (3) URL rejected: {url}\n"));
        };
        if !is_local(&host) {
            return fail(6, format!("curl: (6) Could not resolve host: {host}\n"));
        }
        let Some(run) = running else {
            return refused(&host, &port);
        };
        let diag_port = run
            .diag_addr
            .as_deref()
            .and_then(|d| d.rsplit_once(':'))
            .map(|(_, p)| p.to_string());
        let web_port = run
            .web_listen_addr
            .rsplit_once(':')
            .map(|(_, p)| p.to_string());
        if url.starts_with("http://")
            && diag_port.as_deref() == Some(port.as_str())
            && is_local(&host)
        {
            return match path.as_str() {
                "/readyz" | "/healthz" => ExecOutcome::ok(r#"{"status":"ok"}"#),
                _ => fail(22, "curl: (22) The requested URL returned error: 404\n"),
            };
        }
        if url.starts_with("https://")
            && web_port.as_deref() == Some(port.as_str())
            && is_local(&host)
        {
            if proxy_header != run.proxy_protocol {
                return fail(56, "curl: (56) Recv failure: Connection reset by peer\n");
            }
            if !args.iter().any(|a| {
                a == "-k"
                    || a == "--insecure"
                    || (a.starts_with('-') && !a.starts_with("--") && a.contains('k'))
            }) {
                return fail(
                    60,
                    "curl: (60) SSL certificate problem: self-signed certificate\n",
                );
            }
            return match path.as_str() {
                "/webapi/ping" => {
                    let connector = self
                        .lock()
                        .resources
                        .contains_key(&("github".to_string(), run.connector_name.clone()));
                    let mut auth = json!({"type": run.auth_type, "second_factor": "otp", "local": {"name": ""}, "private_key_policy": "none"});
                    if run.auth_type == "github" && connector {
                        auth["github"] = json!({"name": run.connector_name, "display": "GitHub"});
                    }
                    let version = self.installed().unwrap_or_default();
                    ExecOutcome::ok(json!({
                        "auth": auth,
                        "proxy": {"tls_routing_enabled": true},
                        "server_version": version,
                        "min_client_version": format!("{}.0.0", major(&version).unwrap_or(1).saturating_sub(1)),
                        "cluster_name": run.cluster_name,
                    }).to_string())
                }
                _ => fail(22, "curl: (22) The requested URL returned error: 404\n"),
            };
        }
        refused(&host, &port)
    }
}

fn is_local(h: &str) -> bool {
    h == "127.0.0.1" || h == "localhost"
}

/// (host, port, path) of an http(s) URL.
fn split_url(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (
            auth.to_string(),
            if scheme == "https" {
                "443".into()
            } else {
                "80".into()
            },
        ),
    };
    Some((host, port, path))
}

fn form_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GitHub's answer to a token request with a code it never issued.
fn github_token_answer(body: &str) -> String {
    let form: BTreeMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    let id = form
        .get("client_id")
        .map(String::as_str)
        .unwrap_or_default();
    let secret = form
        .get("client_secret")
        .map(String::as_str)
        .unwrap_or_default();
    if id == SANDBOX_GITHUB_CLIENT_ID && secret == SANDBOX_GITHUB_CLIENT_SECRET {
        json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired.", "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"}).to_string()
    } else {
        json!({"error": "incorrect_client_credentials", "error_description": "The client_id and/or client_secret passed are incorrect.", "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials"}).to_string()
    }
}

fn s<'a>(v: &'a Json, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// The checks `tctl create` makes on a connector or role; the (kind, name) key.
fn check_resource(d: &Json) -> Result<(String, String), String> {
    let kind = s(d, &["kind"]).ok_or("resource has no kind")?.to_string();
    let version = s(d, &["version"]).unwrap_or_default().to_string();
    let name = s(d, &["metadata", "name"]).unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(format!("missing parameter Name in {kind} metadata"));
    }
    match kind.as_str() {
        "github" => {
            if version != "v3" {
                return Err(format!(
                    "unsupported GitHub connector version {version:?}, expected v3"
                ));
            }
            for f in ["client_id", "client_secret", "redirect_url"] {
                if s(d, &["spec", f]).unwrap_or_default().is_empty() {
                    return Err(format!("GitHub connector {name:?}: missing parameter {f}"));
                }
            }
            let teams = d
                .get("spec")
                .and_then(|x| x.get("teams_to_roles"))
                .and_then(Json::as_array);
            match teams {
                Some(t) if !t.is_empty() => {
                    for m in t {
                        let ok = s(m, &["organization"]).is_some_and(|x| !x.is_empty())
                            && s(m, &["team"]).is_some_and(|x| !x.is_empty())
                            && m.get("roles")
                                .and_then(Json::as_array)
                                .is_some_and(|r| !r.is_empty());
                        if !ok {
                            return Err(format!("GitHub connector {name:?}: every teams_to_roles entry needs organization, team and roles"));
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "GitHub connector {name:?}: teams_to_roles or teams_to_logins is required"
                    ))
                }
            }
        }
        "role" => {
            if !matches!(version.as_str(), "v3" | "v4" | "v5" | "v6" | "v7" | "v8") {
                return Err(format!("unsupported role version {version:?}"));
            }
            if d.get("spec").is_none_or(|x| !x.is_object()) {
                return Err(format!("role {name:?}: missing spec"));
            }
        }
        other => {
            return Err(format!(
                "the stand-in does not emulate resources of kind {other:?}"
            ))
        }
    }
    Ok((kind, name))
}
