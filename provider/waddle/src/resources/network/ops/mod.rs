//! The operations of `waddle_network`, one file each.

pub mod create;
pub mod delete;
pub mod import;
pub mod read;
pub mod update;

use waddle_framework::prelude::*;

use super::NetworkState;

/// A typed error of this resource.
pub type Error = ResourceError<NetworkState>;

/// Why an SDN step failed: the step and the API error.
#[derive(Debug, thiserror::Error)]
pub enum SdnError {
    #[error("the prior state has no {0}")]
    Missing(&'static str),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<waddle_proxmox::Error>,
    },
}

/// A failed API call of step `what`.
pub(super) fn step(what: impl Into<String>) -> impl FnOnce(waddle_proxmox::Error) -> SdnError {
    let what = what.into();
    move |e| SdnError::Api {
        what,
        source: Box::new(e),
    }
}

pub(super) use crate::resources::vm::ops::client;
