//! The payload's operations on the VM (`teleport`); create, read, update, delete and import
//! are the shared VM lifecycle (`resources::vm::ops`) around the hooks in `super`.

pub mod teleport;
