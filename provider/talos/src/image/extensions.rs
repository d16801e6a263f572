//! The official system extensions: the curated catalogue and name validation.

use super::ImageError;

/// Prefix of official system extension names.
pub const OFFICIAL_EXTENSION_PREFIX: &str = "siderolabs/";

/// Curated list of official Talos system extensions (names without the
/// `siderolabs/` prefix), from the siderolabs/extensions catalogue (core,
/// extra and contrib tiers) plus a few older names the factory still serves
/// for earlier Talos releases. The factory remains the authority on which
/// extension exists for which Talos version; this list refuses typos and
/// third-party images early, at validate time.
pub const OFFICIAL_EXTENSIONS: &[&str] = &[
    // container runtimes
    "crun",
    "ecr-credential-provider",
    "gvisor",
    "gvisor-debug",
    "harbor-credential-provider",
    "kata-containers",
    "soci-snapshotter",
    "spin",
    "stargz-snapshotter",
    "urunc",
    "wasmedge",
    "youki",
    // hypervisors
    "libvirtd",
    // firmware
    "amd-ucode",
    "bnx2-bnx2x",
    "chelsio-firmware",
    "intel-ice-firmware",
    "intel-ucode",
    "qlogic-firmware",
    "realtek-firmware",
    "revpi-firmware",
    // DRM
    "amdgpu",
    "amdgpu-firmware",
    "i915",
    "i915-ucode",
    "intel-npu",
    "panfrost",
    "rockchip-rknn",
    "vc4",
    "xe",
    // drivers
    "amazon-ena",
    "chelsio-drivers",
    "gasket-driver",
    "gpio-pinctrl",
    "hailort",
    "intel-hd-audio",
    "joydev",
    "mei",
    "mellanox-mstflint",
    "tenstorrent",
    "thunderbolt",
    "uhid",
    "uinput",
    "usb-audio-drivers",
    "usb-modem-drivers",
    "v4l-uvc-drivers",
    "xdma-driver",
    // DVB
    "dvb-cx23885",
    "dvb-m88ds3103",
    "dvb-pt3",
    // misc
    "binfmt-misc",
    "glibc",
    // network
    "bird2",
    "cloudflared",
    "lldpd",
    "nebula",
    "netbird",
    "newt",
    "tailscale",
    "zerotier",
    // storage
    "btrfs",
    "cachefilesd",
    "drbd",
    "fuse3",
    "iscsi-tools",
    "mdadm",
    "multipath-tools",
    "nfs-server",
    "nfs-utils",
    "nfsd",
    "nfsrahead",
    "px-fuse",
    "trident-iscsi-tools",
    "zfs",
    // power
    "nut-client",
    // guest agents
    "hyperv-guest-agent",
    "metal-agent",
    "qemu-guest-agent",
    "vmtoolsd-guest-agent",
    "xen-guest-agent",
    // NVIDIA
    "nonfree-kmod-nvidia",
    "nonfree-kmod-nvidia-lts",
    "nonfree-kmod-nvidia-production",
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-lts",
    "nvidia-container-toolkit-production",
    "nvidia-fabricmanager",
    "nvidia-fabricmanager-lts",
    "nvidia-fabricmanager-production",
    "nvidia-gdrdrv-device",
    "nvidia-open-gpu-kernel-modules",
    "nvidia-open-gpu-kernel-modules-lts",
    "nvidia-open-gpu-kernel-modules-production",
    // tools
    "ctr",
    "nvme-cli",
    "util-linux-tools",
];

/// Validate an official extension name (`siderolabs/<name>` with `<name>` in
/// [`OFFICIAL_EXTENSIONS`]).
pub fn validate_extension_name(name: &str) -> Result<(), ImageError> {
    match name.strip_prefix(OFFICIAL_EXTENSION_PREFIX) {
        Some(short) if OFFICIAL_EXTENSIONS.contains(&short) => Ok(()),
        Some(_) => Err(ImageError::UnknownExtension {
            name: name.to_string(),
            known: OFFICIAL_EXTENSIONS.join(", "),
        }),
        None => {
            let hint = if OFFICIAL_EXTENSIONS.contains(&name) {
                format!("; did you mean \"{OFFICIAL_EXTENSION_PREFIX}{name}\"?")
            } else {
                String::new()
            };
            Err(ImageError::InvalidExtensionName {
                name: name.to_string(),
                hint,
            })
        }
    }
}

/// Validate a list of extension names (each official, no duplicates).
pub fn validate_extensions(names: &[String]) -> Result<(), (usize, ImageError)> {
    for (i, n) in names.iter().enumerate() {
        validate_extension_name(n).map_err(|e| (i, e))?;
        if names[..i].contains(n) {
            return Err((i, ImageError::DuplicateExtension { name: n.clone() }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_names() {
        assert!(validate_extension_name("siderolabs/qemu-guest-agent").is_ok());
        assert!(validate_extension_name("siderolabs/iscsi-tools").is_ok());
        match validate_extension_name("qemu-guest-agent") {
            Err(ImageError::InvalidExtensionName { hint, .. }) => {
                assert!(hint.contains("siderolabs/qemu-guest-agent"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            validate_extension_name("siderolabs/qemu-guest-agnet"),
            Err(ImageError::UnknownExtension { .. })
        ));
        assert!(matches!(
            validate_extension_name("ghcr.io/acme/thing"),
            Err(ImageError::InvalidExtensionName { .. })
        ));
        let dup = vec![
            "siderolabs/zfs".to_string(),
            "siderolabs/drbd".to_string(),
            "siderolabs/zfs".to_string(),
        ];
        assert_eq!(
            validate_extensions(&dup),
            Err((
                2,
                ImageError::DuplicateExtension {
                    name: "siderolabs/zfs".into()
                }
            ))
        );
        // The curated list itself is well-formed and free of duplicates.
        for (i, n) in OFFICIAL_EXTENSIONS.iter().enumerate() {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{n}"
            );
            assert!(!OFFICIAL_EXTENSIONS[..i].contains(n), "duplicate {n}");
        }
    }
}
