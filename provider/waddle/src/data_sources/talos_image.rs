//! Data source `waddle_talos_image`: the Talos Image Factory schematic ID and artifact
//! references for a Talos version, a set of official extensions and kernel arguments,
//! computed offline (no request to the factory).

use waddle_framework::prelude::*;
use waddle_talos::image::{
    validate_extensions, validate_kernel_arg, validate_platform, validate_talos_version, Arch,
    ImageError, ImageRequest, FACTORY_HOST, OFFICIAL_EXTENSION_PREFIX, PLATFORMS,
};

/// Type name.
pub const TYPE_NAME: &str = "waddle_talos_image";

/// Default of `platform`.
pub const DEFAULT_PLATFORM: &str = "nocloud";
/// Default of `arch`.
pub const DEFAULT_ARCH: &str = "amd64";

/// The data source.
#[derive(Debug, Default, Clone, Copy)]
pub struct TalosImage;

fn platforms_list() -> String {
    PLATFORMS
        .iter()
        .map(|p| format!("`{}`", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The schema.
pub fn schema() -> Schema {
    Schema::new(format!(
        "Computes the Talos Linux [Image Factory](https://{FACTORY_HOST}) schematic ID for a Talos \
         version, a list of official system extensions and extra kernel arguments, together with \
         the installer image and boot image URLs the factory serves for it. Everything is computed \
         locally, byte for byte as the factory does (hex SHA-256 of the schematic's canonical \
         YAML), so no request is made and no manual visit to the factory web page is needed. \
         The factory builds the artifacts on first download."
    ))
    .attribute(
        "talos_version",
        Attribute::string().required().description(
            "Talos Linux release, a `v`-prefixed semantic version such as `v1.12.4`.",
        ),
    )
    .attribute(
        "extensions",
        Attribute::list_of(Type::String).optional().description(format!(
            "Official system extensions to include, e.g. `{OFFICIAL_EXTENSION_PREFIX}qemu-guest-agent`. \
             Order is kept (it changes the schematic ID; the factory web UI lists extensions \
             alphabetically). Names must be official `{OFFICIAL_EXTENSION_PREFIX}<name>` extensions \
             and may not repeat. Defaults to none."
        )),
    )
    .attribute(
        "extra_kernel_args",
        Attribute::list_of(Type::String).optional().description(
            "Extra kernel command-line arguments, each `key` or `key=value` (no whitespace or \
             quotes). Order is kept. Defaults to none.",
        ),
    )
    .attribute(
        "secureboot",
        Attribute::bool().optional().computed().description(
            "Use the SecureBoot variants of the installer, ISO and disk image. Does not change the \
             schematic ID. Defaults to `false`.",
        ),
    )
    .attribute(
        "platform",
        Attribute::string().optional().computed().description(format!(
            "Talos platform of the boot images: one of {}. Defaults to `\"{DEFAULT_PLATFORM}\"` \
             (Proxmox VE and other cloud-init style hypervisors).",
            platforms_list()
        )),
    )
    .attribute(
        "arch",
        Attribute::string().optional().computed().description(format!(
            "CPU architecture: `amd64` or `arm64`. Defaults to `\"{DEFAULT_ARCH}\"`."
        )),
    )
    .attribute(
        "id",
        Attribute::string()
            .computed()
            .description("Same as `schematic_id`."),
    )
    .attribute(
        "schematic_id",
        Attribute::string().computed().description(
            "The Image Factory schematic ID: hex SHA-256 of `schematic_yaml`.",
        ),
    )
    .attribute(
        "schematic_yaml",
        Attribute::string().computed().description(
            "The schematic in the factory's canonical YAML form (what the ID is the hash of); \
             it can be POSTed to the factory's `/schematics` endpoint unchanged.",
        ),
    )
    .attribute(
        "installer_image",
        Attribute::string().computed().description(format!(
            "Installer container image for `machine.install.image` and upgrades: \
             `{FACTORY_HOST}/<platform>-installer[-secureboot]/<schematic_id>:<talos_version>`."
        )),
    )
    .attribute(
        "disk_image_url",
        Attribute::string().computed().description(format!(
            "Disk image URL: `https://{FACTORY_HOST}/image/<schematic_id>/<talos_version>/<platform>-<arch>[-secureboot]<ext>`, \
             where `<ext>` is `.qcow2` for `nocloud`, `.raw.xz` for `metal` and `aws`, `.raw.tar.gz` for `gcp`."
        )),
    )
    .attribute(
        "iso_url",
        Attribute::string().computed().description(format!(
            "Bootable ISO URL (`https://{FACTORY_HOST}/image/<schematic_id>/<talos_version>/<platform>-<arch>[-secureboot].iso`); \
             null for platforms without an ISO (`aws`, `gcp`)."
        )),
    )
}

/// Elements of a list attribute with their indexes, skipping unknown elements. `None` when
/// the list itself is null or unknown.
fn known_strings(v: Option<&Value>) -> Option<Vec<(usize, Option<&str>)>> {
    let v = v?;
    if !v.is_set() {
        return None;
    }
    Some(
        v.as_elements()?
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_known())
            .map(|(i, e)| (i, e.as_str()))
            .collect(),
    )
}

fn report(diags: &mut Diagnostics, path: AttributePath, summary: &str, e: &ImageError) {
    diags.error_at(path, summary, e.to_string());
}

/// Validate a configuration (unknown values are skipped).
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    if let Some(v) = config.get_attr("talos_version").and_then(Value::as_str) {
        if let Err(e) = validate_talos_version(v) {
            report(
                diags,
                AttributePath::attr("talos_version"),
                "Invalid Talos version",
                &e,
            );
        }
    }
    if let Some(items) = known_strings(config.get_attr("extensions")) {
        let mut seen: Vec<String> = Vec::new();
        for (i, s) in items {
            let path = AttributePath::attr("extensions").then_index(i as i64);
            let Some(s) = s else {
                diags.error_at(
                    path,
                    "Invalid extension",
                    "extension names must not be null",
                );
                continue;
            };
            let mut names = seen.clone();
            names.push(s.to_string());
            if let Err((_, e)) = validate_extensions(&names) {
                report(diags, path, "Invalid extension", &e);
            } else {
                seen.push(s.to_string());
            }
        }
    }
    if let Some(items) = known_strings(config.get_attr("extra_kernel_args")) {
        for (i, s) in items {
            let path = AttributePath::attr("extra_kernel_args").then_index(i as i64);
            match s {
                None => diags.error_at(path, "Invalid kernel argument", "must not be null"),
                Some(s) => {
                    if let Err(e) = validate_kernel_arg(s) {
                        report(diags, path, "Invalid kernel argument", &e);
                    }
                }
            }
        }
    }
    let platform = config.get_attr("platform");
    let secureboot = config.get_attr("secureboot");
    if platform.is_some_and(Value::is_known) && secureboot.is_some_and(Value::is_known) {
        let p = platform.and_then(Value::as_str).unwrap_or(DEFAULT_PLATFORM);
        let sb = secureboot.and_then(Value::as_bool).unwrap_or(false);
        match validate_platform(p, sb) {
            Ok(_) => {}
            Err(e @ ImageError::SecureBootUnsupported { .. }) => report(
                diags,
                AttributePath::attr("secureboot"),
                "SecureBoot not available",
                &e,
            ),
            Err(e) => report(
                diags,
                AttributePath::attr("platform"),
                "Unsupported platform",
                &e,
            ),
        }
    } else if let Some(p) = platform.and_then(Value::as_str) {
        if let Err(e) = validate_platform(p, false) {
            report(
                diags,
                AttributePath::attr("platform"),
                "Unsupported platform",
                &e,
            );
        }
    }
    if let Some(a) = config.get_attr("arch").and_then(Value::as_str) {
        if let Err(e) = Arch::parse(a) {
            report(
                diags,
                AttributePath::attr("arch"),
                "Unsupported architecture",
                &e,
            );
        }
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_elements)
        .map(|els| {
            els.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Compute the state from a (wholly known) configuration.
pub fn read(config: &Value, diags: &mut Diagnostics) -> Option<Value> {
    validate(config, diags);
    if diags.has_errors() {
        return None;
    }
    let req = ImageRequest {
        talos_version: config
            .get_attr("talos_version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        extensions: string_list(config.get_attr("extensions")),
        extra_kernel_args: string_list(config.get_attr("extra_kernel_args")),
        secureboot: config
            .get_attr("secureboot")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        platform: config
            .get_attr("platform")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_PLATFORM)
            .to_string(),
        arch: config
            .get_attr("arch")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_ARCH)
            .to_string(),
    };
    let a = match req.resolve() {
        Ok(a) => a,
        Err(e) => {
            diags.error("Cannot compute the Talos image", e.to_string());
            return None;
        }
    };
    let keep = |name: &str| config.get_attr(name).cloned().unwrap_or(Value::Null);
    Some(Value::object([
        ("talos_version", keep("talos_version")),
        ("extensions", keep("extensions")),
        ("extra_kernel_args", keep("extra_kernel_args")),
        ("secureboot", Value::Bool(req.secureboot)),
        ("platform", Value::from(req.platform.as_str())),
        ("arch", Value::from(req.arch.as_str())),
        ("id", Value::from(a.schematic_id.as_str())),
        ("schematic_id", Value::from(a.schematic_id)),
        ("schematic_yaml", Value::from(a.schematic_yaml)),
        ("installer_image", Value::from(a.installer_image)),
        ("disk_image_url", Value::from(a.disk_image_url)),
        ("iso_url", Value::from(a.iso_url)),
    ]))
}

#[async_trait]
impl DataSource for TalosImage {
    fn type_name(&self) -> &str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        validate(config, diags);
    }

    async fn read(&self, _ctx: &Context, config: Value, diags: &mut Diagnostics) -> Option<Value> {
        read(&config, diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration value with every schema attribute (null unless given).
    fn config(attrs: &[(&str, Value)]) -> Value {
        let mut v = schema().null_value();
        for (k, val) in attrs {
            assert!(v.set_path(&AttributePath::attr(*k), val.clone()), "{k}");
        }
        v
    }

    fn strings(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::from(*s)).collect())
    }

    fn errors(config: &Value) -> Vec<(String, String)> {
        let mut d = Diagnostics::new();
        validate(config, &mut d);
        waddle_framework::testing::errors(&d)
    }

    #[test]
    fn schema_is_well_formed() {
        assert!(schema().check().is_empty(), "{}", schema().check());
        for (name, a) in &schema().block.attributes {
            assert!(!a.description.is_empty(), "{name} has no description");
        }
    }

    #[test]
    fn read_defaults_to_nocloud_amd64() {
        let mut d = Diagnostics::new();
        let state = read(
            &config(&[
                ("talos_version", Value::from("v1.12.4")),
                (
                    "extensions",
                    strings(&[
                        "siderolabs/iscsi-tools",
                        "siderolabs/qemu-guest-agent",
                        "siderolabs/util-linux-tools",
                    ]),
                ),
            ]),
            &mut d,
        )
        .expect("state");
        assert!(d.is_empty(), "{d}");
        let id = "88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b";
        let get = |k: &str| state.get_attr(k).unwrap().clone();
        assert_eq!(get("schematic_id"), Value::from(id));
        assert_eq!(get("id"), Value::from(id));
        assert_eq!(get("platform"), Value::from("nocloud"));
        assert_eq!(get("arch"), Value::from("amd64"));
        assert_eq!(get("secureboot"), Value::Bool(false));
        assert_eq!(get("extra_kernel_args"), Value::Null);
        assert_eq!(
            get("installer_image"),
            Value::from(format!("factory.talos.dev/nocloud-installer/{id}:v1.12.4"))
        );
        assert_eq!(
            get("disk_image_url"),
            Value::from(format!(
                "https://factory.talos.dev/image/{id}/v1.12.4/nocloud-amd64.qcow2"
            ))
        );
        assert_eq!(
            get("iso_url"),
            Value::from(format!(
                "https://factory.talos.dev/image/{id}/v1.12.4/nocloud-amd64.iso"
            ))
        );
        assert!(get("schematic_yaml")
            .as_str()
            .unwrap()
            .starts_with("customization:\n    systemExtensions:\n"));
        // Every schema attribute is present and known.
        for name in schema().block.attributes.keys() {
            assert!(state.get_attr(name).is_some(), "{name}");
        }
        assert!(state.is_wholly_known());
    }

    #[test]
    fn read_empty_schematic_secureboot_arm64() {
        let mut d = Diagnostics::new();
        let state = read(
            &config(&[
                ("talos_version", Value::from("v1.12.4")),
                ("extensions", Value::List(vec![])),
                ("secureboot", Value::Bool(true)),
                ("platform", Value::from("metal")),
                ("arch", Value::from("arm64")),
            ]),
            &mut d,
        )
        .unwrap();
        let id = waddle_talos::image::DEFAULT_SCHEMATIC_ID;
        assert_eq!(state.get_attr("schematic_id"), Some(&Value::from(id)));
        assert_eq!(
            state.get_attr("schematic_yaml"),
            Some(&Value::from("customization: {}\n"))
        );
        assert_eq!(
            state.get_attr("iso_url"),
            Some(&Value::from(format!(
                "https://factory.talos.dev/image/{id}/v1.12.4/metal-arm64-secureboot.iso"
            )))
        );
        assert_eq!(
            state.get_attr("installer_image"),
            Some(&Value::from(format!(
                "factory.talos.dev/metal-installer-secureboot/{id}:v1.12.4"
            )))
        );
    }

    #[test]
    fn validation_errors_carry_paths() {
        let c = config(&[
            ("talos_version", Value::from("1.12")),
            (
                "extensions",
                strings(&[
                    "siderolabs/qemu-guest-agent",
                    "qemu-guest-agent",
                    "siderolabs/qemu-guest-agent",
                ]),
            ),
            ("extra_kernel_args", strings(&["ok=1", "bad arg"])),
            ("platform", Value::from("proxmox")),
            ("arch", Value::from("x86")),
        ]);
        let paths: Vec<String> = errors(&c).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            vec![
                "talos_version",
                "extensions[1]",
                "extensions[2]",
                "extra_kernel_args[1]",
                "platform",
                "arch"
            ]
        );
        let c = config(&[
            ("talos_version", Value::from("v1.12.4")),
            ("platform", Value::from("aws")),
            ("secureboot", Value::Bool(true)),
        ]);
        assert_eq!(errors(&c)[0].0, "secureboot");
    }

    #[test]
    fn unknown_values_are_not_errors() {
        let c = config(&[
            ("talos_version", Value::unknown()),
            (
                "extensions",
                Value::List(vec![Value::unknown(), Value::from("nope")]),
            ),
            ("extra_kernel_args", Value::unknown()),
            ("platform", Value::unknown()),
            ("secureboot", Value::Bool(true)),
        ]);
        let errs = errors(&c);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "extensions[1]");
    }

    #[test]
    fn read_refuses_invalid_config() {
        let mut d = Diagnostics::new();
        let out = read(&config(&[("talos_version", Value::from("latest"))]), &mut d);
        assert!(out.is_none());
        assert!(d.has_errors());
    }
}
