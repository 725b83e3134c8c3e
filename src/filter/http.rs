//! Per-request adapter: read the request, ask the core, apply the answer — or park the request
//! with the key store until the provider's keys arrive.

use std::rc::Rc;

use super::abi::{self, Action, MapType};

use crate::decision::{Attempt, Decision, Reason, WaitCause};
use crate::request::client_address;

use crate::request::OwnedRequest;

use super::apply::{self, Applied};
use super::{fetch, introspect, resume};
use super::{now_seconds, Shared};

pub(crate) struct AuthnHttpContext {
    context_id: u32,
    shared: Option<Rc<Shared>>,
    waiting: bool,
}

impl AuthnHttpContext {
    pub(crate) fn new(context_id: u32, shared: Option<Rc<Shared>>) -> Self {
        AuthnHttpContext {
            context_id,
            shared,
            waiting: false,
        }
    }
}

impl AuthnHttpContext {
    /// `Pause` while the request is parked with the key store, `Continue` once it was woken.
    /// For the request's body and trailers: while the request waits for keys they wait too,
    /// since a host that delivered them despite the paused headers must not push an
    /// unauthenticated request along.
    pub(crate) fn hold_while_parked(&mut self) -> Action {
        let parked = self.waiting
            && self.shared.as_ref().is_some_and(|shared| {
                shared.sources.borrow().is_parked(self.context_id)
                    || shared
                        .introspections
                        .borrow()
                        .calls
                        .is_parked(self.context_id)
            });
        if parked {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

/// Keys or an address list are unavailable: perhaps only in this worker, so far.
fn is_remote_unavailable(decision: &Decision) -> bool {
    matches!(
        decision,
        Decision::Deny(denial)
            if matches!(denial.reason(), Reason::KeysUnavailable | Reason::AddressListUnavailable)
    )
}

fn action(applied: Applied) -> Action {
    match applied {
        Applied::Forward => Action::Continue,
        // Paused either way: the request must not reach the upstream.
        Applied::Answered => Action::Pause,
    }
}

impl AuthnHttpContext {
    /// The request is over: a request still waiting for keys or an introspection call leaves
    /// the wait list (the call goes on for the others).
    pub(crate) fn on_done(&mut self) {
        if self.waiting {
            if let Some(shared) = &self.shared {
                shared.sources.borrow_mut().forget(self.context_id);
                shared
                    .introspections
                    .borrow_mut()
                    .calls
                    .forget(self.context_id);
            }
        }
    }

    pub(crate) fn on_http_request_headers(&mut self) -> Action {
        let context_id = self.context_id;
        let Some(shared) = self.shared.clone() else {
            return action(apply::fail_closed_unconfigured(
                context_id,
                "no valid configuration is loaded",
            ));
        };
        // Only what authentication reads: every other header would be copied for nothing.
        let config = &shared.config;
        let request = match abi::get_map_where(MapType::HttpRequestHeaders, |name| {
            config.reads_header(name)
        }) {
            Ok(pairs) => {
                // A host call per request: only when a rule looks at the client's address.
                let source_address = if config.reads_source_address() {
                    abi::get_property(&["source", "address"])
                        .ok()
                        .flatten()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .and_then(|text| client_address::parse_source_address(&text))
                } else {
                    None
                };
                OwnedRequest::new(pairs, source_address)
            }
            Err(status) => {
                let message = format!("cannot read request headers: {status:?}");
                return action(apply::fail_closed(&shared, context_id, &message));
            }
        };
        let Some(now) = now_seconds() else {
            return action(apply::fail_closed(
                &shared,
                context_id,
                "cannot read the host clock",
            ));
        };
        let mut decision = shared.decide(&request, now, Attempt::First);
        if is_remote_unavailable(&decision) {
            // Another worker may have fetched them since this worker's last tick.
            fetch::adopt_if_unavailable(&shared, context_id, now);
            decision = shared.decide(&request, now, Attempt::First);
        }
        self.settle(&shared, request, decision, now)
    }

    /// Applies a decision; a request that must wait is parked (with the key store, or on an
    /// introspection call), and one that cannot is decided again at once, a step further.
    fn settle(
        &mut self,
        shared: &Shared,
        request: OwnedRequest,
        decision: Decision,
        now: i64,
    ) -> Action {
        let context_id = self.context_id;
        match decision {
            Decision::Allow(allowed) => action(apply::allow(shared, context_id, &allowed)),
            Decision::Deny(denial) => action(apply::deny(shared, context_id, &denial)),
            Decision::Wait(wait) => {
                let refetch = wait.cause == WaitCause::UnknownKeyId;
                let parked = shared.sources.borrow_mut().park(
                    context_id,
                    wait.source,
                    refetch,
                    request,
                    now,
                );
                match parked {
                    Ok(()) => {
                        self.waiting = true;
                        Action::Pause
                    }
                    // Waiting cannot help (no refetch allowed now): decide again at once, as
                    // after the wait; the token may still need introspecting.
                    Err(request) => {
                        let decision = shared.decide(&request, now, Attempt::AfterWait);
                        self.settle(shared, request, decision, now)
                    }
                }
            }
            Decision::Introspect(needed) => {
                match introspect::park(shared, context_id, needed, request, now) {
                    Ok(()) => {
                        self.waiting = true;
                        Action::Pause
                    }
                    // Too many waiting, or the call could not be made: decide finally (`503`).
                    Err(request) => {
                        let decision = shared.decide(&request, now, Attempt::AfterIntrospection);
                        action(resume::apply_final(shared, context_id, &decision))
                    }
                }
            }
        }
    }
}
