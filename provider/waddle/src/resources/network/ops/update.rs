//! Update in place: the zone (nodes, DHCP switch), the vnet alias and the subnet (gateway,
//! SNAT, DHCP range), in the order DHCP needs, then `PUT /cluster/sdn`. On failure the prior
//! state is kept: the next plan shows the same change and repeats it.

use waddle_framework::prelude::*;
use waddle_proxmox::{api_path, sdn_subnet_id, Client, Params};

use super::{client, step, Error, SdnError};
use crate::resources::network::first_host;
use crate::resources::network::model::{deadline, dhcp_param, nonempty, same_set, NetworkState};
use crate::resources::timeouts::Op;

pub async fn update(
    ctx: &Context,
    prior: NetworkState,
    mut st: NetworkState,
) -> Result<NetworkState, Error> {
    let client = client(ctx)?;
    if st.gateway.is_none() {
        st.gateway = st
            .cidr
            .as_deref()
            .and_then(first_host)
            .map(|g| g.to_string());
    }
    match apply(&client, &prior, &st).await {
        Ok(()) => {
            st.id = prior.id.clone().or(st.id);
            st.bridge = st.vnet.clone();
            Ok(st)
        }
        Err(e) => Err(Error::new("Updating the SDN network failed", e).with_partial(prior)),
    }
}

fn zone_params(st: &NetworkState) -> Params {
    let mut p = Params::new();
    let mut del = Vec::new();
    match &st.nodes {
        Some(n) if !n.is_empty() => p = p.str("nodes", n.join(",")),
        _ => del.push("nodes"),
    }
    if st.dhcp_range.is_some() {
        p = p.str("dhcp", "dnsmasq").str("ipam", "pve");
    } else {
        del.push("dhcp");
    }
    if !del.is_empty() {
        p = p.str("delete", del.join(","));
    }
    p
}

fn subnet_params(st: &NetworkState) -> Params {
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
    p
}

async fn apply(client: &Client, prior: &NetworkState, st: &NetworkState) -> Result<(), SdnError> {
    let deadline = deadline(st, Op::Update);
    let zone = nonempty(&prior.zone).ok_or(SdnError::Missing("zone"))?;
    let vnet = nonempty(&prior.vnet).ok_or(SdnError::Missing("vnet"))?;
    let cidr = nonempty(&prior.cidr).ok_or(SdnError::Missing("subnet"))?;
    let dhcp_on = st.dhcp_range.is_some();
    let zone_changed = !same_set(&prior.nodes, &st.nodes) || dhcp_on != prior.dhcp_range.is_some();
    let zone_path = api_path(&["cluster", "sdn", "zones", zone]);
    // Enabling DHCP: the zone first (a range needs a DHCP zone).
    if zone_changed && dhcp_on {
        client
            .put(&zone_path, &zone_params(st))
            .await
            .map_err(step(format!("updating SDN zone {zone:?}")))?;
    }
    if prior.alias != st.alias {
        let p = match nonempty(&st.alias) {
            Some(a) => Params::new().str("alias", a),
            None => Params::new().str("delete", "alias"),
        };
        client
            .put(&api_path(&["cluster", "sdn", "vnets", vnet]), &p)
            .await
            .map_err(step(format!("updating SDN vnet {vnet:?}")))?;
    }
    if prior.gateway != st.gateway || prior.snat != st.snat || prior.dhcp_range != st.dhcp_range {
        let id = sdn_subnet_id(zone, cidr);
        client
            .put(
                &api_path(&["cluster", "sdn", "vnets", vnet, "subnets", &id]),
                &subnet_params(st),
            )
            .await
            .map_err(step(format!("updating SDN subnet {cidr}")))?;
    }
    if zone_changed && !dhcp_on {
        client
            .put(&zone_path, &zone_params(st))
            .await
            .map_err(step(format!("updating SDN zone {zone:?}")))?;
    }
    client
        .apply_sdn_with(&deadline.wait_options())
        .await
        .map_err(step(format!(
            "applying the SDN configuration (deadline {deadline})"
        )))
}
