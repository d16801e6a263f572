//! Provider-defined functions.

pub mod talos_schematic_id;
