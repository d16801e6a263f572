//! Acceptance harness and emulators.
pub mod harness;
pub mod mirror;
pub mod pve;
pub mod spec;
pub mod talos;
pub mod teleport;
