//! The state of `waddle_network` and its mapping from the SDN objects PVE returns.

use serde::{Deserialize, Serialize};
use waddle_proxmox::{sdn_subnet_id, Client};

use super::TIMEOUTS;
use crate::resources::timeouts::{Deadline, Op, TimeoutsModel};

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

/// The deadline of `op` on a network in state `st`, started now.
pub(super) fn deadline(st: &NetworkState, op: Op) -> Deadline {
    Deadline::start(op, TimeoutsModel::get(st.timeouts.as_ref(), op, &TIMEOUTS))
}

pub(super) fn dhcp_param(r: &DhcpRange) -> String {
    format!("start-address={},end-address={}", r.start, r.end)
}

/// `dhcp-range` as PVE returns it: property strings or objects.
pub fn dhcp_from_api(v: &serde_json::Value) -> Option<DhcpRange> {
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

pub fn api_bool(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(serde_json::Value::String(s)) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
        _ => false,
    }
}

pub fn api_str(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(str::to_string)
}

pub(super) fn nodes_from_api(zone: &serde_json::Value) -> Option<Vec<String>> {
    let s = api_str(zone, "nodes")?;
    let v: Vec<String> = s
        .split([',', ';', ' '])
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect();
    (!v.is_empty()).then_some(v)
}

pub(super) fn same_set(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    let norm = |x: &Option<Vec<String>>| {
        let mut v = x.clone().unwrap_or_default();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

pub(super) fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|x| !x.is_empty())
}

/// What exists in Proxmox for a state.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) zone: Option<serde_json::Value>,
    pub(super) vnet: Option<serde_json::Value>,
    pub(super) subnet: Option<serde_json::Value>,
    /// Every subnet of the vnet (for import).
    pub(super) subnets: Vec<serde_json::Value>,
}

pub(super) async fn lookup(
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

pub(super) fn refresh(st: &mut NetworkState, f: &Found) {
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
