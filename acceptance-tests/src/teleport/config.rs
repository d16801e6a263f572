//! `teleport.yaml` as the Teleport 18 stand-in reads it: a strict parse against the v3 key
//! set ([`super::keys`]), then the checks Teleport makes before it starts serving.

use serde_yaml_ng::Value;

use super::keys::{Shape, FILE};

/// What the stand-in needs from a valid file.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub version: String,
    pub data_dir: String,
    pub diag_addr: Option<String>,
    pub cluster_name: String,
    pub auth_type: String,
    pub connector_name: String,
    pub web_listen_addr: String,
    pub public_addr: Vec<String>,
    pub proxy_protocol: bool,
    pub kubeconfig_file: Option<String>,
    pub apps: Vec<(String, String)>,
}

fn type_name(path: &str) -> &'static str {
    match path {
        "" => "config.FileConfig",
        "teleport" => "config.Global",
        "teleport.log" => "config.Log",
        "teleport.log.format" => "config.LogFormat",
        "auth_service" => "config.Auth",
        "auth_service.authentication" => "config.AuthenticationConfig",
        "proxy_service" => "config.Proxy",
        "proxy_service.acme" => "config.ACME",
        "ssh_service" => "config.SSH",
        "kubernetes_service" => "config.Kube",
        "app_service" => "config.Apps",
        p if p.starts_with("app_service.apps") => "config.App",
        _ => "config",
    }
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null
    )
}

fn walk(v: &Value, shape: &Shape, path: &str, errs: &mut Vec<String>) {
    let at = |p: &str| {
        if p.is_empty() {
            "the file".to_string()
        } else {
            p.to_string()
        }
    };
    match shape {
        Shape::Any => {}
        Shape::Scalar => {
            if !is_scalar(v) {
                errs.push(format!("{}: expected a single value", at(path)));
            }
        }
        Shape::Scalars => match v {
            Value::Sequence(xs) if xs.iter().all(is_scalar) => {}
            x if is_scalar(x) => {}
            _ => errs.push(format!(
                "{}: expected a value or a list of values",
                at(path)
            )),
        },
        Shape::Labels => match v {
            Value::Mapping(m) if m.values().all(is_scalar) => {}
            Value::Null => {}
            _ => errs.push(format!("{}: expected a map of labels", at(path))),
        },
        Shape::List(inner) => match v {
            Value::Sequence(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    walk(x, inner, &format!("{path}[{i}]"), errs);
                }
            }
            Value::Null => {}
            _ => errs.push(format!("{}: expected a list", at(path))),
        },
        Shape::Keys(keys) => match v {
            Value::Mapping(m) => {
                for (k, x) in m {
                    let k = key_str(k);
                    match keys.iter().find(|(name, _)| *name == k) {
                        Some((_, s)) => {
                            let p = if path.is_empty() {
                                k.clone()
                            } else {
                                format!("{path}.{k}")
                            };
                            walk(x, s, &p, errs);
                        }
                        None => {
                            let ty = type_name(path.split('[').next().unwrap_or(path));
                            errs.push(format!(
                                "field {k} not found in type {ty} (at {})",
                                at(path)
                            ));
                        }
                    }
                }
            }
            Value::Null => {}
            _ => errs.push(format!("{}: expected a mapping", at(path))),
        },
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    Some(cur)
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    match get(v, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn enabled(v: &Value, section: &str, default: bool) -> Result<bool, String> {
    match text(v, &[section, "enabled"]).as_deref() {
        None => Ok(default),
        Some("yes" | "true" | "on" | "1") => Ok(true),
        Some("no" | "false" | "off" | "0") => Ok(false),
        Some(x) => Err(format!("{section}.enabled: {x:?} is not a boolean")),
    }
}

fn host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok(),
        None => false,
    }
}

