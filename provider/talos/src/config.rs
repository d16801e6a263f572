//! Per-node Talos machine configuration for a configuration contract
//! ([`ConfigContract`], v1.12 or v1.13): the `v1alpha1` document plus the multi-document
//! network/volume configuration (`HostnameConfig`, `LinkAliasConfig`, `LinkConfig`,
//! `Layer2VIPConfig`, `ResolverConfig`, `VolumeConfig`).
//!
//! Deprecated v1alpha1 fields (`persist`, `machine.network`, `machine.env`) are never
//! generated: networking is documents under both contracts. The v1.13 contract adds what
//! `talosctl gen config --talos-version v1.13` writes beyond v1.12's rendering here:
//! `machine.install.grubUseUKICmdline: true` and the API server's default audit policy
//! (v1.12 keeps its rendering of earlier releases, so existing clusters see no change).
//! [`TALOSCTL_DIFFERENCES`] lists every key talosctl emits that is deliberately different.

use serde_yaml_ng::Value;

use crate::issue::Issue;
use crate::net::{normalize_mac, parse_cidr, parse_endpoint};
use crate::secrets::SecretsBundle;
use crate::spec::{ClusterSpec, NodeSpec, Role};
use crate::versions::{self, parse_kubernetes_version_for, ConfigContract};
use crate::yaml::{map, s, strings};
use crate::{patch, structure, validate, Error};

/// Name of the link alias used when a node's NIC is selected by MAC.
pub const LINK_ALIAS: &str = "net0";

/// Default pod subnet.
pub const POD_SUBNET: &str = "10.244.0.0/16";
/// Default service subnet.
pub const SERVICE_SUBNET: &str = "10.96.0.0/12";
/// KubePrism port (Talos default).
pub const KUBEPRISM_PORT: u64 = 7445;

fn b64(v: &str) -> Value {
    use base64::Engine as _;
    s(base64::engine::general_purpose::STANDARD.encode(v.as_bytes()))
}

fn push_unique(list: &mut Vec<String>, v: impl Into<String>) {
    let v = v.into();
    if !list.contains(&v) {
        list.push(v);
    }
}

/// The link name the node's static address is configured on.
pub fn link_name(node: &NodeSpec) -> String {
    match (&node.interface, &node.mac) {
        (Some(i), _) => i.clone(),
        _ => LINK_ALIAS.to_string(),
    }
}

fn internal(msg: impl Into<String>) -> Error {
    Error::Render(msg.into())
}

