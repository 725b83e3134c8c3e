//! Introspection calls in flight and the requests waiting for them.
//!
//! At most one call per token at a time in a worker: a request presenting a token that is
//! being asked about joins the call. Calls are dispatched from the root context, so a call
//! outlives the request that started it (the others still wait for it). When the answer comes,
//! it is remembered ([`IntrospectionCache`]) and every waiting request is decided again; a call
//! that fails leaves nothing remembered, and its requests get `503`.
//!
//! Bounded: at most [`MAX_CALLS`] calls in flight and [`MAX_WAITING`] requests waiting per
//! worker; past either, a request is decided at once (`503`).

use std::time::Duration;

use super::abi::{self, BufferType, LogLevel, MapType};
use super::keys::{self, OwnedRequest};
use super::{log, Shared};

use crate::base::ids::ProviderIndex;
use crate::base::time::UnixSeconds;
use crate::decision::{Attempt, IntrospectionNeeded};
use crate::introspection::{self, Introspected, IntrospectionCache, IntrospectionError};

/// Calls in flight per worker.
pub(crate) const MAX_CALLS: usize = 1_000;
/// Requests waiting for calls per worker.
pub(crate) const MAX_WAITING: usize = 10_000;

struct Call {
    /// The host's token for the call.
    id: u32,
    provider: ProviderIndex,
    token: String,
    /// Given up on (as failed) after this.
    deadline: UnixSeconds,
    waiters: Vec<(u32, OwnedRequest)>,
}

/// One worker's introspection state: the answers, the calls in flight.
pub(crate) struct Introspections {
    pub(crate) cache: IntrospectionCache,
    calls: Vec<Call>,
}

impl Introspections {
    pub(crate) fn new() -> Introspections {
        Introspections {
            cache: IntrospectionCache::new(introspection::CACHE_CAPACITY),
            calls: Vec::new(),
        }
    }

    pub(crate) fn is_parked(&self, context_id: u32) -> bool {
        self.calls
            .iter()
            .any(|call| call.waiters.iter().any(|(waiter, _)| *waiter == context_id))
    }

    /// The request went away while waiting; its call goes on for the others (and the cache).
    pub(crate) fn forget(&mut self, context_id: u32) {
        for call in &mut self.calls {
            call.waiters.retain(|(waiter, _)| *waiter != context_id);
        }
    }

    fn waiting(&self) -> usize {
        self.calls.iter().map(|call| call.waiters.len()).sum()
    }
}

/// Parks the request on the call about its token, dispatching the call when none is in
/// flight. `Err` gives the request back when it cannot wait (too many waiting or in flight, no
/// such provider, the host refused the call): decide it again now, finally.
pub(crate) fn park(
    shared: &Shared,
    context_id: u32,
    needed: IntrospectionNeeded,
    request: OwnedRequest,
    now: UnixSeconds,
) -> Result<(), OwnedRequest> {
    let mut state = shared.introspections.borrow_mut();
    if state.waiting() >= MAX_WAITING {
        return Err(request);
    }
    if let Some(call) = state
        .calls
        .iter_mut()
        .find(|call| call.provider == needed.provider && call.token == needed.token)
    {
        call.waiters.push((context_id, request));
        return Ok(());
    }
    if state.calls.len() >= MAX_CALLS {
        return Err(request);
    }
    let Some(settings) = shared
        .config
        .providers
        .get(needed.provider)
        .and_then(|provider| provider.introspection.as_ref())
    else {
        return Err(request);
    };
    let call = introspection::request(settings, &needed.token);
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // From the root context: the call must outlive this request, which others may join.
    let dispatched = abi::set_effective_context(shared.root_context_id).and_then(|()| {
        abi::dispatch_http_call_with_body(
            &call.upstream,
            &headers,
            &call.body,
            Duration::from_millis(call.timeout_ms),
        )
    });
    // Back to the request, whose callback this is.
    let _ = abi::set_effective_context(context_id);
    match dispatched {
        Ok(id) => {
            let seconds = i64::try_from(call.timeout_ms.div_ceil(1000)).unwrap_or(i64::MAX);
            state.calls.push(Call {
                id,
                provider: needed.provider,
                token: needed.token,
                deadline: now.saturating_add(seconds).saturating_add(1),
                waiters: vec![(context_id, request)],
            });
            Ok(())
        }
        Err(status) => {
            drop(state);
            shared.stats.count_introspection_failure();
            log(
                LogLevel::Error,
                context_id,
                &format!(
                    "cannot dispatch the introspection call to upstream {:?}: {status:?}",
                    call.upstream
                ),
            );
            Err(request)
        }
    }
}

