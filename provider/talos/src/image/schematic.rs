//! The schematic model and its canonical YAML (what the Image Factory hashes).

use sha2::{Digest, Sha256};

use super::go_yaml::{write_scalar, write_seq_scalar};
use super::SchematicError;

/// An Image Factory schematic (the subset waddle models: everything except
/// non-empty `overlay.options`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schematic {
    /// `owner` (omitted when empty).
    pub owner: String,
    /// `overlay` (omitted when image and name are both empty).
    pub overlay: Overlay,
    /// `customization` (always present; `{}` when empty).
    pub customization: Customization,
}

/// `overlay`: an SBC overlay image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    pub image: String,
    pub name: String,
}

/// `customization`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customization {
    /// `extraKernelArgs`, order kept.
    pub extra_kernel_args: Vec<String>,
    /// `meta`: initial META values.
    pub meta: Vec<MetaValue>,
    /// `systemExtensions`.
    pub system_extensions: SystemExtensions,
    /// `secureboot`.
    pub secureboot: SecureBootCustomization,
}

/// One `meta` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaValue {
    pub key: u8,
    pub value: String,
}

/// `systemExtensions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemExtensions {
    /// `officialExtensions`, order kept (not sorted: order changes the ID).
    pub official_extensions: Vec<String>,
}

/// `secureboot` customization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecureBootCustomization {
    pub include_well_known_certificates: bool,
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.image.is_empty() && self.name.is_empty()
    }
}

impl Customization {
    fn is_empty(&self) -> bool {
        self.extra_kernel_args.is_empty()
            && self.meta.is_empty()
            && self.system_extensions.official_extensions.is_empty()
            && !self.secureboot.include_well_known_certificates
    }
}

impl Schematic {
    /// A schematic with the given official extensions and kernel arguments
    /// (the shape the Image Factory web UI produces).
    pub fn with_extensions_and_args(extensions: &[String], kernel_args: &[String]) -> Self {
        Schematic {
            customization: Customization {
                extra_kernel_args: kernel_args.to_vec(),
                system_extensions: SystemExtensions {
                    official_extensions: extensions.to_vec(),
                },
                ..Customization::default()
            },
            ..Schematic::default()
        }
    }

    /// The canonical YAML (exactly what the Image Factory hashes).
    pub fn canonical_yaml(&self) -> Result<String, SchematicError> {
        let mut out = String::new();
        if !self.owner.is_empty() {
            out.push_str("owner: ");
            write_scalar(&mut out, &self.owner, 4, "owner")?;
        }
        if !self.overlay.is_empty() {
            out.push_str("overlay:\n    image: ");
            write_scalar(&mut out, &self.overlay.image, 8, "overlay.image")?;
            out.push_str("    name: ");
            write_scalar(&mut out, &self.overlay.name, 8, "overlay.name")?;
        }
        let c = &self.customization;
        if c.is_empty() {
            out.push_str("customization: {}\n");
            return Ok(out);
        }
        out.push_str("customization:\n");
        if !c.extra_kernel_args.is_empty() {
            out.push_str("    extraKernelArgs:\n");
            for (i, arg) in c.extra_kernel_args.iter().enumerate() {
                out.push_str("        - ");
                write_seq_scalar(&mut out, arg, || {
                    format!("customization.extraKernelArgs[{i}]")
                })?;
            }
        }
        if !c.meta.is_empty() {
            out.push_str("    meta:\n");
            for (i, m) in c.meta.iter().enumerate() {
                out.push_str("        - key: ");
                out.push_str(&m.key.to_string());
                out.push_str("\n          value: ");
                write_scalar(
                    &mut out,
                    &m.value,
                    12,
                    &format!("customization.meta[{i}].value"),
                )?;
            }
        }
        if !c.system_extensions.official_extensions.is_empty() {
            out.push_str("    systemExtensions:\n        officialExtensions:\n");
            for (i, ext) in c.system_extensions.official_extensions.iter().enumerate() {
                out.push_str("            - ");
                write_seq_scalar(&mut out, ext, || {
                    format!("customization.systemExtensions.officialExtensions[{i}]")
                })?;
            }
        }
        if c.secureboot.include_well_known_certificates {
            out.push_str("    secureboot:\n        includeWellKnownCertificates: true\n");
        }
        Ok(out)
    }

