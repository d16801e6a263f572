//! Reading a schematic from YAML or JSON text, strictly (unknown fields refused).

use super::schematic::{MetaValue, Schematic};
use super::SchematicError;

impl Schematic {
    /// Parse a schematic from YAML or JSON text (the body one would POST to
    /// the Image Factory). Unknown fields are refused, as the factory does.
    pub fn from_yaml(text: &str) -> Result<Self, SchematicError> {
        use serde_yaml_ng::Value;
        if text.trim().is_empty() {
            return Err(SchematicError::Empty);
        }
        let doc: Value =
            serde_yaml_ng::from_str(text).map_err(|e| SchematicError::Parse(e.to_string()))?;
        let mut s = Schematic::default();
        for (key, value) in mapping(&doc, "")? {
            match key.as_str() {
                "owner" => s.owner = string(value, "owner")?,
                "overlay" => {
                    for (k, v) in mapping(value, "overlay")? {
                        match k.as_str() {
                            "image" => s.overlay.image = string(v, "overlay.image")?,
                            "name" => s.overlay.name = string(v, "overlay.name")?,
                            "options" => match v {
                                Value::Null => {}
                                Value::Mapping(m) if m.is_empty() => {}
                                Value::Mapping(_) => {
                                    return Err(SchematicError::UnsupportedOverlayOptions)
                                }
                                _ => {
                                    return Err(SchematicError::WrongType {
                                        path: "overlay.options".into(),
                                        expected: "a mapping",
                                    })
                                }
                            },
                            _ => return Err(unknown("overlay.", &k)),
                        }
                    }
                }
                "customization" => {
                    let c = &mut s.customization;
                    for (k, v) in mapping(value, "customization")? {
                        match k.as_str() {
                            "extraKernelArgs" => {
                                c.extra_kernel_args =
                                    string_list(v, "customization.extraKernelArgs")?
                            }
                            "meta" => c.meta = meta_list(v)?,
                            "systemExtensions" => {
                                for (k2, v2) in mapping(v, "customization.systemExtensions")? {
                                    match k2.as_str() {
                                        "officialExtensions" => {
                                            c.system_extensions.official_extensions = string_list(
                                                v2,
                                                "customization.systemExtensions.officialExtensions",
                                            )?
                                        }
                                        _ => {
                                            return Err(unknown(
                                                "customization.systemExtensions.",
                                                &k2,
                                            ))
                                        }
                                    }
                                }
                            }
                            "secureboot" => {
                                for (k2, v2) in mapping(v, "customization.secureboot")? {
                                    match k2.as_str() {
                                        "includeWellKnownCertificates" => {
                                            c.secureboot.include_well_known_certificates = match v2
                                            {
                                                Value::Bool(b) => *b,
                                                Value::Null => false,
                                                _ => return Err(SchematicError::WrongType {
                                                    path: "customization.secureboot.includeWellKnownCertificates".into(),
                                                    expected: "a boolean",
                                                }),
                                            }
                                        }
                                        _ => {
                                            return Err(unknown("customization.secureboot.", &k2))
                                        }
                                    }
                                }
                            }
                            _ => return Err(unknown("customization.", &k)),
                        }
                    }
                }
                _ => return Err(unknown("", &key)),
            }
        }
        Ok(s)
    }
}

/// Compute the schematic ID of a schematic given as YAML or JSON text.
pub fn schematic_id_from_yaml(text: &str) -> Result<String, SchematicError> {
    Schematic::from_yaml(text)?.id()
}

fn unknown(prefix: &str, key: &str) -> SchematicError {
    SchematicError::UnknownField {
        path: format!("{prefix}{key}"),
    }
}

type Entries<'a> = Vec<(String, &'a serde_yaml_ng::Value)>;

/// A mapping's entries (null counts as an empty mapping, as in go-yaml).
fn mapping<'a>(v: &'a serde_yaml_ng::Value, path: &str) -> Result<Entries<'a>, SchematicError> {
    use serde_yaml_ng::Value;
    let wrong = || SchematicError::WrongType {
        path: if path.is_empty() {
            "(document)".into()
        } else {
            path.into()
        },
        expected: "a mapping",
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, val)| match k {
                Value::String(s) => Ok((s.clone(), val)),
                _ => Err(wrong()),
            })
            .collect(),
        _ => Err(wrong()),
    }
}

fn string(v: &serde_yaml_ng::Value, path: &str) -> Result<String, SchematicError> {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(SchematicError::WrongType {
            path: path.into(),
            expected: "a string (quote numbers and booleans)",
        }),
    }
}

