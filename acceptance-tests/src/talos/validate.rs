//! Machine-configuration validation as a Talos node performs it on ApplyConfiguration:
//! every document against the official JSON schema of the version the node *runs*
//! ([`Schemas`]: v1.12 and v1.13, when the spec files are available) plus the cross-field
//! rules Talos enforces itself. Independent of the provider's own checks.
//!
//! What each release's decoder accepts although its published schema leaves it out
//! (`docgen:nodoc` fields of `pkg/machinery/config/types/v1alpha1/v1alpha1_types.go`) is
//! added to that release's schema: `persist` (both; "Deprecated: Not supported anymore"),
//! and on v1.13 `machine.network` and `machine.env`, which the v1.13 schema dropped but its
//! Go types still decode (and `v1alpha1_validation.go` still validates), with their v1.12
//! definitions. Other undocumented fields stay refused (stricter than Talos, never kinder).
//! A document kind the running release does not register is refused as its decoder does
//! (`"KubeSpanConfig" "v1alpha1": not registered` on v1.12).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The official schema location relative to the repository root.
pub const SCHEMA_REL_PATH: &str = "../shared/specs/talos-v1.12/config.schema.json";

/// The Talos minor releases with an official schema in `../shared/specs/talos-v1.<minor>/`.
pub const SCHEMA_MINORS: &[u32] = &[12, 13];

/// Where the official Talos v1.12 schema is read from (see [`schema_path`]).
pub fn default_schema_path() -> Option<PathBuf> {
    schema_path(12)
}

/// Where the official schema of Talos v1.`minor` is read from:
/// `WADDLE_SPECS_DIR/talos-v1.<minor>/...` if set, else `../shared/specs/...` from the
/// repository root (found from this crate's manifest directory or the current directory).
/// `None` when absent.
pub fn schema_path(minor: u32) -> Option<PathBuf> {
    let rel = format!("talos-v1.{minor}/config.schema.json");
    if let Ok(d) = std::env::var("WADDLE_SPECS_DIR") {
        let p = Path::new(&d).join(&rel);
        if p.is_file() {
            return Some(p);
        }
    }
    let mut starts = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    for start in starts {
        let mut dir = start;
        loop {
            let cargo = dir.join("Cargo.toml");
            if std::fs::read_to_string(&cargo)
                .map(|s| s.contains("[workspace]"))
                .unwrap_or(false)
            {
                let p = dir.join("../shared/specs").join(&rel);
                if p.is_file() {
                    return Some(p);
                }
                break;
            }
            if !dir.pop() {
                break;
            }
        }
    }
    None
}

/// The official schema of one Talos minor release, compiled per `$defs` entry.
pub struct Schema {
    root: Value,
    minor: u32,
    validators: Mutex<HashMap<String, &'static jsonschema::Validator>>,
}

/// The official schemas by Talos minor release: a node validates against the schema of the
/// version it runs.
#[derive(Debug)]
pub struct Schemas {
    by_minor: Vec<Schema>,
}

impl Schemas {
    /// Loads every schema of [`SCHEMA_MINORS`] found (none found: `None`).
    pub fn load_default() -> Option<Self> {
        let mut roots: Vec<(u32, Value)> = Vec::new();
        for minor in SCHEMA_MINORS {
            let Some(p) = schema_path(*minor) else {
                continue;
            };
            if let Ok(root) = read_root(&p) {
                roots.push((*minor, root));
            }
        }
        if roots.is_empty() {
            return None;
        }
        let v1_12 = roots.iter().find(|(m, _)| *m == 12).map(|(_, r)| r.clone());
        let by_minor = roots
            .into_iter()
            .map(|(minor, root)| Schema::from_root(root, minor, v1_12.as_ref()))
            .collect();
        Some(Schemas { by_minor })
    }

    /// The schemas at the default location, loaded once per process (None if absent).
    pub fn shared() -> Option<&'static Schemas> {
        static S: OnceLock<Option<Schemas>> = OnceLock::new();
        S.get_or_init(Schemas::load_default).as_ref()
    }

    /// The schema of the minor release of `version` (`v1.13.2` -> v1.13); `None` when there
    /// is none for that release.
    pub fn for_version(&self, version: &str) -> Option<&Schema> {
        let bare = version.strip_prefix('v').unwrap_or(version);
        let mut it = bare.split(['.', '-']);
        let (Some("1"), Some(minor)) = (it.next(), it.next()) else {
            return None;
        };
        let minor: u32 = minor.parse().ok()?;
        self.by_minor.iter().find(|s| s.minor == minor)
    }
}

