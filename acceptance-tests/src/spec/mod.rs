//! Validation against the official Proxmox VE API schema (`apischema.json`).
//!
//! The schema is test data: it is read at runtime from `../shared/specs/pve-9.1/apischema.json`
//! relative to the repository root (or from `$WADDLE_SPECS_DIR/pve-9.1/apischema.json`), never
//! compiled in. [`ApiSchema`] matches concrete requests (`GET /nodes/pve/qemu/105/config`) to
//! schema endpoints, validates request parameters the way `PVE::JSONSchema` does (unknown
//! parameters, required ones, types, ranges, enums, patterns, property strings such as
//! `net[n]` / `scsi[n]`, named formats) and validates response data against `returns`.

mod formats;
mod propstr;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

pub use formats::check_named_format;
pub(crate) use formats::pve_cidr_prefix;
pub use propstr::{parse_property_string, print_property_string, PropertyString};

/// Errors loading the schema.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot find the PVE API schema (looked in {0}); set WADDLE_SPECS_DIR")]
    NotFound(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid schema JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("unexpected schema layout: {0}")]
    Layout(String),
}

/// Per-parameter (or per-JSON-path) validation errors, as PVE reports them in `errors`.
pub type ErrorMap = BTreeMap<String, String>;

/// The directory holding the official specs (`.../shared/specs`).
///
/// `WADDLE_SPECS_DIR` wins; otherwise `../shared/specs` relative to the repository root,
/// found by walking up from this crate's manifest directory and the current directory.
pub fn specs_dir() -> Result<PathBuf, SpecError> {
    if let Ok(dir) = std::env::var("WADDLE_SPECS_DIR") {
        if !dir.is_empty() {
            return Ok(PathBuf::from(dir));
        }
    }
    let mut tried = Vec::new();
    let mut starts = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    for start in starts {
        let mut cur: Option<&Path> = Some(start.as_path());
        while let Some(dir) = cur {
            let candidate = dir.join("../shared/specs");
            if candidate.join("pve-9.1/apischema.json").is_file() {
                return Ok(candidate);
            }
            let candidate = dir.join("shared/specs");
            if candidate.join("pve-9.1/apischema.json").is_file() {
                return Ok(candidate);
            }
            tried.push(dir.display().to_string());
            cur = dir.parent();
        }
    }
    Err(SpecError::NotFound(tried.join(", ")))
}

/// Path of `pve-9.1/apischema.json`.
pub fn pve_schema_path() -> Result<PathBuf, SpecError> {
    Ok(specs_dir()?.join("pve-9.1/apischema.json"))
}

/// A schema endpoint (one method on one path template).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Path template, e.g. `/nodes/{node}/qemu/{vmid}/config`.
    pub path: String,
    /// HTTP method.
    pub method: String,
    /// The raw `info.METHOD` object.
    pub info: Value,
}

impl Endpoint {
    /// `parameters.properties`.
    pub fn properties(&self) -> Option<&Map<String, Value>> {
        self.info
            .get("parameters")
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object)
    }
    /// `returns`.
    pub fn returns(&self) -> Option<&Value> {
        self.info.get("returns")
    }
    /// `permissions`.
    pub fn permissions(&self) -> Option<&Value> {
        self.info.get("permissions")
    }
    /// Whether API tokens may call this endpoint.
    pub fn allow_token(&self) -> bool {
        truthy(self.info.get("allowtoken")).unwrap_or(true)
    }
    /// `METHOD /template`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A matched request: the endpoint and the path parameters (percent-decoded).