fn string_list(v: &serde_yaml_ng::Value, path: &str) -> Result<Vec<String>, SchematicError> {
    use serde_yaml_ng::Value;
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(item, &format!("{path}[{i}]")))
            .collect(),
        _ => Err(SchematicError::WrongType {
            path: path.into(),
            expected: "a list of strings",
        }),
    }
}

fn meta_list(v: &serde_yaml_ng::Value) -> Result<Vec<MetaValue>, SchematicError> {
    use serde_yaml_ng::Value;
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(items) => items,
        _ => {
            return Err(SchematicError::WrongType {
                path: "customization.meta".into(),
                expected: "a list of {key, value} mappings",
            })
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let base = format!("customization.meta[{i}]");
        let mut m = MetaValue::default();
        for (k, val) in mapping(item, &base)? {
            match k.as_str() {
                "key" => {
                    let path = format!("{base}.key");
                    m.key = match val {
                        Value::Null => 0,
                        Value::Number(n) => n
                            .as_u64()
                            .and_then(|n| u8::try_from(n).ok())
                            .ok_or(SchematicError::MetaKeyOutOfRange { path })?,
                        _ => return Err(SchematicError::MetaKeyOutOfRange { path }),
                    }
                }
                "value" => m.value = string(val, &format!("{base}.value"))?,
                _ => return Err(unknown(&format!("{base}."), &k)),
            }
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::DEFAULT_SCHEMATIC_ID;

    #[test]
    fn parse_equivalent_inputs_give_the_same_id() {
        // Inputs from the factory's own unmarshal tests.
        for (text, id) in [
            ("{}", DEFAULT_SCHEMATIC_ID),
            ("customization: {}", DEFAULT_SCHEMATIC_ID),
            ("customization: {\"extraKernelArgs\": []}", DEFAULT_SCHEMATIC_ID),
            ("null", DEFAULT_SCHEMATIC_ID),
            (
                "{\"customization\": {\"extraKernelArgs\": [\"noapic\", \"nolapic\"]}}",
                "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
            ),
            (
                "{\"customization\": {\"extraKernelArgs\": [\"noapic\", \"nolapic\"], \"systemExtensions\": {}}}",
                "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
            ),
            (
                "{\"customization\": {\"meta\": [{\"key\": 10, \"value\": \"foo\"}], \"extraKernelArgs\": [], \"systemExtensions\": {}}}",
                "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
            ),
            (
                "customization:\n  meta:\n    - key: 0xa\n      value: foo\n",
                "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
            ),
            (
                "{\"overlay\": {\"name\": \"rpi_generic\", \"image\": \"siderolabs/sbc-raspberrypi\"}}",
                "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
            ),
            (
                "{\"overlay\": {\"name\": \"rpi_generic\", \"image\": \"siderolabs/sbc-raspberrypi\"},\"customization\":{}}",
                "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
            ),
            (
                "{\"customization\":{\"secureboot\": {\"includeWellKnownCertificates\": true}}}",
                "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
            ),
            (
                "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n",
                "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
            ),
        ] {
            assert_eq!(schematic_id_from_yaml(text).unwrap(), id, "{text}");
        }
    }

    #[test]
    fn parse_refuses_bad_input() {
        assert_eq!(schematic_id_from_yaml("  \n"), Err(SchematicError::Empty));
        assert!(matches!(
            schematic_id_from_yaml("customization: ["),
            Err(SchematicError::Parse(_))
        ));
        assert_eq!(
            schematic_id_from_yaml("customization:\n  extraKernelArg: [a]"),
            Err(SchematicError::UnknownField {
                path: "customization.extraKernelArg".into()
            })
        );
        assert_eq!(
            schematic_id_from_yaml("foo: 1"),
            Err(SchematicError::UnknownField { path: "foo".into() })
        );
        assert_eq!(
            schematic_id_from_yaml("customization:\n  meta:\n    - key: 256\n      value: x"),
            Err(SchematicError::MetaKeyOutOfRange {
                path: "customization.meta[0].key".into()
            })
        );
        assert!(matches!(
            schematic_id_from_yaml("customization:\n  extraKernelArgs: [1]"),
            Err(SchematicError::WrongType { ref path, .. }) if path == "customization.extraKernelArgs[0]"
        ));
        assert!(matches!(
            schematic_id_from_yaml("customization: 3"),
            Err(SchematicError::WrongType { ref path, .. }) if path == "customization"
        ));
        assert_eq!(
            schematic_id_from_yaml("overlay:\n  image: x\n  name: y\n  options:\n    a: 1"),
            Err(SchematicError::UnsupportedOverlayOptions)
        );
    }
}
