//! Named formats (`"format": "pve-vmid"` etc.). The schema only names them; their rules
//! come from PVE's `PVE::JSONSchema` / `PVE::QemuServer` registrations. Property-string
//! formats that the schema names but does not describe are rebuilt from their `typetext`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{json, Map, Value};

use super::propstr::validate_property_string;

fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).expect("static regex"))
}

fn is_ipv4(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok()
}
fn is_ipv6(s: &str) -> bool {
    s.parse::<Ipv6Addr>().is_ok()
}

/// The prefix length of a CIDR as pve-common's `PVE::JSONSchema::pve_verify_cidrv4` and
/// `pve_verify_cidrv6` read it: the match `/(\d+)$` then `$1 > 7 && $1 <= max` (32 or 128).
/// So: one or more ASCII digits, no sign (`+8`, `-8` refused); leading zeros are allowed
/// (`/08` is 8, since Perl compares the number); from 8 up to `max` (`/7` refused).
/// Not emulated: Perl's `$` also matches before one trailing newline, and `\d` also matches
/// non-ASCII digits; both are refused here.
// Deliberately not `waddle_net::Cidr`: the emulator checks PVE's formats independently.
pub(crate) fn pve_cidr_prefix(len: &str, max: u32) -> Option<u32> {
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = len.trim_start_matches('0');
    if digits.len() > 3 {
        return None;
    }
    let n: u32 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    (n > 7 && n <= max).then_some(n)
}

/// `CIDR` / `CIDRv4` / `CIDRv6` (pve-common `PVE::JSONSchema::pve_verify_cidr`, which is
/// `pve_verify_cidrv4 || pve_verify_cidrv6`): `^$IPV4RE/(\d+)$` or `^$IPV6RE/(\d+)$` with the
/// prefix rule of [`pve_cidr_prefix`]. `$IPV4RE` refuses leading zeros in an octet, as
/// `std`'s `Ipv4Addr` parser does.
fn check_cidr(s: &str, v4: bool, v6: bool) -> Result<(), String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid CIDR '{s}'"))?;
    if v4 && is_ipv4(addr) && pve_cidr_prefix(len, 32).is_some() {
        return Ok(());
    }
    if v6 && is_ipv6(addr) && pve_cidr_prefix(len, 128).is_some() {
        return Ok(());
    }
    Err(format!(
        "value does not look like a valid CIDR network: '{s}'"
    ))
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split([',', ';', ' ', '\0']).filter(|p| !p.is_empty())
}

/// PVE's configuration id (`pve-configid`).
pub(crate) fn is_configid(s: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)^[a-z][a-z0-9_-]+$").is_match(s)
}

/// Storage id.
pub(crate) fn is_storage_id(s: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)^[a-z][a-z0-9\-_.]*[a-z0-9]$").is_match(s)
}

/// Volume id `STORAGE:VOLNAME`.
pub(crate) fn is_volume_id(s: &str) -> bool {
    match s.split_once(':') {
        Some((st, vol)) => is_storage_id(st) && !vol.is_empty(),
        None => false,
    }
}

fn is_dns_name(s: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])$",
    )
    .is_match(s)
}

fn is_iface(s: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    s.len() >= 2 && s.len() <= 20 && re(&R, r"^[a-zA-Z][a-zA-Z0-9_]{1,20}([:.]\d+)?$").is_match(s)
}

fn is_mac(s: &str) -> Result<(), String> {
    static R: OnceLock<Regex> = OnceLock::new();
    if !re(&R, r"(?i)^[a-f0-9]{2}(?::[a-f0-9]{2}){5}$").is_match(s) {
        return Err(format!("value does not look like a valid MAC address: {s}"));
    }
    static U: OnceLock<Regex> = OnceLock::new();
    if !re(&U, r"(?i)^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$").is_match(s) {
        return Err(format!("value '{s}' is not a valid unicast MAC address"));
    }
    Ok(())
}

const STORAGE_CONTENT: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import", "none",
];

