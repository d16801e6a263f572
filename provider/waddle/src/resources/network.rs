//! Resource `waddle_network`: a private, NATed IPv4 network on Proxmox VE built from SDN
//! objects: a `simple` zone, one vnet in it (the Linux bridge VMs attach to) and one subnet
//! with a gateway on the host, optional source NAT to the outside and an optional DHCP range.
//!
//! # Attributes
//! `zone`, `vnet` (SDN ids), `alias`, `cidr`, `gateway` (default: first host of `cidr`),
//! `snat` (default `true`), `dhcp_range` (`{ start, end }`), `nodes` (default: every node);
//! computed `id` = `<zone>/<vnet>` and `bridge` (= the vnet name, usable as a VM NIC bridge).
//!
//! # Replace or update in place
//! * **Replacement**: `zone`, `vnet`, `cidr` (they name the SDN objects).
//! * **In place**: `alias` (vnet `PUT`), `gateway`, `snat`, `dhcp_range` (subnet `PUT`),
//!   `nodes` and the zone's DHCP switch (zone `PUT`), each followed by `PUT /cluster/sdn`.
//!
//! # Lifecycle
//! * **Plan**: ids, CIDR, gateway, DHCP range and node names are checked with attribute paths
//!   before any API call (unknown values are skipped); `gateway`, `id` and `bridge` are planned
//!   from the configuration.
//! * **Create**: zone (`type=simple`, `dhcp=dnsmasq` only with a `dhcp_range`), vnet, subnet,
//!   then `PUT /cluster/sdn` (waits for the reload task). When a step fails, the state returned
//!   with the error records exactly the objects this resource created (an object it did not
//!   create, e.g. because the name is taken, is recorded as `""`), so destroy or the
//!   replacement of the tainted resource removes them and nothing else.
//! * **Read**: nothing left -> removed from state. A missing part (zone, vnet of this zone, or
//!   the subnet) reads as `""` for its id, which plans a replacement. Otherwise `alias`,
//!   `gateway`, `snat`, `dhcp_range` and `nodes` are refreshed (drift shows as an in-place
//!   update). Pending (not yet applied) SDN edits made outside Terraform read as current.
//! * **Delete**: subnet, vnet (only if it still belongs to the zone), zone, `PUT /cluster/sdn`.
//!   Absent objects are skipped.
//! * **Import**: `<zone>/<vnet>`; the vnet's single subnet is adopted.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use waddle_framework::prelude::*;
use waddle_proxmox::{api_path, sdn_subnet_id, Client, Params, SubnetSpec};

use super::timeouts::{self, Deadline, Op, TimeoutsModel};

/// Type name.
pub const TYPE_NAME: &str = "waddle_network";

/// Default deadlines of create, update and delete (`timeouts`).
pub const TIMEOUTS: timeouts::Defaults = timeouts::Defaults {
    create: std::time::Duration::from_secs(5 * 60),
    update: std::time::Duration::from_secs(5 * 60),
    delete: std::time::Duration::from_secs(5 * 60),
};

/// The deadline of `op` on a network in state `st`, started now.
fn deadline(st: &NetworkState, op: Op) -> Deadline {
    Deadline::start(op, TimeoutsModel::get(st.timeouts.as_ref(), op, &TIMEOUTS))
}

/// Maximum length of an SDN zone or vnet id (PVE's `pve-sdn-zone-id` / `pve-sdn-vnet-id`).
pub const SDN_ID_MAX: usize = 8;

/// Example configuration shown in the documentation.
pub const EXAMPLE: &str = r#"# The platform's private network: 10.10.0.0/24 behind NAT, gateway 10.10.0.1 on the
# Proxmox VE host.
resource "waddle_network" "private" {
  zone  = "waddle"
  vnet  = "wdlnet"
  alias = "waddle private network"
  cidr  = "10.10.0.0/24"
  # gateway = "10.10.0.1"  # default: the first host of cidr
  # snat    = true         # default

  # Optional: hand out addresses with dnsmasq (installed on the nodes).
  # dhcp_range = {
  #   start = "10.10.0.100"
  #   end   = "10.10.0.200"
  # }
}

# Attach VM NICs with bridge = waddle_network.private.bridge
output "private_bridge" {
  value = waddle_network.private.bridge
}

# Import an existing simple zone and its vnet:
#   terraform import waddle_network.private waddle/wdlnet
"#;

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// `dhcp_range`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    pub start: String,
    pub end: String,
}

/// The resource state (one field per attribute).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkState {
    pub id: Option<String>,
    pub zone: Option<String>,
    pub vnet: Option<String>,
    pub alias: Option<String>,
    pub cidr: Option<String>,
    pub gateway: Option<String>,
    pub snat: Option<bool>,
    pub dhcp_range: Option<DhcpRange>,
    pub nodes: Option<Vec<String>>,
    pub bridge: Option<String>,
    pub timeouts: Option<TimeoutsModel>,
}

