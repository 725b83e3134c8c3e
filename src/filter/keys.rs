//! The worker's key store: one [`KeyFetcher`] per remote provider, the fetch calls in flight,
//! and the requests parked until keys arrive.
//!
//! Workers share keys through host shared data: the worker holding a provider's lease
//! fetches, and publishes what it got ([`SharedKeys`]); every other worker adopts the
//! published version on its next tick instead of fetching. The lease expires, so a worker that
//! stops answering is replaced.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

use crate::config::{Config, KeySource, ProviderIndex};
use crate::decision::{self, Attempt, Decision, RemoteKeyLookup, Wait, WaitCause};
use crate::remote::{
    Document, FetchError, KeyFetcher, KeysNow, Lease, Progress, SharedKeys, MAX_DOCUMENT_BYTES,
};
use crate::token::Request;
use crate::verify::UnixSeconds;

use super::apply::{self, Applied};
use super::{log, Shared};

/// The parts of a request kept while it waits.
#[derive(Debug, Clone)]
pub(crate) struct OwnedRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl OwnedRequest {
    pub(crate) fn from_headers(pairs: Vec<(String, Vec<u8>)>) -> OwnedRequest {
        let headers: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(header, _)| header == name)
                .map_or_else(String::new, |(_, value)| value.clone())
        };
        OwnedRequest {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers,
        }
    }

    pub(crate) fn view(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
        }
    }
}

struct Waiter {
    context_id: u32,
    provider: ProviderIndex,
    /// The provider's key version and ended-fetch count when the request parked: a change of
    /// either wakes it (new keys, or a refetch that failed).
    version: u64,
    fetches_ended: u64,
    deadline: UnixSeconds,
    request: OwnedRequest,
}

pub(crate) struct KeyStore {
    /// Per provider; `None` for inline keys.
    fetchers: Vec<Option<KeyFetcher>>,
    /// Per provider: the shared-data keys of its published keys and its lease.
    shared_keys_key: Vec<String>,
    lease_key: Vec<String>,
    /// The CAS of the published keys last adopted, per provider.
    adopted_cas: Vec<Option<u32>>,
    /// This worker's identity in leases.
    worker: u64,
    calls: Vec<(u32, ProviderIndex, Document)>,
    waiters: Vec<Waiter>,
}

impl RemoteKeyLookup for KeyStore {
    fn keys_now(&self, provider: ProviderIndex, now: UnixSeconds) -> KeysNow<'_> {
        match self.fetchers.get(provider) {
            Some(Some(fetcher)) => fetcher.keys(now),
            _ => KeysNow::Unavailable,
        }
    }
}

impl KeyStore {
    pub(crate) fn new(config: &Config, worker: u64, now: UnixSeconds) -> KeyStore {
        let fetchers = config
            .providers
            .iter()
            .map(|provider| match &provider.keys {
                KeySource::Inline(_) => None,
                KeySource::Remote(remote) => Some(KeyFetcher::new(
                    remote.clone(),
                    &provider.issuer,
                    &provider.algorithms,
                    now,
                    worker.wrapping_mul(389) % 1000,
                )),
            })
            .collect::<Vec<_>>();
        let names = |prefix: &str| {
            config
                .providers
                .iter()
                .map(|provider| format!("wasm_jwt_authn.{prefix}.{}", provider.name))
                .collect::<Vec<_>>()
        };
        KeyStore {
            adopted_cas: vec![None; fetchers.len()],
            fetchers,
            shared_keys_key: names("keys"),
            lease_key: names("lease"),
            worker,
            calls: Vec::new(),
            waiters: Vec::new(),
        }
    }

    pub(crate) fn has_remote_keys(&self) -> bool {
        self.fetchers.iter().any(Option::is_some)
    }

    /// Parks a request until its provider's keys change. `Err` gives the request back when
    /// waiting cannot help (an unknown `kid` within the refetch rate limit): decide again now.
    pub(crate) fn park(
        &mut self,
        context_id: u32,
        wait: Wait,
        request: OwnedRequest,
        now: UnixSeconds,
    ) -> Result<(), OwnedRequest> {
        let Some(Some(fetcher)) = self.fetchers.get_mut(wait.provider) else {
            return Err(request);
        };
        if wait.cause == WaitCause::UnknownKeyId && !fetcher.request_refetch(now) {
            return Err(request);
        }
        let timeout = i64::try_from(fetcher.settings().timeout_ms.div_ceil(1000)).unwrap_or(60);
        self.waiters.push(Waiter {
            context_id,
            provider: wait.provider,
            version: fetcher.version(),
            fetches_ended: fetcher.fetches_ended(),
            // Bounded: the fetch's own timeout plus tick and lease slack.
            deadline: now.saturating_add(timeout).saturating_add(2),
            request,
        });
        Ok(())
    }

