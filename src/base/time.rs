//! Time as the core sees it: a parameter, never read from a clock here.

/// Seconds since the Unix epoch, as the adapter reads them from the host clock.
pub type UnixSeconds = i64;

/// Seconds a dispatched call may take, as the host enforces its timeout, plus a second for
/// the tick's granularity: past this, a call that has not answered never will.
pub fn call_seconds(timeout_ms: u64) -> i64 {
    i64::try_from(timeout_ms.div_ceil(1000))
        .unwrap_or(i64::MAX)
        .saturating_add(1)
}
