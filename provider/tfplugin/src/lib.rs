//! waddle-tfplugin (work in progress).
