//! The waddle provider.