#[derive(Debug, Clone)]
pub struct Matched {
    pub endpoint: Arc<Endpoint>,
    pub path_params: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Template {
    segments: Vec<Seg>,
    methods: HashMap<String, Arc<Endpoint>>,
    literal_count: usize,
}

#[derive(Debug)]
enum Seg {
    Lit(String),
    Var(String),
}

/// Endpoints whose `returns` object lists only a few of the properties real PVE sends (no
/// `additionalProperties`), where extra properties are accepted. PVE's own validator treats a
/// missing `additionalProperties` as "not allowed", and so does [`validate_return_value`].
pub const INCOMPLETE_RETURNS: &[&str] = &[
    "GET /nodes/{node}/network/{iface}",
    // PVE's `copy_list_with_digest` adds the list's `digest` to every rule it returns.
    "GET /cluster/firewall/rules",
    "GET /cluster/firewall/rules/{pos}",
    "GET /nodes/{node}/firewall/rules",
    "GET /nodes/{node}/firewall/rules/{pos}",
    "GET /nodes/{node}/qemu/{vmid}/firewall/rules",
    "GET /nodes/{node}/qemu/{vmid}/firewall/rules/{pos}",
    "GET /cluster/firewall/groups/{group}",
    "GET /cluster/firewall/groups/{group}/{pos}",
];

/// Outcome of matching a path.
#[derive(Debug)]
pub enum MatchError {
    /// No template has that path.
    NoPath,
    /// The path exists but not with that method.
    NoMethod,
}

/// A request parameter value: one string, or several (repeated form keys / JSON arrays).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    One(String),
    Many(Vec<String>),
}

impl ParamValue {
    /// The single value (the last one when several were sent).
    pub fn as_str(&self) -> &str {
        match self {
            ParamValue::One(s) => s,
            ParamValue::Many(v) => v.last().map(String::as_str).unwrap_or(""),
        }
    }
    /// All values.
    pub fn all(&self) -> Vec<String> {
        match self {
            ParamValue::One(s) => vec![s.clone()],
            ParamValue::Many(v) => v.clone(),
        }
    }
}

/// Request parameters by name.
pub type Params = BTreeMap<String, ParamValue>;

