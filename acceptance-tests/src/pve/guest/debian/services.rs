//! The guest's services: systemd units, `haproxy -c` and reloads, config checks before a start.

use super::{DebianAppliance, Unit};
use crate::pve::guest::ExecOutcome;

impl DebianAppliance {
    pub(super) fn haproxy_check(&self, files: &[String]) -> ExecOutcome {
        let Some(bin) = self.haproxy.clone() else {
            return ExecOutcome::fail(
                127,
                "haproxy: not available on the emulator host (install Debian's haproxy)\n",
            );
        };
        if files.is_empty() {
            return ExecOutcome::fail(1, "[ALERT] No configuration file specified.\n");
        }
        let root = self.root.path().to_string_lossy().to_string();
        let check_dir = self.root.path().join(".waddle-check");
        if let Err(e) = std::fs::create_dir_all(&check_dir) {
            return ExecOutcome::fail(1, format!("{e}\n"));
        }
        let mut args: Vec<String> = vec!["-c".into()];
        for (i, f) in files.iter().enumerate() {
            let host = match self.host_path(f) {
                Ok(h) => h,
                Err(e) => return ExecOutcome::fail(1, format!("[ALERT] {e}\n")),
            };
            let text = match std::fs::read_to_string(&host) {
                Ok(t) => t,
                Err(_) => {
                    return ExecOutcome::fail(
                        1,
                        format!("[ALERT]    (0) : Cannot open configuration file/directory {f} : No such file or directory\n"),
                    )
                }
            };
            let rewritten = self.rewrite_paths(&text);
            let copy = check_dir.join(format!("{i}.cfg"));
            if let Err(e) = std::fs::write(&copy, rewritten) {
                return ExecOutcome::fail(1, format!("{e}\n"));
            }
            args.push("-f".into());
            args.push(copy.to_string_lossy().to_string());
        }
        let out = std::process::Command::new(bin).args(&args).output();
        match out {
            Ok(o) => {
                let fix = |s: &[u8]| {
                    let mut t = String::from_utf8_lossy(s).replace(&root, "");
                    for (i, f) in files.iter().enumerate() {
                        t = t.replace(&format!("/.waddle-check/{i}.cfg"), f);
                    }
                    t
                };
                ExecOutcome {
                    exitcode: o.status.code().unwrap_or(1),
                    stdout: fix(&o.stdout),
                    stderr: fix(&o.stderr),
                }
            }
            Err(e) => ExecOutcome::fail(126, format!("haproxy: {e}\n")),
        }
    }