/// The resource schema.
pub fn schema() -> Schema {
    Schema::new(
        "A private, NATed IPv4 network on Proxmox VE, built from SDN objects: a `simple` zone, one \
         vnet in it (a Linux bridge on every node of the zone, named after the vnet) and one \
         subnet whose gateway address lives on that bridge, with source NAT to the outside by \
         default. Every change is activated with `PUT /cluster/sdn`. Attach VMs with \
         `bridge = waddle_network.<name>.bridge`.\n\n\
         Import with `terraform import waddle_network.<name> <zone>/<vnet>` (the vnet's only \
         subnet is adopted).",
    )
    .version(0)
    .attribute(
        "id",
        Attribute::string()
            .computed()
            .use_state_for_unknown()
            .description("`<zone>/<vnet>` (also the import ID)."),
    )
    .attribute(
        "zone",
        Attribute::string()
            .required()
            .requires_replace()
            .description(
                "SDN zone id (type `simple`, created by this resource): 2-8 characters, a letter \
                 first, then letters or digits (PVE's `pve-sdn-zone-id`). Changing it replaces \
                 the network.",
            ),
    )
    .attribute(
        "vnet",
        Attribute::string()
            .required()
            .requires_replace()
            .description(
                "SDN vnet id, also the name of the bridge on the nodes: 2-8 characters, a letter \
                 first, then letters or digits (PVE's `pve-sdn-vnet-id`); must not be the name of \
                 an existing bridge. No VLAN tag (simple zone). Changing it replaces the network.",
            ),
    )
    .attribute(
        "alias",
        Attribute::string().optional().description(
            "Free-text vnet alias shown in the Proxmox UI (at most 256 characters). Unset \
             (default): none. Updated in place.",
        ),
    )
    .attribute(
        "cidr",
        Attribute::string()
            .required()
            .requires_replace()
            .description(
                "IPv4 subnet in CIDR notation with the host bits zero, prefix length 1-30 (e.g. \
                 `10.10.0.0/24`). Changing it replaces the network.",
            ),
    )
    .attribute(
        "gateway",
        Attribute::string().optional().computed().description(
            "Gateway address of the subnet, configured on the vnet bridge of every node: inside \
             `cidr`, not its network or broadcast address. Default: the first host of `cidr` \
             (`10.10.0.1` for `10.10.0.0/24`). Updated in place.",
        ),
    )
    .attribute(
        "snat",
        Attribute::bool().default(true).description(
            "Source NAT (masquerade) of traffic leaving the subnet through the node's default \
             route. Default `true`. Updated in place.",
        ),
    )
    .attribute(
        "dhcp_range",
        // An object-typed attribute, not a nested attribute: Terraform 1.0's plan crashes on a
        // null single nested attribute.
        Attribute::new(Type::object([("start", Type::String), ("end", Type::String)]))
            .optional()
            .description(
                "DHCP range `{ start = \"10.10.0.100\", end = \"10.10.0.200\" }` (both inside \
                 `cidr`, `end` not before `start`) served by dnsmasq on the vnet (the zone then \
                 gets `dhcp = dnsmasq`, with PVE IPAM; the `dnsmasq` package must be installed on \
                 the nodes). Must not contain the gateway. Unset (default): no DHCP. Updated in \
                 place.",
            ),
    )
    .attribute(
        "nodes",
        Attribute::list_of(Type::String).optional().description(
            "Proxmox VE nodes the zone (and so the bridge) is deployed on. Unset (default): \
             every node of the cluster. Updated in place.",
        ),
    )
    .attribute(
        "bridge",
        Attribute::string()
            .computed()
            .description("Bridge name for VM NICs on this network (the vnet id)."),
    )
    .attribute(
        timeouts::ATTR,
        timeouts::attribute(
            &TIMEOUTS,
            [
                "Deadline of the wait for the SDN reload task of create.",
                "Deadline of the wait for the SDN reload task of an update.",
                "Deadline of the wait for the SDN reload task of destroy.",
            ],
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Validation (pure)
// ---------------------------------------------------------------------------------------------

/// An SDN zone/vnet id as PVE parses it: `^[a-z][a-z0-9]*[a-z0-9]$` (case-insensitive), at most
/// 8 characters.
pub fn validate_sdn_id(id: &str) -> Result<(), String> {
    let b = id.as_bytes();
    if b.len() < 2 || b.len() > SDN_ID_MAX {
        return Err(format!(
            "{id:?} must be 2 to {SDN_ID_MAX} characters long (Proxmox SDN ids are short)"
        ));
    }
    if !b[0].is_ascii_alphabetic() || !b.iter().all(u8::is_ascii_alphanumeric) {
        return Err(format!(
            "{id:?} must start with a letter and contain only letters and digits (no '-', '_' or '.')"
        ));
    }
    Ok(())
}

/// A vnet alias as allowed by the API schema (`[\(\)-_.\w\d\s]{0,256}`).
pub fn validate_alias(alias: &str) -> Result<(), String> {
    if alias.chars().count() > 256 {
        return Err("must be at most 256 characters".into());
    }
    if let Some(c) = alias
        .chars()
        .find(|c| !(c.is_alphanumeric() || c.is_whitespace() || ('('..='_').contains(c)))
    {
        return Err(format!(
            "{c:?} is not allowed (letters, digits, spaces and ()*+,-./:;<=>?@[\\]^_ only)"
        ));
    }
    Ok(())
}

/// An IPv4 network in CIDR notation: (network address, prefix length).
pub fn parse_network(cidr: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} must be ADDRESS/PREFIX, e.g. 10.10.0.0/24"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{cidr:?}: {ip:?} is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (1..=30).contains(l))
        .ok_or_else(|| {
            format!("{cidr:?}: the prefix length must be 1 to 30 (room for a gateway and hosts)")
        })?;
    let mask = mask(len);
    if u32::from(ip) & !mask != 0 {
        let net = Ipv4Addr::from(u32::from(ip) & mask);
        return Err(format!(
            "{cidr:?} has host bits set: the network is {net}/{len}"
        ));
    }
    Ok((ip, len))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// The first host of a network (the default gateway).
pub fn first_host(cidr: &str) -> Option<Ipv4Addr> {
    let (net, _) = parse_network(cidr).ok()?;
    Some(Ipv4Addr::from(u32::from(net) + 1))
}

/// A usable host address of the network (not network, not broadcast).
pub fn check_host(net: (Ipv4Addr, u8), addr: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    let m = mask(net.1);
    let n = u32::from(net.0);
    let cidr = format!("{}/{}", net.0, net.1);
    if u32::from(ip) & m != n {
        return Err(format!("{ip} is not inside {cidr}"));
    }
    if u32::from(ip) == n {
        return Err(format!("{ip} is the network address of {cidr}"));
    }
    if u32::from(ip) == n | !m {
        return Err(format!("{ip} is the broadcast address of {cidr}"));
    }
    Ok(ip)
}

/// A known, non-null attribute.
fn set<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get_attr(name).filter(|x| x.is_set())
}

/// All plan-time checks (no API call). Unknown values are skipped.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    timeouts::validate(config, diags);
    let p = AttributePath::attr;
    for name in ["zone", "vnet"] {
        if let Some(s) = set(config, name).and_then(Value::as_str) {
            if let Err(e) = validate_sdn_id(s) {
                diags.error_at(p(name), "Invalid SDN id", e);
            }
        }
    }
    if let Some(a) = set(config, "alias").and_then(Value::as_str) {
        if let Err(e) = validate_alias(a) {
            diags.error_at(p("alias"), "Invalid vnet alias", e);
        }
    }
    let net = match set(config, "cidr").and_then(Value::as_str) {
        Some(c) => match parse_network(c) {
            Ok(n) => Some(n),
            Err(e) => {
                diags.error_at(p("cidr"), "Invalid CIDR", e);
                None
            }
        },
        None => None,
    };
    let gateway = match (net, set(config, "gateway").and_then(Value::as_str)) {
        (Some(n), Some(g)) => match check_host(n, g) {
            Ok(ip) => Some(ip),
            Err(e) => {
                diags.error_at(p("gateway"), "Invalid gateway", e);
                None
            }
        },
        (None, Some(g)) => {
            if g.parse::<Ipv4Addr>().is_err() {
                diags.error_at(
                    p("gateway"),
                    "Invalid gateway",
                    format!("{g:?} is not an IPv4 address"),
                );
            }
            None
        }
        (Some(n), None) if config.get_attr("gateway").is_some_and(Value::is_null) => {
            Some(Ipv4Addr::from(u32::from(n.0) + 1))
        }
        _ => None,
    };
    if let Some(r) = set(config, "dhcp_range") {
        let rp = p("dhcp_range");
        let mut ends = Vec::new();
        for name in ["start", "end"] {
            let Some(s) = set(r, name).and_then(Value::as_str) else {
                ends.push(None);
                continue;
            };
            let checked = match net {
                Some(n) => check_host(n, s),
                None => s
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("{s:?} is not an IPv4 address")),
            };
            match checked {
                Ok(ip) => ends.push(Some(ip)),
                Err(e) => {
                    diags.error_at(rp.clone().then_attr(name), "Invalid DHCP range", e);
                    ends.push(None);
                }
            }
        }
        if let (Some(Some(a)), Some(Some(b))) = (ends.first(), ends.get(1)) {
            if a > b {
                diags.error_at(
                    rp.clone().then_attr("end"),
                    "Invalid DHCP range",
                    format!("the range ends ({b}) before it starts ({a})"),
                );
            } else if let Some(g) = gateway {
                if (*a..=*b).contains(&g) {
                    diags.error_at(
                        rp.clone(),
                        "Invalid DHCP range",
                        format!("{a}-{b} contains the gateway {g}"),
                    );
                }
            }
        }
    }
    if let Some(list) = set(config, "nodes") {
        let elems = list.as_elements().unwrap_or_default();
        if elems.is_empty() {
            diags.error_at(
                p("nodes"),
                "Invalid nodes",
                "must name at least one node; leave `nodes` unset for every node of the cluster",
            );
        }
        let mut seen = Vec::new();
        for (i, n) in elems.iter().enumerate() {
            if let Some(s) = n.as_str() {
                if let Err(e) = crate::provider::validate_node(s) {
                    diags.error_at(p("nodes").then_index(i as i64), "Invalid node name", e);
                } else if seen.contains(&s) {
                    diags.error_at(
                        p("nodes").then_index(i as i64),
                        "Invalid nodes",
                        format!("{s:?} is listed twice"),
                    );
                }
                seen.push(s);
            }
        }
    }
}

