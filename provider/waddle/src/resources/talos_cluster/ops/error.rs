//! [`OpError`]: why a step of a `waddle_talos_cluster` operation failed. Each operation turns
//! it into its diagnostic (the operation's summary, this as the detail, the partial state
//! recorded) in one place; see `create`, `update`, `read` and `delete`.

/// Why a step of an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The provider is stopping (Terraform was interrupted).
    #[error("cancelled: the provider is stopping")]
    Stopping,
    /// A retried step stopped because the provider is stopping.
    #[error("{what}: cancelled: the provider is stopping")]
    Cancelled { what: String },
    /// A retried step did not succeed before the operation's deadline.
    #[error("{what}: timed out (the operation's deadline passed); last state: {last}")]
    TimedOut { what: String, last: String },
    /// A retried step failed in a way waiting does not cure.
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
    /// The operation needs Proxmox VE and the provider has no connection to it.
    #[error("the provider has no Proxmox VE connection configured (endpoint/api_token)")]
    NoProxmox,
    /// `machine_secrets_wo` is not a secrets bundle.
    #[error(transparent)]
    Bundle(#[from] super::super::wo::BundleError),
    /// The inputs lines read back from the nodes do not make one cluster.
    #[error(transparent)]
    Merge(#[from] super::super::inputs::MergeError),
    /// A step's failure, described with what it was doing and its cause.
    #[error("{0}")]
    Step(String),
}

impl From<String> for OpError {
    fn from(s: String) -> Self {
        OpError::Step(s)
    }
}

impl From<&str> for OpError {
    fn from(s: &str) -> Self {
        OpError::Step(s.into())
    }
}
