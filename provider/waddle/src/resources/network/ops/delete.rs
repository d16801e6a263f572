//! Delete: subnet, vnet (only if it still belongs to the zone), zone, `PUT /cluster/sdn`.
//! Absent objects are skipped.

use waddle_framework::prelude::*;

use super::{client, Error};
use crate::resources::network::model::{api_str, deadline, nonempty, NetworkState};
use crate::resources::timeouts::Op;

pub async fn delete(ctx: &Context, st: NetworkState) -> Result<(), Error> {
    let client = client(ctx)?;
    let deadline = deadline(&st, Op::Delete);
    let zone = nonempty(&st.zone);
    let mut vnet = nonempty(&st.vnet);
    // Only a vnet that still belongs to our zone is ours to delete.
    if let (Some(v), Some(z)) = (vnet, zone) {
        match client.get_sdn_vnet(v).await {
            Ok(Some(o)) if api_str(&o, "zone").as_deref() != Some(z) => vnet = None,
            Ok(None) => vnet = None,
            Ok(Some(_)) => {}
            Err(e) => return Err(Error::new(format!("Reading SDN vnet {v:?} failed"), e)),
        }
    }
    if let (Some(z), Some(v), Some(c)) = (zone, vnet, nonempty(&st.cidr)) {
        client
            .delete_sdn_subnet(z, v, c)
            .await
            .map_err(|e| Error::new(format!("Deleting SDN subnet {c} failed"), e))?;
    }
    if let Some(v) = vnet {
        client
            .delete_sdn_vnet(v)
            .await
            .map_err(|e| Error::new(format!("Deleting SDN vnet {v:?} failed"), e))?;
    }
    if let Some(z) = zone {
        client
            .delete_sdn_zone(z)
            .await
            .map_err(|e| Error::new(format!("Deleting SDN zone {z:?} failed"), e))?;
    }
    // Applied even when everything was already gone: a previous destroy may have deleted
    // the objects and then failed to apply.
    if zone.is_some() || vnet.is_some() {
        client
            .apply_sdn_with(&deadline.wait_options())
            .await
            .map_err(|e| Error::new("Applying the SDN configuration failed", e))?;
    }
    Ok(())
}