/// Parse an import ID `<zone>/<vnet>`.
pub fn parse_import_id(id: &str) -> Result<(String, String), String> {
    let (z, v) = id
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{id:?}: expected <zone>/<vnet>, e.g. waddle/wdlnet"))?;
    validate_sdn_id(z).map_err(|e| format!("zone: {e}"))?;
    validate_sdn_id(v).map_err(|e| format!("vnet: {e}"))?;
    Ok((z.to_string(), v.to_string()))
}

// ---------------------------------------------------------------------------------------------
// API <-> state
// ---------------------------------------------------------------------------------------------

fn dhcp_param(r: &DhcpRange) -> String {
    format!("start-address={},end-address={}", r.start, r.end)
}

/// `dhcp-range` as PVE returns it: property strings or objects.
fn dhcp_from_api(v: &serde_json::Value) -> Option<DhcpRange> {
    let first = match v {
        serde_json::Value::Array(a) => a.first()?.clone(),
        other => other.clone(),
    };
    let (mut start, mut end) = (None, None);
    match &first {
        serde_json::Value::String(s) => {
            for (k, val) in waddle_proxmox::props::parse_property_string(s, None) {
                match k.as_str() {
                    "start-address" => start = Some(val),
                    "end-address" => end = Some(val),
                    _ => {}
                }
            }
        }
        serde_json::Value::Object(o) => {
            start = o
                .get("start-address")
                .and_then(|x| x.as_str())
                .map(str::to_string);
            end = o
                .get("end-address")
                .and_then(|x| x.as_str())
                .map(str::to_string);
        }
        _ => {}
    }
    Some(DhcpRange {
        start: start?,
        end: end?,
    })
}

fn api_bool(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(serde_json::Value::String(s)) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
        _ => false,
    }
}

fn api_str(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(str::to_string)
}

fn nodes_from_api(zone: &serde_json::Value) -> Option<Vec<String>> {
    let s = api_str(zone, "nodes")?;
    let v: Vec<String> = s
        .split([',', ';', ' '])
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect();
    (!v.is_empty()).then_some(v)
}

fn same_set(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    let norm = |x: &Option<Vec<String>>| {
        let mut v = x.clone().unwrap_or_default();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|x| !x.is_empty())
}

fn from_typed(state: &NetworkState, diags: &mut Diagnostics) -> Option<Value> {
    match schema().from_typed(state) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error("Internal error", format!("encoding {TYPE_NAME} state: {e}"));
            None
        }
    }
}

fn to_typed(v: &Value, diags: &mut Diagnostics) -> Option<NetworkState> {
    match v.to_typed::<NetworkState>() {
        Ok(s) => Some(s),
        Err(e) => {
            diags.error("Internal error", format!("decoding {TYPE_NAME} state: {e}"));
            None
        }
    }
}

/// What exists in Proxmox for a state.
#[derive(Debug, Default)]
struct Found {
    zone: Option<serde_json::Value>,
    vnet: Option<serde_json::Value>,
    subnet: Option<serde_json::Value>,
    /// Every subnet of the vnet (for import).
    subnets: Vec<serde_json::Value>,
}

async fn lookup(
    client: &Client,
    zone: Option<&str>,
    vnet: Option<&str>,
    cidr: Option<&str>,
) -> Result<Found, waddle_proxmox::Error> {
    let mut f = Found::default();
    let Some(zone) = zone else {
        return Ok(f);
    };
    f.zone = client
        .get_sdn_zone(zone)
        .await?
        .filter(|z| api_str(z, "type").is_none_or(|t| t == "simple"));
    let Some(vnet) = vnet else {
        return Ok(f);
    };
    f.vnet = client
        .get_sdn_vnet(vnet)
        .await?
        .filter(|v| api_str(v, "zone").as_deref() == Some(zone));
    if f.vnet.is_none() {
        return Ok(f);
    }
    f.subnets = match client.list_sdn_subnets(vnet).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    if let Some(cidr) = cidr {
        let id = sdn_subnet_id(zone, cidr);
        f.subnet = f
            .subnets
            .iter()
            .find(|s| {
                api_str(s, "cidr").as_deref() == Some(cidr)
                    || api_str(s, "subnet").as_deref() == Some(id.as_str())
            })
            .cloned();
    }
    Ok(f)
}

fn refresh(st: &mut NetworkState, f: &Found) {
    if let Some(z) = &f.zone {
        st.nodes = nodes_from_api(z);
    }
    if let Some(v) = &f.vnet {
        st.alias = api_str(v, "alias").filter(|a| !a.is_empty());
    }
    if let Some(s) = &f.subnet {
        st.gateway = api_str(s, "gateway");
        st.snat = Some(api_bool(s.get("snat")));
        st.dhcp_range = s.get("dhcp-range").and_then(dhcp_from_api);
    }
}

// ---------------------------------------------------------------------------------------------
// The resource
// ---------------------------------------------------------------------------------------------

/// The `waddle_network` resource.
#[derive(Debug, Default, Clone, Copy)]
pub struct Network;

fn api_err(diags: &mut Diagnostics, summary: &str, e: impl std::fmt::Display) {
    diags.error(summary, e.to_string());
}

impl Network {
    /// Create step by step; returns the state of what exists (with blanks for what does not).
    async fn do_create(
        &self,
        client: &Client,
        mut st: NetworkState,
        diags: &mut Diagnostics,
    ) -> Option<NetworkState> {
        let deadline = deadline(&st, Op::Create);
        let (Some(zone), Some(vnet), Some(cidr)) =
            (st.zone.clone(), st.vnet.clone(), st.cidr.clone())
        else {
            diags.error("Invalid configuration", "zone, vnet and cidr are required");
            return None;
        };
        if st.gateway.is_none() {
            st.gateway = first_host(&cidr).map(|g| g.to_string());
        }
        let snat = st.snat.unwrap_or(true);
        st.snat = Some(snat);
        st.id = Some(format!("{zone}/{vnet}"));
        st.bridge = Some(vnet.clone());
        let nodes = st.nodes.clone().unwrap_or_default();

        // 1. zone: on failure nothing of ours exists.
        if let Err(e) = client
            .create_sdn_simple_zone(&zone, st.dhcp_range.is_some(), &nodes)
            .await
        {
            api_err(diags, &format!("Creating SDN zone {zone:?} failed"), e);
            return None;
        }
        let partial = |mut st: NetworkState, vnet_created: bool| {
            if !vnet_created {
                st.vnet = Some(String::new());
                st.bridge = Some(String::new());
                st.id = Some(format!("{zone}/"));
            }
            st.cidr = Some(String::new());
            st
        };
        // 2. vnet
        if let Err(e) = client
            .create_sdn_vnet(&vnet, &zone, nonempty(&st.alias))
            .await
        {
            api_err(
                diags,
                &format!("Creating SDN vnet {vnet:?} failed"),
                format!(
                    "{e}\nThe zone {zone:?} was created and is recorded in the state (tainted); \
                     the next apply or destroy removes it."
                ),
            );
            return Some(partial(st, false));
        }
        // 3. subnet
        let spec = SubnetSpec {
            cidr: cidr.clone(),
            gateway: st.gateway.clone(),
            snat,
            dhcp_ranges: st.dhcp_range.iter().map(dhcp_param).collect(),
        };
        if let Err(e) = client.create_sdn_subnet(&vnet, &spec).await {
            api_err(
                diags,
                &format!("Creating SDN subnet {cidr} failed"),
                format!(
                    "{e}\nThe zone {zone:?} and vnet {vnet:?} were created and are recorded in the \
                     state (tainted); the next apply or destroy removes them."
                ),
            );
            return Some(partial(st, true));
        }
        // 4. apply
        if let Err(e) = client.apply_sdn_with(&deadline.wait_options()).await {
            api_err(
                diags,
                "Applying the SDN configuration failed",
                format!(
                    "{e}\nThe zone, vnet and subnet exist (pending) and are recorded in the state \
                     (tainted); the next apply or destroy removes them."
                ),
            );
        }
        Some(st)
    }

