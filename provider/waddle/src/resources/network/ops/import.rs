//! Import by `<zone>/<vnet>`; read adopts the vnet's single subnet.

use super::Error;
use crate::resources::network::{parse_import_id, NetworkState};

pub fn import(id: &str) -> Result<NetworkState, Error> {
    let (zone, vnet) = parse_import_id(id).map_err(|e| Error::new("Invalid import ID", e))?;
    Ok(NetworkState {
        id: Some(format!("{zone}/{vnet}")),
        zone: Some(zone),
        bridge: Some(vnet.clone()),
        vnet: Some(vnet),
        ..Default::default()
    })
}
