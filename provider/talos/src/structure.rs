//! In-crate structural checks of generated (and patched) Talos documents, per
//! configuration contract (v1.12, v1.13).
//!
//! The provider cannot ship the official JSON schema, so this module encodes the parts that
//! matter: the known fields and their types for the v1alpha1 document and for every
//! document kind this crate generates, the value formats Talos's schema enforces on them
//! (addresses, https endpoint, enums), required fields, and the list of document kinds
//! each Talos release knows. The v1.13 contract drops `machine.network` and `machine.env`
//! from the v1alpha1 document and knows seven more kinds ([`KINDS_SINCE_1_13`]). Tests hold
//! the generated documents to the official schema of their version as well.

use serde_yaml_ng::Value;

use crate::versions::ConfigContract;
use crate::yaml::{get, get_str};

/// Expected shape of a value.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Anything (not further checked).
    Any,
    /// Any mapping.
    AnyMap,
    /// Mapping of string to string.
    StrMap,
    Str,
    Bool,
    Int,
    /// `addr/prefix` (Talos pattern `^[0-9a-f.:]+/\d{1,3}$`).
    Cidr,
    /// Bare IP address (Talos pattern `^[0-9a-f.:]+$`).
    Ip,
    /// A subnet as Talos parses `podSubnets` / `serviceSubnets` (Go's `netip.ParsePrefix`):
    /// an IP address, `/`, and a prefix length in decimal without sign or leading zeros that
    /// fits the address family. Host bits may be set.
    Prefix,
    /// `https://...` URL.
    Https,
    Enum(&'static [&'static str]),
    List(&'static Shape),
    /// Fields and the required ones.
    Obj(&'static [(&'static str, Shape)], &'static [&'static str]),
}

use Shape::*;

const CA: Shape = Obj(&[("crt", Str), ("key", Str)], &[]);
const COMPONENT: &[(&str, Shape)] = &[
    ("image", Str),
    ("extraArgs", AnyMap),
    ("extraVolumes", List(&AnyMap)),
    ("env", AnyMap),
    ("resources", AnyMap),
];

const MACHINE: Shape = Obj(
    &[
        ("type", Enum(&["controlplane", "worker"])),
        ("token", Str),
        ("ca", CA),
        ("acceptedCAs", Any),
        ("certSANs", List(&Str)),
        (
            "controlPlane",
            Obj(
                &[
                    ("controllerManager", Obj(&[("disabled", Bool)], &[])),
                    ("scheduler", Obj(&[("disabled", Bool)], &[])),
                ],
                &[],
            ),
        ),
        (
            "kubelet",
            Obj(
                &[
                    ("image", Str),
                    ("clusterDNS", List(&Str)),
                    ("extraArgs", AnyMap),
                    ("extraMounts", List(&AnyMap)),
                    ("extraConfig", AnyMap),
                    ("credentialProviderConfig", AnyMap),
                    ("defaultRuntimeSeccompProfileEnabled", Bool),
                    ("registerWithFQDN", Bool),
                    ("nodeIP", Obj(&[("validSubnets", List(&Str))], &[])),
                    ("skipNodeRegistration", Bool),
                    ("disableManifestsDirectory", Bool),
                ],
                &[],
            ),
        ),
        ("pods", List(&AnyMap)),
        ("network", Obj(&[("kubespan", AnyMap)], &[])),
        (
            "install",
            Obj(
                &[
                    ("disk", Str),
                    ("diskSelector", AnyMap),
                    ("image", Str),
                    ("wipe", Bool),
                    ("legacyBIOSSupport", Bool),
                    ("grubUseUKICmdline", Bool),
                ],
                &[],
            ),
        ),
        ("files", List(&AnyMap)),
        ("env", AnyMap),
        ("sysctls", StrMap),
        ("sysfs", StrMap),
        (
            "features",
            Obj(
                &[
                    ("kubernetesTalosAPIAccess", AnyMap),
                    ("diskQuotaSupport", Bool),
                    ("kubePrism", Obj(&[("enabled", Bool), ("port", Int)], &[])),
                    (
                        "hostDNS",
                        Obj(
                            &[
                                ("enabled", Bool),
                                ("forwardKubeDNSToHost", Bool),
                                ("resolveMemberNames", Bool),
                            ],
                            &[],
                        ),
                    ),
                    ("imageCache", AnyMap),
                    ("nodeAddressSortAlgorithm", Str),
                ],
                &[],
            ),
        ),
        ("udev", AnyMap),
        ("logging", AnyMap),
        ("kernel", AnyMap),
        ("seccompProfiles", List(&AnyMap)),
        ("baseRuntimeSpecOverrides", AnyMap),
        ("nodeLabels", StrMap),
        ("nodeAnnotations", StrMap),
        ("nodeTaints", StrMap),
    ],
    &[],
);