    async fn do_update(
        &self,
        client: &Client,
        prior: &NetworkState,
        st: &NetworkState,
    ) -> Result<(), String> {
        let deadline = deadline(st, Op::Update);
        let zone = nonempty(&prior.zone).ok_or("the prior state has no zone")?;
        let vnet = nonempty(&prior.vnet).ok_or("the prior state has no vnet")?;
        let cidr = nonempty(&prior.cidr).ok_or("the prior state has no subnet")?;
        let dhcp_on = st.dhcp_range.is_some();
        let dhcp_was = prior.dhcp_range.is_some();
        let zone_changed = !same_set(&prior.nodes, &st.nodes) || dhcp_on != dhcp_was;
        let zone_put = || {
            let mut p = Params::new();
            let mut del = Vec::new();
            match &st.nodes {
                Some(n) if !n.is_empty() => p = p.str("nodes", n.join(",")),
                _ => del.push("nodes"),
            }
            if dhcp_on {
                p = p.str("dhcp", "dnsmasq").str("ipam", "pve");
            } else {
                del.push("dhcp");
            }
            if !del.is_empty() {
                p = p.str("delete", del.join(","));
            }
            p
        };
        let zone_path = api_path(&["cluster", "sdn", "zones", zone]);
        // Enabling DHCP: the zone first (a range needs a DHCP zone).
        if zone_changed && dhcp_on {
            client
                .put(&zone_path, &zone_put())
                .await
                .map_err(|e| format!("updating SDN zone {zone:?}: {e}"))?;
        }
        if prior.alias != st.alias {
            let p = match nonempty(&st.alias) {
                Some(a) => Params::new().str("alias", a),
                None => Params::new().str("delete", "alias"),
            };
            client
                .put(&api_path(&["cluster", "sdn", "vnets", vnet]), &p)
                .await
                .map_err(|e| format!("updating SDN vnet {vnet:?}: {e}"))?;
        }
        if prior.gateway != st.gateway || prior.snat != st.snat || prior.dhcp_range != st.dhcp_range
        {
            let mut p = Params::new();
            let mut del = Vec::new();
            match &st.gateway {
                Some(g) => p = p.str("gateway", g),
                None => del.push("gateway"),
            }
            if st.snat.unwrap_or(true) {
                p = p.bool("snat", true);
            } else {
                del.push("snat");
            }
            match &st.dhcp_range {
                Some(r) => p = p.list("dhcp-range", vec![dhcp_param(r)]),
                None => del.push("dhcp-range"),
            }
            if !del.is_empty() {
                p = p.str("delete", del.join(","));
            }
            let id = sdn_subnet_id(zone, cidr);
            client
                .put(
                    &api_path(&["cluster", "sdn", "vnets", vnet, "subnets", &id]),
                    &p,
                )
                .await
                .map_err(|e| format!("updating SDN subnet {cidr}: {e}"))?;
        }
        if zone_changed && !dhcp_on {
            client
                .put(&zone_path, &zone_put())
                .await
                .map_err(|e| format!("updating SDN zone {zone:?}: {e}"))?;
        }
        client
            .apply_sdn_with(&deadline.wait_options())
            .await
            .map_err(|e| format!("applying the SDN configuration (deadline {deadline}): {e}"))
    }
}

