//! waddle-talos (work in progress).