/// Convert a JSON request body into [`Params`] (numbers and booleans become strings as PVE's
/// parameter handling sees them; arrays become several values).
pub fn params_from_json(body: &Value) -> Result<Params, String> {
    let obj = body
        .as_object()
        .ok_or_else(|| "JSON body must be an object".to_string())?;
    let mut out = Params::new();
    for (k, v) in obj {
        let conv = |v: &Value| -> Option<String> {
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(if *b { "1".into() } else { "0".into() }),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        match v {
            Value::Array(items) => {
                out.insert(
                    k.clone(),
                    ParamValue::Many(items.iter().filter_map(conv).collect()),
                );
            }
            other => {
                if let Some(s) = conv(other) {
                    out.insert(k.clone(), ParamValue::One(s));
                }
            }
        }
    }
    Ok(out)
}

/// Parse `a=1&b=2&b=3` (form or query encoding) into [`Params`].
pub fn params_from_form(input: &[u8]) -> Params {
    let mut out = Params::new();
    for (k, v) in url::form_urlencoded::parse(input) {
        let k = k.into_owned();
        let v = v.into_owned();
        match out.remove(&k) {
            None => {
                out.insert(k, ParamValue::One(v));
            }
            Some(ParamValue::One(prev)) => {
                out.insert(k, ParamValue::Many(vec![prev, v]));
            }
            Some(ParamValue::Many(mut prev)) => {
                prev.push(v);
                out.insert(k, ParamValue::Many(prev));
            }
        }
    }
    out
}

/// The loaded Proxmox VE API schema.
#[derive(Debug)]
pub struct ApiSchema {
    templates: Vec<Template>,
    endpoints: HashMap<String, Arc<Endpoint>>,
}

static SHARED: OnceLock<Result<Arc<ApiSchema>, String>> = OnceLock::new();

impl ApiSchema {
    /// Load from a file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read(path).map_err(|source| SpecError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let root: Value = serde_json::from_slice(&text).map_err(|source| SpecError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_value(&root)
    }

    /// Load the default schema (see [`pve_schema_path`]).
    pub fn load_default() -> Result<Self, SpecError> {
        Self::load(&pve_schema_path()?)
    }

    /// A process-wide shared copy of the default schema.
    pub fn shared() -> Result<Arc<ApiSchema>, String> {
        SHARED
            .get_or_init(|| {
                Self::load_default()
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// Build from the parsed JSON tree.
    pub fn from_value(root: &Value) -> Result<Self, SpecError> {
        let nodes = root
            .as_array()
            .ok_or_else(|| SpecError::Layout("top level is not an array".into()))?;
        let mut templates = Vec::new();
        let mut endpoints = HashMap::new();
        fn walk(
            n: &Value,
            templates: &mut Vec<Template>,
            endpoints: &mut HashMap<String, Arc<Endpoint>>,
        ) {
            if let Some(path) = n.get("path").and_then(Value::as_str) {
                let segments: Vec<Seg> = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Seg::Var(s[1..s.len() - 1].to_string())
                        } else {
                            Seg::Lit(s.to_string())
                        }
                    })
                    .collect();
                let literal_count = segments.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
                let mut methods = HashMap::new();
                if let Some(info) = n.get("info").and_then(Value::as_object) {
                    for (m, i) in info {
                        let ep = Arc::new(Endpoint {
                            path: path.to_string(),
                            method: m.clone(),
                            info: i.clone(),
                        });
                        endpoints.insert(ep.key(), ep.clone());
                        methods.insert(m.clone(), ep);
                    }
                }
                templates.push(Template {
                    segments,
                    methods,
                    literal_count,
                });
            }
            if let Some(children) = n.get("children").and_then(Value::as_array) {
                for c in children {
                    walk(c, templates, endpoints);
                }
            }
        }
        for n in nodes {
            walk(n, &mut templates, &mut endpoints);
        }
        if endpoints.is_empty() {
            return Err(SpecError::Layout("no endpoints found".into()));
        }
        Ok(Self {
            templates,
            endpoints,
        })
    }

    /// Number of endpoints (method + path) in the schema.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// Look an endpoint up by method and template.
    pub fn endpoint(&self, method: &str, template: &str) -> Option<Arc<Endpoint>> {
        self.endpoints.get(&format!("{method} {template}")).cloned()
    }

    /// Match a concrete path (without `/api2/json`, raw/percent-encoded segments allowed).
    pub fn match_path(&self, method: &str, path: &str) -> Result<Matched, MatchError> {
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_encoding_decode)
            .collect();
        let mut best: Option<(&Template, BTreeMap<String, String>)> = None;
        for t in &self.templates {
            if t.segments.len() != segs.len() {
                continue;
            }
            let mut vars = BTreeMap::new();
            let mut ok = true;
            for (ts, s) in t.segments.iter().zip(&segs) {
                match ts {
                    Seg::Lit(l) => {
                        if l != s {
                            ok = false;
                            break;
                        }
                    }
                    Seg::Var(v) => {
                        if s.is_empty() {
                            ok = false;
                            break;
                        }
                        vars.insert(v.clone(), s.clone());
                    }
                }
            }
            if !ok {
                continue;
            }
            let better = match &best {
                None => true,
                Some((b, _)) => t.literal_count > b.literal_count,
            };
            if better {
                best = Some((t, vars));
            }
        }
        let (t, vars) = best.ok_or(MatchError::NoPath)?;
        let ep = t
            .methods
            .get(&method.to_ascii_uppercase())
            .cloned()
            .ok_or(MatchError::NoMethod)?;
        Ok(Matched {
            endpoint: ep,
            path_params: vars,
        })
    }

    /// Validate request parameters (path parameters must already be merged in).
    pub fn validate_params(&self, ep: &Endpoint, params: &Params) -> Result<(), ErrorMap> {
        validate_params(ep, params)
    }

    /// Validate response `data` against the endpoint's `returns`.
    pub fn validate_returns(&self, ep: &Endpoint, data: &Value) -> Result<(), ErrorMap> {
        let mut errors = ErrorMap::new();
        if let Some(ret) = ep.returns() {
            if INCOMPLETE_RETURNS.contains(&ep.key().as_str()) {
                let mut relaxed = ret.clone();
                if let Some(o) = relaxed.as_object_mut() {
                    o.insert("additionalProperties".into(), Value::from(1));
                    if let Some(items) = o.get_mut("items").and_then(Value::as_object_mut) {
                        items.insert("additionalProperties".into(), Value::from(1));
                    }
                }
                validate_return_value(&relaxed, data, "data", &mut errors);
            } else {
                validate_return_value(ret, data, "data", &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn percent_encoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// PVE's notion of a truthy schema flag (`1`, `true`, `"1"`).
pub(crate) fn truthy(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64().unwrap_or(0.0) != 0.0),
        Value::String(s) => Some(s == "1" || s.eq_ignore_ascii_case("true")),
        Value::Null => None,
        _ => Some(true),
    }
}

fn schema_num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Index ranges for `name[n]` parameters. The schema's descriptions give some
/// (`(n is 0 to 30)`); the rest are PVE's constants.
fn index_range(prefix: &str, schema: &Value) -> (u32, u32) {
    if let Some(desc) = schema.get("description").and_then(Value::as_str) {
        if let Some(pos) = desc.find("(n is 0 to ") {
            let rest = &desc[pos + "(n is 0 to ".len()..];
            let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(max) = num.parse::<u32>() {
                // "n can be up to 14" (usb) means 14 devices at most: indexes 0..=13.
                return (0, max);
            }
        }
    }
    let max = match prefix {
        "net" | "ipconfig" => 31,
        "hostpci" => 15,
        "numa" => 7,
        "unused" => 255,
        "virtiofs" => 9,
        "mp" | "dev" => 255,
        "link" => 7,
        "acmedomain" => 4,
        "scsi" => 30,
        "virtio" => 15,
        "sata" => 5,
        "ide" => 3,
        "serial" => 3,
        "parallel" => 2,
        "usb" => 13,
        _ => 31,
    };
    (0, max)
}

/// Find the schema entry for a (possibly indexed) key (`net3` -> `net[n]`) in a properties map.
pub fn lookup_prop_pub<'a>(props: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    lookup_prop(props, key)
}

/// Find the schema entry for a (possibly indexed) key in a properties map.
pub(crate) fn lookup_prop<'a>(props: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(v) = props.get(key) {
        return Some(v);
    }
    let digits = key.chars().rev().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits == key.len() {
        return None;
    }
    let (prefix, idx) = key.split_at(key.len() - digits);
    if idx.len() > 1 && idx.starts_with('0') {
        return None;
    }
    let schema = props.get(&format!("{prefix}[n]"))?;
    let idx: u32 = idx.parse().ok()?;
    let (lo, hi) = index_range(prefix, schema);
    if idx < lo || idx > hi {
        return None;
    }
    Some(schema)
}

