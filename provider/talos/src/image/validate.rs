//! Validation of the data source's Talos version and kernel arguments.

use super::ImageError;

/// Validate a Talos release tag: `v` + semantic version (`v1.12.4`,
/// `v1.13.0-beta.1`). Build metadata (`+...`) is refused: OCI tags cannot
/// carry `+`.
pub fn validate_talos_version(v: &str) -> Result<(), ImageError> {
    let err = |reason| ImageError::InvalidTalosVersion {
        value: v.to_string(),
        reason,
    };
    if v.len() > 128 {
        return Err(err("too long"));
    }
    let Some(rest) = v.strip_prefix('v') else {
        return Err(err("must start with 'v'"));
    };
    if rest.contains('+') {
        return Err(err("build metadata ('+...') is not allowed"));
    }
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err(err("must have MAJOR.MINOR.PATCH"));
    }
    for p in &parts {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("MAJOR, MINOR and PATCH must be numbers"));
        }
        if p.len() > 1 && p.starts_with('0') {
            return Err(err("numbers must not have leading zeros"));
        }
        if p.len() > 9 {
            return Err(err("number too large"));
        }
    }
    if let Some(pre) = pre {
        for id in pre.split('.') {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(err("pre-release identifiers must be [0-9A-Za-z-]+"));
            }
            if id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    "numeric pre-release identifiers must not have leading zeros",
                ));
            }
        }
    }
    Ok(())
}

/// Validate one kernel argument: `key` or `key=value`; the key is made of
/// `[A-Za-z0-9_.-]` (and does not start with '.' or '='), the value of
/// printable ASCII without whitespace or quotes.
pub fn validate_kernel_arg(arg: &str) -> Result<(), ImageError> {
    let err = |reason| ImageError::InvalidKernelArg {
        arg: arg.to_string(),
        reason,
    };
    if arg.is_empty() {
        return Err(err("must not be empty"));
    }
    if arg.len() > 1024 {
        return Err(err("too long (max 1024 bytes)"));
    }
    for c in arg.chars() {
        if c.is_whitespace() {
            return Err(err("must not contain whitespace"));
        }
        if c.is_control() {
            return Err(err("must not contain control characters"));
        }
        if c == '"' || c == '\'' || c == '`' {
            return Err(err("must not contain quotes"));
        }
        if !c.is_ascii() {
            return Err(err("must be ASCII"));
        }
    }
    let key = arg.split_once('=').map(|(k, _)| k).unwrap_or(arg);
    if key.is_empty() {
        return Err(err("must start with a parameter name (key or key=value)"));
    }
    if key.starts_with('.') {
        return Err(err("parameter name must not start with '.'"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(err(
            "parameter name may only contain letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talos_versions() {
        for ok in [
            "v1.12.4",
            "v1.0.0",
            "v1.13.0-beta.1",
            "v1.12.0-alpha.0",
            "v10.20.30",
        ] {
            assert!(validate_talos_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1.12.4",
            "v1.12",
            "v1.12.4.5",
            "v01.12.4",
            "vx.y.z",
            "v1.12.4+build",
            "v1.12.4-",
            "v1.12.4-beta..1",
            "v1.12.4-01",
            "latest",
            " v1.12.4",
            "v1.12.4 ",
            "v1.-1.0",
            "V1.12.4",
        ] {
            assert!(
                matches!(
                    validate_talos_version(bad),
                    Err(ImageError::InvalidTalosVersion { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kernel_args() {
        for ok in [
            "quiet",
            "console=ttyS0,115200",
            "net.ifnames=0",
            "talos.dashboard.disabled=1",
            "i915.enable_guc=3",
            "-console",
            "init_on_alloc=1",
            "ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off",
        ] {
            assert!(validate_kernel_arg(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a b", "a\tb", "a\nb", "=x", "a=\"b\"", "a='b'", "k\u{1}", "ké=1", ".a", "a/b=1",
            "a=b c",
        ] {
            assert!(
                matches!(
                    validate_kernel_arg(bad),
                    Err(ImageError::InvalidKernelArg { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
