//! Acceptance harness and emulators.