const CLUSTER: Shape = Obj(
    &[
        ("id", Str),
        ("secret", Str),
        (
            "controlPlane",
            Obj(&[("endpoint", Https), ("localAPIServerPort", Int)], &[]),
        ),
        ("clusterName", Str),
        (
            "network",
            Obj(
                &[
                    (
                        "cni",
                        Obj(
                            &[
                                ("name", Enum(&["flannel", "custom", "none"])),
                                ("urls", List(&Str)),
                                ("flannel", AnyMap),
                            ],
                            &[],
                        ),
                    ),
                    ("dnsDomain", Str),
                    ("podSubnets", List(&Prefix)),
                    ("serviceSubnets", List(&Prefix)),
                ],
                &[],
            ),
        ),
        ("token", Str),
        ("aescbcEncryptionSecret", Str),
        ("secretboxEncryptionSecret", Str),
        ("ca", CA),
        ("acceptedCAs", Any),
        ("aggregatorCA", CA),
        ("serviceAccount", Obj(&[("key", Str)], &[])),
        (
            "apiServer",
            Obj(
                &[
                    ("image", Str),
                    ("extraArgs", AnyMap),
                    ("extraVolumes", List(&AnyMap)),
                    ("env", AnyMap),
                    ("certSANs", List(&Str)),
                    (
                        "admissionControl",
                        List(&Obj(&[("name", Str), ("configuration", AnyMap)], &[])),
                    ),
                    ("auditPolicy", AnyMap),
                    ("resources", AnyMap),
                    ("authorizationConfig", List(&AnyMap)),
                ],
                &[],
            ),
        ),
        ("controllerManager", Obj(COMPONENT, &[])),
        (
            "proxy",
            Obj(
                &[
                    ("disabled", Bool),
                    ("image", Str),
                    ("mode", Str),
                    ("extraArgs", AnyMap),
                ],
                &[],
            ),
        ),
        (
            "scheduler",
            Obj(
                &[
                    ("image", Str),
                    ("extraArgs", AnyMap),
                    ("extraVolumes", List(&AnyMap)),
                    ("env", AnyMap),
                    ("resources", AnyMap),
                    ("config", AnyMap),
                ],
                &[],
            ),
        ),
        (
            "discovery",
            Obj(
                &[
                    ("enabled", Bool),
                    (
                        "registries",
                        Obj(
                            &[
                                ("kubernetes", Obj(&[("disabled", Bool)], &[])),
                                (
                                    "service",
                                    Obj(&[("disabled", Bool), ("endpoint", Str)], &[]),
                                ),
                            ],
                            &[],
                        ),
                    ),
                ],
                &[],
            ),
        ),
        (
            "etcd",
            Obj(
                &[
                    ("image", Str),
                    ("ca", CA),
                    ("extraArgs", AnyMap),
                    ("advertisedSubnets", List(&Str)),
                    ("listenSubnets", List(&Str)),
                ],
                &[],
            ),
        ),
        ("coreDNS", Obj(&[("disabled", Bool), ("image", Str)], &[])),
        (
            "externalCloudProvider",
            Obj(&[("enabled", Bool), ("manifests", List(&Str))], &[]),
        ),
        ("extraManifests", List(&Str)),
        ("extraManifestHeaders", StrMap),
        (
            "inlineManifests",
            List(&Obj(&[("name", Str), ("contents", Str)], &[])),
        ),
        ("adminKubeconfig", Obj(&[("certLifetime", Str)], &[])),
        ("allowSchedulingOnControlPlanes", Bool),
    ],
    &[],
);

