//! waddle-framework (work in progress).
