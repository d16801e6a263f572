//! NoCloud seed ISO (placeholder, see below).
