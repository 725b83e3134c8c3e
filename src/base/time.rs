//! Time as the core sees it: a parameter, never read from a clock here.

/// Seconds since the Unix epoch, as the adapter reads them from the host clock.
pub type UnixSeconds = i64;
