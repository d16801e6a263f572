//! Resource `waddle_sni_proxy`: a small Debian VM on Proxmox VE running HAProxy in TCP mode,
//! passing TLS connections by SNI (still encrypted) to private backends.
//!
//! # Attributes
//! The shape is the one documented in `waddle_haproxy::spec` (and used by `modules/haproxy`):
//! VM placement (`name`, `node`, `vmid`, `storage`, `cores`, `memory`, `disk_size`,
//! `image_url`, `image_storage`), network and access (`public_nic`, `private_nic`,
//! `dns_servers`, `admin_user`, `ssh_authorized_keys`), routing (`routes`, `http_backend`,
//! `listen`, `maxconn`, `proxy_timeouts`) and computed outputs (`id` = `<node>/<vmid>`,
//! `haproxy_cfg`, `exact_map`, `wildcard_map`, `config_hash`, `public_address`,
//! `private_address`, `seed_iso`).
//!
//! # Replace or update in place
//! * **In place** (through the QEMU guest agent, no reboot): `routes`, `http_backend`,
//!   `listen`, `maxconn`, `proxy_timeouts`, and drift of the live configuration.
//! * **Replacement**: everything about the VM. Placement (`node`, `vmid`, `storage`,
//!   `image_url`, `image_storage`, `disk_size`, `cores`, `memory`, `name`) and the NIC layout
//!   (`public_nic`, `private_nic`) define the VM; `admin_user`, `ssh_authorized_keys`,
//!   `dns_servers` and the addresses are cloud-init inputs that Debian applies once, at first
//!   boot, so changing them on a running VM would silently do nothing. The VM holds no data,
//!   so a rebuild is cheap and always converges.
//!
//! # Lifecycle
//! * **Plan**: the routing is validated with `waddle_haproxy::validate` (errors carry the
//!   attribute path, e.g. `routes[1].hostnames[0]`) before any API call; unknown values are
//!   skipped. When the routing is known, the plan already contains the rendered
//!   `haproxy_cfg`, maps and `config_hash`.
//! * **Create**: `download-url` of the Debian image into `import` content (skipped when it is
//!   already there), `POST /nodes/{node}/qemu` with both NICs, `scsi0` imported from the
//!   image, `agent=1`; the NoCloud seed ISO (`user-data` from `render_cloud_init`, NICs matched
//!   by the MACs Proxmox assigned) is built in memory, uploaded as `iso` content and attached
//!   as `ide2`; start; then the guest agent is polled until the VM reports the expected hash in
//!   `/etc/haproxy/waddle-config.sha256` and `haproxy` active (bounded by
//!   `timeouts.create`, cancellable). Once the VM exists every error returns the partial state
//!   (id, vmid, seed ISO) with the error, so the next apply or destroy removes it.
//! * **Update** (routing): the guest agent writes the new versioned maps beside the old ones,
//!   the new config to `haproxy.cfg.new` and the hash to the marker's `.new`; `haproxy -c`
//!   checks the new config on the VM. If it fails, the `.new` files are removed, the running
//!   HAProxy keeps the old config, and the apply fails with HAProxy's message. Otherwise the
//!   files are renamed into place and HAProxy is reloaded (master-worker reload: established
//!   connections stay on the old workers), then the maps of the previous version are removed.
//!   These are the steps of `waddle_haproxy::update_script`, run as separate agent commands so
//!   each step's result is known.
//! * **Read**: a VM that no longer exists is removed from state. Otherwise the live config and
//!   maps are read through the guest agent and hashed with `waddle_haproxy::config_hash`; on
//!   drift, `config_hash` (and the file outputs) take the live values, so the next plan shows
//!   an in-place update back to the configured routing. A stopped VM reads as drift (empty
//!   `config_hash`); the update starts it.
//! * **Delete**: ACPI shutdown (timeout [`SHUTDOWN_TIMEOUT`], then stop), delete with purge
//!   (and unreferenced disks), delete the uploaded seed ISO. The downloaded Debian image is a
//!   shared cache of the storage and is kept.
//! * **Import**: `terraform import waddle_sni_proxy.x <node>/<vmid>` or just `<vmid>` (the node
//!   is then looked up in the cluster). Attributes Proxmox cannot report back (cloud-init
//!   inputs such as addresses and keys, the image URL, the routing) are taken from the
//!   configuration at the next plan without forcing a replacement; the routing is then applied
//!   in place.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::timeouts::{self, Deadline, Op, TimeoutsModel};
use waddle_framework::prelude::*;
use waddle_haproxy::cloudinit::HASH_MARKER_PATH;
use waddle_haproxy::{
    AttrPath as HaPath, CloudInitSpec, ListenSpec, NicSpec, PathStep as HaStep, ProxySpec,
    Rendered, RouteSpec, Timeouts,
};
use waddle_proxmox::{
    Client, ContentType, DiskSpec, DownloadUrl, NetSpec, Params, VmConfig, VmSpec,
};

use crate::provider::{ProviderConfig, ENV_NODE};

mod owned;

/// Type name.
pub const TYPE_NAME: &str = "waddle_sni_proxy";

/// Default `name`.
pub const DEFAULT_NAME: &str = "sni-proxy";
/// Default `storage`.
pub const DEFAULT_STORAGE: &str = "local-lvm";
/// Default `image_storage`.
pub const DEFAULT_IMAGE_STORAGE: &str = "local";
/// Default `image_url`: Debian 12 (bookworm) generic cloud image.
pub const DEFAULT_IMAGE_URL: &str =
    "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2";
/// Default `cores`.
pub const DEFAULT_CORES: i64 = 1;
/// Default `memory` (MiB).
pub const DEFAULT_MEMORY: i64 = 512;
/// Default `disk_size` (GiB).
pub const DEFAULT_DISK_SIZE: i64 = 8;
/// Default `admin_user`.
pub const DEFAULT_ADMIN_USER: &str = "waddle";
/// Default `dns_servers`.
pub const DEFAULT_DNS: [&str; 2] = ["1.1.1.1", "9.9.9.9"];
/// Default `maxconn`.
pub const DEFAULT_MAXCONN: i64 = 4096;

/// Default deadlines of create (dominated by waiting for the VM to report HAProxy running
/// with the expected config), update and delete (`timeouts`).
pub const TIMEOUTS: timeouts::Defaults = timeouts::Defaults {
    create: Duration::from_secs(15 * 60),
    update: Duration::from_secs(15 * 60),
    delete: Duration::from_secs(10 * 60),
};

/// ACPI shutdown timeout before the VM is stopped on delete.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one guest-agent command.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

/// Debian cloud images name the first virtio NIC (`net0`) `ens18`, the second `ens19`; the
/// seed's network-config matches them by MAC and keeps these names.
const PUBLIC_IFACE: &str = "ens18";
const PRIVATE_IFACE: &str = "ens19";

/// Example configuration shown in the documentation.
pub const EXAMPLE: &str = r#"resource "waddle_sni_proxy" "edge" {
  name          = "sni-proxy"
  node          = "pve"
  storage       = "local-lvm"
  image_storage = "local"

  public_nic = {
    bridge  = "vmbr0"
    cidr    = "203.0.113.10/24"
    gateway = "203.0.113.1"
  }
  private_nic = {
    bridge = "vmbr1"
    cidr   = "10.10.0.3/24"
  }
  ssh_authorized_keys = [file("~/.ssh/id_ed25519.pub")]

  routes = [
    {
      hostnames = ["teleport.example.org", ".teleport.example.org"]
      backend   = "10.10.0.2:3080"
    },
    {
      hostnames = ["*.apps.example.org"]
      backend   = "10.10.0.30:443"
    },
  ]
  http_backend = "10.10.0.30:80"
}
"#;

// ---------------------------------------------------------------------------------------------
// State types (one field per attribute; see `assert_roundtrip` in the tests)
// ---------------------------------------------------------------------------------------------

/// `public_nic`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PublicNic {
    pub bridge: String,
    pub cidr: String,
    pub gateway: Option<String>,
}

/// `private_nic`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PrivateNic {
    pub bridge: String,
    pub cidr: String,
}

/// One element of `routes`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Route {
    pub hostnames: Vec<String>,
    pub backend: String,
    pub proxy_protocol: Option<bool>,
    pub check: Option<bool>,
}

/// `listen`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Listen {
    pub https: Option<u32>,
    pub http: Option<u32>,
}

/// `proxy_timeouts`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProxyTimeouts {
    pub connect: Option<String>,
    pub client: Option<String>,
    pub server: Option<String>,
    pub tunnel: Option<String>,
    pub inspect: Option<String>,
}

/// The resource state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SniProxyState {
    pub id: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub storage: Option<String>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<u32>,
    pub image_url: Option<String>,
    pub image_storage: Option<String>,
    pub public_nic: Option<PublicNic>,
    pub private_nic: Option<PrivateNic>,
    pub dns_servers: Option<Vec<String>>,
    pub admin_user: Option<String>,
    pub ssh_authorized_keys: Option<Vec<String>>,
    pub routes: Option<Vec<Route>>,
    pub http_backend: Option<String>,
    pub listen: Option<Listen>,
    pub maxconn: Option<u32>,
    pub proxy_timeouts: Option<ProxyTimeouts>,
    pub timeouts: Option<TimeoutsModel>,
    pub haproxy_cfg: Option<String>,
    pub exact_map: Option<String>,
    pub wildcard_map: Option<String>,
    pub config_hash: Option<String>,
    pub public_address: Option<String>,
    pub private_address: Option<String>,
    pub seed_iso: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------------

fn replace(a: Attribute) -> Attribute {
    a.requires_replace()
}

fn default_timeouts() -> Value {
    let t = Timeouts::default();
    let f = waddle_haproxy::format_duration;
    Value::object([
        ("connect", Value::from(f(t.connect))),
        ("client", Value::from(f(t.client))),
        ("server", Value::from(f(t.server))),
        ("tunnel", Value::from(f(t.tunnel))),
        ("inspect", Value::from(f(t.inspect))),
    ])
}