fn read_root(path: &Path) -> Result<Value, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let root: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if !root.get("$defs").is_some_and(Value::is_object) {
        return Err(format!("{}: no $defs", path.display()));
    }
    Ok(root)
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}

impl Schema {
    /// Loads the schema file of Talos v1.12 (no fields of other releases added).
    pub fn load(path: &Path) -> Result<Self, String> {
        Ok(Schema::from_root(read_root(path)?, 12, None))
    }

    /// The schema of Talos v1.`minor` with what that release's decoder accepts beyond it
    /// (see the module documentation); `v1_12` is the v1.12 schema, whose definitions of
    /// `machine.network` and `machine.env` the v1.13 decoder still has.
    pub fn from_root(mut root: Value, minor: u32, v1_12: Option<&Value>) -> Self {
        let persist = serde_json::json!({"type": "boolean"});
        if let Some(props) = root
            .pointer_mut("/$defs/v1alpha1.Config/properties")
            .and_then(Value::as_object_mut)
        {
            props.entry("persist").or_insert(persist);
        }
        if minor >= 13 {
            if let Some(old) = v1_12 {
                for def in [
                    "v1alpha1.NetworkConfig",
                    "v1alpha1.NetworkKubeSpan",
                    "v1alpha1.KubeSpanFilters",
                ] {
                    if let (Some(d), Some(defs)) = (
                        old.pointer(&format!("/$defs/{def}")),
                        root.get_mut("$defs").and_then(Value::as_object_mut),
                    ) {
                        defs.entry(def).or_insert_with(|| d.clone());
                    }
                }
                for field in ["network", "env"] {
                    let d = old
                        .pointer(&format!("/$defs/v1alpha1.MachineConfig/properties/{field}"))
                        .cloned();
                    if let (Some(d), Some(props)) = (
                        d,
                        root.pointer_mut("/$defs/v1alpha1.MachineConfig/properties")
                            .and_then(Value::as_object_mut),
                    ) {
                        props.entry(field).or_insert(d);
                    }
                }
            }
        }
        Schema {
            root,
            minor,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The Talos minor release of this schema (`12`, `13`).
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// The v1.12 schema at the default location, loaded once per process (None if absent).
    pub fn shared() -> Option<&'static Schema> {
        Schemas::shared().and_then(|s| s.for_version("v1.12"))
    }

    fn def_for(&self, doc: &Value) -> Result<String, String> {
        let Some(kind) = doc.get("kind").and_then(Value::as_str) else {
            return Ok("v1alpha1.Config".to_string());
        };
        let defs = self.root["$defs"]
            .as_object()
            .ok_or("schema has no $defs")?;
        for (name, def) in defs {
            if def["properties"]["kind"]["enum"]
                .as_array()
                .is_some_and(|ks| ks.iter().any(|k| k == kind))
            {
                return Ok(name.clone());
            }
        }
        // Talos's decoder: `registry.New(kind, version)` has no such kind on this release.
        let version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let name = doc.get("name").and_then(Value::as_str).unwrap_or("");
        Err(format!(
            "error decoding document {version}/{kind}/{name}: {kind:?} {version:?}: not registered"
        ))
    }

    fn validator(&self, def: &str) -> Result<&'static jsonschema::Validator, String> {
        let mut m = self.validators.lock().map_err(|_| "schema lock poisoned")?;
        if let Some(v) = m.get(def) {
            return Ok(v);
        }
        let wrapper = serde_json::json!({
            "$schema": self.root["$schema"],
            "$defs": self.root["$defs"],
            "$ref": format!("#/$defs/{def}"),
        });
        let v = jsonschema::draft202012::new(&wrapper).map_err(|e| e.to_string())?;
        // Leaked once per definition per process (bounded by the number of $defs).
        let v: &'static jsonschema::Validator = Box::leak(Box::new(v));
        m.insert(def.to_string(), v);
        Ok(v)
    }

    /// Schema errors of one document. `decode` errors are those Talos's strict YAML decoder
    /// already refuses (unknown keys, wrong types, unknown kinds); the others are caught by
    /// its validation.
    pub fn errors(&self, doc: &Value) -> Vec<SchemaError> {
        let def = match self.def_for(doc) {
            Ok(d) => d,
            Err(e) => {
                return vec![SchemaError {
                    decode: true,
                    message: e,
                }]
            }
        };
        match self.validator(&def) {
            Ok(v) => v
                .iter_errors(doc)
                .map(|e| {
                    let p = e.instance_path().to_string();
                    let at = if p.is_empty() { "/" } else { &p };
                    let decode = matches!(
                        e.kind(),
                        jsonschema::error::ValidationErrorKind::AdditionalProperties { .. }
                            | jsonschema::error::ValidationErrorKind::Type { .. }
                    );
                    SchemaError {
                        decode,
                        message: format!("{def} at {at}: {e}"),
                    }
                })
                .collect(),
            Err(e) => vec![SchemaError {
                decode: false,
                message: format!("schema {def}: {e}"),
            }],
        }
    }
}

