//! Request parameters and API paths.

use serde_json::{Map, Value};

/// One parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// A string (property strings included).
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean, sent as `1`/`0`.
    Bool(bool),
    /// An array parameter, sent as the key repeated once per element.
    List(Vec<String>),
}

impl ParamValue {
    fn wire(&self) -> Vec<String> {
        match self {
            ParamValue::Str(s) => vec![s.clone()],
            ParamValue::Int(i) => vec![i.to_string()],
            ParamValue::Bool(b) => vec![if *b { "1" } else { "0" }.to_string()],
            ParamValue::List(l) => l.clone(),
        }
    }
    fn json(&self) -> Value {
        match self {
            ParamValue::Str(s) => Value::String(s.clone()),
            ParamValue::Int(i) => Value::from(*i),
            ParamValue::Bool(b) => Value::Bool(*b),
            ParamValue::List(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
        }
    }
}

/// Ordered request parameters (query string for GET/DELETE, form body for POST/PUT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, ParamValue)>);

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Params(Vec::new())
    }
    /// Set a string parameter (replacing an earlier value of the same name).
    pub fn str(mut self, k: &str, v: impl Into<String>) -> Self {
        self.set(k, ParamValue::Str(v.into()));
        self
    }
    /// Set an integer parameter.
    pub fn int(mut self, k: &str, v: impl Into<i64>) -> Self {
        self.set(k, ParamValue::Int(v.into()));
        self
    }
    /// Set a boolean parameter.
    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.set(k, ParamValue::Bool(v));
        self
    }
    /// Set an array parameter.
    pub fn list(mut self, k: &str, v: Vec<String>) -> Self {
        self.set(k, ParamValue::List(v));
        self
    }
    /// Set a string parameter when `v` is `Some`.
    pub fn opt_str(self, k: &str, v: Option<impl Into<String>>) -> Self {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }
    /// Set an integer parameter when `v` is `Some`.
    pub fn opt_int(self, k: &str, v: Option<impl Into<i64>>) -> Self {
        match v {
            Some(v) => self.int(k, v),
            None => self,
        }
    }
    /// Set a boolean parameter when `v` is `Some`.
    pub fn opt_bool(self, k: &str, v: Option<bool>) -> Self {
        match v {
            Some(v) => self.bool(k, v),
            None => self,
        }
    }
    /// Set a value in place.
    pub fn set(&mut self, k: &str, v: ParamValue) {
        if let Some(slot) = self.0.iter_mut().find(|(name, _)| name == k) {
            slot.1 = v;
        } else {
            self.0.push((k.to_string(), v));
        }
    }
    /// Look up a value.
    pub fn get(&self, k: &str) -> Option<&ParamValue> {
        self.0.iter().find(|(name, _)| name == k).map(|(_, v)| v)
    }
    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Iterate over the parameters.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// `application/x-www-form-urlencoded` encoding (also used for query strings).
    pub fn encode(&self) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            for w in v.wire() {
                ser.append_pair(k, &w);
            }
        }
        ser.finish()
    }
    /// (name, wire value) pairs, arrays expanded.
    pub fn wire_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            for w in v.wire() {
                out.push((k.clone(), w));
            }
        }
        out
    }
    /// The parameters as a typed JSON object (for the recorder).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.0 {
            m.insert(k.clone(), v.json());
        }
        Value::Object(m)
    }
}

/// Percent-encode one path segment: unreserved characters and `:@!=,+` are kept, everything
/// else (notably `/`, spaces and `%`) is encoded.
pub fn encode_segment(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len());
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b':' | b'@' | b'!' | b'=' | b',' | b'+'
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build an API path (below `/api2/json`) from segments, encoding each one.
pub fn api_path(segments: &[&str]) -> String {
    let mut p = String::new();
    for s in segments {
        p.push('/');
        p.push_str(&encode_segment(s));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_and_arrays() {
        let p = Params::new()
            .str("name", "a b&c")
            .int("cores", 2)
            .bool("agent", true)
            .list("command", vec!["sh".into(), "-c".into(), "echo hi".into()]);
        assert_eq!(
            p.encode(),
            "name=a+b%26c&cores=2&agent=1&command=sh&command=-c&command=echo+hi"
        );
        assert_eq!(
            p.to_json(),
            serde_json::json!({"name":"a b&c","cores":2,"agent":true,"command":["sh","-c","echo hi"]})
        );
        let p = p.int("cores", 4);
        assert_eq!(p.get("cores"), Some(&ParamValue::Int(4)));
        assert_eq!(p.iter().count(), 4);
    }

    #[test]
    fn path_encoding() {
        assert_eq!(
            api_path(&[
                "nodes",
                "pve",
                "storage",
                "local",
                "content",
                "local:iso/seed.iso"
            ]),
            "/nodes/pve/storage/local/content/local:iso%2Fseed.iso"
        );
        assert_eq!(
            api_path(&[
                "nodes",
                "pve",
                "tasks",
                "UPID:pve:00001234:00ABCDEF:6600AAAA:qmstart:100:u@pve!t:"
            ]),
            "/nodes/pve/tasks/UPID:pve:00001234:00ABCDEF:6600AAAA:qmstart:100:u@pve!t:"
        );
        assert_eq!(encode_segment("a b%/"), "a%20b%25%2F");
    }
}