/// The resource schema.
pub fn schema() -> Schema {
    let t = Timeouts::default();
    let fd = waddle_haproxy::format_duration;
    let timeout_attr = |what: &str, d: Duration| {
        Attribute::string()
            .optional()
            .computed()
            .description(format!(
                "{what} A number with unit `ms`, `s`, `m`, `h` or `d` (a bare number is \
             milliseconds). Default `{}`.",
                fd(d)
            ))
    };
    Schema::new(
        "A public SNI proxy: a small Debian 12 VM on Proxmox VE running HAProxy in TCP mode. It \
         reads the SNI of each TLS ClientHello and passes the connection, still encrypted, to the \
         backend of the matching route; anything else (unknown names, no SNI, non-TLS) is \
         dropped. Route changes are applied in place through the QEMU guest agent (checked with \
         `haproxy -c` on the VM first, then a seamless reload); changes to the VM itself \
         (placement, NICs, cloud-init inputs) replace it. Cloud-init is delivered as a NoCloud \
         seed ISO uploaded through the API, so no SSH access to the Proxmox host is needed.",
    )
    .version(0)
    .attribute(
        "id",
        Attribute::string()
            .computed()
            .use_state_for_unknown()
            .description("`<node>/<vmid>`. Import accepts this or a plain VM id."),
    )
    .attribute(
        "name",
        replace(Attribute::string().default(DEFAULT_NAME).description(format!(
            "VM name and guest hostname (a DNS name). Default `{DEFAULT_NAME}`. Changing it \
             replaces the VM (the hostname is set by cloud-init at first boot)."
        ))),
    )
    .attribute(
        "node",
        replace(
            Attribute::string()
                .optional()
                .computed()
                .use_state_for_unknown()
                .description(format!(
                    "Proxmox VE node the VM runs on. Defaults to the provider's `node` \
                     (or `{ENV_NODE}`). Changing it replaces the VM."
                )),
        ),
    )
    .attribute(
        "vmid",
        replace(
            Attribute::number()
                .optional()
                .computed()
                .use_state_for_unknown()
                .description(
                    "Proxmox VM id (100-999999999). Unset: the next free id of the cluster is \
                     taken at create time. Changing it replaces the VM.",
                ),
        ),
    )
    .attribute(
        "storage",
        replace(Attribute::string().default(DEFAULT_STORAGE).description(format!(
            "Proxmox storage for the VM disk (content `images`). Default `{DEFAULT_STORAGE}`. \
             Changing it replaces the VM."
        ))),
    )
    .attribute(
        "cores",
        replace(Attribute::number().default(Value::from(DEFAULT_CORES)).description(format!(
            "vCPUs. Default `{DEFAULT_CORES}`. Changing it replaces the VM."
        ))),
    )
    .attribute(
        "memory",
        replace(Attribute::number().default(Value::from(DEFAULT_MEMORY)).description(format!(
            "Memory in MiB (at least 256). Default `{DEFAULT_MEMORY}`. Changing it replaces the VM."
        ))),
    )
    .attribute(
        "disk_size",
        replace(Attribute::number().default(Value::from(DEFAULT_DISK_SIZE)).description(format!(
            "Root disk size in GiB; the imported cloud image is grown to it. Default \
             `{DEFAULT_DISK_SIZE}`. Changing it replaces the VM."
        ))),
    )
    .attribute(
        "image_url",
        replace(Attribute::string().default(DEFAULT_IMAGE_URL).description(format!(
            "Debian 12 cloud image (qcow2 or raw), downloaded by Proxmox with `download-url` into \
             `import` content of `image_storage` (skipped when a file of the same name is already \
             there). The file name is the URL's last path segment. Default `{DEFAULT_IMAGE_URL}`. \
             Changing it replaces the VM."
        ))),
    )
    .attribute(
        "image_storage",
        replace(Attribute::string().default(DEFAULT_IMAGE_STORAGE).description(format!(
            "Proxmox storage (content `import` and `iso`) for the downloaded image and the \
             uploaded NoCloud seed ISO. Default `{DEFAULT_IMAGE_STORAGE}`. Changing it replaces \
             the VM."
        ))),
    )
    .attribute(
        "public_nic",
        replace(
            Attribute::nested(
                NestingMode::Single,
                [
                    ("bridge", Attribute::string().required().description("Bridge, e.g. `vmbr0`.")),
                    (
                        "cidr",
                        Attribute::string()
                            .required()
                            .description("Static address in CIDR notation, e.g. `203.0.113.10/24`."),
                    ),
                    (
                        "gateway",
                        Attribute::string()
                            .optional()
                            .description("Default gateway (an IP of the same family). Unset: no default route."),
                    ),
                ],
            )
            .required()
            .description(
                "Public NIC (`net0`, virtio). Changing it replaces the VM (cloud-init applies the \
                 network configuration once).",
            ),
        ),
    )
    .attribute(
        "private_nic",
        replace(
            Attribute::nested(
                NestingMode::Single,
                [
                    ("bridge", Attribute::string().required().description("Bridge, e.g. `vmbr1`.")),
                    (
                        "cidr",
                        Attribute::string()
                            .required()
                            .description("Static address in CIDR notation, e.g. `10.10.0.3/24`."),
                    ),
                ],
            )
            .required()
            .description(
                "Private NIC (`net1`, virtio) on the platform network, where the backends are. \
                 Changing it replaces the VM.",
            ),
        ),
    )
    .attribute(
        "dns_servers",
        replace(
            Attribute::list_of(Type::String)
                .default(Value::List(DEFAULT_DNS.iter().map(|s| Value::from(*s)).collect()))
                .description(format!(
                    "DNS resolvers of the VM (IP addresses; needed to install packages). Default \
                     `[\"{}\", \"{}\"]`. Changing it replaces the VM.",
                    DEFAULT_DNS[0], DEFAULT_DNS[1]
                )),
        ),
    )
    .attribute(
        "admin_user",
        replace(Attribute::string().default(DEFAULT_ADMIN_USER).description(format!(
            "Admin login with the SSH keys and passwordless sudo (not `root`; password and root \
             logins are disabled). Default `{DEFAULT_ADMIN_USER}`. Changing it replaces the VM."
        ))),
    )
    .attribute(
        "ssh_authorized_keys",
        replace(Attribute::list_of(Type::String).required().description(
            "OpenSSH public keys of the admin user (at least one). Changing them replaces the VM \
             (cloud-init installs them at first boot).",
        )),
    )
    .attribute(
        "routes",
        Attribute::nested(
            NestingMode::List,
            [
                (
                    "hostnames",
                    Attribute::list_of(Type::String).required().description(
                        "Exact names (`teleport.example.org`) and subdomain wildcards \
                         (`*.apps.example.org` or `.apps.example.org`: any subdomain at any depth, \
                         never the suffix itself). Case-insensitive; Unicode names are converted \
                         to A-labels. At least one.",
                    ),
                ),
                (
                    "backend",
                    Attribute::string().required().description(
                        "`<ip>:<port>` or `[<ipv6>]:<port>` (IP literals only).",
                    ),
                ),
                (
                    "proxy_protocol",
                    Attribute::bool()
                        .optional()
                        .description("Send a PROXY protocol v2 header to the backend. Default `false`."),
                ),
                (
                    "check",
                    Attribute::bool()
                        .optional()
                        .description("Layer-4 (TCP connect) health check of the backend. Default `true`."),
                ),
            ],
        )
        .required()
        .description(
            "SNI routes, in order. Exact names win over wildcards, the longest wildcard suffix \
             wins; everything else is dropped. Duplicate or overlapping names, catch-alls and \
             invalid names or backends are refused at plan time. Updated in place.",
        ),
    )
    .attribute(
        "http_backend",
        Attribute::string().optional().description(
            "Plain TCP forward of the `listen.http` port to `<ip>:<port>` (HTTP redirects, ACME \
             HTTP-01). Unset (default): no port-80 listener. Updated in place.",
        ),
    )
    .attribute(
        "listen",
        Attribute::nested(
            NestingMode::Single,
            [
                (
                    "https",
                    Attribute::number().optional().description("TLS (SNI) port. Default `443`."),
                ),
                (
                    "http",
                    Attribute::number()
                        .optional()
                        .description("Port forwarded to `http_backend`. Default `80`."),
                ),
            ],
        )
        .default(Value::object([
            ("https", Value::from(443i64)),
            ("http", Value::from(80i64)),
        ]))
        .description("Listening ports. Default `{ https = 443, http = 80 }`. Updated in place."),
    )
    .attribute(
        "maxconn",
        Attribute::number().default(Value::from(DEFAULT_MAXCONN)).description(format!(
            "HAProxy process and frontend connection limit. Default `{DEFAULT_MAXCONN}`. Updated in place."
        )),
    )
    .attribute(
        "proxy_timeouts",
        Attribute::nested(
            NestingMode::Single,
            [
                ("connect", timeout_attr("Connect timeout to a backend.", t.connect)),
                ("client", timeout_attr("Client inactivity before the tunnel is established.", t.client)),
                ("server", timeout_attr("Server inactivity before the tunnel is established.", t.server)),
                ("tunnel", timeout_attr("Inactivity of an established connection (`timeout tunnel`).", t.tunnel)),
                ("inspect", timeout_attr("How long to wait for a complete TLS ClientHello (`tcp-request inspect-delay`).", t.inspect)),
            ],
        )
        .default(default_timeouts())
        .description(format!(
            "HAProxy timeouts. Default `{{ connect = \"{}\", client = \"{}\", server = \"{}\", \
             tunnel = \"{}\", inspect = \"{}\" }}`. Updated in place.",
            fd(t.connect),
            fd(t.client),
            fd(t.server),
            fd(t.tunnel),
            fd(t.inspect)
        )),
    )
    .attribute(
        timeouts::ATTR,
        timeouts::attribute(
            &TIMEOUTS,
            [
                "Deadline of create, including the wait for the VM to report HAProxy running with \
                 the expected configuration.",
                "Deadline of an update, including the wait for the guest agent of a stopped VM.",
                "Deadline of destroy (the ACPI shutdown waits at most 60s of it, then the VM is stopped).",
            ],
        ),
    )
    .attribute(
        "haproxy_cfg",
        Attribute::string()
            .computed()
            .description("Rendered `/etc/haproxy/haproxy.cfg` (after a refresh: the live file if it drifted)."),
    )
    .attribute(
        "exact_map",
        Attribute::string()
            .computed()
            .description("Rendered exact-name map (`<name> <backend>` lines)."),
    )
    .attribute(
        "wildcard_map",
        Attribute::string()
            .computed()
            .description("Rendered wildcard map (`.<suffix> <backend>` lines, longest suffix first)."),
    )
    .attribute(
        "config_hash",
        Attribute::string().computed().description(
            "SHA-256 over the config and both maps. Refresh reads the live files through the \
             guest agent; a different value here means drift, repaired by the next apply.",
        ),
    )
    .attribute(
        "public_address",
        Attribute::string()
            .computed()
            .description("Public IP address (from `public_nic.cidr`, without prefix length)."),
    )
    .attribute(
        "private_address",
        Attribute::string()
            .computed()
            .description("Private IP address (from `private_nic.cidr`, without prefix length)."),
    )
    .attribute(
        "seed_iso",
        Attribute::string()
            .computed()
            .use_state_for_unknown()
            .description("Volume id of the uploaded NoCloud seed ISO (deleted with the VM)."),
    )
}

// ---------------------------------------------------------------------------------------------
// Reading configuration values (unknown-tolerant)
// ---------------------------------------------------------------------------------------------

/// A known, non-null attribute of an object value.
fn set<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get_attr(name).filter(|x| x.is_set())
}

fn is_unknown(v: &Value, name: &str) -> bool {
    v.get_attr(name).is_some_and(Value::is_unknown)
}

fn str_or<'a>(v: &'a Value, name: &str, default: &'a str) -> Option<&'a str> {
    match v.get_attr(name) {
        Some(x) if x.is_unknown() => None,
        Some(x) if x.is_null() => Some(default),
        Some(x) => x.as_str(),
        None => Some(default),
    }
}

fn to_fw_path(p: &HaPath) -> AttributePath {
    let mut out = AttributePath::root();
    for s in p.steps() {
        out = match s {
            HaStep::Attr(a) => out.then_attr(a.clone()),
            HaStep::Index(i) => out.then_index(*i as i64),
        };
    }
    out
}

