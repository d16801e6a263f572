//! The operations of `waddle_sni_proxy`, one file each; `haproxy` is the payload on the VM.

pub mod create;
pub mod delete;
pub mod haproxy;
pub mod import;
pub mod read;
pub mod update;

use waddle_framework::prelude::*;
use waddle_proxmox::Client;

use super::SniProxyState;

/// A typed error of this resource.
pub type Error = ResourceError<SniProxyState>;

/// The Proxmox client of the provider configuration.
pub(super) fn client(ctx: &Context) -> Result<Client, Error> {
    let mut d = Diagnostics::new();
    match crate::clients::proxmox(ctx, &mut d) {
        Some((_, c)) => Ok(c),
        None => Err(match d.errors().next() {
            Some(e) => ResourceError::new(e.summary.clone(), &e.detail),
            None => ResourceError::new("Unconfigured Provider", "no Proxmox VE client"),
        }),
    }
}
