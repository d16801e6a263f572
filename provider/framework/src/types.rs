//! cty types and their JSON type encoding (`"string"`, `["list","string"]`,
//! `["object",{"a":"string"},["a"]]`, `"dynamic"`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value as Json;

/// A cty type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(ObjectType),
    Tuple(Vec<Type>),
    /// cty's `DynamicPseudoType`: any type, decided per value.
    Dynamic,
}

/// An object type: attribute types plus the set of optional attributes (only meaningful in
/// type constraints such as function parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectType {
    pub attrs: BTreeMap<String, Type>,
    pub optional: BTreeSet<String>,
}

/// Error parsing a cty JSON type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cty type JSON: {0}")]
pub struct TypeError(pub String);

impl Type {
    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }
    pub fn set(t: Type) -> Type {
        Type::Set(Box::new(t))
    }
    pub fn map(t: Type) -> Type {
        Type::Map(Box::new(t))
    }
    /// Object type from `(name, type)` pairs.
    pub fn object<I, S>(attrs: I) -> Type
    where
        I: IntoIterator<Item = (S, Type)>,
        S: Into<String>,
    {
        Type::Object(ObjectType {
            attrs: attrs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            optional: BTreeSet::new(),
        })
    }

    /// True for string, number and bool.
    pub fn is_primitive(&self) -> bool {
        matches!(self, Type::String | Type::Number | Type::Bool)
    }

    /// The cty JSON encoding of this type.
    pub fn to_json(&self) -> Json {
        match self {
            Type::String => Json::from("string"),
            Type::Number => Json::from("number"),
            Type::Bool => Json::from("bool"),
            Type::Dynamic => Json::from("dynamic"),
            Type::List(e) => Json::Array(vec!["list".into(), e.to_json()]),
            Type::Set(e) => Json::Array(vec!["set".into(), e.to_json()]),
            Type::Map(e) => Json::Array(vec!["map".into(), e.to_json()]),
            Type::Tuple(es) => Json::Array(vec![
                "tuple".into(),
                Json::Array(es.iter().map(Type::to_json).collect()),
            ]),
            Type::Object(o) => {
                let attrs: serde_json::Map<String, Json> = o
                    .attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect();
                let mut arr = vec!["object".into(), Json::Object(attrs)];
                if !o.optional.is_empty() {
                    arr.push(Json::Array(
                        o.optional.iter().map(|s| Json::from(s.as_str())).collect(),
                    ));
                }
                Json::Array(arr)
            }
        }
    }

    /// The cty JSON encoding as bytes (what tfplugin6 `type` fields carry).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }

    /// Parse the cty JSON encoding.
    pub fn from_json(j: &Json) -> Result<Type, TypeError> {
        match j {
            Json::String(s) => match s.as_str() {
                "string" => Ok(Type::String),
                "number" => Ok(Type::Number),
                "bool" => Ok(Type::Bool),
                "dynamic" => Ok(Type::Dynamic),
                other => Err(TypeError(format!("unknown primitive type {other:?}"))),
            },
            Json::Array(a) => {
                let kind = a
                    .first()
                    .and_then(Json::as_str)
                    .ok_or_else(|| TypeError("type array must start with a kind".into()))?;
                match (kind, a.len()) {
                    ("list", 2) => Ok(Type::list(Type::from_json(&a[1])?)),
                    ("set", 2) => Ok(Type::set(Type::from_json(&a[1])?)),
                    ("map", 2) => Ok(Type::map(Type::from_json(&a[1])?)),
                    ("tuple", 2) => {
                        let es = a[1]
                            .as_array()
                            .ok_or_else(|| TypeError("tuple elements must be an array".into()))?;
                        Ok(Type::Tuple(
                            es.iter().map(Type::from_json).collect::<Result<_, _>>()?,
                        ))
                    }
                    ("object", 2) | ("object", 3) => {
                        let attrs = a[1]
                            .as_object()
                            .ok_or_else(|| TypeError("object attributes must be a map".into()))?;
                        let attrs = attrs
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), Type::from_json(v)?)))
                            .collect::<Result<BTreeMap<_, _>, TypeError>>()?;
                        let mut optional = BTreeSet::new();
                        if let Some(opt) = a.get(2) {
                            let opt = opt.as_array().ok_or_else(|| {
                                TypeError("optional attributes must be an array".into())
                            })?;
                            for o in opt {
                                let name = o.as_str().ok_or_else(|| {
                                    TypeError("optional attribute names must be strings".into())
                                })?;
                                if !attrs.contains_key(name) {
                                    return Err(TypeError(format!(
                                        "optional attribute {name:?} is not an attribute"
                                    )));
                                }
                                optional.insert(name.to_string());
                            }
                        }
                        Ok(Type::Object(ObjectType { attrs, optional }))
                    }
                    (k, n) => Err(TypeError(format!("bad type kind {k:?} with {n} elements"))),
                }
            }
            other => Err(TypeError(format!("unexpected JSON {other}"))),
        }
    }

    pub fn from_json_bytes(b: &[u8]) -> Result<Type, TypeError> {
        let j: Json = serde_json::from_slice(b).map_err(|e| TypeError(e.to_string()))?;
        Type::from_json(&j)
    }

    /// This type with all optional-attribute markers removed, recursively.
    pub fn without_optional_attrs(&self) -> Type {
        match self {
            Type::List(e) => Type::list(e.without_optional_attrs()),
            Type::Set(e) => Type::set(e.without_optional_attrs()),
            Type::Map(e) => Type::map(e.without_optional_attrs()),
            Type::Tuple(es) => Type::Tuple(es.iter().map(Type::without_optional_attrs).collect()),
            Type::Object(o) => Type::Object(ObjectType {
                attrs: o
                    .attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.without_optional_attrs()))
                    .collect(),
                optional: BTreeSet::new(),
            }),
            t => t.clone(),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_encoding_matches_cty() {
        assert_eq!(Type::String.to_json_bytes(), br#""string""#);
        assert_eq!(
            Type::list(Type::String).to_json_bytes(),
            br#"["list","string"]"#
        );
        let mut o = ObjectType::default();
        o.attrs.insert("a".into(), Type::String);
        o.attrs.insert("b".into(), Type::map(Type::Number));
        o.optional.insert("a".into());
        assert_eq!(
            Type::Object(o).to_json().to_string(),
            r#"["object",{"a":"string","b":["map","number"]},["a"]]"#
        );
        assert_eq!(
            Type::Tuple(vec![Type::Bool, Type::Dynamic])
                .to_json()
                .to_string(),
            r#"["tuple",["bool","dynamic"]]"#
        );
    }

    #[test]
    fn json_roundtrip_and_errors() {
        for s in [
            r#""dynamic""#,
            r#"["set",["object",{"x":"number"}]]"#,
            r#"["object",{"a":"string","b":"bool"},["b"]]"#,
            r#"["tuple",[]]"#,
        ] {
            let t = Type::from_json_bytes(s.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(t.to_json_bytes()).unwrap(), s);
        }
        assert!(Type::from_json_bytes(br#""strin""#).is_err());
        assert!(Type::from_json_bytes(br#"["list"]"#).is_err());
        assert!(Type::from_json_bytes(br#"["object",{"a":"string"},["z"]]"#).is_err());
        assert!(Type::from_json_bytes(b"42").is_err());
    }
}
