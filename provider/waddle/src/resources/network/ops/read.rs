//! Read: nothing left -> gone. A missing part (zone, vnet of this zone, or the subnet) reads
//! as `""` for its id, which plans a replacement; otherwise the attributes are refreshed
//! (drift shows as an in-place update). An import adopts the vnet's single subnet.

use waddle_framework::prelude::*;

use super::{client, Error};
use crate::resources::network::model::{api_str, lookup, nonempty, refresh, NetworkState};

pub async fn read(
    ctx: &Context,
    mut st: NetworkState,
    diags: &mut Diagnostics,
) -> Result<Option<NetworkState>, Error> {
    let client = client(ctx)?;
    let importing = st.cidr.is_none();
    let mut found = lookup(
        &client,
        nonempty(&st.zone),
        nonempty(&st.vnet),
        nonempty(&st.cidr),
    )
    .await
    .map_err(|e| Error::new("Reading the SDN network failed", e))?;
    if importing && found.vnet.is_some() {
        match found.subnets.len() {
            1 => {
                found.subnet = found.subnets.first().cloned();
                st.cidr = found.subnet.as_ref().and_then(|s| api_str(s, "cidr"));
            }
            0 => {}
            n => {
                return Err(Error::new(
                    "Cannot import the network",
                    format!(
                        "vnet {:?} has {n} subnets; waddle_network manages exactly one",
                        st.vnet.as_deref().unwrap_or_default()
                    ),
                ))
            }
        }
    }
    if found.zone.is_none() && found.vnet.is_none() && found.subnet.is_none() {
        return Ok(None); // gone
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
    // Keep the ids as imported when parts are missing (no replacement surprise for the
    // zone/vnet names themselves).
    if importing && (found.zone.is_none() || found.vnet.is_none()) {
        diags.warning(
            "Imported network is incomplete",
            "the zone or vnet does not exist (or the vnet is in another zone); the next \
             apply replaces the network",
        );
    }
    Ok(Some(st))
}