    /// The request went away while parked.
    pub(crate) fn forget(&mut self, context_id: u32) {
        self.waiters
            .retain(|waiter| waiter.context_id != context_id);
    }

    /// Takes the parked requests whose wait is over: keys changed, keys became unavailable,
    /// or the deadline passed.
    fn ready_waiters(&mut self, now: UnixSeconds) -> Vec<Waiter> {
        let fetchers = &self.fetchers;
        let (ready, still): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|waiter| {
                let Some(Some(fetcher)) = fetchers.get(waiter.provider) else {
                    return true;
                };
                fetcher.version() != waiter.version
                    || fetcher.fetches_ended() != waiter.fetches_ended
                    || matches!(fetcher.keys(now), KeysNow::Unavailable)
                    || now > waiter.deadline
            });
        self.waiters = still;
        ready
    }
}

/// Decides a woken request again, in its own context, and lets it go on or answers it.
fn wake(shared: &Shared, waiter: &Waiter, now: UnixSeconds) {
    if hostcalls::set_effective_context(waiter.context_id).is_err() {
        return; // The stream is gone.
    }
    let decision = {
        let keys = shared.keys.borrow();
        decision::authenticate(
            &shared.config,
            &*keys,
            &waiter.request.view(),
            now,
            Attempt::AfterWait,
        )
    };
    let applied = apply_decision(shared, waiter.context_id, &decision);
    if applied == Applied::Forward {
        if let Err(status) = hostcalls::resume_http_request() {
            log(
                LogLevel::Error,
                waiter.context_id,
                &format!("cannot resume the request: {status:?}"),
            );
        }
    }
}

/// Applies a final decision (after a wait there is no further wait).
pub(crate) fn apply_decision(shared: &Shared, context_id: u32, decision: &Decision) -> Applied {
    match decision {
        Decision::Allow(allowed) => apply::allow(shared, context_id, allowed),
        Decision::Deny(denial) => apply::deny(shared, context_id, denial),
        Decision::Wait(_) => apply::fail_closed(shared, context_id, "a request waited twice"),
    }
}

/// The root context's periodic work: adopt keys other workers published, start due fetches
/// (when this worker gets the lease), and wake requests whose wait is over.
pub(crate) fn tick(shared: &Shared, root_context_id: u32, now: UnixSeconds) {
    let provider_count = shared.keys.borrow().fetchers.len();
    for provider in 0..provider_count {
        adopt_published(shared, root_context_id, provider);
        start_due_fetch(shared, root_context_id, provider, now);
        record_key_gauges(shared, provider, now);
    }
    wake_ready(shared, now);
}

fn wake_ready(shared: &Shared, now: UnixSeconds) {
    let ready = shared.keys.borrow_mut().ready_waiters(now);
    for waiter in &ready {
        wake(shared, waiter, now);
    }
}

fn adopt_published(shared: &Shared, root_context_id: u32, provider: ProviderIndex) {
    let mut store = shared.keys.borrow_mut();
    let Some(key) = store.shared_keys_key.get(provider).cloned() else {
        return;
    };
    let Ok((Some(bytes), cas)) = hostcalls::get_shared_data(&key) else {
        return;
    };
    if cas.is_some() && store.adopted_cas.get(provider).copied().flatten() == cas {
        return;
    }
    if let Some(slot) = store.adopted_cas.get_mut(provider) {
        *slot = cas;
    }
    let Some(Some(fetcher)) = store.fetchers.get_mut(provider) else {
        return;
    };
    match SharedKeys::decode(&bytes).map(|published| fetcher.adopt(&published)) {
        Some(Ok(())) => shared.stats.count_keys_adopted(),
        Some(Err(error)) => log(
            LogLevel::Warn,
            root_context_id,
            &format!(
                "keys published by another worker are not usable: {}",
                error.as_str()
            ),
        ),
        None => log(
            LogLevel::Warn,
            root_context_id,
            "keys published by another worker are unreadable",
        ),
    }
}

