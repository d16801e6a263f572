//! waddle-framework: a small terraform-plugin-framework equivalent.
pub mod codec;
pub mod diag;
pub mod number;
pub mod path;
pub mod types;
pub mod value;
