//! Executes the introspection call table ([`crate::introspection::calls`]) on the host:
//! dispatches its calls from the root context, reads their answers, and counts and logs how
//! they ended. The requests an ended call releases are handed back to the caller to resume.

use std::time::Duration;

use super::abi::{self, BufferType, LogLevel, MapType};
use super::{log, Shared};

use crate::base::http;
use crate::base::time::UnixSeconds;
use crate::config::Provider;
use crate::decision::IntrospectionNeeded;
use crate::introspection::calls::{Call, Calls, Parked, Waiting};
use crate::introspection::{self, IntrospectionCache, IntrospectionError};
use crate::request::OwnedRequest;

/// One worker's introspection state: the answers, the calls in flight.
pub(crate) struct Introspections {
    pub(crate) cache: IntrospectionCache,
    pub(crate) calls: Calls<OwnedRequest>,
}

impl Introspections {
    pub(crate) fn new() -> Introspections {
        Introspections {
            cache: IntrospectionCache::new(introspection::CACHE_CAPACITY),
            calls: Calls::default(),
        }
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
    let settings = shared
        .config
        .provider(needed.provider)
        .and_then(Provider::introspection);
    let parked = shared.introspections.borrow_mut().calls.park(
        needed.provider,
        needed.token,
        settings,
        (context_id, request),
    )?;
    let Parked::Dispatch { call, pending } = parked else {
        return Ok(());
    };
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
            shared
                .introspections
                .borrow_mut()
                .calls
                .started(pending, id, now);
            Ok(())
        }
        Err(status) => {
            shared.stats.count_introspection_failure();
            log(
                LogLevel::Error,
                context_id,
                &format!(
                    "cannot dispatch the introspection call to upstream {:?}: {status:?}",
                    call.upstream
                ),
            );
            Err(pending.into_request())
        }
    }
}

/// An answer to a call of ours, if `id` is one (`None` otherwise): remembered, counted, and
/// its requests handed back to be decided again.
pub(crate) fn on_call_response(
    shared: &Shared,
    root_context_id: u32,
    id: u32,
    body_size: usize,
    now: UnixSeconds,
) -> Option<Vec<Waiting<OwnedRequest>>> {
    let call = shared.introspections.borrow_mut().calls.answered(id)?;
    let headers = abi::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let answer = if body_size > introspection::MAX_RESPONSE_BYTES {
        Err(IntrospectionError::Malformed)
    } else {
        let body = abi::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        introspection::read_response(http::status_of(&headers), &body)
    };
    Some(finish(shared, root_context_id, call, answer, now))
}

/// Gives up on calls past their deadline; their requests are handed back.
pub(crate) fn tick(
    shared: &Shared,
    root_context_id: u32,
    now: UnixSeconds,
) -> Vec<Waiting<OwnedRequest>> {
    let overdue = shared.introspections.borrow_mut().calls.overdue(now);
    overdue
        .into_iter()
        .flat_map(|call| {
            finish(
                shared,
                root_context_id,
                call,
                Err(IntrospectionError::NoAnswer),
                now,
            )
        })
        .collect()
}

/// Remembers the answer, counts it (or logs the failure), and gives back the requests.
fn finish(
    shared: &Shared,
    root_context_id: u32,
    call: Call<OwnedRequest>,
    answer: Result<introspection::Introspected, IntrospectionError>,
    now: UnixSeconds,
) -> Vec<Waiting<OwnedRequest>> {
    let provider = shared.config.provider(call.provider());
    let settings = provider.and_then(Provider::introspection);
    let finished = {
        let mut state = shared.introspections.borrow_mut();
        Calls::finish(call, answer, settings, &mut state.cache, now)
    };
    match finished.outcome {
        Ok(active) => shared.stats.count_introspection(active),
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
    finished.waiters
}