/// One schema finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Whether Talos's decoder refuses it (`failed to parse config`) rather than its
    /// validation.
    pub decode: bool,
    /// The finding with its `$defs` entry and instance path.
    pub message: String,
}

/// Why a node refuses a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not decodable (YAML syntax, unknown keys, wrong types, unknown kinds): real Talos
    /// answers a plain error (gRPC `Unknown`) `failed to parse config: ...`.
    Parse(String),
    /// Decoded but invalid: `InvalidArgument` `configuration validation failed: ...`.
    Invalid(String),
}

impl Refusal {
    /// The gRPC status a node answers.
    pub fn status(&self) -> tonic::Status {
        match self {
            Refusal::Parse(m) => tonic::Status::unknown(format!("failed to parse config: {m}")),
            Refusal::Invalid(m) => {
                tonic::Status::invalid_argument(format!("configuration validation failed: {m}"))
            }
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Parse(m) => write!(f, "failed to parse config: {m}"),
            Refusal::Invalid(m) => write!(f, "configuration validation failed: {m}"),
        }
    }
}

fn multierror(errs: Vec<String>) -> String {
    let n = errs.len();
    let mut msg = format!("{n} error{} occurred:", if n == 1 { "" } else { "s" });
    for e in errs {
        msg.push_str("\n\t* ");
        msg.push_str(&e);
    }
    msg.push_str("\n\n");
    msg
}

/// Parses a multi-document YAML machine configuration into JSON values (empty documents
/// skipped).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(de).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err("no documents".into());
    }
    Ok(out)
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match ip {
        IpAddr::V4(_) => len <= 32,
        IpAddr::V6(_) => len <= 128,
    }
}

/// Go's `netip.ParsePrefix`, as Talos applies it to `cluster.network.podSubnets` and
/// `serviceSubnets`: `addr/bits` with decimal bits (no sign, no leading zero) within the
/// address family's width; host bits may be set.
fn parse_prefix(s: &str) -> Result<(), &'static str> {
    let (ip, bits) = s.split_once('/').ok_or("no '/'")?;
    let ip: IpAddr = ip.parse().map_err(|_| "bad address")?;
    let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
    if bits.is_empty()
        || !bits.bytes().all(|b| b.is_ascii_digit())
        || (bits.len() > 1 && bits.starts_with('0'))
    {
        return Err("bad bits after slash");
    }
    match bits.parse::<u32>() {
        Ok(n) if n <= width => Ok(()),
        _ => Err("prefix length out of range"),
    }
}

fn is_b64_pem(v: &Value) -> bool {
    use base64::Engine as _;
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|s| s.contains("-----BEGIN "))
}

