//! Data sources.

pub mod talos_image;