/// Build a property-string format description from a `typetext` such as
/// `[gw=<GatewayIPv4>] [,ip=<IPv4Format/CIDR>]` or `[[type=]<machine type>] [,x=<1|0>]`.
pub(crate) fn format_from_typetext(typetext: &str) -> Option<Map<String, Value>> {
    if !typetext.contains('=') {
        return None;
    }
    let mut fmt = Map::new();
    for token in typetext.split_whitespace() {
        let optional = token.starts_with('[');
        let t = token.trim_start_matches(['[', ',']).trim_end_matches(']');
        let t = t.trim_start_matches(',');
        let (key, default_key, value) = if let Some(rest) = t.strip_prefix('[') {
            // [key=]<value>  (default key)
            let (k, v) = rest.split_once("=]")?;
            (k, true, v)
        } else if let Some((k, v)) = t.split_once("=]") {
            (k, true, v)
        } else if let Some((k, v)) = t.split_once('=') {
            (k, false, v)
        } else {
            continue;
        };
        let key = key.trim_start_matches(['[', ',']);
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            continue;
        }
        let v = value.trim_start_matches('<').trim_end_matches(['>', ']']);
        let mut schema = Map::new();
        if v == "1|0" {
            schema.insert("type".into(), json!("boolean"));
        } else if v == "integer" || v == "N" {
            schema.insert("type".into(), json!("integer"));
        } else if v == "number" {
            schema.insert("type".into(), json!("number"));
        } else if v.contains('|') && !v.contains(['/', ' ', '[', '<']) {
            schema.insert("type".into(), json!("string"));
            schema.insert(
                "enum".into(),
                Value::Array(v.split('|').map(|x| json!(x)).collect()),
            );
        } else {
            schema.insert("type".into(), json!("string"));
        }
        if optional || default_key {
            schema.insert("optional".into(), json!(1));
        }
        if default_key {
            schema.insert("default_key".into(), json!(1));
        }
        fmt.insert(key.to_string(), Value::Object(schema));
    }
    if fmt.is_empty() {
        None
    } else {
        Some(fmt)
    }
}