/// The documents for `node_name` before any config patch is applied.
/// The spec must have passed [`validate::validate`] (errors are reported, not panicked on).
pub fn base_documents(
    spec: &ClusterSpec,
    secrets: &SecretsBundle,
    node_name: &str,
) -> Result<Vec<Value>, Error> {
    let node = spec
        .nodes
        .get(node_name)
        .ok_or_else(|| Error::UnknownNode(node_name.to_string()))?;
    let addr = parse_cidr(&node.address).map_err(|e| internal(format!("node address: {e}")))?;
    let contract = spec.contract();
    let talos = versions::parse_talos_version(&spec.talos_version).unwrap_or("v1.12.0");
    let k8s = parse_kubernetes_version_for(&spec.kubernetes_version, talos)
        .map_err(|e| internal(e.to_string()))?;
    let endpoint = parse_endpoint(&spec.endpoint).map_err(internal)?;
    let cp = node.role == Role::ControlPlane;
    let kv = format!("v{k8s}");

    // ---- v1alpha1 -----------------------------------------------------------------------
    let mut machine_sans: Vec<String> = vec![addr.addr.to_string()];
    if cp {
        if let Some(vip) = &spec.vip {
            push_unique(&mut machine_sans, vip.clone());
        }
    }
    for san in &spec.cert_sans {
        push_unique(&mut machine_sans, san.clone());
    }

    let machine_ca = if cp {
        map(vec![
            ("crt", b64(&secrets.os_ca.crt)),
            ("key", b64(&secrets.os_ca.key)),
        ])
    } else {
        map(vec![("crt", b64(&secrets.os_ca.crt)), ("key", s(""))])
    };

    let features = vec![
        ("diskQuotaSupport", Value::Bool(true)),
        (
            "kubePrism",
            map(vec![
                ("enabled", Value::Bool(true)),
                ("port", Value::Number(KUBEPRISM_PORT.into())),
            ]),
        ),
        (
            "hostDNS",
            map(vec![
                ("enabled", Value::Bool(true)),
                ("forwardKubeDNSToHost", Value::Bool(true)),
            ]),
        ),
    ];

    let mut labels = serde_yaml_ng::Mapping::new();
    if cp {
        labels.insert(
            s("node.kubernetes.io/exclude-from-external-load-balancers"),
            s(""),
        );
    }
    for (k, v) in &node.node_labels {
        labels.insert(s(k.clone()), s(v.clone()));
    }

    let mut machine = vec![
        ("type", s(node.role.as_str())),
        ("token", s(secrets.trustd_token.clone())),
        ("ca", machine_ca),
        ("certSANs", strings(machine_sans)),
        (
            "kubelet",
            map(vec![
                ("image", s(format!("{}:{kv}", versions::KUBELET_IMAGE))),
                ("defaultRuntimeSeccompProfileEnabled", Value::Bool(true)),
                ("disableManifestsDirectory", Value::Bool(true)),
                (
                    "nodeIP",
                    map(vec![("validSubnets", strings([addr.subnet().to_string()]))]),
                ),
            ]),
        ),
        ("install", {
            let mut install = vec![
                ("disk", s(node.install_disk.clone())),
                ("image", s(spec.installer_image())),
                ("wipe", Value::Bool(false)),
            ];
            if contract >= ConfigContract::V1_13 {
                install.push(("grubUseUKICmdline", Value::Bool(true)));
            }
            map(install)
        }),
        ("features", map(features)),
    ];
    if !labels.is_empty() {
        machine.push(("nodeLabels", Value::Mapping(labels)));
    }

    let mut cluster = vec![
        ("id", s(secrets.cluster_id.clone())),
        ("secret", s(secrets.cluster_secret.clone())),
        (
            "controlPlane",
            map(vec![("endpoint", s(spec.endpoint.clone()))]),
        ),
        ("clusterName", s(spec.cluster_name.clone())),
        (
            "network",
            map(vec![
                ("cni", map(vec![("name", s(spec.cni.as_str()))])),
                ("dnsDomain", s("cluster.local")),
                ("podSubnets", strings([POD_SUBNET])),
                ("serviceSubnets", strings([SERVICE_SUBNET])),
            ]),
        ),
        ("token", s(secrets.bootstrap_token.clone())),
    ];
    if cp {
        if let Some(sb) = &secrets.secretbox_encryption_secret {
            cluster.push(("secretboxEncryptionSecret", s(sb.clone())));
        }
        if let Some(aes) = &secrets.aescbc_encryption_secret {
            cluster.push(("aescbcEncryptionSecret", s(aes.clone())));
        }
        cluster.push((
            "ca",
            map(vec![
                ("crt", b64(&secrets.k8s_ca.crt)),
                ("key", b64(&secrets.k8s_ca.key)),
            ]),
        ));
        cluster.push((
            "aggregatorCA",
            map(vec![
                ("crt", b64(&secrets.k8s_aggregator_ca.crt)),
                ("key", b64(&secrets.k8s_aggregator_ca.key)),
            ]),
        ));
        cluster.push((
            "serviceAccount",
            map(vec![("key", b64(&secrets.k8s_service_account_key))]),
        ));
        // Talos 1.12 no longer adds the endpoint to the API server SANs: list the endpoint
        // host, the VIP and every control plane's address explicitly.
        let mut api_sans = vec![endpoint.host.clone()];
        if let Some(vip) = &spec.vip {
            push_unique(&mut api_sans, vip.clone());
        }
        for (_, n) in spec
            .nodes
            .iter()
            .filter(|(_, n)| n.role == Role::ControlPlane)
        {
            if let Ok(c) = parse_cidr(&n.address) {
                push_unique(&mut api_sans, c.addr.to_string());
            }
        }
        for san in &spec.cert_sans {
            push_unique(&mut api_sans, san.clone());
        }
        let mut api_server = vec![
            (
                "image",
                s(format!("{}:{kv}", versions::KUBE_APISERVER_IMAGE)),
            ),
            ("certSANs", strings(api_sans)),
            (
                "admissionControl",
                Value::Sequence(vec![pod_security_admission()]),
            ),
        ];
        if contract >= ConfigContract::V1_13 {
            api_server.push(("auditPolicy", default_audit_policy()));
        }
        cluster.push(("apiServer", map(api_server)));
        cluster.push((
            "controllerManager",
            map(vec![(
                "image",
                s(format!("{}:{kv}", versions::KUBE_CONTROLLER_MANAGER_IMAGE)),
            )]),
        ));
        cluster.push((
            "proxy",
            if spec.kube_proxy {
                map(vec![(
                    "image",
                    s(format!("{}:{kv}", versions::KUBE_PROXY_IMAGE)),
                )])
            } else {
                map(vec![("disabled", Value::Bool(true))])
            },
        ));
        cluster.push((
            "scheduler",
            map(vec![(
                "image",
                s(format!("{}:{kv}", versions::KUBE_SCHEDULER_IMAGE)),
            )]),
        ));
    } else {
        cluster.push((
            "ca",
            map(vec![("crt", b64(&secrets.k8s_ca.crt)), ("key", s(""))]),
        ));
    }
    cluster.push((
        "discovery",
        map(vec![
            ("enabled", Value::Bool(spec.discovery)),
            (
                "registries",
                map(vec![
                    ("kubernetes", map(vec![("disabled", Value::Bool(true))])),
                    ("service", map(vec![])),
                ]),
            ),
        ]),
    ));
    if cp {
        cluster.push((
            "etcd",
            map(vec![
                (
                    "ca",
                    map(vec![
                        ("crt", b64(&secrets.etcd_ca.crt)),
                        ("key", b64(&secrets.etcd_ca.key)),
                    ]),
                ),
                ("advertisedSubnets", strings([addr.subnet().to_string()])),
            ]),
        ));
        if !spec.inline_manifests.is_empty() {
            cluster.push((
                "inlineManifests",
                Value::Sequence(
                    spec.inline_manifests
                        .iter()
                        .map(|m| {
                            map(vec![
                                ("name", s(m.name.clone())),
                                ("contents", s(m.contents.clone())),
                            ])
                        })
                        .collect(),
                ),
            ));
        }
        cluster.push((
            "allowSchedulingOnControlPlanes",
            Value::Bool(spec.allow_scheduling_on_control_planes),
        ));
    }

    let v1alpha1 = map(vec![
        ("version", s("v1alpha1")),
        ("debug", Value::Bool(false)),
        ("machine", map(machine)),
        ("cluster", map(cluster)),
    ]);

    let mut docs = vec![v1alpha1];

    // ---- HostnameConfig -----------------------------------------------------------------
    let hostname = node
        .hostname
        .clone()
        .unwrap_or_else(|| node_name.to_string());
    docs.push(map(vec![
        ("apiVersion", s("v1alpha1")),
        ("kind", s("HostnameConfig")),
        ("hostname", s(hostname)),
    ]));

    // ---- links ----------------------------------------------------------------------------
    let link = link_name(node);
    if node.interface.is_none() {
        let mac = node
            .mac
            .as_deref()
            .and_then(normalize_mac)
            .ok_or_else(|| internal("node has neither a valid mac nor an interface"))?;
        docs.push(map(vec![
            ("apiVersion", s("v1alpha1")),
            ("kind", s("LinkAliasConfig")),
            ("name", s(LINK_ALIAS)),
            (
                "selector",
                map(vec![(
                    "match",
                    s(format!("mac(link.permanent_addr) == \"{mac}\"")),
                )]),
            ),
        ]));
    }
    let mut link_doc = vec![
        ("apiVersion", s("v1alpha1")),
        ("kind", s("LinkConfig")),
        ("name", s(link.clone())),
        ("up", Value::Bool(true)),
        (
            "addresses",
            Value::Sequence(vec![map(vec![("address", s(addr.to_string()))])]),
        ),
    ];
    if let Some(gw) = &node.gateway {
        link_doc.push((
            "routes",
            Value::Sequence(vec![map(vec![("gateway", s(gw.clone()))])]),
        ));
    }
    docs.push(map(link_doc));

    if cp {
        if let Some(vip) = &spec.vip {
            docs.push(map(vec![
                ("apiVersion", s("v1alpha1")),
                ("kind", s("Layer2VIPConfig")),
                ("name", s(vip.clone())),
                ("link", s(link)),
            ]));
        }
    }

    if !spec.nameservers.is_empty() {
        docs.push(map(vec![
            ("apiVersion", s("v1alpha1")),
            ("kind", s("ResolverConfig")),
            (
                "nameservers",
                Value::Sequence(
                    spec.nameservers
                        .iter()
                        .map(|n| map(vec![("address", s(n.clone()))]))
                        .collect(),
                ),
            ),
        ]));
    }

    // ---- disk encryption ------------------------------------------------------------------
    if spec.disk_encryption {
        for (volume, lock_to_state) in [("STATE", false), ("EPHEMERAL", true)] {
            let mut key = vec![
                ("slot", Value::Number(0u64.into())),
                (
                    "tpm",
                    map(vec![(
                        "checkSecurebootStatusOnEnroll",
                        Value::Bool(spec.secureboot),
                    )]),
                ),
            ];
            if lock_to_state {
                key.push(("lockToState", Value::Bool(true)));
            }
            docs.push(map(vec![
                ("apiVersion", s("v1alpha1")),
                ("kind", s("VolumeConfig")),
                ("name", s(volume)),
                (
                    "encryption",
                    map(vec![
                        ("provider", s("luks2")),
                        ("keys", Value::Sequence(vec![map(key)])),
                    ]),
                ),
            ]));
        }
    }

    Ok(docs)
}