fn record_key_gauges(shared: &Shared, provider: ProviderIndex, now: UnixSeconds) {
    let store = shared.keys.borrow();
    let Some(Some(fetcher)) = store.fetchers.get(provider) else {
        return;
    };
    let age = fetcher.fetched().map_or(0, |fetched| {
        u64::try_from(now.saturating_sub(fetched.fetched_at)).unwrap_or(0)
    });
    let stale = matches!(fetcher.keys(now), KeysNow::Stale(_));
    shared.stats.record_keys(provider, age, stale);
}

/// Starts the provider's fetch if it is due and no other worker is fetching it.
fn start_due_fetch(
    shared: &Shared,
    root_context_id: u32,
    provider: ProviderIndex,
    now: UnixSeconds,
) {
    let mut store = shared.keys.borrow_mut();
    let worker = store.worker;
    let Some(lease_key) = store.lease_key.get(provider).cloned() else {
        return;
    };
    let Some(Some(fetcher)) = store.fetchers.get_mut(provider) else {
        return;
    };
    if !fetcher.due(now) {
        return;
    }
    let timeout = i64::try_from(fetcher.settings().timeout_ms.div_ceil(1000)).unwrap_or(60);
    let Ok((current, cas)) = hostcalls::get_shared_data(&lease_key) else {
        return;
    };
    if !Lease::can_take(current.as_deref(), worker, now) {
        // Another worker is fetching; its result arrives through shared data. Look again
        // next second in case it gives up.
        fetcher.defer(now.saturating_add(1));
        return;
    }
    let lease = Lease {
        holder: worker,
        expires_at: now.saturating_add(timeout).saturating_add(2),
    };
    if hostcalls::set_shared_data(&lease_key, Some(&lease.encode()), cas).is_err() {
        fetcher.defer(now.saturating_add(1));
        return;
    }
    let (document, request) = fetcher.start(now);
    let headers = vec![
        (":method", "GET"),
        (":path", request.uri.path.as_str()),
        (":authority", request.uri.authority.as_str()),
        (":scheme", request.uri.scheme()),
        ("accept", "application/json"),
        ("user-agent", "wasm-jwt-authn"),
    ];
    let dispatched = hostcalls::dispatch_http_call(
        &request.upstream,
        headers,
        None,
        vec![],
        Duration::from_millis(request.timeout_ms),
    );
    match dispatched {
        Ok(token) => store.calls.push((token, provider, document)),
        Err(status) => {
            log(
                LogLevel::Error,
                root_context_id,
                &format!(
                    "cannot dispatch the key fetch to upstream {:?}: {status:?}",
                    request.upstream
                ),
            );
            drop(store);
            fail_call(shared, root_context_id, provider, now, FetchError::Dispatch);
        }
    }
}

/// The host answered a key fetch (or gave up on it: no `:status`).
pub(crate) fn on_call_response(
    shared: &Shared,
    root_context_id: u32,
    token: u32,
    body_size: usize,
    now: UnixSeconds,
) {
    let call = {
        let mut store = shared.keys.borrow_mut();
        let position = store.calls.iter().position(|(call, _, _)| *call == token);
        position.map(|position| store.calls.swap_remove(position))
    };
    let Some((_, provider, _document)) = call else {
        return;
    };
    let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    let Some(status) = header(":status").and_then(|status| status.parse::<u16>().ok()) else {
        // Envoy answers a timed-out or failed call with no headers at all.
        fail_call(shared, root_context_id, provider, now, FetchError::Timeout);
        return;
    };
    if status == 200 && body_size > MAX_DOCUMENT_BYTES {
        fail_call(shared, root_context_id, provider, now, FetchError::TooLarge);
        return;
    }
    let body = match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
        Ok(body) => body.unwrap_or_default(),
        Err(_) => {
            fail_call(shared, root_context_id, provider, now, FetchError::Timeout);
            return;
        }
    };
    let cache_control = header("cache-control");
    let result = {
        let mut store = shared.keys.borrow_mut();
        match store.fetchers.get_mut(provider) {
            Some(Some(fetcher)) => {
                fetcher.on_response(now, status, cache_control.as_deref(), &body)
            }
            _ => return,
        }
    };
    finish_fetch(shared, root_context_id, provider, now, result.map(Some));
}