fn validate_params(ep: &Endpoint, params: &Params) -> Result<(), ErrorMap> {
    let mut errors = ErrorMap::new();
    let empty = Map::new();
    let props = ep.properties().unwrap_or(&empty);
    let additional = ep
        .info
        .get("parameters")
        .and_then(|p| truthy(p.get("additionalProperties")))
        .unwrap_or(false);
    for (k, v) in params {
        let Some(schema) = lookup_prop(props, k) else {
            if !additional {
                errors.insert(
                    k.clone(),
                    "property is not defined in schema and the schema does not allow additional properties".into(),
                );
            }
            continue;
        };
        if let Some(req) = schema.get("requires").and_then(Value::as_str) {
            if !params.contains_key(req) {
                errors.insert(
                    req.to_string(),
                    format!("missing property - '{k}' requires this property"),
                );
            }
        }
        let ty = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        if ty == "array" {
            let items = schema.get("items").cloned().unwrap_or(Value::Null);
            for (i, item) in v.all().iter().enumerate() {
                if let Err(msg) = check_scalar(&items, item) {
                    errors.insert(format!("{k}[{i}]"), msg);
                    break;
                }
            }
            continue;
        }
        if let ParamValue::Many(vals) = v {
            if vals.len() > 1 {
                errors.insert(k.clone(), "type check ('array') failed - got ARRAY".into());
                continue;
            }
        }
        if let Err(msg) = check_scalar(schema, v.as_str()) {
            errors.insert(k.clone(), msg);
        }
    }
    for (k, schema) in props {
        if k.ends_with("[n]") {
            continue;
        }
        let optional = truthy(schema.get("optional")).unwrap_or(false);
        if !optional && !params.contains_key(k) {
            errors.insert(
                k.clone(),
                "property is missing and it is not optional".into(),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Check one string value against a (scalar) parameter schema; returns PVE's message.
pub fn check_scalar(schema: &Value, value: &str) -> Result<(), String> {
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    match ty {
        "boolean" => {
            let l = value.to_ascii_lowercase();
            if !matches!(
                l.as_str(),
                "1" | "0" | "true" | "false" | "yes" | "no" | "on" | "off"
            ) {
                return Err(format!("type check ('boolean') failed - got '{value}'"));
            }
        }
        "integer" => {
            if !is_integer(value) {
                return Err(format!("type check ('integer') failed - got '{value}'"));
            }
            check_range(schema, value.parse::<f64>().unwrap_or(f64::NAN))?;
        }
        "number" => {
            if !is_number(value) {
                return Err(format!("type check ('number') failed - got '{value}'"));
            }
            check_range(schema, value.parse::<f64>().unwrap_or(f64::NAN))?;
        }
        "string" | "any" => {}
        "null" => {}
        other => {
            if !value.is_empty() {
                return Err(format!("type check ('{other}') failed - got '{value}'"));
            }
        }
    }
    if let Some(max) = schema_num(schema.get("maxLength")) {
        if value.chars().count() as f64 > max {
            return Err(format!("value may only be {max} characters long"));
        }
    }
    if let Some(min) = schema_num(schema.get("minLength")) {
        if (value.chars().count() as f64) < min {
            return Err(format!("value must be at least {min} characters long"));
        }
    }
    if let Some(en) = schema.get("enum").and_then(Value::as_array) {
        let allowed: Vec<String> = en
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        if !allowed.iter().any(|a| a == value) {
            return Err(format!(
                "value '{value}' does not have a value in the enumeration '{}'",
                allowed.join(", ")
            ));
        }
    }
    if let Some(pat) = schema.get("pattern").and_then(Value::as_str) {
        match pve_regex(pat) {
            Some(re) => {
                if !re.is_match(value) {
                    return Err("value does not match the regex pattern".into());
                }
            }
            None => {
                return Err(format!(
                    "schema pattern '{pat}' is not supported by the validator"
                ))
            }
        }
    }
    match schema.get("format") {
        Some(Value::Object(fmt)) => {
            propstr::validate_property_string(fmt, value)
                .map_err(|e| format!("invalid format - {e}"))?;
        }
        Some(Value::String(name)) => {
            let typetext = schema.get("typetext").and_then(Value::as_str);
            formats::check_named_format(name, value, typetext)
                .map_err(|e| format!("invalid format - {e}"))?;
        }
        _ => {}
    }
    Ok(())
}

fn check_range(schema: &Value, n: f64) -> Result<(), String> {
    if let Some(min) = schema_num(schema.get("minimum")) {
        if n < min {
            return Err(format!("value must have a minimum value of {min}"));
        }
    }
    if let Some(max) = schema_num(schema.get("maximum")) {
        if n > max {
            return Err(format!("value must have a maximum value of {max}"));
        }
    }
    Ok(())
}

pub(crate) fn is_integer(v: &str) -> bool {
    let d = v.strip_prefix(['-', '+']).unwrap_or(v);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn is_number(v: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$").expect("static regex")
    })
    .is_match(v)
}

/// Compile a PVE (Perl) pattern as PVE applies it: anchored at both ends.
pub(crate) fn pve_regex(pat: &str) -> Option<regex::Regex> {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<String, Option<regex::Regex>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(c) = cache.lock() {
        if let Some(r) = c.get(pat) {
            return r.clone();
        }
    }
    // Perl's `(?^:...)` / `(?^i:...)` (default flags) -> `(?:...)` / `(?i:...)`.
    let translated = pat.replace("(?^:", "(?:").replace("(?^i:", "(?i:");
    let anchored = format!("^(?:{translated})$");
    // Bounded repetitions of Unicode classes (`[\w\d\s]{0,256}`) exceed the default size.
    let re = regex::Regex::new(&anchored).ok().or_else(|| {
        regex::RegexBuilder::new(&anchored)
            .size_limit(1 << 28)
            .build()
            .ok()
    });
    if let Ok(mut c) = cache.lock() {
        c.insert(pat.to_string(), re.clone());
    }
    re
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validate a response value against a `returns` schema, collecting errors by JSON path.
pub fn validate_return_value(schema: &Value, v: &Value, path: &str, errors: &mut ErrorMap) {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    let optional = truthy(schema.get("optional")).unwrap_or(false);
    if v.is_null() {
        if !(ty == "null" || ty == "any" || optional) {
            errors.insert(path.to_string(), format!("expected {ty}, got null"));
        }
        return;
    }
    let ok = match ty {
        "any" => true,
        "null" => false,
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => match v {
            Value::Number(n) => n.is_i64() || n.is_u64(),
            _ => false,
        },
        "number" => v.is_number(),
        "boolean" => match v {
            Value::Bool(_) => true,
            Value::Number(n) => matches!(n.as_i64(), Some(0) | Some(1)),
            _ => false,
        },
        _ => true,
    };
    if !ok {
        errors.insert(
            path.to_string(),
            format!("type check ('{ty}') failed - got {}", json_type_name(v)),
        );
        return;
    }
    match v {
        Value::String(s) => {
            // Scalar checks (enum, pattern, ranges, formats) as for parameters.
            let mut s_schema = schema.clone();
            if let Some(o) = s_schema.as_object_mut() {
                o.remove("type");
            }
            if let Err(msg) = check_scalar(&s_schema, s) {
                errors.insert(path.to_string(), msg);
            }
        }
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                if let Err(msg) = check_range(schema, f) {
                    errors.insert(path.to_string(), msg);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_return_value(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(obj) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let additional = truthy(schema.get("additionalProperties"));
                for (k, pv) in obj {
                    match lookup_prop(props, k) {
                        Some(ps) => validate_return_value(ps, pv, &format!("{path}.{k}"), errors),
                        None => {
                            // An empty `properties` map says nothing about the shape.
                            if !props.is_empty() && additional != Some(true) {
                                errors.insert(
                                    format!("{path}.{k}"),
                                    "property is not defined in the returns schema".into(),
                                );
                            }
                        }
                    }
                }
                for (k, ps) in props {
                    if k.ends_with("[n]") {
                        continue;
                    }
                    let opt = truthy(ps.get("optional")).unwrap_or(false);
                    if !opt && !obj.contains_key(k) {
                        errors.insert(
                            format!("{path}.{k}"),
                            "property is missing and it is not optional".into(),
                        );
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Arc<ApiSchema> {
        ApiSchema::shared().expect("schema")
    }

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ParamValue::One(v.to_string())))
            .collect()
    }

    #[test]
    fn matches_templates_preferring_literals() {
        let s = schema();
        let m = s
            .match_path("GET", "/nodes/pve1/qemu/105/config")
            .expect("match");
        assert_eq!(m.endpoint.path, "/nodes/{node}/qemu/{vmid}/config");
        assert_eq!(m.path_params["vmid"], "105");
        let m = s.match_path("GET", "/cluster/nextid").expect("match");
        assert_eq!(m.endpoint.path, "/cluster/nextid");
        assert!(matches!(
            s.match_path("PATCH", "/cluster/nextid"),
            Err(MatchError::NoMethod)
        ));
        assert!(matches!(
            s.match_path("GET", "/nodes/pve1/bogus/x/y/z/w"),
            Err(MatchError::NoPath)
        ));
        let m = s
            .match_path(
                "GET",
                "/nodes/pve/storage/local/content/local%3Aiso%2Fa.iso",
            )
            .expect("match");
        assert_eq!(m.path_params["volume"], "local:iso/a.iso");
    }

    #[test]
    fn create_vm_params() {
        let s = schema();
        let ep = s.endpoint("POST", "/nodes/{node}/qemu").expect("ep");
        let ok = p(&[
            ("node", "pve"),
            ("vmid", "105"),
            (
                "scsi0",
                "local-lvm:0,import-from=local:import/debian.qcow2,iothread=1",
            ),
            ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1"),
            ("ipconfig0", "ip=dhcp"),
            ("agent", "1"),
            ("efidisk0", "local-lvm:1,efitype=4m,pre-enrolled-keys=1"),
            ("tpmstate0", "local-lvm:1,version=v2.0"),
            ("ide2", "local:iso/seed.iso,media=cdrom"),
            ("memory", "2048"),
            ("serial0", "socket"),
            ("tags", "waddle;haproxy"),
        ]);
        assert_eq!(s.validate_params(&ep, &ok), Ok(()));

        let bad = p(&[
            ("node", "pve"),
            ("vmid", "99"),
            ("net0", "virtio,bridge=vmbr0,bogus=1"),
            ("scsi31", "local-lvm:10"),
            ("colour", "red"),
            ("agent", "maybe"),
        ]);
        let e = s.validate_params(&ep, &bad).expect_err("refused");
        assert!(e["vmid"].contains("minimum value of 100"), "{e:?}");
        assert!(e["net0"].contains("bogus"), "{e:?}");
        assert!(e.contains_key("scsi31"), "{e:?}");
        assert!(e["colour"].contains("not defined in schema"), "{e:?}");
        assert!(e["agent"].contains("invalid format"), "{e:?}");

        let missing = p(&[("node", "pve")]);
        let e = s.validate_params(&ep, &missing).expect_err("refused");
        assert_eq!(e["vmid"], "property is missing and it is not optional");
    }

    #[test]
    fn mac_and_model_checks() {
        let s = schema();
        let ep = s.endpoint("POST", "/nodes/{node}/qemu").expect("ep");
        for bad in [
            "virtio=01:00:00:00:00:01,bridge=vmbr0", // multicast
            "virtio=zz:00:00:00:00:01",
            "model=foo",
            "bridge=vmbr0", // model missing
        ] {
            let e = s
                .validate_params(&ep, &p(&[("node", "pve"), ("vmid", "100"), ("net0", bad)]))
                .expect_err(bad);
            assert!(e.contains_key("net0"), "{bad}: {e:?}");
        }
    }

    #[test]
    fn perl_patterns_compile() {
        let re = pve_regex(r"(?^i:[\(\)-_.\w\d\s]{0,256})").expect("vnet alias pattern");
        assert!(re.is_match("waddle private net"));
        assert!(!re.is_match("bad|pipe"));
        let re = pve_regex(r"(?^:^(0x)[0-9a-fA-F]{16})").expect("wwn pattern");
        assert!(re.is_match("0x0123456789abcdef"));
    }

    #[test]
    fn return_validation() {
        let s = schema();
        let ep = s
            .endpoint("GET", "/nodes/{node}/tasks/{upid}/status")
            .expect("ep");
        let good = serde_json::json!({"exitstatus":"OK","id":"105","node":"pve","pid":1,"pstart":1,"starttime":1,"status":"stopped","type":"qmcreate","upid":"UPID:x","user":"root@pam"});
        assert_eq!(s.validate_returns(&ep, &good), Ok(()));
        let bad = serde_json::json!({"status":"done","extra":1});
        let e = s.validate_returns(&ep, &bad).expect_err("bad");
        assert!(e.contains_key("data.status"));
        assert!(e.contains_key("data.extra"));
        assert!(e.contains_key("data.upid"));
    }
}