/// The API server audit policy Talos applies when none is set
/// (`v1alpha1.APIServerDefaultAuditPolicy`), which talosctl writes out.
fn default_audit_policy() -> Value {
    map(vec![
        ("apiVersion", s("audit.k8s.io/v1")),
        ("kind", s("Policy")),
        (
            "rules",
            Value::Sequence(vec![map(vec![("level", s("Metadata"))])]),
        ),
    ])
}

fn pod_security_admission() -> Value {
    map(vec![
        ("name", s("PodSecurity")),
        (
            "configuration",
            map(vec![
                (
                    "apiVersion",
                    s("pod-security.admission.config.k8s.io/v1alpha1"),
                ),
                ("kind", s("PodSecurityConfiguration")),
                (
                    "defaults",
                    map(vec![
                        ("audit", s("restricted")),
                        ("audit-version", s("latest")),
                        ("enforce", s("baseline")),
                        ("enforce-version", s("latest")),
                        ("warn", s("restricted")),
                        ("warn-version", s("latest")),
                    ]),
                ),
                (
                    "exemptions",
                    map(vec![
                        ("namespaces", strings(["kube-system"])),
                        ("runtimeClasses", Value::Sequence(vec![])),
                        ("usernames", Value::Sequence(vec![])),
                    ]),
                ),
            ]),
        ),
    ])
}

