//! Acceptance harness and emulators.
pub mod spec;