const V1ALPHA1: Shape = Obj(
    &[
        ("version", Enum(&["v1alpha1"])),
        ("debug", Bool),
        ("machine", MACHINE),
        ("cluster", CLUSTER),
    ],
    &[],
);

const API: (&str, Shape) = ("apiVersion", Enum(&["v1alpha1"]));

const HOSTNAME_CONFIG: Shape = Obj(
    &[
        API,
        ("kind", Str),
        ("auto", Enum(&["stable", "off"])),
        ("hostname", Str),
    ],
    &["apiVersion", "kind"],
);

const LINK_CONFIG: Shape = Obj(
    &[
        API,
        ("kind", Str),
        ("name", Str),
        ("up", Bool),
        ("mtu", Int),
        (
            "addresses",
            List(&Obj(
                &[("address", Cidr), ("routePriority", Int)],
                &["address"],
            )),
        ),
        (
            "routes",
            List(&Obj(
                &[
                    ("destination", Cidr),
                    ("gateway", Ip),
                    ("source", Ip),
                    ("metric", Int),
                    ("mtu", Int),
                    ("table", Str),
                ],
                &[],
            )),
        ),
        ("multicast", Bool),
    ],
    &["apiVersion", "kind", "name"],
);

const LINK_ALIAS_CONFIG: Shape = Obj(
    &[
        API,
        ("kind", Str),
        ("name", Str),
        ("selector", Obj(&[("match", Str)], &[])),
    ],
    &["apiVersion", "kind", "name"],
);

const LAYER2_VIP_CONFIG: Shape = Obj(
    &[API, ("kind", Str), ("name", Str), ("link", Str)],
    &["apiVersion", "kind", "name"],
);

const RESOLVER_CONFIG: Shape = Obj(
    &[
        API,
        ("kind", Str),
        ("nameservers", List(&Obj(&[("address", Ip)], &[]))),
        ("searchDomains", AnyMap),
    ],
    &["apiVersion", "kind"],
);

const VOLUME_CONFIG: Shape = Obj(
    &[
        API,
        ("kind", Str),
        ("name", Str),
        ("provisioning", AnyMap),
        (
            "encryption",
            Obj(
                &[
                    ("provider", Enum(&["luks2"])),
                    (
                        "keys",
                        List(&Obj(
                            &[
                                ("slot", Int),
                                ("static", Obj(&[("passphrase", Str)], &[])),
                                ("nodeID", AnyMap),
                                ("kms", AnyMap),
                                (
                                    "tpm",
                                    Obj(
                                        &[
                                            ("options", Obj(&[("pcrs", List(&Int))], &[])),
                                            ("checkSecurebootStatusOnEnroll", Bool),
                                        ],
                                        &[],
                                    ),
                                ),
                                ("lockToState", Bool),
                            ],
                            &[],
                        )),
                    ),
                    (
                        "cipher",
                        Enum(&[
                            "aes-xts-plain64",
                            "xchacha12,aes-adiantum-plain64",
                            "xchacha20,aes-adiantum-plain64",
                        ]),
                    ),
                    ("keySize", Int),
                    ("blockSize", Int),
                    ("options", Any),
                ],
                &[],
            ),
        ),
    ],
    &["apiVersion", "kind"],
);

/// Document kinds Talos v1.13 adds to [`KNOWN_KINDS`], and whether `name` is required.
pub const KINDS_SINCE_1_13: &[(&str, bool)] = &[
    ("ExternalVolumeConfig", false),
    ("BlackholeRouteConfig", true),
    ("KubeSpanConfig", false),
    ("RoutingRuleConfig", true),
    ("TCPProbeConfig", true),
    ("VRFConfig", true),
    ("EnvironmentConfig", false),
];

