//! Resuming requests that waited: each is decided again in its own context, then let go on
//! or answered — or, when its token must now be introspected, parked on that call.

use super::abi::{self, LogLevel};
use super::apply::{self, Applied};
use super::introspect;
use super::{log, Shared};

use crate::base::time::UnixSeconds;
use crate::decision::{Attempt, Decision};
use crate::request::OwnedRequest;

/// Decides the woken requests again (`attempt`: after which wait), then hands the host back
/// the root context that called us.
pub(crate) fn wake_all(
    shared: &Shared,
    waiters: impl IntoIterator<Item = (u32, OwnedRequest)>,
    now: UnixSeconds,
    attempt: Attempt,
) {
    let mut woke = false;
    for (context_id, request) in waiters {
        wake(shared, context_id, request, now, attempt);
        woke = true;
    }
    if woke {
        let _ = abi::set_effective_context(shared.root_context_id);
    }
}

fn wake(
    shared: &Shared,
    context_id: u32,
    request: OwnedRequest,
    now: UnixSeconds,
    attempt: Attempt,
) {
    if abi::set_effective_context(context_id).is_err() {
        return; // The stream is gone.
    }
    let decision = match shared.decide(&request, now, attempt) {
        Decision::Introspect(needed) => {
            match introspect::park(shared, context_id, needed, request, now) {
                Ok(()) => return, // It waits on, for the provider's answer.
                Err(request) => shared.decide(&request, now, Attempt::AfterIntrospection),
            }
        }
        decision => decision,
    };
    if apply_final(shared, context_id, &decision) == Applied::Forward {
        if let Err(status) = abi::resume_http_request() {
            log(
                LogLevel::Error,
                context_id,
                &format!("cannot resume the request: {status:?}"),
            );
        }
    }
}

/// Applies a final decision (after a wait there is no further wait).
pub(crate) fn apply_final(shared: &Shared, context_id: u32, decision: &Decision) -> Applied {
    match decision {
        Decision::Allow(allowed) => apply::allow(shared, context_id, allowed),
        Decision::Deny(denial) => apply::deny(shared, context_id, denial),
        Decision::Wait(_) | Decision::Introspect(_) => {
            apply::fail_closed(shared, context_id, "a request waited twice")
        }
    }
}