/// An answer to a call of ours, if `id` is one: remembered, and its requests decided again.
/// Returns whether it was one.
pub(crate) fn on_call_response(
    shared: &Shared,
    root_context_id: u32,
    id: u32,
    body_size: usize,
    now: UnixSeconds,
) -> bool {
    let call = {
        let mut state = shared.introspections.borrow_mut();
        let Some(position) = state.calls.iter().position(|call| call.id == id) else {
            return false;
        };
        state.calls.swap_remove(position)
    };
    let headers = abi::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| value.parse::<u16>().ok());
    let answer = if body_size > introspection::MAX_RESPONSE_BYTES {
        Err(IntrospectionError::Malformed)
    } else {
        let body = abi::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        introspection::read_response(status, &body)
    };
    finish(shared, root_context_id, call, answer, now);
    true
}

/// Gives up on calls past their deadline (a late answer finds nothing to match).
pub(crate) fn tick(shared: &Shared, root_context_id: u32, now: UnixSeconds) {
    let overdue: Vec<Call> = {
        let mut state = shared.introspections.borrow_mut();
        let (overdue, pending) = std::mem::take(&mut state.calls)
            .into_iter()
            .partition(|call| now > call.deadline);
        state.calls = pending;
        overdue
    };
    for call in overdue {
        finish(
            shared,
            root_context_id,
            call,
            Err(IntrospectionError::NoAnswer),
            now,
        );
    }
}

/// A new configuration replaces this one: every waiting request is decided now (`503`).
pub(crate) fn release_all(shared: &Shared, now: UnixSeconds) {
    let calls = std::mem::take(&mut shared.introspections.borrow_mut().calls);
    for call in calls {
        wake_all(shared, &call.waiters, now);
    }
}

/// Remembers the answer (a failure is not remembered), counts it, and decides the waiting
/// requests again.
fn finish(
    shared: &Shared,
    root_context_id: u32,
    call: Call,
    answer: Result<Introspected, IntrospectionError>,
    now: UnixSeconds,
) {
    let provider = shared.config.providers.get(call.provider);
    match answer {
        Ok(answer) => {
            shared
                .stats
                .count_introspection(matches!(answer, Introspected::Active(_)));
            if let Some(settings) = provider.and_then(|provider| provider.introspection.as_ref()) {
                shared.introspections.borrow_mut().cache.insert(
                    call.provider,
                    &call.token,
                    answer,
                    settings,
                    now,
                );
            }
        }
        Err(error) => {
            shared.stats.count_introspection_failure();
            log(
                LogLevel::Warn,
                root_context_id,
                &format!(
                    "provider {:?}: introspection failed: {}",
                    provider.map_or("?", |provider| &*provider.name),
                    error.describe()
                ),
            );
        }
    }
    wake_all(shared, &call.waiters, now);
}

fn wake_all(shared: &Shared, waiters: &[(u32, OwnedRequest)], now: UnixSeconds) {
    for (context_id, request) in waiters {
        keys::wake(
            shared,
            *context_id,
            request,
            now,
            Attempt::AfterIntrospection,
        );
    }
    if !waiters.is_empty() {
        // Hand the host back the root context that called us.
        let _ = abi::set_effective_context(shared.root_context_id);
    }
}
