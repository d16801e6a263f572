//! waddle-haproxy (work in progress).