    /// The schematic ID: hex SHA-256 of [`Schematic::canonical_yaml`].
    pub fn id(&self) -> Result<String, SchematicError> {
        Ok(sha256_hex(self.canonical_yaml()?.as_bytes()))
    }
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::DEFAULT_SCHEMATIC_ID;

    #[test]
    fn empty_schematic_is_the_factory_default() {
        let s = Schematic::default();
        assert_eq!(s.canonical_yaml().unwrap(), "customization: {}\n");
        assert_eq!(
            s.id().unwrap(),
            "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
        );
        assert_eq!(s.id().unwrap(), DEFAULT_SCHEMATIC_ID);
    }

    #[test]
    fn factory_test_vectors() {
        // IDs from the Image Factory's own schematic tests.
        let args = Schematic::with_extensions_and_args(&[], &["noapic".into(), "nolapic".into()]);
        assert_eq!(
            args.canonical_yaml().unwrap(),
            "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n"
        );
        assert_eq!(
            args.id().unwrap(),
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"
        );
        let meta = Schematic {
            customization: Customization {
                meta: vec![MetaValue {
                    key: 0x0a,
                    value: "foo".into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            meta.id().unwrap(),
            "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f"
        );
        let sb = Schematic {
            customization: Customization {
                secureboot: SecureBootCustomization {
                    include_well_known_certificates: true,
                },
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            sb.id().unwrap(),
            "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6"
        );
        let overlay = Schematic {
            overlay: Overlay {
                image: "siderolabs/sbc-raspberrypi".into(),
                name: "rpi_generic".into(),
            },
            ..Default::default()
        };
        assert_eq!(
            overlay.id().unwrap(),
            "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9"
        );
    }

    #[test]
    fn published_extension_schematics() {
        // Schematic IDs published alongside factory.talos.dev installer
        // references for these extension sets (the factory web UI lists the
        // chosen extensions in alphabetical order).
        let qga = Schematic::with_extensions_and_args(&["siderolabs/qemu-guest-agent".into()], &[]);
        assert_eq!(
            qga.canonical_yaml().unwrap(),
            "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n"
        );
        assert_eq!(
            qga.id().unwrap(),
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
        );
        let three = Schematic::with_extensions_and_args(
            &[
                "siderolabs/iscsi-tools".into(),
                "siderolabs/qemu-guest-agent".into(),
                "siderolabs/util-linux-tools".into(),
            ],
            &[],
        );
        assert_eq!(
            three.id().unwrap(),
            "88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b"
        );
        // Order matters: lists are not sorted.
        let reordered = Schematic::with_extensions_and_args(
            &[
                "siderolabs/qemu-guest-agent".into(),
                "siderolabs/iscsi-tools".into(),
                "siderolabs/util-linux-tools".into(),
            ],
            &[],
        );
        assert_ne!(reordered.id().unwrap(), three.id().unwrap());
    }

    #[test]
    fn field_order_and_omission() {
        // Expected bytes produced by go-yaml v3 for the factory struct.
        let s = Schematic {
            owner: "me".into(),
            overlay: Overlay::default(),
            customization: Customization {
                extra_kernel_args: vec!["a".into()],
                meta: vec![
                    MetaValue {
                        key: 0,
                        value: "".into(),
                    },
                    MetaValue {
                        key: 255,
                        value: "1".into(),
                    },
                ],
                system_extensions: SystemExtensions {
                    official_extensions: vec!["siderolabs/qemu-guest-agent".into()],
                },
                secureboot: SecureBootCustomization {
                    include_well_known_certificates: true,
                },
            },
        };
        assert_eq!(
            s.canonical_yaml().unwrap(),
            "owner: me\ncustomization:\n    extraKernelArgs:\n        - a\n    meta:\n        - key: 0\n          value: \"\"\n        - key: 255\n          value: \"1\"\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n    secureboot:\n        includeWellKnownCertificates: true\n"
        );
        assert_eq!(
            s.id().unwrap(),
            "1ebb18edd62da02e389954005e6b4276f1a0811de5993f281e7a6d2c0fe79533"
        );
    }
}