#[async_trait]
impl Resource for Network {
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
        _ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        _diags: &mut Diagnostics,
    ) {
        if req.is_destroy() {
            return;
        }
        timeouts::plan_as_configured(&req.config, &mut plan.state);
        let zone = set(&plan.state, "zone")
            .and_then(Value::as_str)
            .map(str::to_string);
        let vnet = set(&plan.state, "vnet")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(v) = &vnet {
            plan.state
                .set_path(&AttributePath::attr("bridge"), Value::from(v.clone()));
        }
        if let (Some(z), Some(v)) = (&zone, &vnet) {
            plan.state
                .set_path(&AttributePath::attr("id"), Value::from(format!("{z}/{v}")));
        }
        if req.config.get_attr("gateway").is_some_and(Value::is_null) {
            if let Some(g) = set(&plan.state, "cidr")
                .and_then(Value::as_str)
                .and_then(first_host)
            {
                plan.state
                    .set_path(&AttributePath::attr("gateway"), Value::from(g.to_string()));
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
        let out = self.do_create(&client, st, diags).await?;
        from_typed(&out, diags)
    }

    async fn read(&self, ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
        let (_, client) = crate::clients::proxmox(ctx, diags)?;
        let mut st = to_typed(&state, diags)?;
        let importing = st.cidr.is_none();
        let found = match lookup(
            &client,
            nonempty(&st.zone),
            nonempty(&st.vnet),
            nonempty(&st.cidr),
        )
        .await
        {
            Ok(f) => f,
            Err(e) => {
                api_err(diags, "Reading the SDN network failed", e);
                return None;
            }
        };
        let mut found = found;
        if importing && found.vnet.is_some() {
            match found.subnets.len() {
                1 => {
                    found.subnet = found.subnets.first().cloned();
                    st.cidr = found.subnet.as_ref().and_then(|s| api_str(s, "cidr"));
                }
                0 => {}
                n => {
                    diags.error(
                        "Cannot import the network",
                        format!(
                            "vnet {:?} has {n} subnets; waddle_network manages exactly one",
                            st.vnet.as_deref().unwrap_or_default()
                        ),
                    );
                    return None;
                }
            }
        }
        if found.zone.is_none() && found.vnet.is_none() && found.subnet.is_none() {
            return None; // gone
        }
        // Missing parts read as "" so the next plan replaces the network.
        if found.zone.is_none() {
            st.zone = Some(String::new());
        }
        if found.vnet.is_none() {
            st.vnet = Some(String::new());
        }
        if found.subnet.is_none() {
            st.cidr = Some(String::new());
        }
        refresh(&mut st, &found);
        if st.snat.is_none() {
            st.snat = Some(true);
        }
        st.bridge = st.vnet.clone();
        st.id = Some(format!(
            "{}/{}",
            st.zone.as_deref().unwrap_or_default(),
            st.vnet.as_deref().unwrap_or_default()
        ));
        if importing {
            // Keep the ids as imported when parts are missing (no replacement surprise for
            // the zone/vnet names themselves).
            if found.zone.is_none() || found.vnet.is_none() {
                diags.warning(
                    "Imported network is incomplete",
                    "the zone or vnet does not exist (or the vnet is in another zone); the next \
                     apply replaces the network",
                );
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
        if st.gateway.is_none() {
            st.gateway = st
                .cidr
                .as_deref()
                .and_then(first_host)
                .map(|g| g.to_string());
        }
        match self.do_update(&client, &prior, &st).await {
            Ok(()) => {
                st.id = prior.id.clone().or(st.id);
                st.bridge = st.vnet.clone();
                from_typed(&st, diags)
            }
            Err(e) => {
                api_err(diags, "Updating the SDN network failed", e);
                // Keep the prior state: the next plan shows the same change and repeats it.
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
        let deadline = deadline(&st, Op::Delete);
        let zone = nonempty(&st.zone);
        let mut vnet = nonempty(&st.vnet);
        // Only a vnet that still belongs to our zone is ours to delete.
        if let (Some(v), Some(z)) = (vnet, zone) {
            match client.get_sdn_vnet(v).await {
                Ok(Some(o)) if api_str(&o, "zone").as_deref() != Some(z) => vnet = None,
                Ok(None) => vnet = None,
                Ok(Some(_)) => {}
                Err(e) => {
                    api_err(diags, &format!("Reading SDN vnet {v:?} failed"), e);
                    return;
                }
            }
        }
        if let (Some(z), Some(v), Some(c)) = (zone, vnet, nonempty(&st.cidr)) {
            if let Err(e) = client.delete_sdn_subnet(z, v, c).await {
                api_err(diags, &format!("Deleting SDN subnet {c} failed"), e);
                return;
            }
        }
        if let Some(v) = vnet {
            if let Err(e) = client.delete_sdn_vnet(v).await {
                api_err(diags, &format!("Deleting SDN vnet {v:?} failed"), e);
                return;
            }
        }
        if let Some(z) = zone {
            if let Err(e) = client.delete_sdn_zone(z).await {
                api_err(diags, &format!("Deleting SDN zone {z:?} failed"), e);
                return;
            }
        }
        // Applied even when everything was already gone: a previous destroy may have deleted
        // the objects and then failed to apply.
        if zone.is_some() || vnet.is_some() {
            if let Err(e) = client.apply_sdn_with(&deadline.wait_options()).await {
                api_err(diags, "Applying the SDN configuration failed", e);
            }
        }
    }

    async fn import_state(
        &self,
        _ctx: &Context,
        req: ImportRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let (zone, vnet) = match parse_import_id(&req.id) {
            Ok(x) => x,
            Err(e) => {
                diags.error("Invalid import ID", e);
                return None;
            }
        };
        let st = NetworkState {
            id: Some(format!("{zone}/{vnet}")),
            zone: Some(zone),
            bridge: Some(vnet.clone()),
            vnet: Some(vnet),
            ..Default::default()
        };
        from_typed(&st, diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waddle_framework::testing::Harness;

    use crate::provider::{NoEnv, WaddleProvider};

    fn sample() -> NetworkState {
        NetworkState {
            id: Some("waddle/wdlnet".into()),
            zone: Some("waddle".into()),
            vnet: Some("wdlnet".into()),
            alias: Some("waddle private".into()),
            cidr: Some("10.10.0.0/24".into()),
            gateway: Some("10.10.0.1".into()),
            snat: Some(true),
            dhcp_range: Some(DhcpRange {
                start: "10.10.0.100".into(),
                end: "10.10.0.200".into(),
            }),
            nodes: Some(vec!["pve".into()]),
            bridge: Some("wdlnet".into()),
            timeouts: Some(super::timeouts::TimeoutsModel {
                create: Some("10m".into()),
                update: Some("20m".into()),
                delete: Some("5m".into()),
            }),
        }
    }

    /// A configuration value (computed attributes null).
    fn config(f: impl FnOnce(&mut NetworkState)) -> Value {
        let mut s = sample();
        s.id = None;
        s.bridge = None;
        s.gateway = None;
        s.dhcp_range = None;
        s.nodes = None;
        s.alias = None;
        f(&mut s);
        schema().from_typed(&s).unwrap()
    }

    fn errors(v: &Value) -> Vec<(String, String)> {
        let mut d = Diagnostics::new();
        validate(v, &mut d);
        waddle_framework::testing::errors(&d)
    }

    fn paths(v: &Value) -> Vec<String> {
        errors(v).into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn schema_and_state_type_agree() {
        assert!(schema().check().is_empty(), "{:?}", schema().check());
        assert_roundtrip(&schema(), &sample());
    }

    #[test]
    fn descriptions_state_defaults_and_replacement() {
        let s = schema();
        for (name, needle) in [
            ("snat", "Default `true`"),
            ("gateway", "first host"),
            ("dhcp_range", "Unset (default): no DHCP"),
            ("nodes", "every node"),
            ("alias", "Unset (default)"),
        ] {
            let a = &s.block.attributes[name];
            assert!(a.description.contains(needle), "{name}: {}", a.description);
        }
        for name in ["zone", "vnet", "cidr"] {
            assert!(
                s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
                "{name} must force replacement"
            );
        }
        for name in ["alias", "gateway", "snat", "dhcp_range", "nodes"] {
            assert!(
                !s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
                "{name} is updated in place"
            );
        }
        assert!(s.block.description.contains("<zone>/<vnet>"));
        // Terraform 1.0 crashes planning a null single nested attribute: plain object type.
        assert!(matches!(
            s.block.attributes["dhcp_range"].ty,
            waddle_framework::AttributeType::Type(_)
        ));
        for a in s.block.attributes.values() {
            assert!(!a.description.is_empty());
        }
    }

    #[test]
    fn sdn_ids_follow_pve() {
        for ok in ["waddle", "z1", "wdlnet", "abcdefgh", "Zone1"] {
            assert!(validate_sdn_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "abcdefghi",
            "1zone",
            "wad-net",
            "wad_net",
            "wad.net",
            "zöne",
        ] {
            assert!(validate_sdn_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_arithmetic() {
        assert_eq!(
            parse_network("10.10.0.0/24").unwrap(),
            (Ipv4Addr::new(10, 10, 0, 0), 24)
        );
        assert_eq!(
            first_host("10.10.0.0/24"),
            Some(Ipv4Addr::new(10, 10, 0, 1))
        );
        assert_eq!(
            first_host("172.16.4.0/22"),
            Some(Ipv4Addr::new(172, 16, 4, 1))
        );
        let e = parse_network("10.10.0.1/24").unwrap_err();
        assert!(e.contains("10.10.0.0/24"), "{e}");
        for bad in [
            "10.10.0.0",
            "10.10.0.0/31",
            "10.10.0.0/0",
            "10.10.0/24",
            "fd00::/64",
            "x/24",
        ] {
            assert!(parse_network(bad).is_err(), "{bad}");
        }
        let net = parse_network("10.10.0.0/24").unwrap();
        assert!(check_host(net, "10.10.0.254").is_ok());
        assert!(check_host(net, "10.10.0.0")
            .unwrap_err()
            .contains("network address"));
        assert!(check_host(net, "10.10.0.255")
            .unwrap_err()
            .contains("broadcast"));
        assert!(check_host(net, "10.10.1.1")
            .unwrap_err()
            .contains("not inside"));
    }

    #[test]
    fn a_valid_configuration_has_no_errors() {
        assert_eq!(errors(&config(|_| {})), vec![]);
        let full = config(|s| {
            s.gateway = Some("10.10.0.254".into());
            s.alias = Some("Waddle (private) net-1".into());
            s.dhcp_range = sample().dhcp_range;
            s.nodes = Some(vec!["pve".into(), "pve2".into()]);
        });
        assert_eq!(errors(&full), vec![]);
    }

    #[test]
    fn errors_carry_attribute_paths() {
        let v = config(|s| {
            s.zone = Some("waddle-zone".into());
            s.vnet = Some("1net".into());
            s.alias = Some("bad{alias}".into());
            s.cidr = Some("10.10.0.5/24".into());
        });
        let p = paths(&v);
        for want in ["zone", "vnet", "alias", "cidr"] {
            assert!(p.contains(&want.to_string()), "missing {want} in {p:?}");
        }
        // Gateway outside / network / broadcast.
        for (gw, needle) in [
            ("10.20.0.1", "not inside"),
            ("10.10.0.0", "network address"),
            ("10.10.0.255", "broadcast"),
            ("ten", "not an IPv4"),
        ] {
            let e = errors(&config(|s| s.gateway = Some(gw.into())));
            assert_eq!(e.len(), 1, "{gw}: {e:?}");
            assert_eq!(e[0].0, "gateway");
            assert!(e[0].1.contains(needle), "{gw}: {}", e[0].1);
        }
        // DHCP range: outside, reversed, containing the (default) gateway.
        let range = |a: &str, b: &str| {
            config(|s| {
                s.dhcp_range = Some(DhcpRange {
                    start: a.into(),
                    end: b.into(),
                })
            })
        };
        assert_eq!(
            paths(&range("10.10.1.10", "10.10.0.20")),
            vec!["dhcp_range.start"]
        );
        assert_eq!(
            paths(&range("10.10.0.10", "10.10.0.255")),
            vec!["dhcp_range.end"]
        );
        assert_eq!(
            paths(&range("10.10.0.50", "10.10.0.20")),
            vec!["dhcp_range.end"]
        );
        let e = errors(&range("10.10.0.1", "10.10.0.20"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "dhcp_range");
        assert!(e[0].1.contains("gateway 10.10.0.1"), "{}", e[0].1);
        // Nodes.
        let e = paths(&config(|s| {
            s.nodes = Some(vec!["pve".into(), "-x".into(), "pve".into()])
        }));
        assert_eq!(e, vec!["nodes[1]", "nodes[2]"]);
        assert_eq!(paths(&config(|s| s.nodes = Some(vec![]))), vec!["nodes"]);
    }

    #[test]
    fn unknown_values_are_skipped_and_known_ones_checked() {
        let mut v = config(|s| s.gateway = Some("10.99.0.1".into()));
        v.set_path(&AttributePath::attr("cidr"), Value::unknown());
        v.set_path(&AttributePath::attr("zone"), Value::unknown());
        assert_eq!(
            errors(&v),
            vec![],
            "gateway cannot be checked against an unknown cidr"
        );
        v.set_path(&AttributePath::attr("vnet"), Value::from("bad-net"));
        assert_eq!(paths(&v), vec!["vnet"]);
        let mut all = schema().null_value();
        for k in ["zone", "vnet", "cidr", "gateway", "dhcp_range", "nodes"] {
            all.set_path(&AttributePath::attr(k), Value::unknown());
        }
        assert_eq!(errors(&all), vec![]);
    }

    #[test]
    fn documented_example_is_the_file_the_docs_use() {
        let path = crate::docs::repo_root().join("examples/resources/waddle_network/resource.tf");
        let file = std::fs::read_to_string(&path).expect("example file");
        assert_eq!(file, EXAMPLE, "{} differs from EXAMPLE", path.display());
    }

    #[test]
    fn import_ids() {
        assert_eq!(
            parse_import_id("waddle/wdlnet").unwrap(),
            ("waddle".into(), "wdlnet".into())
        );
        for bad in [
            "waddle",
            "waddle/",
            "/wdlnet",
            "wad-dle/net1",
            "a/b/c",
            "waddle/toolongvnet",
        ] {
            assert!(parse_import_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_values_are_read_in_both_shapes() {
        use serde_json::json;
        let want = DhcpRange {
            start: "10.10.0.100".into(),
            end: "10.10.0.200".into(),
        };
        assert_eq!(
            dhcp_from_api(&json!([
                "start-address=10.10.0.100,end-address=10.10.0.200"
            ])),
            Some(want.clone())
        );
        assert_eq!(
            dhcp_from_api(&json!([{"start-address": "10.10.0.100", "end-address": "10.10.0.200"}])),
            Some(want)
        );
        assert_eq!(dhcp_from_api(&json!([])), None);
        assert!(
            api_bool(Some(&json!(1)))
                && api_bool(Some(&json!(true)))
                && api_bool(Some(&json!("1")))
        );
        assert!(!api_bool(Some(&json!(0))) && !api_bool(None));
        assert_eq!(
            nodes_from_api(&json!({"nodes": "pve,pve2"})),
            Some(vec!["pve".to_string(), "pve2".to_string()])
        );
        assert!(same_set(
            &Some(vec!["a".into(), "b".into()]),
            &Some(vec!["b".into(), "a".into()])
        ));
        assert!(same_set(&None, &Some(vec![])));
        // Refresh takes drifted values from the API objects.
        let mut st = sample();
        refresh(
            &mut st,
            &Found {
                zone: Some(json!({"zone": "waddle", "type": "simple"})),
                vnet: Some(json!({"vnet": "wdlnet", "zone": "waddle"})),
                subnet: Some(json!({"cidr": "10.10.0.0/24", "gateway": "10.10.0.254"})),
                subnets: vec![],
            },
        );
        assert_eq!(st.snat, Some(false));
        assert_eq!(st.gateway.as_deref(), Some("10.10.0.254"));
        assert_eq!(st.alias, None);
        assert_eq!(st.nodes, None);
        assert_eq!(st.dhcp_range, None);
    }

    async fn harness() -> Harness {
        let h = Harness::new(WaddleProvider::with_env(NoEnv));
        let d = h.configure(crate::provider::schema().null_value()).await;
        assert!(!d.has_errors(), "{d:?}");
        h
    }

    #[tokio::test]
    async fn plans_compute_gateway_id_bridge_and_replacement() {
        let h = harness().await;
        let cfg = config(|_| {});
        let d = h.validate_resource(TYPE_NAME, cfg.clone()).await;
        assert!(d.is_empty(), "{d:?}");
        let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let planned: NetworkState = p.planned_state.to_typed().unwrap();
        assert_eq!(planned.gateway.as_deref(), Some("10.10.0.1"));
        assert_eq!(planned.id.as_deref(), Some("waddle/wdlnet"));
        assert_eq!(planned.bridge.as_deref(), Some("wdlnet"));
        assert_eq!(planned.snat, Some(true));

        // From an existing state: no change, in-place changes, replacing changes.
        let prior = p.planned_state.clone();
        let same = h.plan(TYPE_NAME, &prior, &cfg).await;
        assert!(same.planned_state.equals(&prior), "no-op plan differs");
        assert!(same.requires_replace.is_empty());

        let snat_off = config(|s| s.snat = Some(false));
        let p2 = h.plan(TYPE_NAME, &prior, &snat_off).await;
        assert!(p2.requires_replace.is_empty(), "{:?}", p2.requires_replace);
        let st2: NetworkState = p2.planned_state.to_typed().unwrap();
        assert_eq!(st2.snat, Some(false));
        assert_eq!(st2.gateway.as_deref(), Some("10.10.0.1"));

        let gw = config(|s| s.gateway = Some("10.10.0.254".into()));
        let p3 = h.plan(TYPE_NAME, &prior, &gw).await;
        assert!(p3.requires_replace.is_empty(), "{:?}", p3.requires_replace);

        let moved = config(|s| s.cidr = Some("10.20.0.0/16".into()));
        let p4 = h.plan(TYPE_NAME, &prior, &moved).await;
        assert_eq!(
            p4.requires_replace,
            vec![AttributePath::attr("cidr")],
            "cidr forces replacement"
        );
        let st4: NetworkState = p4.planned_state.to_typed().unwrap();
        assert_eq!(
            st4.gateway.as_deref(),
            Some("10.20.0.1"),
            "gateway follows cidr"
        );

        let renamed = config(|s| s.vnet = Some("other".into()));
        let p5 = h.plan(TYPE_NAME, &prior, &renamed).await;
        assert_eq!(p5.requires_replace, vec![AttributePath::attr("vnet")]);
        let st5: NetworkState = p5.planned_state.to_typed().unwrap();
        assert_eq!(st5.bridge.as_deref(), Some("other"));
        assert_eq!(st5.id.as_deref(), Some("waddle/other"));

        // A part found missing by read ("") plans a replacement.
        let mut broken = prior.clone();
        broken.set_path(&AttributePath::attr("cidr"), Value::from(""));
        let p6 = h.plan(TYPE_NAME, &broken, &cfg).await;
        assert_eq!(p6.requires_replace, vec![AttributePath::attr("cidr")]);

        // Plan-time errors come with paths and before any API call (no endpoint configured).
        let bad = config(|s| s.gateway = Some("10.10.0.255".into()));
        let d = h.validate_resource(TYPE_NAME, bad).await;
        let e: Vec<_> = d.errors().collect();
        assert_eq!(e.len(), 1, "{d:?}");
        assert_eq!(e[0].attribute, Some(AttributePath::attr("gateway")));
    }

    // ---- lifecycle against the PVE emulator (the `waddle-sandbox` binary) --------------------

    /// A `waddle-sandbox` process (the PVE emulator of `acceptance-tests`) on a 127.10.x.y
    /// address. The provider crate must not depend on `waddle-acceptance`, so the emulator is
    /// run as the binary that the workspace build produces; killed on drop.
    struct Sandbox {
        child: std::process::Child,
        env: std::collections::HashMap<String, String>,
        ca_pem: String,
        _dir: TempDir,
    }

    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn sandbox_binary() -> Option<std::path::PathBuf> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| crate::docs::repo_root().join("target"));
        ["debug", "release"]
            .iter()
            .map(|p| target.join(p).join("waddle-sandbox"))
            .find(|p| p.is_file())
    }

    /// The sandbox binary, built on demand: a lifecycle test never passes without running.
    fn sandbox_binary_or_build() -> std::path::PathBuf {
        if let Some(bin) = sandbox_binary() {
            return bin;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "waddle-acceptance",
                "--bin",
                "waddle-sandbox",
            ])
            .current_dir(crate::docs::repo_root())
            .status()
            .expect("run cargo build for waddle-sandbox");
        assert!(status.success(), "building waddle-sandbox failed: {status}");
        sandbox_binary().expect("waddle-sandbox binary after cargo build")
    }

    fn start_sandbox(ip: &str, faults: &[&str]) -> Sandbox {
        let bin = sandbox_binary_or_build();
        let dir = std::env::temp_dir().join(format!(
            "waddle-network-test-{}-{}",
            std::process::id(),
            ip.replace('.', "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);
        let env_file = dir.0.join("sandbox.env");
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("--env-file")
            .arg(&env_file)
            .arg("--listen")
            .arg(format!("{ip}:0"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for f in faults {
            cmd.arg("--fault").arg(f);
        }
        let child = cmd.spawn().expect("spawn waddle-sandbox");
        let mut sb = Sandbox {
            child,
            env: Default::default(),
            ca_pem: String::new(),
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(s) = std::fs::read_to_string(&env_file) {
                sb.env = s
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let ca = &sb.env["PROXMOX_VE_CA_CERT"];
                sb.ca_pem = std::fs::read_to_string(ca).unwrap();
                return sb;
            }
            if let Ok(Some(status)) = sb.child.try_wait() {
                panic!("waddle-sandbox exited early: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("waddle-sandbox did not write its env file");
    }

    impl Sandbox {
        fn provider_config(&self) -> Value {
            let mut c = crate::provider::schema().null_value();
            for (attr, env) in [
                ("endpoint", "PROXMOX_VE_ENDPOINT"),
                ("api_token", "PROXMOX_VE_API_TOKEN"),
                ("node", "PROXMOX_VE_NODE"),
            ] {
                c.set_path(
                    &AttributePath::attr(attr),
                    Value::from(self.env[env].clone()),
                );
            }
            c.set_path(
                &AttributePath::attr("ca_cert"),
                Value::from(self.ca_pem.clone()),
            );
            c
        }

        fn client(&self) -> Client {
            let cfg = crate::provider::ProviderConfig {
                endpoint: Some(self.env["PROXMOX_VE_ENDPOINT"].clone()),
                api_token: Some(
                    waddle_proxmox::ApiToken::parse(&self.env["PROXMOX_VE_API_TOKEN"]).unwrap(),
                ),
                ca_cert: Some(self.ca_pem.clone()),
                ..Default::default()
            };
            cfg.proxmox_client().unwrap()
        }

        async fn harness(&self) -> Harness {
            let h = Harness::new(WaddleProvider::with_env(NoEnv));
            let d = h.configure(self.provider_config()).await;
            assert!(!d.has_errors(), "{d:?}");
            h
        }
    }

    /// (zones, vnets, subnets of `vnet`) in the emulator, pending view.
    async fn sdn_objects(
        c: &Client,
        vnet: &str,
    ) -> (Vec<String>, Vec<String>, Vec<serde_json::Value>) {
        let names = |v: serde_json::Value, k: &str| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|o| api_str(o, k)).collect())
                .unwrap_or_default()
        };
        let zones: serde_json::Value = c.get("/cluster/sdn/zones", &Params::new()).await.unwrap();
        let vnets: serde_json::Value = c.get("/cluster/sdn/vnets", &Params::new()).await.unwrap();
        let subnets = match c.list_sdn_subnets(vnet).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => vec![],
            Err(e) => panic!("{e}"),
        };
        (names(zones, "zone"), names(vnets, "vnet"), subnets)
    }

    async fn applied(c: &Client) -> bool {
        // Nothing pending: every object's state is unset in the pending view.
        let zones: serde_json::Value = c
            .get("/cluster/sdn/zones", &Params::new().bool("pending", true))
            .await
            .unwrap();
        let vnets: serde_json::Value = c
            .get("/cluster/sdn/vnets", &Params::new().bool("pending", true))
            .await
            .unwrap();
        [zones, vnets]
            .iter()
            .flat_map(|l| l.as_array().cloned().unwrap_or_default())
            .all(|o| o.get("state").is_none())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lifecycle_against_the_emulator() {
        let sb = start_sandbox("127.10.61.1", &[]);
        let h = sb.harness().await;
        let c = sb.client();
        // No `alias` here: the emulator cannot check the schema's Perl pattern for it yet.
        let cfg = config(|_| {});

        // Create.
        let st = h
            .plan_and_apply(TYPE_NAME, &Value::Null, &cfg)
            .await
            .unwrap_or_else(|d| panic!("create: {d:?}"));
        let typed: NetworkState = st.to_typed().unwrap();
        assert_eq!(typed.id.as_deref(), Some("waddle/wdlnet"));
        assert_eq!(typed.bridge.as_deref(), Some("wdlnet"));
        let (zones, vnets, subnets) = sdn_objects(&c, "wdlnet").await;
        assert_eq!(zones, vec!["waddle"]);
        assert_eq!(vnets, vec!["wdlnet"]);
        assert_eq!(subnets.len(), 1);
        assert_eq!(
            api_str(&subnets[0], "gateway").as_deref(),
            Some("10.10.0.1")
        );
        assert!(api_bool(subnets[0].get("snat")));
        let zone = c.get_sdn_zone("waddle").await.unwrap().unwrap();
        assert_eq!(api_str(&zone, "type").as_deref(), Some("simple"));
        let vnet = c.get_sdn_vnet("wdlnet").await.unwrap().unwrap();
        assert_eq!(api_str(&vnet, "zone").as_deref(), Some("waddle"));
        assert!(vnet.get("tag").is_none(), "simple zone vnets are tag-less");
        assert!(applied(&c).await, "create must apply the SDN configuration");

        // Read: unchanged, then an empty plan.
        let r = h.read(TYPE_NAME, &st).await;
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
        assert!(r.state.equals(&st), "read changed an unchanged network");
        let p = h.plan(TYPE_NAME, &r.state, &cfg).await;
        assert!(
            p.planned_state.equals(&r.state),
            "plan after create is not empty"
        );

        // Drift: snat switched off outside Terraform -> read shows it -> update in place.
        c.put(
            "/cluster/sdn/vnets/wdlnet/subnets/waddle-10.10.0.0-24",
            &Params::new().str("delete", "snat"),
        )
        .await
        .unwrap();
        let r = h.read(TYPE_NAME, &st).await;
        let drifted: NetworkState = r.state.to_typed().unwrap();
        assert_eq!(drifted.snat, Some(false), "drift not detected");
        let p = h.plan(TYPE_NAME, &r.state, &cfg).await;
        assert!(p.requires_replace.is_empty());
        let st = h.apply(TYPE_NAME, &r.state, &cfg, &p.planned_state).await;
        assert!(!st.diagnostics.has_errors(), "{:?}", st.diagnostics);
        let (_, _, subnets) = sdn_objects(&c, "wdlnet").await;
        assert!(api_bool(subnets[0].get("snat")), "drift not repaired");

        // In place: snat off, another gateway, a DHCP range, nodes.
        let cfg2 = config(|s| {
            s.snat = Some(false);
            s.gateway = Some("10.10.0.254".into());
            s.dhcp_range = Some(DhcpRange {
                start: "10.10.0.100".into(),
                end: "10.10.0.200".into(),
            });
            s.nodes = Some(vec!["pve".into()]);
        });
        let st2 = h
            .plan_and_apply(TYPE_NAME, &st.state, &cfg2)
            .await
            .unwrap_or_else(|d| panic!("update: {d:?}"));
        let (_, _, subnets) = sdn_objects(&c, "wdlnet").await;
        assert!(!api_bool(subnets[0].get("snat")));
        assert_eq!(
            api_str(&subnets[0], "gateway").as_deref(),
            Some("10.10.0.254")
        );
        assert_eq!(
            subnets[0].get("dhcp-range").and_then(dhcp_from_api),
            cfg2.to_typed::<NetworkState>().unwrap().dhcp_range
        );
        let zone = c.get_sdn_zone("waddle").await.unwrap().unwrap();
        assert_eq!(api_str(&zone, "dhcp").as_deref(), Some("dnsmasq"));
        assert_eq!(api_str(&zone, "nodes").as_deref(), Some("pve"));
        assert!(applied(&c).await);
        let r = h.read(TYPE_NAME, &st2).await;
        assert!(r.state.equals(&st2), "read after update differs");

        // Import by <zone>/<vnet> gives the same state.
        let mut d = Diagnostics::new();
        let imported = Network
            .import_state(
                &Context::default(),
                ImportRequest {
                    id: "waddle/wdlnet".into(),
                    identity: None,
                },
                &mut d,
            )
            .await
            .unwrap();
        let r = h.read(TYPE_NAME, &imported).await;
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
        // `timeouts` lives only in the configuration: an import cannot know it (the next plan
        // takes it from the configuration, as terraform-plugin-testing's import checks do).
        let mut want = st2.clone();
        want.set_path(&AttributePath::attr("timeouts"), Value::Null);
        assert!(
            r.state.equals(&want),
            "imported {:?} != {:?}",
            r.state,
            want
        );

        // Back to the defaults in place: DHCP off (range, then the zone's dnsmasq), every node.
        let p = h.plan(TYPE_NAME, &st2, &cfg).await;
        assert!(p.requires_replace.is_empty(), "{:?}", p.requires_replace);
        let st3 = h
            .plan_and_apply(TYPE_NAME, &st2, &cfg)
            .await
            .unwrap_or_else(|d| panic!("update back: {d:?}"));
        let (_, _, subnets) = sdn_objects(&c, "wdlnet").await;
        assert!(subnets[0].get("dhcp-range").is_none(), "{:?}", subnets[0]);
        assert!(api_bool(subnets[0].get("snat")));
        assert_eq!(
            api_str(&subnets[0], "gateway").as_deref(),
            Some("10.10.0.1")
        );
        let zone = c.get_sdn_zone("waddle").await.unwrap().unwrap();
        assert!(
            zone.get("dhcp").is_none() && zone.get("nodes").is_none(),
            "{zone}"
        );
        assert!(applied(&c).await);
        let r = h.read(TYPE_NAME, &st3).await;
        assert!(r.state.equals(&st3), "read after update back differs");

        // Destroy: nothing left, applied.
        h.plan_and_apply(TYPE_NAME, &st3, &Value::Null)
            .await
            .unwrap_or_else(|d| panic!("destroy: {d:?}"));
        let (zones, vnets, subnets) = sdn_objects(&c, "wdlnet").await;
        assert!(
            zones.is_empty() && vnets.is_empty() && subnets.is_empty(),
            "{zones:?} {vnets:?} {subnets:?}"
        );
        assert!(
            applied(&c).await,
            "destroy must apply the SDN configuration"
        );
        // Gone -> removed from state.
        let r = h.read(TYPE_NAME, &st3).await;
        assert!(r.state.is_null(), "a deleted network must leave the state");

        // Subnet deleted outside Terraform: read keeps the network but plans a replacement,
        // and destroy removes the rest.
        let st = h
            .plan_and_apply(TYPE_NAME, &Value::Null, &cfg)
            .await
            .unwrap_or_else(|d| panic!("create again: {d:?}"));
        c.delete_sdn_subnet("waddle", "wdlnet", "10.10.0.0/24")
            .await
            .unwrap();
        let r = h.read(TYPE_NAME, &st).await;
        let partial: NetworkState = r.state.to_typed().unwrap();
        assert_eq!(partial.cidr.as_deref(), Some(""));
        assert_eq!(partial.vnet.as_deref(), Some("wdlnet"));
        let p = h.plan(TYPE_NAME, &r.state, &cfg).await;
        assert_eq!(p.requires_replace, vec![AttributePath::attr("cidr")]);
        h.plan_and_apply(TYPE_NAME, &r.state, &Value::Null)
            .await
            .unwrap_or_else(|d| panic!("destroy: {d:?}"));
        let (zones, vnets, subnets) = sdn_objects(&c, "wdlnet").await;
        assert!(zones.is_empty() && vnets.is_empty() && subnets.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_create_records_what_exists_and_destroy_cleans_up() {
        let sb = start_sandbox(
            "127.10.61.2",
            &["POST /cluster/sdn/vnets/{vnet}/subnets=error:500:injected subnet failure@1"],
        );
        let h = sb.harness().await;
        let c = sb.client();
        // A vnet name already taken by another zone's vnet is not ours to delete.
        c.create_sdn_simple_zone("other", false, &[]).await.unwrap();
        c.create_sdn_vnet("taken", "other", None).await.unwrap();

        let cfg = config(|_| {});
        let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
        let a = h
            .apply(TYPE_NAME, &Value::Null, &cfg, &p.planned_state)
            .await;
        assert!(a.diagnostics.has_errors());
        let msg = format!("{:?}", a.diagnostics);
        assert!(msg.contains("injected subnet failure"), "{msg}");
        let partial: NetworkState = a.state.to_typed().unwrap();
        assert_eq!(partial.zone.as_deref(), Some("waddle"));
        assert_eq!(partial.vnet.as_deref(), Some("wdlnet"));
        assert_eq!(
            partial.cidr.as_deref(),
            Some(""),
            "the subnet was not created"
        );
        // The partial state plans a replacement; destroy removes what exists.
        let p = h.plan(TYPE_NAME, &a.state, &cfg).await;
        assert_eq!(p.requires_replace, vec![AttributePath::attr("cidr")]);
        h.plan_and_apply(TYPE_NAME, &a.state, &Value::Null)
            .await
            .unwrap_or_else(|d| panic!("destroy: {d:?}"));
        let (zones, vnets, _) = sdn_objects(&c, "wdlnet").await;
        assert_eq!(zones, vec!["other"]);
        assert_eq!(vnets, vec!["taken"]);

        // vnet name taken: only the zone is recorded, and destroy keeps the foreign vnet.
        let cfg = config(|s| s.vnet = Some("taken".into()));
        let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
        let a = h
            .apply(TYPE_NAME, &Value::Null, &cfg, &p.planned_state)
            .await;
        assert!(a.diagnostics.has_errors());
        let partial: NetworkState = a.state.to_typed().unwrap();
        assert_eq!(partial.zone.as_deref(), Some("waddle"));
        assert_eq!(partial.vnet.as_deref(), Some(""));
        h.plan_and_apply(TYPE_NAME, &a.state, &Value::Null)
            .await
            .unwrap_or_else(|d| panic!("destroy: {d:?}"));
        let (zones, vnets, _) = sdn_objects(&c, "taken").await;
        assert_eq!(zones, vec!["other"]);
        assert_eq!(vnets, vec!["taken"]);
    }

    #[test]
    fn golden_v0_state_reads_back() {
        assert_eq!(schema().version, 0);
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/waddle_network.v0.json");
        waddle_framework::testing::assert_golden_state(&schema(), &golden, &sample());
    }
}
