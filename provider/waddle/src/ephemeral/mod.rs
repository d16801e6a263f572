//! Ephemeral resources: values opened for one CLI run, never stored in a plan or in state.

pub mod talos_kubeconfig;
