//! waddle-talos (work in progress).

pub mod image;