/// Check a value against a named format. Unknown names with a property-string `typetext`
/// are checked structurally; other unknown names are accepted.
pub fn check_named_format(name: &str, v: &str, typetext: Option<&str>) -> Result<(), String> {
    let bad = |what: &str| Err(format!("value does not look like a valid {what}"));
    match name {
        "pve-vmid" => {
            if !super::is_integer(v) {
                return bad("VM ID");
            }
        }
        "pve-node" => {
            if !is_dns_name(v) {
                return Err(format!("value does not look like a valid node name: {v}"));
            }
        }
        "pve-node-list" => {
            for n in list(v) {
                if !is_dns_name(n) {
                    return Err(format!("value does not look like a valid node name: {n}"));
                }
            }
        }
        "pve-storage-id" => {
            if !is_storage_id(v) {
                return Err(format!("storage ID '{v}' contains illegal characters"));
            }
        }
        "pve-storage-id-list" => {
            for s in list(v) {
                if !is_storage_id(s) {
                    return Err(format!("storage ID '{s}' contains illegal characters"));
                }
            }
        }
        "pve-configid" => {
            if !is_configid(v) {
                return Err(format!("invalid configuration ID '{v}'"));
            }
        }
        "pve-configid-list" => {
            for id in list(v) {
                if !is_configid(id) {
                    return Err(format!("invalid configuration ID '{id}'"));
                }
            }
        }
        "mac-addr" => is_mac(v)?,
        "ipv4" => {
            if !is_ipv4(v) {
                return bad("IPv4 address");
            }
        }
        "ipv6" => {
            if !is_ipv6(v) {
                return bad("IPv6 address");
            }
        }
        "ip" => {
            if !is_ipv4(v) && !is_ipv6(v) {
                return bad("IP address");
            }
        }
        "ip-list" => {
            for a in list(v) {
                if !is_ipv4(a) && !is_ipv6(a) {
                    return bad("IP address");
                }
            }
        }
        "ipv4mask" => {
            let ok = v
                .parse::<Ipv4Addr>()
                .map(|m| {
                    let bits = u32::from(m);
                    bits.leading_ones() + bits.trailing_zeros() == 32
                })
                .unwrap_or(false);
            if !ok {
                return bad("IPv4 network mask");
            }
        }
        "CIDR" => check_cidr(v, true, true)?,
        "CIDRv4" => check_cidr(v, true, false)?,
        "CIDRv6" => check_cidr(v, false, true)?,
        "IPorCIDR" => {
            if !(is_ipv4(v) || is_ipv6(v) || check_cidr(v, true, true).is_ok()) {
                return bad("IP address or CIDR network");
            }
        }
        "IPorCIDRorAlias" => {
            static A: OnceLock<Regex> = OnceLock::new();
            let alias = re(&A, r"^(?:(?:dc|guest)/)?[A-Za-z][A-Za-z0-9\-_]+$").is_match(v);
            if !(is_ipv4(v) || is_ipv6(v) || check_cidr(v, true, true).is_ok() || alias) {
                return bad("IP address, CIDR network or alias");
            }
        }
        "dns-name" => {
            if !is_dns_name(v) {
                return Err(format!("value does not look like a valid DNS name: {v}"));
            }
        }
        "pve-iface" => {
            if !is_iface(v) {
                return Err(format!("invalid network interface name '{v}'"));
            }
        }
        "pve-iface-list" => {
            for i in list(v) {
                if !is_iface(i) {
                    return Err(format!("invalid network interface name '{i}'"));
                }
            }
        }
        "pve-bridge-id" => {
            static R: OnceLock<Regex> = OnceLock::new();
            if !re(&R, r"^[-_.\w\d]+$").is_match(v) || v.len() > 15 {
                return Err(format!("invalid bridge ID '{v}'"));
            }
        }
        "pve-volume-id" => {
            if !is_volume_id(v) {
                return Err(format!("unable to parse volume ID '{v}'"));
            }
        }
        "pve-volume-id-or-qm-path" => {
            if !(v == "none" || v == "cdrom" || v.starts_with('/') || is_volume_id(v)) {
                return Err(format!("unable to parse volume ID '{v}'"));
            }
        }
        "pve-volume-id-or-absolute-path" => {
            if !(v.starts_with('/') || is_volume_id(v)) {
                return Err(format!("unable to parse volume ID '{v}'"));
            }
        }
        "pve-qm-ide" => {
            // cdrom alias: a volume, 'cdrom' or 'none'
            if !(v == "none"
                || v == "cdrom"
                || v.starts_with('/')
                || is_volume_id(v.split(',').next().unwrap_or("")))
            {
                return Err(format!("unable to parse volume ID '{v}'"));
            }
        }
        "disk-size" => {
            static R: OnceLock<Regex> = OnceLock::new();
            if !re(&R, r"^(\d+(\.\d+)?)([KMGT])?$").is_match(v) {
                return Err(format!("unable to parse size '{v}'"));
            }
        }
        "pve-storage-content" => {
            if !STORAGE_CONTENT.contains(&v) {
                return Err(format!("invalid content type '{v}'"));
            }
        }
        "pve-storage-content-list" => {
            for c in list(v) {
                if !STORAGE_CONTENT.contains(&c) {
                    return Err(format!("invalid content type '{c}'"));
                }
            }
        }
        "pve-sdn-zone-id" | "pve-sdn-vnet-id" => {
            static R: OnceLock<Regex> = OnceLock::new();
            if !re(&R, r"(?i)^[a-z][a-z0-9]*[a-z0-9]$").is_match(v) || v.len() > 8 {
                return Err(format!("invalid sdn id '{v}'"));
            }
        }
        "pve-sdn-subnet-id" => {
            // pve-network `PVE::Network::SDN::SubnetPlugin::parse_sdn_subnet_id`: with a '/'
            // the id is the CIDR; otherwise `split(/-/)` gives (zone, ip, mask) — further
            // fields are ignored — and "ip/mask" must pass `pve_verify_cidrv4`/`v6`.
            let ok = if v.contains('/') {
                check_cidr(v, true, true).is_ok()
            } else {
                let mut parts = v.split('-').skip(1);
                match (parts.next(), parts.next()) {
                    (Some(ip), Some(len)) => check_cidr(&format!("{ip}/{len}"), true, true).is_ok(),
                    _ => false,
                }
            };
            if !ok {
                return Err(format!("invalid subnet '{v}'"));
            }
        }
        "pve-sdn-dhcp-range" => {
            let fmt = json!({
                "start-address": {"type": "string", "format": "ip"},
                "end-address": {"type": "string", "format": "ip"}
            });
            if let Some(f) = fmt.as_object() {
                validate_property_string(f, v)?;
            }
        }
        "pve-tag-list" => {
            static R: OnceLock<Regex> = OnceLock::new();
            for t in list(v) {
                if !re(&R, r"^[a-z0-9_][a-z0-9_\-+.]*$").is_match(&t.to_ascii_lowercase()) {
                    return Err(format!("invalid tag '{t}'"));
                }
            }
        }
        "urlencoded" => {
            static R: OnceLock<Regex> = OnceLock::new();
            if !re(&R, r"^[-%a-zA-Z0-9_.!~*'()]*$").is_match(v) {
                return Err(format!("{v}: value is not url-encoded"));
            }
        }
        "pve-qm-ipconfig" => {
            let fmt = json!({
                "ip": {"type": "string", "optional": 1},
                "gw": {"type": "string", "format": "ipv4", "optional": 1},
                "ip6": {"type": "string", "optional": 1},
                "gw6": {"type": "string", "format": "ipv6", "optional": 1}
            });
            if let Some(f) = fmt.as_object() {
                validate_property_string(f, v)?;
                let parsed = super::propstr::parse_property_string(f, v)?;
                if let Some(ip) = parsed.get("ip") {
                    if ip != "dhcp" {
                        check_cidr(ip, true, false).map_err(|_| {
                            format!("ip: invalid format - value does not look like a valid IPv4 CIDR: {ip}")
                        })?;
                    } else if parsed.contains_key("gw") {
                        return Err("gateway specified together with DHCP".into());
                    }
                }
                if let Some(ip) = parsed.get("ip6") {
                    if ip != "dhcp" && ip != "auto" {
                        check_cidr(ip, false, true)?;
                    }
                }
            }
        }
        "address-list" => {
            // PVE's split_list: separators are NUL, whitespace, `,` and `;`.
            let bad = v
                .split(|c: char| c == '\0' || c.is_whitespace() || c == ',' || c == ';')
                .filter(|a| !a.is_empty())
                .any(|a| a.parse::<Ipv4Addr>().is_err() && a.parse::<Ipv6Addr>().is_err());
            if bad {
                return Err("value does not look like a valid address list".into());
            }
        }
        "pve-fw-dport-spec" | "pve-fw-sport-spec" => {
            static R: OnceLock<Regex> = OnceLock::new();
            static S: OnceLock<Regex> = OnceLock::new();
            for p in v.split(',') {
                let numeric = re(&R, r"^\d+(:\d+)?$").is_match(p)
                    && p.split(':')
                        .all(|n| n.parse::<u32>().map(|n| n <= 65535).unwrap_or(false));
                let service = re(&S, r"^[a-z][a-z0-9\-]*$").is_match(p);
                if !(numeric || service) {
                    return Err(format!("invalid port '{p}'"));
                }
            }
        }
        "pve-fw-addr-spec" => {
            static A: OnceLock<Regex> = OnceLock::new();
            for a in v.split(',') {
                let item = a.strip_prefix('+').unwrap_or(a);
                let ipset_or_alias =
                    re(&A, r"^(?:(?:dc|guest)/)?[A-Za-z][A-Za-z0-9\-_]+$").is_match(item);
                let range = item
                    .split_once('-')
                    .map(|(x, y)| is_ipv4(x) && is_ipv4(y))
                    .unwrap_or(false);
                if !(is_ipv4(item)
                    || is_ipv6(item)
                    || check_cidr(item, true, true).is_ok()
                    || ipset_or_alias
                    || range)
                {
                    return Err(format!("invalid address spec '{a}'"));
                }
            }
        }
        "pve-fw-protocol-spec" => {
            static R: OnceLock<Regex> = OnceLock::new();
            if !re(&R, r"^(?:[a-z][a-z0-9\-]*|\d+)$").is_match(v) {
                return Err(format!("invalid protocol '{v}'"));
            }
        }
        "pve-vlan-id-or-range-list" => {
            for p in list(v) {
                let ok = p.split('-').all(|n| {
                    n.parse::<u32>()
                        .map(|n| (1..=4094).contains(&n))
                        .unwrap_or(false)
                });
                if !ok {
                    return Err(format!("invalid VLAN tag or range '{p}'"));
                }
            }
        }
        "pve-userid" => {
            static R: OnceLock<Regex> = OnceLock::new();
            if !re(&R, r"^[^\s:/]+@[A-Za-z][A-Za-z0-9\.\-_]+$").is_match(v) {
                return Err(format!("value '{v}' does not look like a valid user name"));
            }
        }
        "pve-realm" => {
            static R: OnceLock<Regex> = OnceLock::new();
            if !re(&R, r"^[A-Za-z][A-Za-z0-9\.\-_]+$").is_match(v) {
                return Err(format!("value '{v}' does not look like a valid realm"));
            }
        }
        _ => {
            if let Some(fmt) = typetext.and_then(format_from_typetext) {
                validate_property_string(&fmt, v)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_formats() {
        assert!(check_named_format("mac-addr", "BC:24:11:aa:bb:cc", None).is_ok());
        assert!(check_named_format("mac-addr", "01:24:11:aa:bb:cc", None).is_err());
        assert!(check_named_format("pve-storage-id", "local-lvm", None).is_ok());
        assert!(check_named_format("pve-storage-id", "1local", None).is_err());
        assert!(check_named_format("pve-configid-list", "net1,scsi2", None).is_ok());
        assert!(check_named_format("pve-configid-list", "net1,9x", None).is_err());
        assert!(
            check_named_format("pve-qm-ipconfig", "ip=10.10.0.5/24,gw=10.10.0.1", None).is_ok()
        );
        assert!(check_named_format("pve-qm-ipconfig", "ip=dhcp", None).is_ok());
        assert!(check_named_format("address-list", "1.1.1.1 8.8.8.8;fd00::1", None).is_ok());
        assert!(check_named_format("address-list", "1.1.1.1 dns.example", None).is_err());
        assert!(check_named_format("pve-qm-ipconfig", "ip=10.10.0.5", None).is_err());
        assert!(check_named_format("pve-qm-ipconfig", "foo=1", None).is_err());
        assert!(check_named_format("pve-node", "pve-1", None).is_ok());
        assert!(check_named_format("pve-node", "pve_1", None).is_err());
        assert!(check_named_format("CIDRv4", "10.0.0.0/24", None).is_ok());
        assert!(check_named_format("pve-sdn-subnet-id", "zone1-10.0.0.0-24", None).is_ok());
    }

    /// The prefix rule of `pve_verify_cidrv4` / `pve_verify_cidrv6`: `/(\d+)$`, `> 7`, `<= max`.
    #[test]
    fn cidr_prefix_as_pve_verify_cidr() {
        for ok in [
            "10.0.0.0/8",
            "10.0.0.1/32",
            "10.0.0.1/08",
            "10.0.0.1/0024",
            "0.0.0.0/8",
            "255.255.255.255/32",
        ] {
            assert!(check_named_format("CIDRv4", ok, None).is_ok(), "{ok}");
            assert!(check_named_format("CIDR", ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1/+8",
            "10.0.0.1/-8",
            "10.0.0.1/7",
            "10.0.0.1/0",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0.1/ 8",
            "10.0.0.1/8 ",
            "10.0.0.1/0x8",
            "010.0.0.1/24",
            "10.0.0.01/24",
            "10.0.0.256/24",
            "10.0.0.1",
            "fd00::1/64",
        ] {
            assert!(check_named_format("CIDRv4", bad, None).is_err(), "{bad}");
        }
        for ok in [
            "fd00::/8",
            "fd00::1/128",
            "::ffff:10.0.0.1/96",
            "fd00::1/064",
        ] {
            assert!(check_named_format("CIDRv6", ok, None).is_ok(), "{ok}");
            assert!(check_named_format("CIDR", ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "fd00::1/7",
            "fd00::1/129",
            "fd00::1/+64",
            "fd00::1/-64",
            "10.0.0.0/24",
        ] {
            assert!(check_named_format("CIDRv6", bad, None).is_err(), "{bad}");
        }
        for bad in ["10.0.0.1/+8", "10.0.0.1/7", "fd00::1/+64", "fd00::1/129"] {
            assert!(check_named_format("CIDR", bad, None).is_err(), "{bad}");
        }
        assert!(check_named_format("pve-qm-ipconfig", "ip=10.0.0.5/+24", None).is_err());
        assert!(check_named_format("pve-qm-ipconfig", "ip=10.0.0.5/7", None).is_err());
        assert!(check_named_format("pve-qm-ipconfig", "ip6=fd00::5/+64", None).is_err());
        assert!(check_named_format("pve-sdn-subnet-id", "zone1-10.0.0.0-+24", None).is_err());
        assert!(check_named_format("pve-sdn-subnet-id", "zone1-10.0.0.0-7", None).is_err());
        assert!(check_named_format("pve-sdn-subnet-id", "10.0.0.0/+24", None).is_err());
        assert!(check_named_format("pve-sdn-subnet-id", "10.0.0.0/24", None).is_ok());
        assert!(check_named_format("pve-sdn-subnet-id", "zone1-fd00::-64", None).is_ok());
        assert!(check_named_format("pve-sdn-subnet-id", "zone1-10.0.0.0", None).is_err());
        assert_eq!(pve_cidr_prefix("0008", 32), Some(8));
        assert_eq!(pve_cidr_prefix("00000000000000000032", 32), Some(32));
        assert_eq!(pve_cidr_prefix("4294967304", 32), None);
    }

    #[test]
    fn typetext_formats() {
        let tt = "[[type=]<machine type>] [,enable-s3=<1|0>] [,viommu=<intel|virtio>]";
        assert!(check_named_format("pve-x", "q35,viommu=intel", Some(tt)).is_ok());
        assert!(check_named_format("pve-x", "q35,viommu=amd", Some(tt)).is_err());
        assert!(check_named_format("pve-x", "q35,bogus=1", Some(tt)).is_err());
        let tt = "[type=]<tdx-type> ,attestation=<1|0> [,vsock-cid=<integer>]";
        assert!(check_named_format("pve-y", "tdx", Some(tt)).is_err());
        assert!(check_named_format("pve-y", "tdx,attestation=1", Some(tt)).is_ok());
    }
}
