//! Acceptance harness and emulators.
pub mod spec;
pub mod harness;