/// The call failed outside the fetcher's view (dispatch, transport): tell it, then finish.
fn fail_call(
    shared: &Shared,
    root_context_id: u32,
    provider: ProviderIndex,
    now: UnixSeconds,
    error: FetchError,
) {
    if let Some(Some(fetcher)) = shared.keys.borrow_mut().fetchers.get_mut(provider) {
        fetcher.on_failure(now, error);
    }
    finish_fetch(shared, root_context_id, provider, now, Err(error));
}

/// Records the outcome, publishes the provider's keys for the other workers, frees the lease,
/// and wakes the requests that were waiting.
fn finish_fetch(
    shared: &Shared,
    root_context_id: u32,
    provider: ProviderIndex,
    now: UnixSeconds,
    result: Result<Option<Progress>, FetchError>,
) {
    {
        let mut store = shared.keys.borrow_mut();
        let name = store
            .shared_keys_key
            .get(provider)
            .cloned()
            .unwrap_or_default();
        let lease_key = store.lease_key.get(provider).cloned().unwrap_or_default();
        let Some(Some(fetcher)) = store.fetchers.get_mut(provider) else {
            return;
        };
        match &result {
            Ok(Some(Progress::KeysUpdated { skipped })) => {
                shared.stats.count_fetch_success();
                for key in skipped {
                    log(
                        LogLevel::Warn,
                        root_context_id,
                        &format!(
                            "{name}: JWKS key {} (kid {:?}) is not used: {}",
                            key.index, key.id, key.reason
                        ),
                    );
                }
            }
            Ok(_) => {}
            Err(error) => {
                shared.stats.count_fetch_failure(*error);
                log(
                    LogLevel::Warn,
                    root_context_id,
                    &format!("{name}: key fetch failed: {}", error.as_str()),
                );
            }
        }
        let discovered = matches!(result, Ok(Some(Progress::Discovered)));
        if !discovered {
            if let Some(published) = fetcher.to_share() {
                if hostcalls::set_shared_data(&name, Some(&published.encode()), None).is_ok() {
                    // Our own publication is not news to us.
                    if let Ok((_, cas)) = hostcalls::get_shared_data(&name) {
                        if let Some(slot) = store.adopted_cas.get_mut(provider) {
                            *slot = cas;
                        }
                    }
                }
            }
            let _ = hostcalls::set_shared_data(&lease_key, Some(FREE_LEASE), None);
        }
    }
    wake_ready(shared, now);
}

/// Creates each provider's lease record if there is none, so that taking a lease is always a
/// compare-and-swap of an existing value (hosts cannot compare-and-swap a missing key).
pub(crate) fn create_lease_records(store: &KeyStore) {
    for (provider, key) in store.lease_key.iter().enumerate() {
        if !matches!(store.fetchers.get(provider), Some(Some(_))) {
            continue;
        }
        if let Ok((None, _)) = hostcalls::get_shared_data(key) {
            let _ = hostcalls::set_shared_data(key, Some(FREE_LEASE), None);
        }
    }
}

/// A lease nobody holds: holder 0 (worker ids start at 1), expired at the epoch.
const FREE_LEASE: &[u8] = b"0 0";

/// Before answering `503` for want of keys, looks at what other workers published since the
/// last tick: keys fetched elsewhere a moment ago must not leave this worker refusing requests
/// until its next tick. Only runs in that rare state, never on the hot path.
pub(crate) fn adopt_if_unavailable(shared: &Shared, root_context_id: u32, now: UnixSeconds) {
    let unavailable: Vec<ProviderIndex> = {
        let store = shared.keys.borrow();
        store
            .fetchers
            .iter()
            .enumerate()
            .filter(|(_, fetcher)| {
                fetcher
                    .as_ref()
                    .is_some_and(|fetcher| matches!(fetcher.keys(now), KeysNow::Unavailable))
            })
            .map(|(provider, _)| provider)
            .collect()
    };
    for provider in unavailable {
        adopt_published(shared, root_context_id, provider);
    }
}

/// A per-VM identity for leases, drawn from a shared counter.
pub(crate) fn allocate_worker_id() -> u64 {
    const KEY: &str = "wasm_jwt_authn.workers";
    for _ in 0..16 {
        let Ok((current, cas)) = hostcalls::get_shared_data(KEY) else {
            break;
        };
        let next = current
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_add(1);
        if hostcalls::set_shared_data(KEY, Some(next.to_string().as_bytes()), cas).is_ok() {
            return next;
        }
    }
    // No shared data (or endless contention): leases then cannot coordinate anyway.
    u64::MAX
}
