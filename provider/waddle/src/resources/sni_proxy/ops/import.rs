//! Import by `<node>/<vmid>` or `<vmid>`: only the identity is set; read fills in what the
//! VM config and the inputs the VM keeps say.

use super::Error;
use crate::resources::sni_proxy::{schema, SniProxyState};
use crate::resources::vm::{self, lifecycle::parse_import_id};

pub fn import(id: &str) -> Result<SniProxyState, Error> {
    let (node, vmid) = parse_import_id(id).map_err(|e| Error::new("Invalid import ID", e))?;
    let mut st: SniProxyState = schema()
        .null_value()
        .to_typed()
        .map_err(|e| Error::new("Internal error", e))?;
    st.vmid = Some(vmid);
    if let Some(n) = node {
        st.id = Some(vm::id_of(&n, vmid));
        st.node = Some(n);
    }
    Ok(st)
}