/// The routing part of a configuration, as far as it is known.
struct Routing {
    spec: ProxySpec,
    /// spec.routes[i] came from routes[route_index[i]].
    route_index: Vec<usize>,
    /// Everything needed to render is known.
    complete: bool,
}

fn number_in(
    v: &Value,
    path: AttributePath,
    range: std::ops::RangeInclusive<i64>,
    diags: &mut Diagnostics,
) -> Option<i64> {
    let n = v.as_number()?;
    match n.to_i64().filter(|x| range.contains(x)) {
        Some(x) => Some(x),
        None => {
            diags.error_at(
                path,
                "Value out of range",
                format!(
                    "{} must be a whole number between {} and {}",
                    n.to_plain_string(),
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

fn routing_from(v: &Value, diags: &mut Diagnostics) -> Routing {
    let mut spec = ProxySpec::default();
    let mut complete = true;
    let mut route_index = Vec::new();
    match v.get_attr("routes") {
        Some(r) if r.is_unknown() => complete = false,
        Some(r) => {
            for (i, e) in r.as_elements().unwrap_or_default().iter().enumerate() {
                let hosts = e.get_attr("hostnames");
                let backend = e.get_attr("backend");
                let usable = e.is_known()
                    && hosts.is_some_and(Value::is_wholly_known)
                    && backend.is_some_and(Value::is_known)
                    && !is_unknown(e, "proxy_protocol")
                    && !is_unknown(e, "check");
                if !usable {
                    complete = false;
                    continue;
                }
                let hostnames: Vec<String> = hosts
                    .and_then(Value::as_elements)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect();
                let route = RouteSpec {
                    hostnames,
                    backend: backend
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    proxy_protocol: set(e, "proxy_protocol")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    check: set(e, "check").and_then(Value::as_bool).unwrap_or(true),
                };
                spec.routes.push(route);
                route_index.push(i);
            }
        }
        None => {}
    }
    match v.get_attr("http_backend") {
        Some(x) if x.is_unknown() => complete = false,
        Some(x) => spec.http_backend = x.as_str().map(str::to_string),
        None => {}
    }
    let listen = AttributePath::attr("listen");
    match v.get_attr("listen") {
        Some(l) if l.is_unknown() => complete = false,
        Some(l) if l.is_null() => {}
        Some(l) => {
            let mut ls = ListenSpec::default();
            for (name, slot) in [("https", &mut ls.https_port), ("http", &mut ls.http_port)] {
                match l.get_attr(name) {
                    Some(x) if x.is_unknown() => complete = false,
                    Some(x) if x.is_null() => {}
                    Some(x) => match number_in(x, listen.clone().then_attr(name), 0..=65535, diags)
                    {
                        Some(n) => *slot = n as u16,
                        None => complete = false,
                    },
                    None => {}
                }
            }
            spec.listen = ls;
        }
        None => {}
    }
    match v.get_attr("maxconn") {
        Some(x) if x.is_unknown() => complete = false,
        Some(x) if x.is_null() => {}
        Some(x) => match number_in(
            x,
            AttributePath::attr("maxconn"),
            0..=i64::from(u32::MAX),
            diags,
        ) {
            Some(n) => spec.maxconn = n as u32,
            None => complete = false,
        },
        None => {}
    }
    match v.get_attr("proxy_timeouts") {
        Some(t) if t.is_unknown() => complete = false,
        Some(t) if t.is_null() => {}
        Some(t) => {
            let d = Timeouts::default();
            let fd = waddle_haproxy::format_duration;
            let mut strs = Vec::new();
            for (name, def) in [
                ("connect", d.connect),
                ("client", d.client),
                ("server", d.server),
                ("tunnel", d.tunnel),
                ("inspect", d.inspect),
            ] {
                match t.get_attr(name) {
                    Some(x) if x.is_unknown() => {
                        complete = false;
                        strs.push(fd(def));
                    }
                    Some(x) => strs.push(x.as_str().map(str::to_string).unwrap_or_else(|| fd(def))),
                    None => strs.push(fd(def)),
                }
            }
            match Timeouts::parse(&strs[0], &strs[1], &strs[2], &strs[3], &strs[4]) {
                Ok(t) => spec.timeouts = t,
                Err(errs) => {
                    complete = false;
                    for e in errs.errors() {
                        diags.error_at(to_fw_path(&e.path), "Invalid timeout", e.kind.to_string());
                    }
                }
            }
        }
        None => {}
    }
    Routing {
        spec,
        route_index,
        complete,
    }
}

/// Reports waddle-haproxy errors at their configuration paths (route indices mapped back
/// to the configuration's), each detail naming its element.
fn report(routing: &Routing, errs: &waddle_haproxy::ValidationErrors, diags: &mut Diagnostics) {
    let original = |p: &HaPath| {
        let mut steps = p.steps().to_vec();
        if let (Some(HaStep::Attr(a)), Some(HaStep::Index(i))) = (steps.first(), steps.get(1)) {
            if a == "routes" {
                steps[1] = HaStep::Index(routing.route_index.get(*i).copied().unwrap_or(*i));
            }
        }
        HaPath(steps)
    };
    for e in errs.errors() {
        let msg = match &e.kind {
            waddle_haproxy::ErrorKind::DuplicateHostname {
                hostname,
                key,
                first,
            } => format!(
                "`{hostname}` is already routed by {} (same normalized name `{key}`)",
                original(first)
            ),
            k => k.to_string(),
        };
        super::error_named(
            diags,
            to_fw_path(&original(&e.path)),
            "Invalid SNI proxy configuration",
            msg,
        );
    }
}

/// Validate the routing with waddle-haproxy, mapping paths back to the configuration.
fn validate_routing(config: &Value, routing: &Routing, diags: &mut Diagnostics) {
    let no_routes = config
        .get_attr("routes")
        .filter(|r| r.is_known())
        .and_then(Value::as_elements)
        .is_some_and(|r| r.is_empty());
    if no_routes {
        diags.error_at(
            AttributePath::attr("routes"),
            "Invalid SNI proxy configuration",
            waddle_haproxy::ErrorKind::NoRoutes.to_string(),
        );
    }
    if let Err(errs) = waddle_haproxy::validate(&routing.spec) {
        report(routing, &errs, diags);
    }
    if let Err(errs) = waddle_haproxy::validate_addressing(&addressing_of(config), &routing.spec) {
        report(routing, &errs, diags);
    }
}

/// The NIC addresses of a configuration, as far as they are known.
fn addressing_of(config: &Value) -> waddle_haproxy::Addressing {
    let known = |nic: &str, field: &str| {
        set(config, nic)
            .and_then(|n| set(n, field))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    waddle_haproxy::Addressing {
        public_cidr: known("public_nic", "cidr"),
        public_gateway: known("public_nic", "gateway").and_then(|g| g.parse().ok()),
        private_cidr: known("private_nic", "cidr"),
    }
}

fn ip_of_cidr(cidr: &str) -> Option<String> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    len.parse::<u8>().ok()?;
    Some(ip.to_string())
}

/// The file name `download-url` stores the image under: the URL's last path segment.
pub fn image_file_name(url: &str) -> Result<String, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{url:?} must be an http(s) URL"));
    }
    let name = u
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{url:?} has no file name"))?
        .to_string();
    waddle_proxmox::validate_volume_file_name(ContentType::Import, &name).map_err(|_| {
        format!(
            "the file name {name:?} of {url:?} is not usable as `import` content: it must end in \
             .qcow2, .raw, .img or .vmdk and use letters, digits, `-`, `_`, `.`, `+`"
        )
    })?;
    Ok(name)
}

/// Cloud-init and VM checks (unknown-tolerant). `instance_id` and the NIC names are fixed by
/// the provider, so errors can only be about configured values.
fn validate_vm(config: &Value, diags: &mut Diagnostics) {
    fn p(name: &str) -> AttributePath {
        AttributePath::attr(name)
    }
    let check_pve = |diags: &mut Diagnostics, name: &str, r: Result<(), String>| {
        if let Err(e) = r {
            diags.error_at(p(name), "Invalid value", e);
        }
    };
    if let Some(n) = set(config, "node").and_then(Value::as_str) {
        check_pve(diags, "node", crate::provider::validate_node(n));
    }
    for name in ["storage", "image_storage"] {
        if let Some(s) = set(config, name).and_then(Value::as_str) {
            check_pve(
                diags,
                name,
                waddle_proxmox::props::validate_storage(s).map_err(|e| e.to_string()),
            );
        }
    }
    if let Some(x) = set(config, "vmid") {
        if let Some(v) = number_in(x, p("vmid"), 100..=999_999_999, diags) {
            check_pve(
                diags,
                "vmid",
                waddle_proxmox::props::validate_vmid(v as u32).map_err(|e| e.to_string()),
            );
        }
    }
    if let Some(x) = set(config, "cores") {
        number_in(x, p("cores"), 1..=512, diags);
    }
    if let Some(x) = set(config, "memory") {
        number_in(x, p("memory"), 256..=4_194_304, diags);
    }
    if let Some(x) = set(config, "disk_size") {
        number_in(x, p("disk_size"), 2..=65_536, diags);
    }
    if let Some(u) = set(config, "image_url").and_then(Value::as_str) {
        check_pve(diags, "image_url", image_file_name(u).map(|_| ()));
    }
    for nic in ["public_nic", "private_nic"] {
        if let Some(b) = set(config, nic)
            .and_then(|n| set(n, "bridge"))
            .and_then(Value::as_str)
        {
            if let Err(e) = waddle_proxmox::props::validate_bridge(b) {
                super::error_named(
                    diags,
                    p(nic).then_attr("bridge"),
                    "Invalid value",
                    e.to_string(),
                );
            }
        }
    }
    let mut dns = Vec::new();
    if let Some(list) = set(config, "dns_servers") {
        for (i, d) in list.as_elements().unwrap_or_default().iter().enumerate() {
            if let Some(s) = d.as_str() {
                match s.parse::<std::net::IpAddr>() {
                    Ok(ip) => dns.push(ip),
                    Err(_) => super::error_named(
                        diags,
                        p("dns_servers").then_index(i as i64),
                        "Invalid value",
                        format!("{s:?} is not an IP address"),
                    ),
                }
            }
        }
    }

    // Cloud-init inputs: build a spec with placeholders for what is unknown, then drop errors
    // about placeholders.
    let mut unknown_paths: Vec<AttributePath> = Vec::new();
    let mut text =
        |v: &Value, name: &str, default: &str, at: AttributePath, placeholder: &str| match str_or(
            v, name, default,
        ) {
            Some(s) => s.to_string(),
            None => {
                unknown_paths.push(at);
                placeholder.to_string()
            }
        };
    let hostname = text(config, "name", DEFAULT_NAME, p("name"), "placeholder");
    let admin_user = text(
        config,
        "admin_user",
        DEFAULT_ADMIN_USER,
        p("admin_user"),
        "placeholder",
    );
    let nic = |which: &str,
               unknown_paths: &mut Vec<AttributePath>|
     -> (String, Option<std::net::IpAddr>, bool) {
        match config.get_attr(which) {
            Some(n) if n.is_set() => {
                let cidr = match n.get_attr("cidr") {
                    Some(c) if c.is_unknown() => {
                        unknown_paths.push(p(which).then_attr("cidr"));
                        "192.0.2.1/24".to_string()
                    }
                    Some(c) => c.as_str().unwrap_or("192.0.2.1/24").to_string(),
                    None => "192.0.2.1/24".to_string(),
                };
                let mut bad_gw = false;
                let gateway = match n.get_attr("gateway") {
                    Some(g) if g.is_unknown() => {
                        unknown_paths.push(p(which).then_attr("gateway"));
                        None
                    }
                    Some(g) => match g.as_str() {
                        Some(s) => match s.parse() {
                            Ok(ip) => Some(ip),
                            Err(_) => {
                                bad_gw = true;
                                None
                            }
                        },
                        None => None,
                    },
                    None => None,
                };
                (cidr, gateway, bad_gw)
            }
            _ => {
                unknown_paths.push(p(which));
                ("192.0.2.1/24".to_string(), None, false)
            }
        }
    };
    let (pub_cidr, pub_gw, bad_gw) = nic("public_nic", &mut unknown_paths);
    if bad_gw {
        super::error_named(
            diags,
            p("public_nic").then_attr("gateway"),
            "Invalid value",
            "the gateway must be an IP address",
        );
    }
    let (priv_cidr, _, _) = nic("private_nic", &mut unknown_paths);
    let keys: Vec<String> = match config.get_attr("ssh_authorized_keys") {
        Some(k) if k.is_wholly_known() && !k.is_null() => k
            .as_elements()
            .unwrap_or_default()
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => {
            unknown_paths.push(p("ssh_authorized_keys"));
            vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlaceholderPlaceholderPlaceholder x".into()]
        }
    };
    let ci = CloudInitSpec {
        hostname,
        instance_id: "waddle-sni-100".into(),
        admin_user,
        ssh_authorized_keys: keys,
        public_nic: NicSpec {
            name: PUBLIC_IFACE.into(),
            mac_address: None,
            cidr: pub_cidr,
            gateway: pub_gw,
        },
        private_nic: NicSpec {
            name: PRIVATE_IFACE.into(),
            mac_address: None,
            cidr: priv_cidr,
            gateway: None,
        },
        dns_servers: dns,
    };
    if let Err(errs) = waddle_haproxy::validate_cloud_init(&ci) {
        for e in errs.errors() {
            let mut path = to_fw_path(&e.path);
            if path == p("hostname") {
                path = p("name");
            }
            if unknown_paths
                .iter()
                .any(|u| path.steps.starts_with(&u.steps))
            {
                continue;
            }
            super::error_named(diags, path, "Invalid value", e.kind.to_string());
        }
    }
}

/// All plan-time checks (no API call), at most [`super::MAX_DIAGNOSTICS`] reported.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    let mut found = Diagnostics::new();
    let routing = routing_from(config, &mut found);
    validate_routing(config, &routing, &mut found);
    validate_vm(config, &mut found);
    timeouts::validate(config, &mut found);
    super::capped(found, diags);
}

// ---------------------------------------------------------------------------------------------
// Typed helpers for apply
// ---------------------------------------------------------------------------------------------

impl SniProxyState {
    /// The deadline of `op` (`timeouts`, else [`TIMEOUTS`]).
    pub fn timeout(&self, op: Op) -> Duration {
        TimeoutsModel::get(self.timeouts.as_ref(), op, &TIMEOUTS)
    }

    fn routing_spec(&self) -> Result<ProxySpec, String> {
        let mut spec = ProxySpec::default();
        for r in self.routes.clone().unwrap_or_default() {
            spec.routes.push(RouteSpec {
                hostnames: r.hostnames,
                backend: r.backend,
                proxy_protocol: r.proxy_protocol.unwrap_or(false),
                check: r.check.unwrap_or(true),
            });
        }
        spec.http_backend = self.http_backend.clone();
        if let Some(l) = &self.listen {
            let port = |p: Option<u32>, d: u16| {
                p.map(|x| u16::try_from(x).map_err(|_| format!("port {x} out of range")))
                    .unwrap_or(Ok(d))
            };
            spec.listen.https_port = port(l.https, 443)?;
            spec.listen.http_port = port(l.http, 80)?;
        }
        if let Some(m) = self.maxconn {
            spec.maxconn = m;
        }
        if let Some(t) = &self.proxy_timeouts {
            let d = Timeouts::default();
            let fd = waddle_haproxy::format_duration;
            let g = |x: &Option<String>, def: Duration| x.clone().unwrap_or_else(|| fd(def));
            spec.timeouts = Timeouts::parse(
                &g(&t.connect, d.connect),
                &g(&t.client, d.client),
                &g(&t.server, d.server),
                &g(&t.tunnel, d.tunnel),
                &g(&t.inspect, d.inspect),
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(spec)
    }

    fn rendered(&self) -> Result<Rendered, String> {
        waddle_haproxy::render_versioned(&self.routing_spec()?).map_err(|e| e.to_string())
    }

    fn set_rendered(&mut self, r: &Rendered) {
        self.haproxy_cfg = Some(r.haproxy_cfg.clone());
        self.exact_map = Some(r.exact_map.clone());
        self.wildcard_map = Some(r.wildcard_map.clone());
        self.config_hash = Some(r.config_hash.clone());
    }

    fn node(&self) -> Result<&str, String> {
        self.node
            .as_deref()
            .ok_or_else(|| "the VM's node is not known".to_string())
    }

    fn image_storage(&self) -> &str {
        self.image_storage
            .as_deref()
            .unwrap_or(DEFAULT_IMAGE_STORAGE)
    }
}

/// Seed ISO file name for a VM.
pub fn seed_iso_name(vmid: u32) -> String {
    format!("waddle-sni-proxy-{vmid}-seed.iso")
}

fn id_of(node: &str, vmid: u32) -> String {
    format!("{node}/{vmid}")
}

/// Parse an import ID: `<node>/<vmid>` or `<vmid>`.
pub fn parse_import_id(id: &str) -> Result<(Option<String>, u32), String> {
    let (node, vmid) = match id.trim().split_once('/') {
        Some((n, v)) => {
            crate::provider::validate_node(n).map_err(|e| format!("node: {e}"))?;
            (Some(n.to_string()), v)
        }
        None => (None, id.trim()),
    };
    let vmid: u32 = vmid
        .parse()
        .map_err(|_| format!("{id:?}: expected <node>/<vmid> or <vmid>"))?;
    waddle_proxmox::props::validate_vmid(vmid).map_err(|e| e.to_string())?;
    Ok((node, vmid))
}

fn fail(diags: &mut Diagnostics, summary: &str, detail: impl std::fmt::Display) {
    diags.error(summary, detail.to_string());
}

fn from_typed(state: &SniProxyState, diags: &mut Diagnostics) -> Option<Value> {
    match schema().from_typed(state) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error("Internal error", format!("encoding {TYPE_NAME} state: {e}"));
            None
        }
    }
}

fn to_typed(v: &Value, diags: &mut Diagnostics) -> Option<SniProxyState> {
    match v.to_typed::<SniProxyState>() {
        Ok(s) => Some(s),
        Err(e) => {
            diags.error("Internal error", format!("decoding {TYPE_NAME} state: {e}"));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Guest agent operations
// ---------------------------------------------------------------------------------------------

struct Guest<'a> {
    client: &'a Client,
    node: &'a str,
    vmid: u32,
    ctx: &'a Context,
}

impl Guest<'_> {
    async fn exec(
        &self,
        argv: &[&str],
    ) -> Result<waddle_proxmox::ExecResult, waddle_proxmox::Error> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.client
            .agent_exec(
                self.node,
                self.vmid,
                &argv,
                None,
                EXEC_TIMEOUT,
                Some(self.ctx.cancellation()),
            )
            .await
    }

    /// `cat FILE` (None when the file does not exist).
    async fn read(&self, path: &str) -> Result<Option<String>, waddle_proxmox::Error> {
        let r = self.exec(&["cat", path]).await?;
        Ok(r.success().then_some(r.out_data))
    }

    async fn write(&self, path: &str, content: &str) -> Result<(), waddle_proxmox::Error> {
        self.client
            .agent_file_write(self.node, self.vmid, path, content, true)
            .await
    }

    /// Keep the configuration inputs on the VM (read back by an import).
    async fn keep_inputs(&self, st: &SniProxyState) -> Result<(), String> {
        self.write(owned::INPUTS_PATH, &owned::inputs_json(st))
            .await
            .map_err(|e| format!("writing {}: {e}", owned::INPUTS_PATH))
    }

    /// Hash of the live config and the maps it names; None when there is no config.
    async fn live(
        &self,
    ) -> Result<Option<(String, String, String, String)>, waddle_proxmox::Error> {
        let rendered_paths = waddle_haproxy::FilePaths::default();
        let Some(cfg) = self.read(&rendered_paths.config).await? else {
            return Ok(None);
        };
        let (exact, wildcard) = match waddle_haproxy::live_map_paths(&cfg) {
            Some((e, w)) => (
                self.read(&e).await?.unwrap_or_default(),
                self.read(&w).await?.unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        let hash = waddle_haproxy::config_hash(&cfg, &exact, &wildcard);
        Ok(Some((cfg, exact, wildcard, hash)))
    }

    /// Apply a rendering in place: write new files, `haproxy -c`, swap, reload, clean up.
    async fn apply(&self, r: &Rendered, old_cfg: Option<&str>) -> Result<(), String> {
        let e = |what: &str, err: waddle_proxmox::Error| format!("{what}: {err}");
        let cfg = &r.paths.config;
        let cfg_new = format!("{cfg}.new");
        let marker_new = format!("{HASH_MARKER_PATH}.new");
        self.write(&r.paths.exact_map, &r.exact_map)
            .await
            .map_err(|x| e(&format!("writing {}", r.paths.exact_map), x))?;
        self.write(&r.paths.wildcard_map, &r.wildcard_map)
            .await
            .map_err(|x| e(&format!("writing {}", r.paths.wildcard_map), x))?;
        self.write(&cfg_new, &r.haproxy_cfg)
            .await
            .map_err(|x| e(&format!("writing {cfg_new}"), x))?;
        self.write(&marker_new, &format!("{}\n", r.config_hash))
            .await
            .map_err(|x| e(&format!("writing {marker_new}"), x))?;
        let check = self
            .exec(&["haproxy", "-c", "-f", &cfg_new])
            .await
            .map_err(|x| e("running haproxy -c on the VM", x))?;
        if !check.success() {
            let _ = self.exec(&["rm", "-f", &cfg_new, &marker_new]).await;
            let mut msg = check.err_data.trim().to_string();
            if msg.is_empty() {
                msg = check.out_data.trim().to_string();
            }
            return Err(format!(
                "haproxy -c rejected the new configuration on the VM (the running HAProxy keeps \
                 the previous configuration):\n{msg}"
            ));
        }
        let swap = format!(
            "mv -f {cfg_new} {cfg} && mv -f {marker_new} {HASH_MARKER_PATH} && systemctl reload-or-restart haproxy"
        );
        let res = self
            .exec(&["sh", "-c", &swap])
            .await
            .map_err(|x| e("swapping the configuration", x))?;
        if !res.success() {
            return Err(format!(
                "installing the new configuration failed (exit {:?}): {}",
                res.exitcode,
                res.err_data.trim()
            ));
        }
        // Remove the maps of the previous version (the new config no longer names them).
        if let Some((old_e, old_w)) = old_cfg.and_then(waddle_haproxy::live_map_paths) {
            let stale: Vec<&str> = [old_e.as_str(), old_w.as_str()]
                .into_iter()
                .filter(|p| *p != r.paths.exact_map && *p != r.paths.wildcard_map)
                .collect();
            if !stale.is_empty() {
                let mut argv = vec!["rm", "-f"];
                argv.extend(stale);
                let _ = self.exec(&argv).await;
            }
        }
        Ok(())
    }

    /// HAProxy is not active although the config files are in place: when cloud-init is no
    /// longer running, `haproxy -c` the live config (error: Err with HAProxy's message) and
    /// enable + restart HAProxy. Returns a status line while cloud-init is still running.
    async fn recover_haproxy(&self) -> Result<Option<String>, String> {
        let ci = self
            .exec(&["cloud-init", "status"])
            .await
            .map(|r| r.out_data)
            .unwrap_or_default();
        if ci.contains("running") || ci.contains("not started") {
            return Ok(Some(format!("cloud-init is still running ({})", ci.trim())));
        }
        let cfg = waddle_haproxy::FilePaths::default().config;
        let check = self
            .exec(&["haproxy", "-c", "-f", &cfg])
            .await
            .map_err(|e| format!("running haproxy -c on the VM: {e}"))?;
        if !check.success() {
            return Err(format!(
                "haproxy -c rejected {cfg} on the VM:\n{}{}",
                check.err_data.trim(),
                check.out_data.trim()
            ));
        }
        let start = self
            .exec(&[
                "sh",
                "-c",
                "systemctl enable haproxy && systemctl restart haproxy",
            ])
            .await
            .map_err(|e| format!("starting haproxy: {e}"))?;
        if !start.success() {
            return Ok(Some(format!(
                "starting haproxy failed: {}",
                start.err_data.trim()
            )));
        }
        Ok(None)
    }

    /// Wait until the VM reports `hash` in the marker and HAProxy active.
    async fn wait_ready(&self, hash: &str, deadline: Deadline) -> Result<(), String> {
        let mut interval = Duration::from_millis(200);
        let mut last: String;
        loop {
            if self.ctx.is_cancelled() {
                return Err("cancelled while waiting for the VM".into());
            }
            match self.read(HASH_MARKER_PATH).await {
                Ok(Some(h)) if h.trim() == hash => {
                    match self.exec(&["systemctl", "is-active", "haproxy"]).await {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(r) => {
                            last = format!("haproxy is {}", r.out_data.trim());
                            // Our files are in place but HAProxy is not running them. Once
                            // cloud-init has finished (its enable step failed or never ran),
                            // check the config ourselves: a bad config fails the create now,
                            // with HAProxy's message, instead of at the timeout; a good one is
                            // enabled and started.
                            if let Some(msg) = self.recover_haproxy().await? {
                                last = msg;
                            }
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Ok(Some(h)) => last = format!("the VM reports config hash {}", h.trim()),
                Ok(None) => {
                    last = format!("{HASH_MARKER_PATH} does not exist yet (cloud-init running)")
                }
                Err(e) if e.api_kind() == Some(waddle_proxmox::ApiErrorKind::Permission) => {
                    return Err(e.to_string())
                }
                Err(e) if e.is_not_found() || e.is_unreachable() => return Err(e.to_string()),
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(vmid = self.vmid, status = %last, "waiting for the SNI proxy VM");
            if deadline.passed() {
                let ci = match self.exec(&["cloud-init", "status"]).await {
                    Ok(r) => format!("; cloud-init: {}", r.out_data.trim()),
                    Err(_) => String::new(),
                };
                return Err(format!(
                    "deadline {deadline} passed: the VM did not report HAProxy running with config hash {hash}: {last}{ci}"
                ));
            }
            tokio::select! {
                _ = self.ctx.cancelled() => return Err("cancelled while waiting for the VM".into()),
                _ = tokio::time::sleep(interval.min(deadline.remaining())) => {}
            }
            interval = (interval * 2).min(Duration::from_secs(3));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The resource
// ---------------------------------------------------------------------------------------------

/// The `waddle_sni_proxy` resource.
#[derive(Debug, Default, Clone, Copy)]
pub struct SniProxy;

fn strip_unit(s: &str) -> Option<u64> {
    waddle_proxmox::props::parse_disk_size(s)
}

/// Refresh VM-level attributes from the VM config (returns the seed ISO attached as ide2).
fn refresh_from_config(state: &mut SniProxyState, cfg: &VmConfig, importing: bool) {
    if let Some(n) = cfg.get_str("name") {
        state.name = Some(n);
    }
    if let Some(c) = cfg.get_str("cores").and_then(|c| c.parse().ok()) {
        state.cores = Some(c);
    }
    if let Some(m) = cfg.get_str("memory").and_then(|m| m.parse().ok()) {
        state.memory = Some(m);
    }
    // NICs: only the bridges are visible in Proxmox (the addresses live in cloud-init), so an
    // imported state leaves the NIC objects null and adopts them from the configuration.
    let nets = cfg.nets();
    if let (Some(b), Some(n)) = (
        nets.get(&0).and_then(|n| n.bridge.clone()),
        &mut state.public_nic,
    ) {
        n.bridge = b;
    }
    if let (Some(b), Some(n)) = (
        nets.get(&1).and_then(|n| n.bridge.clone()),
        &mut state.private_nic,
    ) {
        n.bridge = b;
    }
    if let Some(disk) = cfg.get_str("scsi0") {
        let props = waddle_proxmox::props::parse_property_string(&disk, Some("file"));
        for (k, v) in props {
            match k.as_str() {
                "file" => {
                    if let Some((s, _)) = v.split_once(':') {
                        state.storage = Some(s.to_string());
                    }
                }
                "size" if importing => {
                    if let Some(b) = strip_unit(&v) {
                        state.disk_size = Some(b.div_ceil(1 << 30) as u32);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(cd) = cfg.get_str("ide2") {
        let vol = cd.split(',').next().unwrap_or_default().to_string();
        if vol.contains(":iso/") {
            if importing {
                if let Some((s, _)) = vol.split_once(':') {
                    state.image_storage = Some(s.to_string());
                }
            }
            state.seed_iso = Some(vol);
        }
    }
}

impl SniProxy {
    /// Read found no VM of ours: while a seed ISO of ours still exists the state is kept
    /// (with an empty `id`, which plans a replacement) so the ISO stays owned; otherwise the
    /// resource is gone.
    async fn vm_gone(
        &self,
        client: &Client,
        node: &str,
        mut st: SniProxyState,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let vmid = st.vmid?;
        let isos = owned::seed_isos(&st, vmid);
        match owned::any_iso_exists(client, node, &isos).await {
            Ok(false) => None,
            Ok(true) => {
                diags.warning(
                    "SNI proxy VM is gone",
                    format!(
                        "VM {vmid} on {node} no longer exists; its seed ISO does. The next apply \
                         re-creates the VM, destroy deletes the ISO."
                    ),
                );
                st.id = Some(String::new());
                st.config_hash = Some(String::new());
                from_typed(&st, diags)
            }
            Err(e) => {
                diags.warning(
                    "SNI proxy VM is gone",
                    format!("VM {vmid} on {node} no longer exists; {e}"),
                );
                st.id = Some(String::new());
                from_typed(&st, diags)
            }
        }
    }

    async fn do_create(
        &self,
        ctx: &Context,
        client: &Client,
        mut st: SniProxyState,
        diags: &mut Diagnostics,
    ) -> Option<SniProxyState> {
        let deadline = Deadline::start(Op::Create, st.timeout(Op::Create));
        let node = match st.node() {
            Ok(n) => n.to_string(),
            Err(e) => {
                fail(diags, "Missing node", e);
                return None;
            }
        };
        let rendered = match st.rendered() {
            Ok(r) => r,
            Err(e) => {
                fail(diags, "Invalid SNI proxy configuration", e);
                return None;
            }
        };
        let image_url = st
            .image_url
            .clone()
            .unwrap_or_else(|| DEFAULT_IMAGE_URL.into());
        let filename = match image_file_name(&image_url) {
            Ok(f) => f,
            Err(e) => {
                diags.error_at(AttributePath::attr("image_url"), "Invalid image URL", e);
                return None;
            }
        };
        let image_storage = st.image_storage().to_string();
        let mut wait = waddle_proxmox::WaitOptions::with_cancel(ctx.cancellation().clone());
        wait.timeout = Some(deadline.remaining());
        // 0. what an interrupted create left, and a VMID taken by somebody else
        let mark = owned::owner_mark(&node, &owned::vm_name(&st));
        if let Err(e) = owned::prepare_create(client, &st, &mark, SHUTDOWN_TIMEOUT).await {
            diags.error_at(AttributePath::attr("vmid"), "Creating the VM failed", e);
            return None;
        }
        // 1. image
        let dl = DownloadUrl {
            content: ContentType::Import,
            filename,
            url: image_url,
            checksum: None,
            verify_certificates: None,
            compression: None,
        };
        let image = match client
            .ensure_image_downloaded(&node, &image_storage, &dl, &wait)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                fail(diags, "Downloading the Debian cloud image failed", e);
                return None;
            }
        };
        // 2. VM
        let (Some(pubnic), Some(privnic)) = (st.public_nic.clone(), st.private_nic.clone()) else {
            fail(
                diags,
                "Invalid configuration",
                "public_nic and private_nic are required",
            );
            return None;
        };
        let name = st.name.clone().unwrap_or_else(|| DEFAULT_NAME.into());
        let mut spec = VmSpec::new(
            &name,
            st.cores.unwrap_or(DEFAULT_CORES as u32),
            st.memory.unwrap_or(DEFAULT_MEMORY as u64),
        );
        spec.vmid = st.vmid;
        let mut disk =
            DiskSpec::import(0, st.storage.as_deref().unwrap_or(DEFAULT_STORAGE), &image);
        disk.size_gib = st.disk_size.unwrap_or(DEFAULT_DISK_SIZE as u32);
        spec.disks.push(disk);
        spec.nets.push(NetSpec::virtio(0, &pubnic.bridge));
        spec.nets.push(NetSpec::virtio(1, &privnic.bridge));
        spec.boot_order = vec!["scsi0".into()];
        spec.tags = vec!["waddle".into(), "sni-proxy".into()];
        spec.description = Some(
            "waddle_sni_proxy: HAProxy SNI passthrough (managed by OpenTofu/Terraform)".into(),
        );
        mark.apply(&mut spec);
        // The public entry point comes back after a host reboot.
        spec.onboot = Some(true);
        let vmid = match client.create_vm_with(&node, &spec, &wait).await {
            Ok(v) => v,
            Err(e) => {
                let Some(vmid) = e.created_vmid() else {
                    fail(diags, "Creating the VM failed", e);
                    return None;
                };
                // The VM exists: recorded (tainted), so the next apply or destroy removes it.
                fail(
                    diags,
                    "Creating the SNI proxy VM failed",
                    format!("{e}\nThe VM {vmid} is recorded in the state as tainted."),
                );
                st.vmid = Some(vmid);
                st.id = Some(id_of(&node, vmid));
                st.set_rendered(&rendered);
                return Some(st);
            }
        };
        // From here on the VM exists: every error returns the partial state.
        st.vmid = Some(vmid);
        st.id = Some(id_of(&node, vmid));
        st.set_rendered(&rendered);
        match self
            .finish_create(
                ctx, client, &node, vmid, &mut st, &rendered, &pubnic, &privnic, &name, deadline,
            )
            .await
        {
            Ok(()) => {}
            Err(e) => fail(
                diags,
                "Creating the SNI proxy VM failed",
                format!(
                    "{e}\nThe VM {vmid} exists and is recorded in the state as tainted; the next \
                     apply replaces it and destroy removes it."
                ),
            ),
        }
        Some(st)
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_create(
        &self,
        ctx: &Context,
        client: &Client,
        node: &str,
        vmid: u32,
        st: &mut SniProxyState,
        rendered: &Rendered,
        pubnic: &PublicNic,
        privnic: &PrivateNic,
        name: &str,
        deadline: Deadline,
    ) -> Result<(), String> {
        let cfg = client
            .vm_config(node, vmid)
            .await
            .map_err(|e| format!("reading the VM config: {e}"))?;
        let mac = |i: u8| {
            cfg.net(i)
                .and_then(|n| n.mac)
                .map(|m| m.to_ascii_lowercase())
        };
        let ci = CloudInitSpec {
            hostname: name.to_string(),
            instance_id: format!("waddle-sni-{vmid}"),
            admin_user: st
                .admin_user
                .clone()
                .unwrap_or_else(|| DEFAULT_ADMIN_USER.into()),
            ssh_authorized_keys: st.ssh_authorized_keys.clone().unwrap_or_default(),
            public_nic: NicSpec {
                name: PUBLIC_IFACE.into(),
                mac_address: mac(0),
                cidr: pubnic.cidr.clone(),
                gateway: pubnic.gateway.as_deref().and_then(|g| g.parse().ok()),
            },
            private_nic: NicSpec {
                name: PRIVATE_IFACE.into(),
                mac_address: mac(1),
                cidr: privnic.cidr.clone(),
                gateway: None,
            },
            dns_servers: st
                .dns_servers
                .clone()
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.parse().ok())
                .collect(),
        };
        let seed = waddle_haproxy::render_cloud_init(&ci, rendered)
            .map_err(|e| format!("rendering cloud-init: {e}"))?;
        let iso = waddle_proxmox::nocloud::NoCloudSeed {
            user_data: seed.user_data,
            meta_data: seed.meta_data,
            network_config: Some(seed.network_config),
            vendor_data: None,
        }
        .build_iso(None)
        .map_err(|e| format!("building the seed ISO: {e}"))?;
        let image_storage = st.image_storage().to_string();
        let volid =
            waddle_proxmox::volume_id(&image_storage, ContentType::Iso, &seed_iso_name(vmid));
        // Recorded before the upload: delete removes it whether or not the upload finished.
        st.seed_iso = Some(volid.clone());
        client
            .upload_iso(node, &image_storage, &seed_iso_name(vmid), iso, true)
            .await
            .map_err(|e| format!("uploading the seed ISO: {e}"))?;
        client
            .update_vm_config(
                node,
                vmid,
                &Params::new().str("ide2", format!("{volid},media=cdrom")),
            )
            .await
            .map_err(|e| format!("attaching the seed ISO: {e}"))?;
        client
            .start_vm(node, vmid)
            .await
            .map_err(|e| format!("starting the VM: {e}"))?;
        let guest = Guest {
            client,
            node,
            vmid,
            ctx,
        };
        guest.wait_ready(&rendered.config_hash, deadline).await?;
        guest.keep_inputs(st).await
    }
}

#[async_trait]
impl Resource for SniProxy {
    fn type_name(&self) -> &str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        validate(config, diags);
    }

    async fn modify_plan(
        &self,
        ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        diags: &mut Diagnostics,
    ) {
        if req.is_destroy() {
            return;
        }
        timeouts::plan_as_configured(&req.config, &mut plan.state);
        // Node: provider default when not configured.
        if plan.state.get_attr("node").is_some_and(Value::is_unknown)
            && req.config.get_attr("node").is_some_and(Value::is_null)
        {
            if let Some(cfg) = ctx.provider_data::<ProviderConfig>() {
                match cfg.default_node() {
                    Some(n) => {
                        plan.state
                            .set_path(&AttributePath::attr("node"), Value::from(n));
                    }
                    None if !cfg.unknown.contains(&crate::provider::attr::NODE) => {
                        diags.error_at(
                            AttributePath::attr("node"),
                            "Missing node",
                            format!(
                                "set `node` here, `node` in the provider block, or the {ENV_NODE} \
                                 environment variable"
                            ),
                        );
                    }
                    None => {}
                }
            }
        }
        // vmid given: id is known too.
        if let (Some(n), Some(v)) = (
            set(&plan.state, "node")
                .and_then(Value::as_str)
                .map(str::to_string),
            set(&plan.state, "vmid").and_then(Value::as_i64),
        ) {
            plan.state
                .set_path(&AttributePath::attr("id"), Value::from(format!("{n}/{v}")));
        }
        // Addresses from the CIDRs.
        for (nic, out) in [
            ("public_nic", "public_address"),
            ("private_nic", "private_address"),
        ] {
            if let Some(c) = set(&plan.state, nic)
                .and_then(|n| set(n, "cidr"))
                .and_then(Value::as_str)
            {
                if let Some(ip) = ip_of_cidr(c) {
                    plan.state
                        .set_path(&AttributePath::attr(out), Value::from(ip));
                }
            }
        }
        // Timeouts left out of a configured `proxy_timeouts` object take their defaults.
        let defaults = default_timeouts();
        for name in ["connect", "client", "server", "tunnel", "inspect"] {
            let at = AttributePath::attr("proxy_timeouts").then_attr(name);
            let configured_null = req.config.get_path(&at).is_none_or(Value::is_null);
            if configured_null && plan.state.get_path(&at).is_some_and(Value::is_unknown) {
                if let Some(d) = defaults.get_attr(name) {
                    plan.state.set_path(&at, d.clone());
                }
            }
        }
        // Rendered files when the routing is known (this is also what turns drift into a diff).
        let mut scratch = Diagnostics::new();
        let routing = routing_from(&plan.state, &mut scratch);
        if routing.complete {
            if let Ok(r) = waddle_haproxy::render_versioned(&routing.spec) {
                for (k, v) in [
                    ("haproxy_cfg", r.haproxy_cfg),
                    ("exact_map", r.exact_map),
                    ("wildcard_map", r.wildcard_map),
                    ("config_hash", r.config_hash),
                ] {
                    plan.state.set_path(&AttributePath::attr(k), Value::from(v));
                }
            }
        }
        // Imported (or otherwise unreadable) attributes: a prior null is adopted from the
        // configuration, not a reason to rebuild the VM.
        if !req.is_create() {
            plan.requires_replace.retain(|p| {
                req.prior_state
                    .get_path(p)
                    .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
            });
            // The VM is gone (read keeps the state for its seed ISO): re-create it.
            if req.prior_state.get_attr("id").and_then(Value::as_str) == Some("") {
                let id = AttributePath::attr("id");
                if plan.state.get_attr("id").and_then(Value::as_str) == Some("") {
                    plan.state.set_path(&id, Value::unknown());
                }
                plan.requires_replace.push(id);
            }
        }
    }

    async fn create(
        &self,
        ctx: &Context,
        req: CreateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let (_, client) = crate::clients::proxmox(ctx, diags)?;
        let st = to_typed(&req.planned_state.unknown_as_null(), diags)?;
        let out = self.do_create(ctx, &client, st, diags).await?;
        from_typed(&out, diags)
    }

    async fn read(&self, ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
        let (_, client) = crate::clients::proxmox(ctx, diags)?;
        let mut st = to_typed(&state, diags)?;
        let vmid = st.vmid?;
        let importing = st.routes.is_none() && st.public_nic.is_none();
        let node = match st.node.clone() {
            Some(n) => n,
            None => match client.locate_vm(vmid).await {
                Ok(Some(vm)) => vm.node,
                Ok(None) => return None,
                Err(e) => {
                    fail(diags, "Reading the VM failed", e);
                    return None;
                }
            },
        };
        let cfg = match client.vm_config(&node, vmid).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return self.vm_gone(&client, &node, st, diags).await,
            Err(e) => {
                fail(diags, "Reading the VM failed", e);
                return None;
            }
        };
        // A VM with our VMID that is not ours (ours was deleted by hand and the id reused):
        // ours is gone. An import names its VM explicitly and is taken as is.
        let name = owned::vm_name(&st);
        if !importing
            && owned::owner_mark(&node, &name)
                .check(vmid, &cfg, Some(&name))
                .is_err()
        {
            return self.vm_gone(&client, &node, st, diags).await;
        }
        st.node = Some(node.clone());
        st.id = Some(id_of(&node, vmid));
        refresh_from_config(&mut st, &cfg, importing);
        let running = match client.vm_status(&node, vmid).await {
            Ok(s) => s.is_running(),
            Err(e) if e.is_not_found() => return self.vm_gone(&client, &node, st, diags).await,
            Err(e) => {
                fail(diags, "Reading the VM status failed", e);
                return None;
            }
        };
        if !running {
            st.config_hash = Some(String::new());
            diags.warning(
                "SNI proxy VM is not running",
                format!("VM {vmid} on {node} is stopped; the next apply starts it and reapplies the configuration."),
            );
            return from_typed(&st, diags);
        }
        let guest = Guest {
            client: &client,
            node: &node,
            vmid,
            ctx,
        };
        match guest.live().await {
            Ok(Some((cfg, exact, wildcard, hash))) => {
                if st.config_hash.as_deref() != Some(hash.as_str()) {
                    st.haproxy_cfg = Some(cfg);
                    st.exact_map = Some(exact);
                    st.wildcard_map = Some(wildcard);
                    st.config_hash = Some(hash);
                }
            }
            Ok(None) => st.config_hash = Some(String::new()),
            Err(e) => {
                diags.warning(
                    "Cannot read the live HAProxy configuration",
                    format!("guest agent of VM {vmid}: {e}; the recorded config hash is kept"),
                );
            }
        }
        if importing {
            // What Proxmox does not know comes from the inputs the VM keeps; its actual
            // config still wins.
            match guest.read(owned::INPUTS_PATH).await {
                Ok(Some(json)) => {
                    owned::adopt_inputs(&mut st, &json);
                    refresh_from_config(&mut st, &cfg, true);
                }
                Ok(None) => {}
                Err(e) => diags.warning(
                    "Cannot read the SNI proxy's inputs",
                    format!("guest agent of VM {vmid}: {e}; the next plan adopts them from the configuration"),
                ),
            }
        }
        from_typed(&st, diags)
    }

    async fn update(
        &self,
        ctx: &Context,
        req: UpdateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let (_, client) = crate::clients::proxmox(ctx, diags)?;
        let prior = to_typed(&req.prior_state, diags)?;
        let mut st = to_typed(&req.planned_state.unknown_as_null(), diags)?;
        let deadline = Deadline::start(Op::Update, st.timeout(Op::Update));
        // Identity and bookkeeping come from the prior state.
        st.id = prior.id.clone();
        st.node = prior.node.clone().or(st.node);
        st.vmid = prior.vmid.or(st.vmid);
        st.seed_iso = prior.seed_iso.clone();
        let (Ok(node), Some(vmid)) = (st.node().map(str::to_string), st.vmid) else {
            fail(diags, "Internal error", "the prior state has no node/vmid");
            return None;
        };
        let rendered = match st.rendered() {
            Ok(r) => r,
            Err(e) => {
                fail(diags, "Invalid SNI proxy configuration", e);
                return None;
            }
        };
        let guest = Guest {
            client: &client,
            node: &node,
            vmid,
            ctx,
        };
        let result: Result<(), String> = async {
            let mark = owned::owner_mark(&node, &owned::vm_name(&st));
            client
                .mark_vm(&node, vmid, &mark)
                .await
                .map_err(|e| format!("marking the VM as this proxy's: {e}"))?;
            let cfg = client
                .vm_config(&node, vmid)
                .await
                .map_err(|e| format!("reading the VM config: {e}"))?;
            if cfg.get_str("onboot").as_deref() != Some("1") {
                client
                    .update_vm_config(&node, vmid, &Params::new().bool("onboot", true))
                    .await
                    .map_err(|e| format!("setting onboot: {e}"))?;
            }
            let status = client
                .vm_status(&node, vmid)
                .await
                .map_err(|e| format!("reading the VM status: {e}"))?;
            if !status.is_running() {
                client
                    .start_vm(&node, vmid)
                    .await
                    .map_err(|e| format!("starting the VM: {e}"))?;
                client
                    .wait_agent(&node, vmid, deadline.remaining(), Some(ctx.cancellation()))
                    .await
                    .map_err(|e| {
                        format!("waiting for the guest agent (deadline {deadline}): {e}")
                    })?;
            }
            // Which maps does the running config use (to clean them up afterwards)?
            let old_cfg = guest
                .read(&rendered.paths.config)
                .await
                .map_err(|e| format!("reading the live config: {e}"))?;
            guest.apply(&rendered, old_cfg.as_deref()).await?;
            guest.keep_inputs(&st).await
        }
        .await;
        match result {
            Ok(()) => {
                st.set_rendered(&rendered);
                from_typed(&st, diags)
            }
            Err(e) => {
                fail(diags, "Updating the SNI proxy configuration failed", e);
                // The old configuration is still live: keep the prior state.
                from_typed(&prior, diags)
            }
        }
    }

    async fn delete(&self, ctx: &Context, prior_state: Value, diags: &mut Diagnostics) {
        let Some((_, client)) = crate::clients::proxmox(ctx, diags) else {
            return;
        };
        let Some(st) = to_typed(&prior_state, diags) else {
            return;
        };
        let Some(vmid) = st.vmid else {
            return; // nothing was created
        };
        let located = match client.locate_vm(vmid).await {
            Ok(vm) => vm.map(|v| v.node),
            Err(e) => {
                fail(diags, "Locating the VM failed", e);
                return;
            }
        };
        let Some(node) = st.node.clone().or(located.clone()) else {
            return; // no VM, and no node to look for its seed ISO on
        };
        let name = owned::vm_name(&st);
        let mark = owned::owner_mark(&node, &name);
        let deadline = Deadline::start(Op::Delete, st.timeout(Op::Delete));
        let shutdown_timeout = SHUTDOWN_TIMEOUT.min(deadline.remaining());
        // A VM whose mark is not ours is refused (NotOwned) and left alone; a gone VM is fine.
        if located.is_some() {
            if let Err(e) = client
                .shutdown_and_delete_vm(vmid, shutdown_timeout, &mark, Some(&name))
                .await
            {
                fail(diags, "Deleting the VM failed", e);
                return;
            }
        }
        if let Err(e) = owned::delete_isos(&client, &node, &owned::seed_isos(&st, vmid)).await {
            fail(diags, "Deleting the seed ISO failed", e);
        }
    }

    async fn import_state(
        &self,
        _ctx: &Context,
        req: ImportRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let (node, vmid) = match parse_import_id(&req.id) {
            Ok(x) => x,
            Err(e) => {
                diags.error("Invalid import ID", e);
                return None;
            }
        };
        let mut v = schema().null_value();
        v.set_path(&AttributePath::attr("vmid"), Value::from(i64::from(vmid)));
        if let Some(n) = node {
            v.set_path(&AttributePath::attr("id"), Value::from(id_of(&n, vmid)));
            v.set_path(&AttributePath::attr("node"), Value::from(n));
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SniProxyState {
        SniProxyState {
            id: Some("pve/120".into()),
            name: Some("sni-proxy".into()),
            node: Some("pve".into()),
            vmid: Some(120),
            storage: Some("local-lvm".into()),
            cores: Some(1),
            memory: Some(512),
            disk_size: Some(8),
            image_url: Some(DEFAULT_IMAGE_URL.into()),
            image_storage: Some("local".into()),
            public_nic: Some(PublicNic {
                bridge: "vmbr0".into(),
                cidr: "203.0.113.10/24".into(),
                gateway: Some("203.0.113.1".into()),
            }),
            private_nic: Some(PrivateNic {
                bridge: "vmbr1".into(),
                cidr: "10.10.0.10/24".into(),
            }),
            dns_servers: Some(vec!["1.1.1.1".into()]),
            admin_user: Some("waddle".into()),
            ssh_authorized_keys: Some(vec![
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0mVwYk8lYy3oHfB8sOaZcLx9aJ7dQ ops".into(),
            ]),
            routes: Some(vec![Route {
                hostnames: vec![
                    "teleport.example.org".into(),
                    ".teleport.example.org".into(),
                ],
                backend: "10.10.0.2:3080".into(),
                proxy_protocol: Some(false),
                check: Some(true),
            }]),
            http_backend: Some("10.10.0.30:80".into()),
            listen: Some(Listen {
                https: Some(443),
                http: Some(80),
            }),
            maxconn: Some(4096),
            proxy_timeouts: Some(ProxyTimeouts {
                connect: Some("5s".into()),
                client: Some("1m".into()),
                server: Some("1m".into()),
                tunnel: Some("1h".into()),
                inspect: Some("5s".into()),
            }),
            timeouts: Some(super::timeouts::TimeoutsModel {
                create: Some("10m".into()),
                update: Some("20m".into()),
                delete: Some("5m".into()),
            }),
            haproxy_cfg: Some("global\n".into()),
            exact_map: Some("teleport.example.org be_route_0\n".into()),
            wildcard_map: Some(".teleport.example.org be_route_0\n".into()),
            config_hash: Some("ab".repeat(32)),
            public_address: Some("203.0.113.10".into()),
            private_address: Some("10.10.0.10".into()),
            seed_iso: Some("local:iso/waddle-sni-proxy-120-seed.iso".into()),
        }
    }

    fn config_value(mut f: impl FnMut(&mut SniProxyState)) -> Value {
        let mut s = sample();
        for computed in [
            &mut s.id,
            &mut s.haproxy_cfg,
            &mut s.exact_map,
            &mut s.wildcard_map,
            &mut s.config_hash,
            &mut s.public_address,
            &mut s.private_address,
            &mut s.seed_iso,
        ] {
            *computed = None;
        }
        f(&mut s);
        schema().from_typed(&s).unwrap()
    }

    fn errors(v: &Value) -> Vec<(String, String)> {
        let mut d = Diagnostics::new();
        validate(v, &mut d);
        waddle_framework::testing::errors(&d)
    }

    #[test]
    fn schema_and_state_type_agree() {
        assert!(schema().check().is_empty(), "{}", schema().check());
        assert_roundtrip(&schema(), &sample());
    }

    #[test]
    fn schema_descriptions_state_defaults_and_replacement() {
        let s = schema();
        for (name, needle) in [
            ("cores", "Default `1`"),
            ("memory", "Default `512`"),
            ("disk_size", "Default `8`"),
            ("maxconn", "Default `4096`"),
            ("storage", "Default `local-lvm`"),
            ("listen", "443"),
            ("proxy_timeouts", "tunnel = \"1h\""),
        ] {
            let a = s.block.attributes.get(name).unwrap();
            assert!(a.description.contains(needle), "{name}: {}", a.description);
        }
        for name in [
            "node",
            "vmid",
            "storage",
            "image_url",
            "image_storage",
            "public_nic",
            "private_nic",
            "admin_user",
            "ssh_authorized_keys",
            "dns_servers",
            "disk_size",
        ] {
            assert!(
                s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
                "{name} must force replacement"
            );
        }
        for name in [
            "routes",
            "http_backend",
            "listen",
            "maxconn",
            "proxy_timeouts",
        ] {
            assert!(
                !s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
                "{name} is updated in place"
            );
        }
        for a in s.block.attributes.values() {
            assert!(!a.description.is_empty());
        }
    }

    #[test]
    fn a_valid_configuration_has_no_errors() {
        assert_eq!(errors(&config_value(|_| {})), vec![]);
    }

    #[test]
    fn routing_errors_carry_attribute_paths() {
        let v = config_value(|s| {
            s.routes = Some(vec![
                Route {
                    hostnames: vec!["a.example.org".into(), "*.apps.example.org".into()],
                    backend: "10.10.0.2:443".into(),
                    proxy_protocol: None,
                    check: None,
                },
                Route {
                    hostnames: vec![
                        "bad_name.example.org".into(),
                        ".apps.example.org".into(),
                        "*".into(),
                    ],
                    backend: "10.10.0.3".into(),
                    proxy_protocol: None,
                    check: None,
                },
            ]);
            s.http_backend = Some("10.10.0.30:0".into());
            s.maxconn = Some(0);
            s.proxy_timeouts.as_mut().unwrap().tunnel = Some("forever".into());
            s.listen.as_mut().unwrap().http = Some(443);
        });
        let errs = errors(&v);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "routes[1].hostnames[0]",
            "routes[1].hostnames[1]",
            "routes[1].hostnames[2]",
            "routes[1].backend",
            "http_backend",
            "maxconn",
            "proxy_timeouts.tunnel",
        ] {
            assert!(paths.contains(&want), "missing {want} in {errs:?}");
        }
        let dup = errs
            .iter()
            .find(|(p, _)| p == "routes[1].hostnames[1]")
            .unwrap();
        assert!(dup.1.contains("routes[0].hostnames[1]"), "{dup:?}");
    }

    #[test]
    fn vm_errors_carry_attribute_paths() {
        let v = config_value(|s| {
            s.node = Some("-bad".into());
            s.vmid = Some(5);
            s.storage = Some("Local".into());
            s.image_url = Some("https://example.org/debian.iso".into());
            s.public_nic.as_mut().unwrap().cidr = "203.0.113.10".into();
            s.public_nic.as_mut().unwrap().gateway = Some("gw".into());
            s.private_nic.as_mut().unwrap().bridge = "1bad".into();
            s.dns_servers = Some(vec!["one.one".into()]);
            s.admin_user = Some("root".into());
            s.ssh_authorized_keys = Some(vec!["not a key".into()]);
            s.name = Some("bad_host".into());
            s.memory = Some(64);
        });
        let errs = errors(&v);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "node",
            "vmid",
            "storage",
            "image_url",
            "public_nic.cidr",
            "public_nic.gateway",
            "private_nic.bridge",
            "dns_servers[0]",
            "admin_user",
            "ssh_authorized_keys[0]",
            "name",
            "memory",
        ] {
            assert!(paths.contains(&want), "missing {want} in {errs:?}");
        }
    }

    #[test]
    fn unknown_values_are_tolerated_and_known_ones_still_checked() {
        let mut v = config_value(|s| {
            s.routes.as_mut().unwrap().push(Route {
                hostnames: vec!["x.example.org".into()],
                backend: "10.10.0.9".into(),
                proxy_protocol: None,
                check: None,
            });
        });
        // Route 0 backend unknown, keys unknown, public NIC cidr unknown, node unknown.
        v.set_path(
            &AttributePath::attr("routes")
                .then_index(0)
                .then_attr("backend"),
            Value::unknown(),
        );
        v.set_path(
            &AttributePath::attr("ssh_authorized_keys"),
            Value::unknown(),
        );
        v.set_path(
            &AttributePath::attr("public_nic").then_attr("cidr"),
            Value::unknown(),
        );
        v.set_path(&AttributePath::attr("node"), Value::unknown());
        v.set_path(&AttributePath::attr("maxconn"), Value::unknown());
        let errs = errors(&v);
        // Only the known bad backend of route 1, reported at its original index.
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "routes[1].backend");
        // Everything unknown: nothing to report.
        let mut all = schema().null_value();
        for k in ["routes", "public_nic", "private_nic", "ssh_authorized_keys"] {
            all.set_path(&AttributePath::attr(k), Value::unknown());
        }
        assert_eq!(errors(&all), vec![]);
    }

    #[test]
    fn routing_renders_like_the_library() {
        let st = sample();
        let r = st.rendered().unwrap();
        let direct = waddle_haproxy::render_versioned(&st.routing_spec().unwrap()).unwrap();
        assert_eq!(r, direct);
        assert!(r.haproxy_cfg.contains("timeout tunnel 1h"));
        assert!(r.exact_map.contains("teleport.example.org"));
        // The config value path gives the same spec as the typed state.
        let mut d = Diagnostics::new();
        let routing = routing_from(&schema().from_typed(&st).unwrap(), &mut d);
        assert!(routing.complete && d.is_empty());
        assert_eq!(routing.spec, st.routing_spec().unwrap());
    }

    fn provider_ctx(node: Option<&str>) -> Context {
        let cfg = ProviderConfig {
            node: node.map(str::to_string),
            ..Default::default()
        };
        Context::new(
            Default::default(),
            Some(std::sync::Arc::new(cfg) as ProviderData),
            "1.0.3",
        )
    }

    fn run_plan(
        ctx: &Context,
        config: &Value,
        prior: &Value,
        planned: Value,
    ) -> (Plan, Diagnostics) {
        let req = PlanRequest {
            config: config.clone(),
            prior_state: prior.clone(),
            proposed_new_state: planned.clone(),
        };
        let mut plan = Plan {
            state: planned,
            requires_replace: Vec::new(),
        };
        let mut d = Diagnostics::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(SniProxy.modify_plan(ctx, &req, &mut plan, &mut d));
        (plan, d)
    }

    #[test]
    fn create_plan_fills_node_addresses_and_rendered_config() {
        let config = config_value(|s| {
            s.node = None;
            s.vmid = None;
        });
        let mut planned = config.clone();
        for k in [
            "id",
            "node",
            "vmid",
            "haproxy_cfg",
            "exact_map",
            "wildcard_map",
            "config_hash",
            "public_address",
            "private_address",
            "seed_iso",
        ] {
            planned.set_path(&AttributePath::attr(k), Value::unknown());
        }
        let (plan, d) = run_plan(
            &provider_ctx(Some("pve2")),
            &config,
            &Value::Null,
            planned.clone(),
        );
        assert!(d.is_empty(), "{d}");
        let st = &plan.state;
        assert_eq!(st.get_attr("node").and_then(Value::as_str), Some("pve2"));
        assert!(
            st.get_attr("id").unwrap().is_unknown(),
            "id waits for the vmid"
        );
        assert_eq!(
            st.get_attr("public_address").and_then(Value::as_str),
            Some("203.0.113.10")
        );
        assert_eq!(
            st.get_attr("private_address").and_then(Value::as_str),
            Some("10.10.0.10")
        );
        let expected = sample().rendered().unwrap();
        assert_eq!(
            st.get_attr("config_hash").and_then(Value::as_str),
            Some(expected.config_hash.as_str())
        );
        assert_eq!(
            st.get_attr("haproxy_cfg").and_then(Value::as_str),
            Some(expected.haproxy_cfg.as_str())
        );
        // No node anywhere: an error at `node`.
        let (_, d) = run_plan(&provider_ctx(None), &config, &Value::Null, planned.clone());
        assert_eq!(
            d.errors().next().and_then(|e| e.attribute.clone()),
            Some(AttributePath::attr("node"))
        );
        // Routing unknown: rendered outputs stay unknown.
        let mut unknown_routes = planned;
        unknown_routes.set_path(&AttributePath::attr("routes"), Value::unknown());
        let (plan, d) = run_plan(
            &provider_ctx(Some("pve")),
            &config,
            &Value::Null,
            unknown_routes,
        );
        assert!(d.is_empty());
        assert!(plan.state.get_attr("config_hash").unwrap().is_unknown());
    }

    #[test]
    fn drifted_hash_plans_an_update_back_and_imports_do_not_replace() {
        let mut st = sample();
        st.set_rendered(&st.rendered().unwrap());
        let good = schema().from_typed(&st).unwrap();
        let mut drifted = good.clone();
        drifted.set_path(
            &AttributePath::attr("config_hash"),
            Value::from("0".repeat(64)),
        );
        let config = config_value(|_| {});
        let (plan, d) = run_plan(
            &provider_ctx(Some("pve")),
            &config,
            &drifted,
            drifted.clone(),
        );
        assert!(d.is_empty(), "{d}");
        assert_eq!(
            plan.state.get_attr("config_hash").and_then(Value::as_str),
            st.config_hash.as_deref(),
            "the plan puts the expected hash back"
        );
        // An imported prior state (cloud-init inputs null) adopts the configuration without
        // replacement, but a real change of a placement attribute still replaces.
        let mut imported = good.clone();
        for k in [
            "public_nic",
            "private_nic",
            "admin_user",
            "ssh_authorized_keys",
            "image_url",
            "dns_servers",
        ] {
            imported.set_path(&AttributePath::attr(k), Value::Null);
        }
        let req = PlanRequest {
            config: config.clone(),
            prior_state: imported.clone(),
            proposed_new_state: good.clone(),
        };
        let mut plan = Plan {
            state: good.clone(),
            requires_replace: vec![
                AttributePath::attr("public_nic"),
                AttributePath::attr("ssh_authorized_keys"),
                AttributePath::attr("storage"),
            ],
        };
        let mut d = Diagnostics::new();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(SniProxy.modify_plan(&provider_ctx(Some("pve")), &req, &mut plan, &mut d));
        assert_eq!(plan.requires_replace, vec![AttributePath::attr("storage")]);
    }

    #[test]
    fn partial_timeouts_take_defaults_in_the_plan() {
        let mut config = config_value(|s| {
            s.proxy_timeouts = Some(ProxyTimeouts {
                connect: None,
                client: None,
                server: None,
                tunnel: Some("2h".into()),
                inspect: None,
            });
        });
        config.set_path(&AttributePath::attr("node"), Value::from("pve"));
        let mut planned = config.clone();
        for t in ["connect", "client", "server", "inspect"] {
            planned.set_path(
                &AttributePath::attr("proxy_timeouts").then_attr(t),
                Value::unknown(),
            );
        }
        let (plan, d) = run_plan(&provider_ctx(Some("pve")), &config, &Value::Null, planned);
        assert!(d.is_empty(), "{d}");
        let t = plan.state.get_attr("proxy_timeouts").unwrap();
        assert_eq!(t.get_attr("connect").and_then(Value::as_str), Some("5s"));
        assert_eq!(t.get_attr("tunnel").and_then(Value::as_str), Some("2h"));
        let cfg = plan
            .state
            .get_attr("haproxy_cfg")
            .and_then(Value::as_str)
            .unwrap();
        assert!(cfg.contains("timeout tunnel 2h"), "{cfg}");
    }

    #[test]
    fn import_ids() {
        assert_eq!(
            parse_import_id("pve/120").unwrap(),
            (Some("pve".into()), 120)
        );
        assert_eq!(parse_import_id("120").unwrap(), (None, 120));
        for bad in ["pve/", "pve/abc", "99", "-x/120", "a/b/c"] {
            assert!(parse_import_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_names() {
        assert_eq!(
            image_file_name(DEFAULT_IMAGE_URL).unwrap(),
            "debian-12-genericcloud-amd64.qcow2"
        );
        assert!(image_file_name("https://x.org/").is_err());
        assert!(image_file_name("ftp://x.org/a.qcow2").is_err());
        assert!(image_file_name("https://x.org/a.iso").is_err());
    }

    #[test]
    fn config_refresh_reads_vm_attributes() {
        let cfg = VmConfig(
            serde_json::from_value(serde_json::json!({
                "name": "edge",
                "cores": 2,
                "memory": "1024",
                "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr7",
                "net1": "virtio=BC:24:11:00:00:02,bridge=vmbr8",
                "scsi0": "fast:vm-120-disk-0,discard=on,size=10G",
                "ide2": "iso:iso/waddle-sni-proxy-120-seed.iso,media=cdrom"
            }))
            .unwrap(),
        );
        let mut st = sample();
        refresh_from_config(&mut st, &cfg, false);
        assert_eq!(st.name.as_deref(), Some("edge"));
        assert_eq!(st.cores, Some(2));
        assert_eq!(st.memory, Some(1024));
        assert_eq!(st.public_nic.as_ref().unwrap().bridge, "vmbr7");
        assert_eq!(st.private_nic.as_ref().unwrap().bridge, "vmbr8");
        assert_eq!(st.storage.as_deref(), Some("fast"));
        assert_eq!(st.disk_size, Some(8), "not refreshed outside import");
        let mut imported: SniProxyState = schema().null_value().to_typed().unwrap();
        refresh_from_config(&mut imported, &cfg, true);
        assert_eq!(imported.disk_size, Some(10));
        assert_eq!(imported.image_storage.as_deref(), Some("iso"));
        assert!(imported.public_nic.is_none());
    }

    #[test]
    fn golden_v0_state_reads_back() {
        assert_eq!(schema().version, 0);
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/waddle_sni_proxy.v0.json");
        waddle_framework::testing::assert_golden_state(&schema(), &golden, &sample());
    }
}
