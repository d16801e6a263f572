//! Create: zone, vnet, subnet, then `PUT /cluster/sdn`. When a step fails, the state returned
//! with the error records exactly the objects this resource created (an object it did not
//! create is recorded as `""`), so destroy or the replacement removes them and nothing else.

use waddle_framework::prelude::*;
use waddle_proxmox::SubnetSpec;

use super::{client, Error};
use crate::resources::network::first_host;
use crate::resources::network::model::{deadline, dhcp_param, nonempty, NetworkState};
use crate::resources::timeouts::Op;

pub async fn create(ctx: &Context, mut st: NetworkState) -> Result<NetworkState, Error> {
    let client = client(ctx)?;
    let deadline = deadline(&st, Op::Create);
    let (Some(zone), Some(vnet), Some(cidr)) = (st.zone.clone(), st.vnet.clone(), st.cidr.clone())
    else {
        return Err(Error::new(
            "Invalid configuration",
            "zone, vnet and cidr are required",
        ));
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
    client
        .create_sdn_simple_zone(&zone, st.dhcp_range.is_some(), &nodes)
        .await
        .map_err(|e| Error::new(format!("Creating SDN zone {zone:?} failed"), e))?;
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
        return Err(Error::new(
            format!("Creating SDN vnet {vnet:?} failed"),
            format!(
                "{e}\nThe zone {zone:?} was created and is recorded in the state (tainted); \
                 the next apply or destroy removes it."
            ),
        )
        .with_partial(partial(st, false)));
    }
    // 3. subnet
    let spec = SubnetSpec {
        cidr: cidr.clone(),
        gateway: st.gateway.clone(),
        snat,
        dhcp_ranges: st.dhcp_range.iter().map(dhcp_param).collect(),
    };
    if let Err(e) = client.create_sdn_subnet(&vnet, &spec).await {
        return Err(Error::new(
            format!("Creating SDN subnet {cidr} failed"),
            format!(
                "{e}\nThe zone {zone:?} and vnet {vnet:?} were created and are recorded in the \
                 state (tainted); the next apply or destroy removes them."
            ),
        )
        .with_partial(partial(st, true)));
    }
    // 4. apply
    if let Err(e) = client.apply_sdn_with(&deadline.wait_options()).await {
        return Err(Error::new(
            "Applying the SDN configuration failed",
            format!(
                "{e}\nThe zone, vnet and subnet exist (pending) and are recorded in the state \
                 (tainted); the next apply or destroy removes them."
            ),
        )
        .with_partial(st));
    }
    Ok(st)
}
