//! cloud-init applying the NoCloud user-data (users, packages, files, commands).

use serde_json::Value;

use super::DebianAppliance;

impl DebianAppliance {
    pub(super) fn apply_user_data(&self, user_data: &str, meta: Option<&str>) {
        if let Some(meta) = meta {
            if let Ok(v) = serde_yaml_ng::from_str::<Value>(meta) {
                if let Some(h) = v.get("local-hostname").and_then(Value::as_str) {
                    self.lock().hostname = Some(h.to_string());
                }
            }
        }
        let mut errors = Vec::new();
        if !user_data.starts_with("#cloud-config") {
            errors
                .push("user-data is not #cloud-config (only cloud-config is emulated)".to_string());
            let mut inner = self.lock();
            inner.cloud_init_errors = errors;
            inner.cloud_init_status = "error".into();
            return;
        }
        let doc: Value = match serde_yaml_ng::from_str(user_data) {
            Ok(v) => v,
            Err(e) => {
                let mut inner = self.lock();
                inner.cloud_init_errors = vec![format!("invalid YAML in user-data: {e}")];
                inner.cloud_init_status = "error".into();
                return;
            }
        };
        if let Some(h) = doc.get("hostname").and_then(Value::as_str) {
            self.lock().hostname = Some(h.to_string());
        }
        if let Some(users) = doc.get("users").and_then(Value::as_array) {
            for u in users {
                let name = match u {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                };
                if !name.is_empty() {
                    self.lock().users.push(name);
                }
            }
        }
        let files: Vec<Value> = doc
            .get("write_files")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let write = |deferred: bool, errors: &mut Vec<String>| {
            for f in &files {
                let defer = f.get("defer").and_then(Value::as_bool).unwrap_or(false);
                if defer != deferred {
                    continue;
                }
                let Some(path) = f.get("path").and_then(Value::as_str) else {
                    errors.push("write_files entry without path".into());
                    continue;
                };
                let content = f.get("content").and_then(Value::as_str).unwrap_or("");
                let data = match f
                    .get("encoding")
                    .and_then(Value::as_str)
                    .unwrap_or("text/plain")
                {
                    "b64" | "base64" => {
                        use base64::Engine;
                        match base64::engine::general_purpose::STANDARD
                            .decode(content.split_whitespace().collect::<String>())
                        {
                            Ok(d) => d,
                            Err(e) => {
                                errors.push(format!("{path}: bad base64: {e}"));
                                continue;
                            }
                        }
                    }
                    "text/plain" => content.as_bytes().to_vec(),
                    other => {
                        errors.push(format!("{path}: encoding '{other}' not emulated"));
                        continue;
                    }
                };
                let append = f.get("append").and_then(Value::as_bool).unwrap_or(false);
                if let Err(e) = self.write_file(path, &data, append) {
                    errors.push(e);
                } else if let Some(m) = f.get("permissions").and_then(Value::as_str) {
                    self.lock().modes.insert(path.to_string(), m.to_string());
                }
            }
        };
        write(false, &mut errors);
        if let Some(pkgs) = doc.get("packages").and_then(Value::as_array) {
            for p in pkgs {
                let name = match p {
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or("").to_string(),
                    _ => String::new(),
                };
                if let Err(e) = self.install(&name) {
                    errors.push(e);
                }
            }
        }
        write(true, &mut errors);
        let mut log = String::new();
        if let Some(cmds) = doc.get("runcmd").and_then(Value::as_array) {
            for c in cmds {
                let r = match c {
                    Value::String(s) => self.run_script(s),
                    Value::Array(a) => {
                        let argv: Vec<String> = a
                            .iter()
                            .map(|x| match x {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect();
                        self.run_argv(&argv)
                    }
                    _ => continue,
                };
                log.push_str(&r.stdout);
                log.push_str(&r.stderr);
                if r.exitcode != 0 {
                    errors.push(format!("runcmd {c} exited with {}", r.exitcode));
                }
            }
        }
        let _ = self.write_file("/var/log/cloud-init-output.log", log.as_bytes(), true);
        let mut inner = self.lock();
        inner.cloud_init_status = if errors.is_empty() {
            "done".into()
        } else {
            "error".into()
        };
        inner.cloud_init_errors = errors;
    }
}
