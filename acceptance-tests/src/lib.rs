//! Acceptance harness and emulators.
pub mod harness;
pub mod spec;