    /// Point absolute paths that exist in the guest at the guest root.
    pub(super) fn rewrite_paths(&self, text: &str) -> String {
        // Any absolute path (also inside `map(...)`, `-f`, quotes) that exists in the guest.
        static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| {
            regex::Regex::new(r"(^|[^A-Za-z0-9_.\-/])(/[A-Za-z0-9_.\-/]+)").expect("static regex")
        });
        let root = self.root.path().to_string_lossy().to_string();
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            let replaced = re.replace_all(line, |c: &regex::Captures<'_>| {
                let path = &c[2];
                let exists =
                    path.len() > 1 && self.host_path(path).map(|p| p.exists()).unwrap_or(false);
                if exists {
                    format!("{}{root}{path}", &c[1])
                } else {
                    c[0].to_string()
                }
            });
            out.push_str(&replaced);
            out.push('\n');
        }
        out
    }

    pub(super) fn service_check_config(&self, name: &str) -> Result<(), String> {
        if name == "teleport" {
            return self
                .teleport
                .start(self)
                .inspect_err(|_| self.teleport.stop());
        }
        if name == "haproxy" {
            let r = self.haproxy_check(&["/etc/haproxy/haproxy.cfg".to_string()]);
            if r.exitcode != 0 {
                return Err(r.stderr);
            }
        }
        Ok(())
    }

    pub(super) fn hash_file(&self, guest: &str) -> Option<String> {
        use sha2::{Digest, Sha256};
        let data = std::fs::read(self.host_path(guest).ok()?).ok()?;
        Some(hex::encode(Sha256::digest(&data)))
    }

    pub(super) fn service_start(&self, name: &str) -> ExecOutcome {
        if !self.lock().services.contains_key(name) {
            return ExecOutcome::fail(
                5,
                format!("Failed to start {name}.service: Unit {name}.service not found.\n"),
            );
        }
        match self.service_check_config(name) {
            Ok(()) => {
                let hash = (name == "haproxy")
                    .then(|| self.hash_file("/etc/haproxy/haproxy.cfg"))
                    .flatten();
                let mut inner = self.lock();
                if let Some(s) = inner.services.get_mut(name) {
                    s.state = Unit::Active;
                }
                if hash.is_some() {
                    inner.haproxy_loaded = hash;
                }
                ExecOutcome::ok("")
            }
            Err(_) => {
                if let Some(s) = self.lock().services.get_mut(name) {
                    s.state = Unit::Failed;
                }
                ExecOutcome::fail(1, format!("Job for {name}.service failed because the control process exited with error code.\nSee \"systemctl status {name}.service\" and \"journalctl -xeu {name}.service\" for details.\n"))
            }
        }
    }

    pub(super) fn systemctl(&self, args: &[String]) -> ExecOutcome {
        let mut words: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with("--") || *a == "--now")
            .collect();
        let now = words.contains(&"--now");
        words.retain(|w| *w != "--now" && *w != "-q" && *w != "--quiet");
        let Some((verb, units)) = words.split_first() else {
            return ExecOutcome::fail(1, "systemctl: missing verb\n");
        };
        let units: Vec<String> = units
            .iter()
            .map(|u| u.trim_end_matches(".service").to_string())
            .collect();
        let mut out = ExecOutcome::ok("");
        if *verb == "daemon-reload" {
            return out;
        }
        for u in &units {
            let known = self.lock().services.contains_key(u.as_str());
            let r = match *verb {
                "is-active" => {
                    let st = self.service_state(u);
                    let st = if st == "unknown" {
                        "inactive".to_string()
                    } else {
                        st
                    };
                    let code = if st == "active" { 0 } else { 3 };
                    ExecOutcome {
                        exitcode: code,
                        stdout: format!("{st}\n"),
                        stderr: String::new(),
                    }
                }
                "is-enabled" => {
                    let en = self.lock().services.get(u.as_str()).map(|s| s.enabled);
                    match en {
                        Some(true) => ExecOutcome::ok("enabled\n"),
                        Some(false) => ExecOutcome { exitcode: 1, stdout: "disabled\n".into(), stderr: String::new() },
                        None => ExecOutcome::fail(1, format!("Failed to get unit file state for {u}.service: No such file or directory\n")),
                    }
                }
                "enable" | "disable" if !known => ExecOutcome::fail(
                    1,
                    format!("Failed to {verb} unit: Unit file {u}.service does not exist.\n"),
                ),
                "enable" => {
                    if let Some(s) = self.lock().services.get_mut(u.as_str()) {
                        s.enabled = true;
                    }
                    if now {
                        self.service_start(u)
                    } else {
                        ExecOutcome::ok("")
                    }
                }
                "disable" => {
                    if let Some(s) = self.lock().services.get_mut(u.as_str()) {
                        s.enabled = false;
                        if now {
                            s.state = Unit::Inactive;
                        }
                    }
                    ExecOutcome::ok("")
                }
                "start" | "restart" => self.service_start(u),
                "reload" | "reload-or-restart" => {
                    let active = self.service_state(u) == "active";
                    if !known {
                        ExecOutcome::fail(
                            5,
                            format!("Failed to reload {u}.service: Unit {u}.service not found.\n"),
                        )
                    } else if !active && *verb == "reload" {
                        ExecOutcome::fail(1, format!("{u}.service is not active, cannot reload.\n"))
                    } else {
                        match self.service_check_config(u) {
                            Ok(()) => {
                                let hash = (u == "haproxy").then(|| self.hash_file("/etc/haproxy/haproxy.cfg")).flatten();
                                let mut inner = self.lock();
                                if let Some(s) = inner.services.get_mut(u.as_str()) {
                                    s.state = Unit::Active;
                                }
                                if hash.is_some() {
                                    inner.haproxy_loaded = hash;
                                }
                                ExecOutcome::ok("")
                            }
                            Err(_) => ExecOutcome::fail(1, format!("Job for {u}.service failed because the control process exited with error code.\n")),
                        }
                    }
                }
                "stop" => {
                    if u == "teleport" {
                        self.teleport.stop();
                    }
                    if let Some(s) = self.lock().services.get_mut(u.as_str()) {
                        s.state = Unit::Inactive;
                    }
                    ExecOutcome::ok("")
                }
                "status" => {
                    let st = self.service_state(u);
                    ExecOutcome {
                        exitcode: if st == "active" { 0 } else { 3 },
                        stdout: format!("● {u}.service\n     Active: {st}\n"),
                        stderr: String::new(),
                    }
                }
                other => ExecOutcome::fail(1, format!("Unknown command verb {other}.\n")),
            };
            out.stdout.push_str(&r.stdout);
            out.stderr.push_str(&r.stderr);
            if r.exitcode != 0 {
                out.exitcode = r.exitcode;
            }
        }
        out
    }
}