/// v1alpha1 fields the v1.13 contract no longer has.
const REMOVED_IN_1_13: &[&str] = &["machine.network", "machine.env"];

/// The document kinds a contract knows, and whether `name` is required.
pub fn known_kinds(
    contract: ConfigContract,
) -> impl Iterator<Item = &'static (&'static str, bool)> {
    let since = if contract >= ConfigContract::V1_13 {
        KINDS_SINCE_1_13
    } else {
        &[]
    };
    KNOWN_KINDS.iter().chain(since.iter())
}

/// Document kinds Talos v1.12 accepts, and whether `name` is required.
pub const KNOWN_KINDS: &[(&str, bool)] = &[
    ("ExistingVolumeConfig", false),
    ("RawVolumeConfig", false),
    ("SwapVolumeConfig", false),
    ("UserVolumeConfig", false),
    ("VolumeConfig", false),
    ("ZswapConfig", false),
    ("RegistryAuthConfig", true),
    ("RegistryMirrorConfig", true),
    ("RegistryTLSConfig", true),
    ("ExtensionServiceConfig", true),
    ("PCIDriverRebindConfig", true),
    ("BondConfig", true),
    ("BridgeConfig", true),
    ("NetworkDefaultActionConfig", false),
    ("DHCPv4Config", true),
    ("DHCPv6Config", true),
    ("DummyLinkConfig", true),
    ("EthernetConfig", true),
    ("HCloudVIPConfig", true),
    ("HostnameConfig", false),
    ("KubeSpanEndpoints", false),
    ("Layer2VIPConfig", true),
    ("LinkConfig", true),
    ("LinkAliasConfig", true),
    ("ResolverConfig", false),
    ("NetworkRuleConfig", true),
    ("StaticHostConfig", true),
    ("TimeSyncConfig", false),
    ("VLANConfig", true),
    ("WireguardConfig", true),
    ("EventSinkConfig", false),
    ("KmsgLogConfig", true),
    ("OOMConfig", false),
    ("WatchdogTimerConfig", false),
    ("TrustedRootsConfig", true),
    ("SideroLinkConfig", false),
];