/// Parse and check a `teleport.yaml`: `Err` carries Teleport-style messages.
pub fn parse(text_in: &str) -> Result<Parsed, String> {
    let v: Value = serde_yaml_ng::from_str(text_in)
        .map_err(|e| format!("failed parsing the config file: {e}"))?;
    let mut errs = Vec::new();
    walk(&v, &FILE, "", &mut errs);
    if !errs.is_empty() {
        return Err(format!(
            "failed parsing the config file: yaml: unmarshal errors: {}",
            errs.join("; ")
        ));
    }
    let version = text(&v, &["version"]).unwrap_or_else(|| "v1".into());
    if !matches!(version.as_str(), "v1" | "v2" | "v3") {
        return Err(format!(
            "version {version} of the configuration is not supported"
        ));
    }
    if version == "v3" && get(&v, &["teleport", "auth_servers"]).is_some() {
        return Err("config: auth_servers is not supported in v3 configuration, use auth_server or proxy_server".into());
    }
    let auth = enabled(&v, "auth_service", true)?;
    let proxy = enabled(&v, "proxy_service", true)?;
    if !auth || !proxy {
        return Err(
            "the stand-in runs an all-in-one node: auth_service and proxy_service must be enabled"
                .into(),
        );
    }
    let cluster_name = text(&v, &["auth_service", "cluster_name"]).unwrap_or_default();
    if cluster_name.is_empty() {
        return Err("auth_service.cluster_name is required".into());
    }
    match text(&v, &["auth_service", "proxy_listener_mode"]).as_deref() {
        None | Some("multiplex" | "separate") => {}
        Some(x) => {
            return Err(format!(
                "proxy_listener_mode: {x:?} is not one of multiplex, separate"
            ))
        }
    }
    let auth_type =
        text(&v, &["auth_service", "authentication", "type"]).unwrap_or_else(|| "local".into());
    match auth_type.as_str() {
        "local" | "github" => {}
        "oidc" | "saml" => {
            return Err(format!(
                "authentication type {auth_type:?} requires Teleport Enterprise"
            ))
        }
        x => return Err(format!("authentication.type: unsupported type {x:?}")),
    }
    let proxy_protocol = match text(&v, &["proxy_service", "proxy_protocol"]).as_deref() {
        None | Some("off") | Some("false") => false,
        Some("on") | Some("true") => true,
        Some(x) => {
            return Err(format!(
                "proxy_service.proxy_protocol: {x:?} is not \"on\" or \"off\""
            ))
        }
    };
    let web_listen_addr =
        text(&v, &["proxy_service", "web_listen_addr"]).unwrap_or_else(|| "0.0.0.0:3080".into());
    if !host_port(&web_listen_addr) {
        return Err(format!(
            "proxy_service.web_listen_addr: {web_listen_addr:?} is not host:port"
        ));
    }
    let diag_addr = text(&v, &["teleport", "diag_addr"]);
    if let Some(d) = &diag_addr {
        if !host_port(d) {
            return Err(format!("teleport.diag_addr: {d:?} is not host:port"));
        }
    }
    let public_addr = match get(&v, &["proxy_service", "public_addr"]) {
        Some(Value::Sequence(xs)) => xs
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    if text(&v, &["proxy_service", "acme", "enabled"])
        .as_deref()
        .is_some_and(|e| matches!(e, "yes" | "true" | "on"))
    {
        if public_addr.is_empty() {
            return Err("proxy_service.acme: ACME needs proxy_service.public_addr".into());
        }
        if !public_addr.iter().any(|p| p.ends_with(":443")) {
            return Err(
                "proxy_service.acme: ACME TLS-ALPN-01 needs a public_addr on port 443".into(),
            );
        }
    }
    let kube =
        enabled(&v, "kubernetes_service", false)? && get(&v, &["kubernetes_service"]).is_some();
    let kubeconfig_file = if kube {
        match text(&v, &["kubernetes_service", "kubeconfig_file"]) {
            Some(k) => Some(k),
            None => {
                return Err(
                    "kubernetes_service: kubeconfig_file is required outside Kubernetes".into(),
                )
            }
        }
    } else {
        None
    };
    let mut apps = Vec::new();
    if let Some(Value::Sequence(xs)) = get(&v, &["app_service", "apps"]) {
        for a in xs {
            let name = text(a, &["name"]).unwrap_or_default();
            let uri = text(a, &["uri"]).unwrap_or_default();
            if name.is_empty() || uri.is_empty() {
                return Err("app_service.apps: every app needs a name and a uri".into());
            }
            if apps.iter().any(|(n, _)| n == &name) {
                return Err(format!("app_service.apps: duplicate app name {name:?}"));
            }
            let scheme_ok = ["http://", "https://", "tcp://"]
                .iter()
                .any(|s| uri.starts_with(s));
            if !scheme_ok {
                return Err(format!("app {name:?}: unsupported URI {uri:?}"));
            }
            apps.push((name, uri));
        }
    }
    Ok(Parsed {
        version,
        data_dir: text(&v, &["teleport", "data_dir"]).unwrap_or_else(|| "/var/lib/teleport".into()),
        diag_addr,
        cluster_name,
        connector_name: text(&v, &["auth_service", "authentication", "connector_name"])
            .unwrap_or_default(),
        auth_type,
        web_listen_addr,
        public_addr,
        proxy_protocol,
        kubeconfig_file,
        apps,
    })
}