fn nonempty(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

/// Cross-field rules Talos enforces beyond the schema.
pub fn rule_errors(docs: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let v1: Vec<&Value> = docs.iter().filter(|d| d.get("kind").is_none()).collect();
    match v1.len() {
        0 => errs.push("v1alpha1 config document is required".into()),
        1 => {}
        _ => errs.push("duplicate v1alpha1 config document".into()),
    }
    if let Some(c) = v1.first() {
        if c.get("version").and_then(Value::as_str) != Some("v1alpha1") {
            errs.push(format!("unknown config version {:?}", c.get("version")));
        }
        let m = &c["machine"];
        let ty = m["type"].as_str().unwrap_or("");
        let cp = matches!(ty, "init" | "controlplane");
        if !matches!(ty, "init" | "controlplane" | "worker") {
            errs.push(format!(
                "machine.type: invalid machine type {ty:?}, expected one of init, controlplane, worker"
            ));
        }
        if !nonempty(&m["token"]) {
            errs.push("machine.token: trustd token is required".into());
        }
        if !is_b64_pem(&m["ca"]["crt"]) {
            errs.push("machine.ca.crt: the OS CA certificate is required (base64 PEM)".into());
        }
        if cp && !is_b64_pem(&m["ca"]["key"]) {
            errs.push("machine.ca.key: the OS CA key is required on control plane nodes".into());
        }
        let cl = &c["cluster"];
        if !is_b64_pem(&cl["ca"]["crt"]) {
            errs.push("cluster.ca.crt: the Kubernetes CA certificate is required".into());
        }
        if cp {
            if !is_b64_pem(&cl["ca"]["key"]) {
                errs.push(
                    "cluster.ca.key: the Kubernetes CA key is required on control plane nodes"
                        .into(),
                );
            }
            if !nonempty(&cl["clusterName"]) {
                errs.push("cluster.clusterName: cluster name is required".into());
            }
            if !is_b64_pem(&cl["etcd"]["ca"]["key"]) {
                errs.push("cluster.etcd.ca: etcd CA key is required on control plane nodes".into());
            }
        }
        match cl["controlPlane"]["endpoint"].as_str() {
            Some(ep) => match url::Url::parse(ep) {
                Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
                _ => errs.push(format!(
                    "cluster.controlPlane.endpoint: {ep:?} is not a valid https URL"
                )),
            },
            None => errs.push("cluster.controlPlane.endpoint: is required".into()),
        }
        for key in ["podSubnets", "serviceSubnets"] {
            for (i, v) in cl["network"][key]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let text = v.as_str().unwrap_or_default();
                if let Err(why) = parse_prefix(text) {
                    errs.push(format!(
                        "cluster.network.{key}[{i}]: {text:?} is not a valid CIDR: netip.ParsePrefix({text:?}): {why}"
                    ));
                }
            }
        }
        if !nonempty(&cl["id"]) || !nonempty(&cl["secret"]) {
            errs.push("cluster.id and cluster.secret are required".into());
        }
        if m["network"].get("hostname").is_some()
            && docs.iter().any(|d| d["kind"] == "HostnameConfig")
        {
            errs.push(
                "static hostname is already set in v1alpha1 config (machine.network.hostname) and in HostnameConfig"
                    .into(),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for d in docs.iter().filter(|d| d.get("kind").is_some()) {
        let kind = d["kind"].as_str().unwrap_or("");
        let name = d.get("name").and_then(Value::as_str).unwrap_or("");
        if !seen.insert((kind.to_string(), name.to_string())) {
            errs.push(format!("duplicate document {kind}/{name:?}"));
        }
        match kind {
            "HostnameConfig" => {
                let has_host = d.get("hostname").is_some_and(|h| !h.is_null());
                let has_auto = d.get("auto").is_some_and(|a| !a.is_null());
                if has_host && has_auto {
                    errs.push("HostnameConfig: hostname and auto are mutually exclusive".into());
                }
                if !has_host && !has_auto {
                    errs.push("HostnameConfig: either hostname or auto must be set".into());
                }
            }
            "LinkConfig" | "DummyLinkConfig" | "BondConfig" | "VLANConfig" | "BridgeConfig" => {
                for (i, a) in d["addresses"].as_array().into_iter().flatten().enumerate() {
                    let s = a["address"].as_str().unwrap_or("");
                    if !is_cidr(s) {
                        errs.push(format!(
                            "{kind} {name:?}: addresses[{i}].address {s:?} is not a valid CIDR (ip/prefix)"
                        ));
                    }
                }
                for (i, r) in d["routes"].as_array().into_iter().flatten().enumerate() {
                    if let Some(g) = r.get("gateway").and_then(Value::as_str) {
                        if g.parse::<IpAddr>().is_err() {
                            errs.push(format!(
                                "{kind} {name:?}: routes[{i}].gateway {g:?} is not an IP address"
                            ));
                        }
                    }
                    if let Some(dst) = r.get("destination").and_then(Value::as_str) {
                        if !is_cidr(dst) {
                            errs.push(format!(
                                "{kind} {name:?}: routes[{i}].destination {dst:?} is not a valid CIDR"
                            ));
                        }
                    }
                }
            }
            "Layer2VIPConfig" => {
                if name.parse::<IpAddr>().is_err() {
                    errs.push(format!(
                        "Layer2VIPConfig: name {name:?} must be the VIP address"
                    ));
                }
                if !nonempty(&d["link"]) {
                    errs.push(format!("Layer2VIPConfig {name:?}: link is required"));
                }
            }
            "ResolverConfig" => {
                for (i, n) in d["nameservers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let s = n["address"].as_str().unwrap_or("");
                    if s.parse::<IpAddr>().is_err() {
                        errs.push(format!(
                            "ResolverConfig: nameservers[{i}].address {s:?} is not an IP address"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    errs
}

/// Validates a configuration the way a node does on ApplyConfiguration.
pub fn validate(text: &str, schema: Option<&Schema>) -> Result<Vec<Value>, Refusal> {
    let docs = parse_documents(text).map_err(Refusal::Parse)?;
    let mut decode = Vec::new();
    let mut errs = Vec::new();
    if let Some(s) = schema {
        for (i, d) in docs.iter().enumerate() {
            for e in s.errors(d) {
                let m = format!("document {i}: {}", e.message);
                if e.decode {
                    decode.push(m);
                } else {
                    errs.push(m);
                }
            }
        }
    }
    if !decode.is_empty() {
        return Err(Refusal::Parse(format!(
            "unknown keys or wrong types found during decoding: {}",
            decode.join("; ")
        )));
    }
    errs.extend(rule_errors(&docs));
    if errs.is_empty() {
        Ok(docs)
    } else {
        Err(Refusal::Invalid(multierror(errs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pem_b64() -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    }

    fn v1(ty: &str, with_keys: bool) -> Value {
        let p = pem_b64();
        let key = if with_keys { p.clone() } else { String::new() };
        json!({
            "version": "v1alpha1",
            "machine": {"type": ty, "token": "abcdef.0123456789abcdef",
                        "ca": {"crt": p, "key": key}},
            "cluster": {"id": "x", "secret": "y", "clusterName": "c",
                        "controlPlane": {"endpoint": "https://127.20.0.1:6443"},
                        "ca": {"crt": p, "key": key},
                        "etcd": {"ca": {"crt": p, "key": key}}}
        })
    }

    #[test]
    fn valid_documents_pass() {
        assert!(rule_errors(&[v1("controlplane", true)]).is_empty());
        assert!(rule_errors(&[v1("worker", false)]).is_empty());
    }

    #[test]
    fn cross_field_rules() {
        let e = rule_errors(&[v1("controlplane", false)]).join("\n");
        assert!(e.contains("cluster.ca.key"), "{e}");
        assert!(e.contains("machine.ca.key"), "{e}");
        let mut no_ep = v1("worker", false);
        no_ep["cluster"]["controlPlane"]["endpoint"] = json!("127.20.0.1:6443");
        assert!(rule_errors(&[no_ep])
            .join("\n")
            .contains("not a valid https URL"));
        assert!(rule_errors(&[])
            .join("\n")
            .contains("v1alpha1 config document is required"));
        let docs = vec![
            v1("worker", false),
            json!({"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": "eth0",
                   "addresses": [{"address": "127.20.0.5/33"}],
                   "routes": [{"gateway": "nope"}]}),
            json!({"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": "eth0"}),
            json!({"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": "vip", "link": "eth0"}),
            json!({"apiVersion": "v1alpha1", "kind": "ResolverConfig",
                   "nameservers": [{"address": "1.1.1"}]}),
            json!({"apiVersion": "v1alpha1", "kind": "HostnameConfig"}),
        ];
        let e = rule_errors(&docs).join("\n");
        for want in [
            "addresses[0].address \"127.20.0.5/33\" is not a valid CIDR",
            "routes[0].gateway \"nope\" is not an IP address",
            "duplicate document LinkConfig/\"eth0\"",
            "name \"vip\" must be the VIP address",
            "nameservers[0].address \"1.1.1\" is not an IP address",
            "either hostname or auto must be set",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn pod_and_service_subnets_must_parse_as_prefixes() {
        for bad in [
            "10.244.0.0",
            "10.244.0.0/33",
            "10.244.0.0/016",
            "10.244.0.0/+8",
            "x/8",
        ] {
            for key in ["podSubnets", "serviceSubnets"] {
                let mut c = v1("controlplane", true);
                c["cluster"]["network"][key] = json!(["10.96.0.0/12", bad]);
                let e = rule_errors(&[c]).join("\n");
                assert!(
                    e.contains(&format!(
                        "cluster.network.{key}[1]: {bad:?} is not a valid CIDR"
                    )),
                    "{key} = {bad:?}: {e}"
                );
            }
        }
        let mut c = v1("controlplane", true);
        c["cluster"]["network"]["podSubnets"] = json!(["10.244.0.1/16", "fd00::/56", "0.0.0.0/0"]);
        assert!(rule_errors(&[c]).is_empty());
    }

    #[test]
    fn refusals_map_to_talos_status_codes() {
        assert_eq!(
            validate("a: [", None).unwrap_err().status().code(),
            tonic::Code::Unknown
        );
        let text = serde_yaml_ng::to_string(&v1("boss", true)).unwrap();
        let r = validate(&text, None).unwrap_err();
        assert_eq!(r.status().code(), tonic::Code::InvalidArgument);
        assert!(r
            .to_string()
            .starts_with("configuration validation failed: 1 error occurred:"));
    }
}