/// A structural problem in one document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{document}: {path}: {message}")]
pub struct StructureError {
    /// `v1alpha1` or the document's kind (and name).
    pub document: String,
    /// Dotted field path inside the document (`machine.install.wipe`), or `(document)`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn hint(path: &str, contract: ConfigContract) -> Option<&'static str> {
    if contract >= ConfigContract::V1_13 {
        match path {
            "machine.network" => {
                return Some(
                    "not part of the v1.13 configuration contract: use HostnameConfig, LinkConfig, \
                     Layer2VIPConfig, ResolverConfig, StaticHostConfig and KubeSpanConfig documents",
                )
            }
            "machine.env" => {
                return Some(
                    "not part of the v1.13 configuration contract: use an EnvironmentConfig document",
                )
            }
            _ => {}
        }
    }
    Some(match path {
        "persist" => "`persist` is deprecated and not part of the Talos schema",
        "machine.network.hostname" => "use a HostnameConfig document instead",
        "machine.network.interfaces" => "use LinkConfig / Layer2VIPConfig documents instead",
        "machine.network.nameservers" => "use a ResolverConfig document instead",
        "machine.network.extraHostEntries" => "use StaticHostConfig documents instead",
        "machine.time" => "use a TimeSyncConfig document instead",
        "machine.registries" => "use RegistryMirrorConfig / RegistryAuthConfig documents instead",
        "machine.systemDiskEncryption" => "use VolumeConfig documents with `encryption` instead",
        _ => return None,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

fn is_ip_pattern(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c) || c == '.' || c == ':')
        && s.parse::<std::net::IpAddr>().is_ok()
}

/// Whether `s` parses as Go's `netip.ParsePrefix` accepts it (see [`Shape::Prefix`]).
fn is_prefix(s: &str) -> bool {
    let Some((addr, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let digits_only = !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = bits == "0" || !bits.starts_with('0');
    let max = if ip.is_ipv4() { 32 } else { 128 };
    digits_only && no_leading_zero && bits.parse::<u8>().is_ok_and(|n| n <= max)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check(
    v: &Value,
    shape: &Shape,
    path: &str,
    contract: ConfigContract,
    errs: &mut Vec<(String, String)>,
) {
    let want = |errs: &mut Vec<(String, String)>, what: &str| {
        errs.push((
            path.to_string(),
            format!("expected {what}, got {}", type_name(v)),
        ));
    };
    match shape {
        Any => {}
        AnyMap => {
            if !v.is_mapping() {
                want(errs, "a map");
            }
        }
        StrMap => match v {
            Value::Mapping(m) => {
                for (k, val) in m {
                    let key = k.as_str().unwrap_or("?");
                    if !val.is_string() {
                        errs.push((
                            join(path, key),
                            format!("expected a string, got {}", type_name(val)),
                        ));
                    }
                }
            }
            _ => want(errs, "a map of strings"),
        },
        Str => {
            if !v.is_string() {
                want(errs, "a string");
            }
        }
        Bool => {
            if !v.is_bool() {
                want(errs, "a boolean");
            }
        }
        Int => {
            if !(v.is_i64() || v.is_u64()) {
                want(errs, "an integer");
            }
        }
        Cidr => match v.as_str() {
            Some(s) => {
                let ok = s
                    .split_once('/')
                    .map(|(a, p)| {
                        is_ip_pattern(a)
                            && !p.is_empty()
                            && p.len() <= 3
                            && p.chars().all(|c| c.is_ascii_digit())
                    })
                    .unwrap_or(false);
                if !ok {
                    errs.push((
                        path.to_string(),
                        format!("{s:?} is not an address with prefix (e.g. 10.10.0.10/24)"),
                    ));
                }
            }
            None => want(errs, "a string"),
        },
        Prefix => match v.as_str() {
            Some(s) if is_prefix(s) => {}
            Some(s) => errs.push((
                path.to_string(),
                format!("{s:?} is not a valid subnet in CIDR notation (e.g. 10.244.0.0/16)"),
            )),
            None => want(errs, "a string"),
        },
        Ip => match v.as_str() {
            Some(s) if is_ip_pattern(s) => {}
            Some(s) => errs.push((path.to_string(), format!("{s:?} is not an IP address"))),
            None => want(errs, "a string"),
        },
        Https => match v.as_str() {
            Some(s) if s.starts_with("https://") && s.len() > "https://".len() => {}
            Some(s) => errs.push((path.to_string(), format!("{s:?} must be an https:// URL"))),
            None => want(errs, "a string"),
        },
        Enum(options) => match v.as_str() {
            Some(s) if options.contains(&s) => {}
            _ => errs.push((
                path.to_string(),
                format!("must be one of {}", options.join(", ")),
            )),
        },
        List(item) => match v {
            Value::Sequence(items) => {
                for (i, it) in items.iter().enumerate() {
                    check(it, item, &format!("{path}[{i}]"), contract, errs);
                }
            }
            _ => want(errs, "a list"),
        },
        Obj(fields, required) => match v {
            Value::Mapping(m) => {
                for (k, val) in m {
                    let Some(key) = k.as_str() else {
                        errs.push((path.to_string(), "map keys must be strings".to_string()));
                        continue;
                    };
                    let p = join(path, key);
                    let removed =
                        contract >= ConfigContract::V1_13 && REMOVED_IN_1_13.contains(&p.as_str());
                    match fields.iter().find(|(n, _)| *n == key).filter(|_| !removed) {
                        Some((_, sh)) => check(val, sh, &p, contract, errs),
                        None => {
                            let msg = match hint(&p, contract) {
                                Some(h) => format!("unknown field ({h})"),
                                None => "unknown field".to_string(),
                            };
                            errs.push((p, msg));
                        }
                    }
                }
                for r in *required {
                    if m.get(*r).is_none() {
                        errs.push((join(path, r), "is required".to_string()));
                    }
                }
            }
            _ => want(errs, "a map"),
        },
    }
}

/// A document's identity: `v1alpha1` or `Kind` / `Kind(name)`.
pub fn document_id(doc: &Value) -> String {
    match (get_str(doc, "kind"), get_str(doc, "name")) {
        (Some(k), Some(n)) => format!("{k}({n})"),
        (Some(k), None) => k.to_string(),
        (None, _) => "v1alpha1".to_string(),
    }
}

/// Checks one document against the contract.
pub fn check_document(doc: &Value, contract: ConfigContract) -> Result<(), StructureError> {
    let id = document_id(doc);
    let fail = |path: &str, message: String| StructureError {
        document: id.clone(),
        path: path.to_string(),
        message,
    };
    if !doc.is_mapping() {
        return Err(fail(
            "(document)",
            format!("expected a map, got {}", type_name(doc)),
        ));
    }
    let mut errs = Vec::new();
    match get(doc, "kind") {
        None => check(doc, &V1ALPHA1, "", contract, &mut errs),
        Some(Value::String(kind)) => {
            let shape = match kind.as_str() {
                "HostnameConfig" => Some(&HOSTNAME_CONFIG),
                "LinkConfig" => Some(&LINK_CONFIG),
                "LinkAliasConfig" => Some(&LINK_ALIAS_CONFIG),
                "Layer2VIPConfig" => Some(&LAYER2_VIP_CONFIG),
                "ResolverConfig" => Some(&RESOLVER_CONFIG),
                "VolumeConfig" => Some(&VOLUME_CONFIG),
                _ => None,
            };
            let Some((_, needs_name)) = known_kinds(contract).find(|(k, _)| k == kind) else {
                return Err(fail(
                    "kind",
                    format!(
                        "unknown document kind {kind:?} for the Talos {contract} configuration contract"
                    ),
                ));
            };
            match shape {
                Some(sh) => check(doc, sh, "", contract, &mut errs),
                None => {
                    // Kinds this crate doesn't generate: only the envelope is checked here.
                    if get_str(doc, "apiVersion") != Some("v1alpha1") {
                        errs.push(("apiVersion".to_string(), "must be v1alpha1".to_string()));
                    }
                    if *needs_name && get_str(doc, "name").is_none() {
                        errs.push(("name".to_string(), "is required".to_string()));
                    }
                }
            }
            if kind == "HostnameConfig"
                && get(doc, "auto").is_some()
                && get(doc, "hostname").is_some()
            {
                errs.push((
                    "auto".to_string(),
                    "conflicts with hostname: set only one".to_string(),
                ));
            }
        }
        Some(other) => {
            return Err(fail(
                "kind",
                format!("expected a string, got {}", type_name(other)),
            ))
        }
    }
    match errs.into_iter().next() {
        Some((p, m)) => Err(fail(&p, m)),
        None => Ok(()),
    }
}

/// Checks a whole configuration against the contract: exactly one v1alpha1 document,
/// every document valid, no two documents of the same kind and name, and no
/// `install.extraKernelArgs` beside `install.grubUseUKICmdline: true` (Talos refuses both).
pub fn check_documents(docs: &[Value], contract: ConfigContract) -> Result<(), StructureError> {
    let mut seen: Vec<String> = Vec::new();
    for d in docs {
        check_document(d, contract)?;
        let id = document_id(d);
        if seen.contains(&id) {
            return Err(StructureError {
                document: id,
                path: "(document)".to_string(),
                message: "duplicate document".to_string(),
            });
        }
        seen.push(id);
    }
    if !seen.iter().any(|d| d == "v1alpha1") {
        return Err(StructureError {
            document: "v1alpha1".to_string(),
            path: "(document)".to_string(),
            message: "the v1alpha1 document is missing".to_string(),
        });
    }
    Ok(())
}
