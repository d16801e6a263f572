//! Platforms, architectures and the artifact references of an image request.

use std::fmt;

use super::schematic::sha256_hex;
use super::validate::{validate_kernel_arg, validate_talos_version};
use super::{validate_extensions, ImageError, Schematic, FACTORY_HOST};

/// CPU architecture of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [&'static str; 2] = ["amd64", "arm64"];

    pub fn parse(s: &str) -> Result<Self, ImageError> {
        match s {
            "amd64" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            _ => Err(ImageError::UnsupportedArch {
                value: s.to_string(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the factory serves for a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// Talos platform name (`nocloud`, `metal`, ...).
    pub name: &'static str,
    /// Disk image file suffix (after `<platform>-<arch>[-secureboot]`).
    pub disk_image_suffix: &'static str,
    /// Whether the factory builds a bootable ISO for it.
    pub iso: bool,
    /// Whether SecureBoot assets exist for it.
    pub secureboot: bool,
}

/// Platforms waddle knows the factory's artifact names for.
pub const PLATFORMS: &[Platform] = &[
    Platform {
        name: "nocloud",
        disk_image_suffix: ".qcow2",
        iso: true,
        secureboot: true,
    },
    Platform {
        name: "metal",
        disk_image_suffix: ".raw.xz",
        iso: true,
        secureboot: true,
    },
    Platform {
        name: "aws",
        disk_image_suffix: ".raw.xz",
        iso: false,
        secureboot: false,
    },
    Platform {
        name: "gcp",
        disk_image_suffix: ".raw.tar.gz",
        iso: false,
        secureboot: false,
    },
];

impl Platform {
    pub fn parse(s: &str) -> Result<&'static Platform, ImageError> {
        PLATFORMS
            .iter()
            .find(|p| p.name == s)
            .ok_or_else(|| ImageError::UnsupportedPlatform {
                value: s.to_string(),
                supported: PLATFORMS
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

fn secureboot_platforms() -> String {
    PLATFORMS
        .iter()
        .filter(|p| p.secureboot)
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validate a platform/SecureBoot combination.
pub fn validate_platform(
    platform: &str,
    secureboot: bool,
) -> Result<&'static Platform, ImageError> {
    let p = Platform::parse(platform)?;
    if secureboot && !p.secureboot {
        return Err(ImageError::SecureBootUnsupported {
            platform: platform.to_string(),
            supported: secureboot_platforms(),
        });
    }
    Ok(p)
}

/// Inputs of the `waddle_talos_image` data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    pub talos_version: String,
    pub extensions: Vec<String>,
    pub extra_kernel_args: Vec<String>,
    pub secureboot: bool,
    pub platform: String,
    pub arch: String,
}

impl Default for ImageRequest {
    fn default() -> Self {
        ImageRequest {
            talos_version: String::new(),
            extensions: Vec::new(),
            extra_kernel_args: Vec::new(),
            secureboot: false,
            platform: "nocloud".into(),
            arch: "amd64".into(),
        }
    }
}

/// Everything derived from an [`ImageRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArtifacts {
    pub schematic_id: String,
    pub schematic_yaml: String,
    /// `factory.talos.dev/<platform>-installer[-secureboot]/<id>:<version>`.
    pub installer_image: String,
    /// `https://factory.talos.dev/image/<id>/<version>/<platform>-<arch>[-secureboot]<suffix>`.
    pub disk_image_url: String,
    /// `https://factory.talos.dev/image/<id>/<version>/<platform>-<arch>[-secureboot].iso`,
    /// for platforms with ISOs.
    pub iso_url: Option<String>,
}

impl ImageRequest {
    /// Validate every field; the first error wins.
    pub fn validate(&self) -> Result<(), ImageError> {
        validate_talos_version(&self.talos_version)?;
        validate_extensions(&self.extensions).map_err(|(_, e)| e)?;
        for a in &self.extra_kernel_args {
            validate_kernel_arg(a)?;
        }
        validate_platform(&self.platform, self.secureboot)?;
        Arch::parse(&self.arch)?;
        Ok(())
    }

    /// The schematic this request describes.
    pub fn schematic(&self) -> Schematic {
        Schematic::with_extensions_and_args(&self.extensions, &self.extra_kernel_args)
    }

    /// Validate, then compute the schematic ID and artifact references.
    pub fn resolve(&self) -> Result<ImageArtifacts, ImageError> {
        self.validate()?;
        let platform = validate_platform(&self.platform, self.secureboot)?;
        let arch = Arch::parse(&self.arch)?;
        let schematic = self.schematic();
        let schematic_yaml = schematic.canonical_yaml()?;
        let schematic_id = sha256_hex(schematic_yaml.as_bytes());
        let sb = if self.secureboot { "-secureboot" } else { "" };
        let version = &self.talos_version;
        let base = format!("https://{FACTORY_HOST}/image/{schematic_id}/{version}");
        let stem = format!("{}-{}{}", platform.name, arch, sb);
        Ok(ImageArtifacts {
            installer_image: format!(
                "{FACTORY_HOST}/{}-installer{sb}/{schematic_id}:{version}",
                platform.name
            ),
            disk_image_url: format!("{base}/{stem}{}", platform.disk_image_suffix),
            iso_url: platform.iso.then(|| format!("{base}/{stem}.iso")),
            schematic_id,
            schematic_yaml,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::DEFAULT_SCHEMATIC_ID;

    #[test]
    fn platforms_and_arches() {
        assert_eq!(Platform::parse("nocloud").unwrap().name, "nocloud");
        assert!(matches!(
            Platform::parse("proxmox"),
            Err(ImageError::UnsupportedPlatform { .. })
        ));
        assert!(matches!(
            validate_platform("aws", true),
            Err(ImageError::SecureBootUnsupported { .. })
        ));
        assert_eq!(Arch::parse("arm64").unwrap(), Arch::Arm64);
        assert!(matches!(
            Arch::parse("x86_64"),
            Err(ImageError::UnsupportedArch { .. })
        ));
    }

    // --- URLs ------------------------------------------------------------

    #[test]
    fn nocloud_urls() {
        let req = ImageRequest {
            talos_version: "v1.12.4".into(),
            extensions: vec!["siderolabs/qemu-guest-agent".into()],
            ..Default::default()
        };
        let a = req.resolve().unwrap();
        let id = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";
        assert_eq!(a.schematic_id, id);
        assert_eq!(
            a.installer_image,
            format!("factory.talos.dev/nocloud-installer/{id}:v1.12.4")
        );
        assert_eq!(
            a.disk_image_url,
            format!("https://factory.talos.dev/image/{id}/v1.12.4/nocloud-amd64.qcow2")
        );
        assert_eq!(
            a.iso_url.as_deref(),
            Some(
                format!("https://factory.talos.dev/image/{id}/v1.12.4/nocloud-amd64.iso").as_str()
            )
        );
    }

    #[test]
    fn secureboot_and_other_platforms() {
        let req = ImageRequest {
            talos_version: "v1.11.5".into(),
            extensions: vec!["siderolabs/qemu-guest-agent".into()],
            secureboot: true,
            ..Default::default()
        };
        let a = req.resolve().unwrap();
        let id = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";
        // SecureBoot changes URLs only, never the schematic.
        assert_eq!(a.schematic_id, id);
        assert_eq!(
            a.installer_image,
            format!("factory.talos.dev/nocloud-installer-secureboot/{id}:v1.11.5")
        );
        assert_eq!(
            a.iso_url.unwrap(),
            format!("https://factory.talos.dev/image/{id}/v1.11.5/nocloud-amd64-secureboot.iso")
        );
        assert_eq!(
            a.disk_image_url,
            format!("https://factory.talos.dev/image/{id}/v1.11.5/nocloud-amd64-secureboot.qcow2")
        );

        let metal = ImageRequest {
            talos_version: "v1.7.5".into(),
            platform: "metal".into(),
            arch: "arm64".into(),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            metal.disk_image_url,
            format!(
                "https://factory.talos.dev/image/{DEFAULT_SCHEMATIC_ID}/v1.7.5/metal-arm64.raw.xz"
            )
        );
        assert_eq!(
            metal.installer_image,
            format!("factory.talos.dev/metal-installer/{DEFAULT_SCHEMATIC_ID}:v1.7.5")
        );
        let aws = ImageRequest {
            talos_version: "v1.7.5".into(),
            platform: "aws".into(),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(aws.iso_url, None);
        assert_eq!(
            aws.installer_image,
            format!("factory.talos.dev/aws-installer/{DEFAULT_SCHEMATIC_ID}:v1.7.5")
        );
    }

    #[test]
    fn resolve_refuses_invalid_requests() {
        let base = ImageRequest {
            talos_version: "v1.12.4".into(),
            ..Default::default()
        };
        let bad_version = ImageRequest {
            talos_version: "1.12".into(),
            ..base.clone()
        };
        assert!(matches!(
            bad_version.resolve(),
            Err(ImageError::InvalidTalosVersion { .. })
        ));
        let bad_ext = ImageRequest {
            extensions: vec!["siderolabs/nope".into()],
            ..base.clone()
        };
        assert!(matches!(
            bad_ext.resolve(),
            Err(ImageError::UnknownExtension { .. })
        ));
        let bad_arg = ImageRequest {
            extra_kernel_args: vec!["a b".into()],
            ..base.clone()
        };
        assert!(matches!(
            bad_arg.resolve(),
            Err(ImageError::InvalidKernelArg { .. })
        ));
    }
}