/// The final documents for `node_name`: base documents, cluster-wide patches, then the
/// node's patches; each step checked structurally. Refuses a spec with validation errors.
pub fn render_node_documents(
    spec: &ClusterSpec,
    secrets: &SecretsBundle,
    node_name: &str,
) -> Result<Vec<Value>, Error> {
    if !spec.nodes.contains_key(node_name) {
        return Err(Error::UnknownNode(node_name.to_string()));
    }
    let errors: Vec<Issue> = validate::validate(spec)
        .into_iter()
        .filter(Issue::is_error)
        .collect();
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let docs = base_documents(spec, secrets, node_name)?;
    patch::apply_all(spec, node_name, docs).map_err(|issue| Error::Invalid(vec![issue]))
}

/// The multi-document YAML machine configuration for `node_name`.
pub fn render_node_config(
    spec: &ClusterSpec,
    secrets: &SecretsBundle,
    node_name: &str,
) -> Result<String, Error> {
    let docs = render_node_documents(spec, secrets, node_name)?;
    structure::check_documents(&docs, spec.contract()).map_err(|e| internal(e.to_string()))?;
    crate::yaml::to_multidoc(&docs).map_err(internal)
}

/// Parses a multi-document machine configuration (as rendered, or as read back from a node).
pub fn parse_config(text: &str) -> Result<Vec<Value>, Error> {
    crate::yaml::parse_multidoc(text).map_err(Error::Render)
}

