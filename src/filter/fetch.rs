//! Executes the fetch protocol ([`crate::fetch`]) on the host: its shared-data records, the
//! dispatch of its calls and the reading of their answers, the logs and counters of its
//! events, and the wake-ups it asks for. Nothing here decides what to fetch or when.

use std::time::Duration;

use super::abi::{self, BufferType, LogLevel, MapType};
use super::resume;
use super::{log, Shared};

use crate::base::http;
use crate::base::time::UnixSeconds;
use crate::config::{Config, KeySource};
use crate::decision::Attempt;
use crate::fetch::waiting::Waiter;
use crate::fetch::{self, Answer, FetchEvent, Record, Refused, SharedData, SourceSpec, Step};
use crate::fetch::{SourceId, Sources};
use crate::request::OwnedRequest;

/// The host's shared data, proxy-wide.
pub(crate) struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, name: &str) -> Result<Record, Refused> {
        abi::get_shared_data(name).map_err(|_| Refused)
    }

    fn set(&mut self, name: &str, value: &[u8], cas: Option<u32>) -> Result<(), Refused> {
        abi::set_shared_data(name, value, cas).map_err(|_| Refused)
    }
}

/// A value in `0..1000` from the host clock's sub-second part: spreads refreshes across
/// proxies that started together.
fn jitter_permille() -> u64 {
    abi::get_current_time()
        .ok()
        .map_or(0, |elapsed| u64::from(elapsed.subsec_millis()))
}

/// The configuration's remote sources for a worker known in leases as `worker`.
pub(crate) fn sources_of(config: &Config, worker: u64, now: UnixSeconds) -> Sources<OwnedRequest> {
    let providers = config
        .providers()
        .iter()
        .map(|provider| match provider.keys() {
            Some(KeySource::Inline(_)) | None => None,
            Some(KeySource::Remote(settings)) => Some(SourceSpec::keys(
                &provider.name,
                &provider.issuer,
                &provider.algorithms,
                settings,
                now,
                jitter_permille(),
            )),
        })
        .collect();
    let lists = config
        .address_lists()
        .iter()
        .map(|list| SourceSpec::address_list(&list.name, &list.remote, now, jitter_permille()))
        .collect();
    Sources::new(providers, lists, worker)
}

/// This VM's identity in leases, from the proxy-wide counter; without shared data, a
/// clock-derived id, distinct with high odds.
pub(crate) fn worker_id() -> u64 {
    fetch::allocate_worker_id(&mut HostSharedData).unwrap_or_else(|| {
        abi::get_current_time().ok().map_or(u64::MAX, |elapsed| {
            u64::from(elapsed.subsec_nanos()) | (1 << 40)
        })
    })
}

/// The root context's periodic work: each source adopts what other workers published and
/// starts its due fetch or gives up on an overdue one; then the requests whose wait is over
/// are woken.
pub(crate) fn tick(shared: &Shared, root_context_id: u32, now: UnixSeconds) {
    let ids: Vec<SourceId> = shared.sources.borrow().ids().collect();
    for id in ids {
        let step = shared
            .sources
            .borrow_mut()
            .tick_source(id, &mut HostSharedData, now);
        execute(shared, root_context_id, step, now);
        if let Some((age, stale)) = shared.sources.borrow().gauges(id, now) {
            shared.stats.record_source(id.index(), age, stale);
        }
    }
    let ready = shared.sources.borrow_mut().ready_waiters(now);
    wake(shared, ready, now);
}

/// Does what a step asks, in its order: log and count its events, dispatch its fetch (and
/// execute what the protocol makes of the outcome), wake its requests. No borrow of the
/// sources is held here: waking a request decides it, which reads them.
fn execute(shared: &Shared, root_context_id: u32, step: Step<OwnedRequest>, now: UnixSeconds) {
    report(shared, root_context_id, &step.events);
    if let Some(dispatch) = step.dispatch {
        let uri = &dispatch.request.uri;
        let headers = [
            (":method", "GET"),
            (":path", uri.path.as_str()),
            (":authority", uri.authority.as_str()),
            (":scheme", uri.scheme()),
            ("accept", dispatch.accept),
            ("user-agent", "wasm-jwt-authn"),
        ];
        let dispatched = abi::dispatch_http_call(
            &dispatch.request.upstream,
            &headers,
            Duration::from_millis(dispatch.request.timeout_ms),
        );
        if let Err(status) = dispatched {
            log(
                LogLevel::Error,
                root_context_id,
                &format!(
                    "{}: cannot dispatch the fetch to upstream {:?}: {status:?}",
                    shared.sources.borrow().label(dispatch.source),
                    dispatch.request.upstream
                ),
            );
        }
        let next = shared.sources.borrow_mut().dispatched(
            dispatch.source,
            dispatched.map_err(|_| Refused),
            &mut HostSharedData,
            now,
        );
        execute(shared, root_context_id, next, now);
    }
    wake(shared, step.wake, now);
}

fn report(shared: &Shared, root_context_id: u32, events: &[FetchEvent]) {
    for event in events {
        match event {
            FetchEvent::Adopted(kind) => shared.stats.count_adopted(*kind),
            FetchEvent::Succeeded(kind) => shared.stats.count_fetch_success(*kind),
            FetchEvent::Failed { kind, error, .. } => {
                shared.stats.count_fetch_failure(*kind, *error);
            }
            FetchEvent::UnusableRecord { .. }
            | FetchEvent::UnreadableRecord { .. }
            | FetchEvent::SkippedKey { .. } => {}
        }
        if let Some(warning) = event.warning() {
            log(LogLevel::Warn, root_context_id, &warning);
        }
    }
}

fn wake(shared: &Shared, waiters: Vec<Waiter<OwnedRequest>>, now: UnixSeconds) {
    resume::wake_all(
        shared,
        waiters
            .into_iter()
            .map(|waiter| (waiter.context_id, waiter.request)),
        now,
        Attempt::AfterWait,
    );
}

/// The host answered a call; `false` if it is not a fetch of ours (or one given up on).
pub(crate) fn on_call_response(
    shared: &Shared,
    root_context_id: u32,
    token: u32,
    body_size: usize,
    now: UnixSeconds,
) -> bool {
    let Some(id) = shared.sources.borrow().call_of(token) else {
        return false;
    };
    let headers = abi::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = http::status_of(&headers);
    let readable = shared.sources.borrow().readable_body(id, status, body_size);
    let body = readable.map(|size| {
        abi::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    });
    let answer = Answer {
        status,
        body,
        cache_control: http::header_of(&headers, "cache-control").map(str::to_owned),
    };
    let step = shared
        .sources
        .borrow_mut()
        .on_answer(id, answer, &mut HostSharedData, now);
    execute(shared, root_context_id, step, now);
    true
}

/// Before answering `503` for want of keys (or an address list), adopts what other workers
/// published since the last tick (see [`Sources::adopt_if_unavailable`]).
pub(crate) fn adopt_if_unavailable(shared: &Shared, root_context_id: u32, now: UnixSeconds) {
    let events = shared
        .sources
        .borrow_mut()
        .adopt_if_unavailable(&HostSharedData, now);
    report(shared, root_context_id, &events);
}