/// The inline manifests (`cluster.inlineManifests`, in order) of a machine configuration as
/// read back from a node; empty when it has none.
pub fn inline_manifests(text: &str) -> Result<Vec<crate::InlineManifest>, Error> {
    let mut out = Vec::new();
    for doc in parse_config(text)? {
        let Some(list) = doc
            .get("cluster")
            .and_then(|c| c.get("inlineManifests"))
            .and_then(Value::as_sequence)
        else {
            continue;
        };
        for m in list {
            let field = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            match (field("name"), field("contents")) {
                (Some(name), Some(contents)) => out.push(crate::InlineManifest { name, contents }),
                _ => {
                    return Err(Error::Render(
                        "cluster.inlineManifests: an entry without name or contents".into(),
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// Whether two machine configurations are the same documents with the same contents,
/// regardless of document order, key order and YAML formatting. Use it for drift detection.
pub fn same_config(a: &str, b: &str) -> Result<bool, Error> {
    let mut da = parse_config(a)?;
    let mut db = parse_config(b)?;
    if da.len() != db.len() {
        return Ok(false);
    }
    let key = |d: &Value| structure::document_id(d);
    da.sort_by_key(key);
    db.sort_by_key(key);
    Ok(da.iter().zip(db.iter()).all(|(x, y)| {
        match (crate::yaml::to_json(x), crate::yaml::to_json(y)) {
            (Ok(jx), Ok(jy)) => jx == jy,
            _ => x == y,
        }
    }))
}

/// A key `talosctl gen config` writes that waddle's rendering deliberately leaves out or
/// sets otherwise, for the contracts listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TalosctlDifference {
    /// The key: a dotted path in the v1alpha1 document (`machine.network`), or
    /// `Kind.path` in another document (`HostnameConfig.auto`).
    pub key: &'static str,
    /// The contracts it applies to.
    pub contracts: &'static [ConfigContract],
    /// Why.
    pub why: &'static str,
}

const BOTH: &[ConfigContract] = &[ConfigContract::V1_12, ConfigContract::V1_13];
const ONLY_1_12: &[ConfigContract] = &[ConfigContract::V1_12];

/// Every key `talosctl gen config` emits for the same inputs that waddle's configuration
/// does not carry as talosctl writes it. Everything else talosctl writes is in waddle's
/// configuration too (a test compares the two key sets per contract).
pub const TALOSCTL_DIFFERENCES: &[TalosctlDifference] = &[
    TalosctlDifference {
        key: "persist",
        contracts: BOTH,
        why: "deprecated, ignored by Talos and absent from the official schema",
    },
    TalosctlDifference {
        key: "machine.network",
        contracts: ONLY_1_12,
        why: "talosctl writes an empty map; waddle configures networking with documents \
              only (LinkConfig with the node's static address, Layer2VIPConfig, \
              ResolverConfig), and the v1.13 contract has no such key",
    },
    TalosctlDifference {
        key: "machine.install.grubUseUKICmdline",
        contracts: ONLY_1_12,
        why: "left out of the v1.12 contract so that configurations of clusters created by \
              earlier waddle releases do not change; written by the v1.13 contract",
    },
    TalosctlDifference {
        key: "cluster.apiServer.auditPolicy",
        contracts: ONLY_1_12,
        why: "Talos applies the same default policy when unset; left out of the v1.12 \
              contract for the same reason, written by the v1.13 contract",
    },
    TalosctlDifference {
        key: "cluster.proxy.image",
        contracts: BOTH,
        why: "kube-proxy is off by default (`kube_proxy = false` renders \
              `cluster.proxy.disabled: true`); with `kube_proxy = true` the image is written",
    },
    TalosctlDifference {
        key: "HostnameConfig.auto",
        contracts: BOTH,
        why: "every node gets its `hostname` (default: its key in `nodes`) as a static \
              hostname instead of a generated stable one",
    },
];

/// What waddle writes beyond `talosctl gen config`'s defaults (for the documentation).
pub const WADDLE_ADDITIONS: &[&str] = &[
    "`cluster.network.cni.name: none` unless `cni = \"flannel\"` (talosctl defaults to flannel)",
    "LinkConfig (and LinkAliasConfig by MAC) with each node's static address and gateway, \
     `machine.kubelet.nodeIP.validSubnets` and `cluster.etcd.advertisedSubnets` for its subnet",
    "Layer2VIPConfig on control planes when `vip` is set, ResolverConfig from `nameservers`",
    "`machine.install.disk`/`image`, machine and API server `certSANs` (endpoint host, VIP, \
     control-plane addresses, `cert_sans`), `cluster.allowSchedulingOnControlPlanes`",
    "VolumeConfig documents for STATE/EPHEMERAL with `disk_encryption`",
];

/// The intended differences from `talosctl gen config` as a Markdown list (resource docs).
pub fn talosctl_differences_markdown() -> String {
    let mut out = String::new();
    for d in TALOSCTL_DIFFERENCES {
        let on: Vec<&str> = d.contracts.iter().map(|c| c.as_str()).collect();
        out.push_str(&format!("- `{}` ({}): {}\n", d.key, on.join(", "), d.why));
    }
    out
}
