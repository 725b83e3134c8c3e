//! The worker's store of remote documents: one [`Fetcher`] per provider with remote keys and
//! per address list, the fetch calls in flight, and the requests parked until they arrive.
//! Sources are numbered providers first (by [`ProviderIndex`]), then address lists.
//!
//! Workers share documents through host shared data, under names that carry a digest of the
//! source's settings (so two configurations with a source of the same name never exchange
//! documents). Two records per source:
//! - the **lease**: the worker that takes it (compare-and-swap) fetches; it expires, so a
//!   worker that stops answering is replaced, and only its holder frees it;
//! - the **keys record** ([`SharedRecord`]): what the last attempt left — keys, schedule, failure
//!   count, generation. The fetcher publishes it with compare-and-swap against the record it
//!   read when it took the lease, so a slow worker can never overwrite newer news; the others
//!   adopt it on their next tick (200 ms) instead of fetching.

use std::net::IpAddr;
use std::time::Duration;

use super::abi::{self, BufferType, LogLevel, MapType};
use sha2::{Digest as _, Sha256};

use crate::base::ids::ListIndex;
use crate::base::ids::ProviderIndex;
use crate::base::ids::RemoteSource;
use crate::base::time::UnixSeconds;
use crate::config::{AddressList, Config, KeySource, Provider};
use crate::decision::{Attempt, Decision, RemoteDocuments, Wait, WaitCause};
use crate::remote::{
    AddressesNow, Document, FetchError, Fetcher, InForce, KeysNow, Lease, Poll, Progress,
    RemoteSettings, SharedRecord,
};
use crate::token::Request;
use crate::waiting::{self, WaitList, Waiter};

use super::apply::{self, Applied};
use super::introspect;
use super::stats::SourceKind;
use super::{log, Shared};

/// A non-200 body is read only this far: enough to tell the proxy's own replies apart.
const STATUS_BODY_PREFIX: usize = 64;
/// A lease nobody holds: holder 0 (worker ids start at 1), expired at the epoch.
const FREE_LEASE: &[u8] = b"0 0";

/// The parts of a request kept while it waits.
#[derive(Debug, Clone)]
pub(crate) struct OwnedRequest {
    headers: Vec<(String, String)>,
    source_address: Option<IpAddr>,
}

impl OwnedRequest {
    pub(crate) fn new(
        headers: Vec<(String, String)>,
        source_address: Option<IpAddr>,
    ) -> OwnedRequest {
        OwnedRequest {
            headers,
            source_address,
        }
    }

    /// The request as the core reads it; a missing `:method` or `:path` reads as empty (and
    /// an empty path matches no rule but the default, which requires a token).
    pub(crate) fn view(&self) -> Request<'_> {
        let pseudo = |name: &str| {
            self.headers
                .iter()
                .find(|(header, _)| header == name)
                .map_or("", |(_, value)| value.as_str())
        };
        Request {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers: &self.headers,
            source_address: self.source_address,
        }
    }
}

/// One remote source's fetcher and its shared-data records.
struct Remote {
    fetcher: Fetcher,
    keys_record: String,
    lease_record: String,
    /// The CAS of the keys record last adopted or published: unchanged means nothing new.
    seen_cas: Option<u32>,
    /// The call in flight, and the CAS of the keys record when it started (to publish against).
    call: Option<(u32, Option<u32>)>,
}

pub(crate) struct KeyStore {
    /// Per provider (`None` for inline keys), then per address list.
    remote: Vec<Option<Remote>>,
    /// Where the address lists start in `remote`.
    provider_count: usize,
    /// This worker's identity in leases.
    worker: u64,
    waiting: WaitList<OwnedRequest>,
}

impl RemoteDocuments for KeyStore {
    fn keys_now(&self, provider: ProviderIndex, now: UnixSeconds) -> KeysNow<'_> {
        match self.remote.get(provider) {
            Some(Some(remote)) => remote.fetcher.keys(now),
            _ => KeysNow::Unavailable,
        }
    }

    fn address_list_now(&self, list: ListIndex, now: UnixSeconds) -> AddressesNow<'_> {
        match self.remote.get(self.provider_count.saturating_add(list)) {
            Some(Some(remote)) => remote.fetcher.addresses(now),
            _ => AddressesNow::Unavailable,
        }
    }
}

/// Names the shared-data records of a source: its kind and name for people, a digest of
/// everything that decides what it trusts for safety.
fn record_names(kind: &str, name: &str, identity: &str) -> (String, String) {
    let digest: String = Sha256::digest(identity.as_bytes())
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    (
        format!("wasm_jwt_authn.{kind}.{name}.{digest}"),
        format!("wasm_jwt_authn.lease.{kind}.{name}.{digest}"),
    )
}

fn key_records(provider: &Provider, remote: &RemoteSettings) -> (String, String) {
    let identity = format!(
        "{}\n{:?}\n{}\n{:?}\n{}\n{:?}",
        provider.issuer,
        remote.location,
        remote.upstream,
        remote.jwks_upstream,
        remote.allow_http,
        provider.algorithms
    );
    record_names("keys", &provider.name, &identity)
}

fn list_records(list: &AddressList) -> (String, String) {
    let remote = &list.remote;
    let identity = format!(
        "{:?}\n{}\n{}",
        remote.location, remote.upstream, remote.allow_http
    );
    record_names("address_list", &list.name, &identity)
}

/// A value in `0..1000` from the host clock's sub-second part: spreads refreshes across
/// proxies that started together.
fn jitter_permille() -> u64 {
    abi::get_current_time()
        .ok()
        .map_or(0, |elapsed| u64::from(elapsed.subsec_millis()))
}

impl KeyStore {
    pub(crate) fn new(config: &Config, worker: u64, now: UnixSeconds) -> KeyStore {
        let remote = |fetcher, (keys_record, lease_record)| Remote {
            fetcher,
            keys_record,
            lease_record,
            seen_cas: None,
            call: None,
        };
        let providers = config
            .providers
            .iter()
            .map(|provider| match &provider.keys {
                KeySource::Inline(_) | KeySource::None => None,
                KeySource::Remote(settings) => Some(remote(
                    Fetcher::for_keys(
                        settings.clone(),
                        &provider.issuer,
                        &provider.algorithms,
                        now,
                        jitter_permille(),
                    ),
                    key_records(provider, settings),
                )),
            });
        let lists = config.address_lists.iter().map(|list| {
            Some(remote(
                Fetcher::for_address_list(list.remote.clone(), now, jitter_permille()),
                list_records(list),
            ))
        });
        KeyStore {
            remote: providers.chain(lists).collect(),
            provider_count: config.providers.len(),
            worker,
            waiting: WaitList::new(waiting::DEFAULT_CAPACITY),
        }
    }

    pub(crate) fn has_remote_documents(&self) -> bool {
        self.remote.iter().any(Option::is_some)
    }

    /// Creates the shared records that do not exist yet, so that taking a lease and
    /// publishing keys are always compare-and-swaps of an existing value (hosts cannot
    /// compare-and-swap a missing key).
    pub(crate) fn create_records(&self) {
        for remote in self.remote.iter().flatten() {
            let empty = SharedRecord {
                generation: 0,
                attempted_at: 0,
                next_fetch_at: 0,
                failures: 0,
                document: None,
            };
            for (name, value) in [
                (&remote.lease_record, FREE_LEASE.to_vec()),
                (&remote.keys_record, empty.encode()),
            ] {
                if let Ok((None, _)) = abi::get_shared_data(name) {
                    let _ = abi::set_shared_data(name, &value, None);
                }
            }
        }
    }

    /// Parks a request until its provider's keys change. `Err` gives the request back when
    /// waiting cannot help (an unknown `kid` within the refetch rate limit, or too many
    /// waiting already): decide again now, finally.
    pub(crate) fn park(
        &mut self,
        context_id: u32,
        wait: Wait,
        request: OwnedRequest,
        now: UnixSeconds,
    ) -> Result<(), OwnedRequest> {
        let source = match wait.source {
            RemoteSource::Keys(provider) => provider,
            RemoteSource::AddressList(list) => self.provider_count.saturating_add(list),
        };
        let Some(Some(remote)) = self.remote.get_mut(source) else {
            return Err(request);
        };
        let fetcher = &mut remote.fetcher;
        if wait.cause == WaitCause::UnknownKeyId && !fetcher.request_refetch(now) {
            return Err(request);
        }
        let waiter = Waiter {
            context_id,
            source,
            version: fetcher.version(),
            generation: fetcher.generation(),
            deadline: fetcher.wait_deadline(now),
            request,
        };
        self.waiting.park(waiter).map_err(|waiter| waiter.request)
    }

    pub(crate) fn is_parked(&self, context_id: u32) -> bool {
        self.waiting.is_parked(context_id)
    }

    /// The request went away while parked.
    pub(crate) fn forget(&mut self, context_id: u32) {
        self.waiting.forget(context_id);
    }

    /// Takes the parked requests whose wait is over: the document changed, an attempt ended,
    /// it became unavailable, or the deadline passed.
    fn ready_waiters(&mut self, now: UnixSeconds) -> Vec<Waiter<OwnedRequest>> {
        let remote = &self.remote;
        self.waiting.take_ready(now, |waiter| {
            let Some(Some(source)) = remote.get(waiter.source) else {
                return true;
            };
            let fetcher = &source.fetcher;
            fetcher.version() != waiter.version
                || fetcher.generation() != waiter.generation
                || matches!(fetcher.in_force(now), InForce::Unavailable)
        })
    }
}

/// Decides a woken request again (`attempt`: after which wait), in its own context, and lets
/// it go on or answers it — or, when its token must now be introspected, parks it on that call.
pub(crate) fn wake(
    shared: &Shared,
    context_id: u32,
    request: &OwnedRequest,
    now: UnixSeconds,
    attempt: Attempt,
) {
    if abi::set_effective_context(context_id).is_err() {
        return; // The stream is gone.
    }
    let decision = match shared.decide(request, now, attempt) {
        Decision::Introspect(needed) => {
            match introspect::park(shared, context_id, needed, request.clone(), now) {
                Ok(()) => return, // It waits on, for the provider's answer.
                Err(request) => shared.decide(&request, now, Attempt::AfterIntrospection),
            }
        }
        decision => decision,
    };
    let applied = apply_decision(shared, context_id, &decision);
    if applied == Applied::Forward {
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
pub(crate) fn apply_decision(shared: &Shared, context_id: u32, decision: &Decision) -> Applied {
    match decision {
        Decision::Allow(allowed) => apply::allow(shared, context_id, allowed),
        Decision::Deny(denial) => apply::deny(shared, context_id, denial),
        Decision::Wait(_) | Decision::Introspect(_) => {
            apply::fail_closed(shared, context_id, "a request waited twice")
        }
    }
}

/// The root context's periodic work: adopt what other workers published, start due fetches
/// (when this worker gets the lease), give up on overdue calls, and wake requests whose wait
/// is over.
pub(crate) fn tick(shared: &Shared, root_context_id: u32, now: UnixSeconds) {
    let source_count = shared.keys.borrow().remote.len();
    for source in 0..source_count {
        adopt_published(shared, root_context_id, source);
        let poll = match shared.keys.borrow_mut().remote.get_mut(source) {
            Some(Some(remote)) => remote.fetcher.poll(now),
            _ => continue,
        };
        match poll {
            Poll::Idle => {}
            Poll::Due => start_fetch(shared, root_context_id, source, now),
            // `finish_fetch` forgets the call: a late answer to it finds nothing to match.
            Poll::GaveUp => {
                finish_fetch(
                    shared,
                    root_context_id,
                    source,
                    now,
                    Err(FetchError::Timeout),
                );
            }
        }
        record_source_gauges(shared, source, now);
    }
    wake_ready(shared, now);
}

fn wake_ready(shared: &Shared, now: UnixSeconds) {
    let ready = shared.keys.borrow_mut().ready_waiters(now);
    wake_all(shared, &ready, now);
}

fn wake_all(shared: &Shared, waiters: &[Waiter<OwnedRequest>], now: UnixSeconds) {
    for waiter in waiters {
        wake(
            shared,
            waiter.context_id,
            &waiter.request,
            now,
            Attempt::AfterWait,
        );
    }
    if !waiters.is_empty() {
        // Hand the host back the root context that called us.
        let _ = abi::set_effective_context(shared.root_context_id);
    }
}

/// A new configuration replaces this one: every parked request is decided now (with what
/// keys there are, else `503`), so none is left waiting on a key store nobody ticks.
pub(crate) fn release_all(shared: &Shared, now: UnixSeconds) {
    let parked = shared.keys.borrow_mut().waiting.take_all();
    wake_all(shared, &parked, now);
}

/// Adopts the source's record if another worker changed it.
fn adopt_published(shared: &Shared, root_context_id: u32, source: usize) {
    let mut store = shared.keys.borrow_mut();
    let Some(Some(remote)) = store.remote.get_mut(source) else {
        return;
    };
    let Ok((Some(bytes), cas)) = abi::get_shared_data(&remote.keys_record) else {
        return;
    };
    if cas.is_some() && cas == remote.seen_cas {
        return;
    }
    remote.seen_cas = cas;
    match SharedRecord::decode(&bytes).map(|published| remote.fetcher.adopt(&published)) {
        Some(Ok(true)) => shared.stats.count_adopted(source_kind(shared, source)),
        Some(Ok(false)) => {}
        Some(Err(error)) => log(
            LogLevel::Warn,
            root_context_id,
            &format!(
                "{}: the document published by another worker is not usable: {}",
                source_name(shared, source),
                error.as_str()
            ),
        ),
        None => log(
            LogLevel::Warn,
            root_context_id,
            &format!(
                "{}: the record published by another worker is unreadable",
                source_name(shared, source)
            ),
        ),
    }
}

fn record_source_gauges(shared: &Shared, source: usize, now: UnixSeconds) {
    let store = shared.keys.borrow();
    let Some(Some(remote)) = store.remote.get(source) else {
        return;
    };
    let fetcher = &remote.fetcher;
    let age = fetcher.fetched().map_or(0, |fetched| {
        u64::try_from(now.saturating_sub(fetched.fetched_at)).unwrap_or(0)
    });
    let stale = matches!(fetcher.in_force(now), InForce::Stale(_));
    shared.stats.record_source(source, age, stale);
}

/// Starts the source's due fetch if this worker gets the lease.
fn start_fetch(shared: &Shared, root_context_id: u32, source: usize, now: UnixSeconds) {
    let worker = shared.keys.borrow().worker;
    let (lease_record, deadline) = match shared.keys.borrow().remote.get(source) {
        Some(Some(remote)) => (
            remote.lease_record.clone(),
            remote.fetcher.wait_deadline(now),
        ),
        _ => return,
    };
    if !take_lease(&lease_record, worker, now, deadline) {
        // Another worker is fetching; its result arrives through shared data. Look again
        // in a second in case it gives up.
        if let Some(Some(remote)) = shared.keys.borrow_mut().remote.get_mut(source) {
            remote.fetcher.defer(now.saturating_add(1));
        }
        return;
    }
    // What happened while we were not holding the lease may make this fetch unnecessary.
    adopt_published(shared, root_context_id, source);
    let mut store = shared.keys.borrow_mut();
    let Some(Some(remote)) = store.remote.get_mut(source) else {
        return;
    };
    if remote.fetcher.poll(now) != Poll::Due {
        release_lease(&lease_record, worker);
        return;
    }
    let (document, request) = remote.fetcher.start(now);
    let accept = match document {
        Document::Discovery | Document::Jwks => "application/json",
        Document::AddressList => "text/plain",
    };
    let headers = vec![
        (":method", "GET"),
        (":path", request.uri.path.as_str()),
        (":authority", request.uri.authority.as_str()),
        (":scheme", request.uri.scheme()),
        ("accept", accept),
        ("user-agent", "wasm-jwt-authn"),
    ];
    let dispatched = abi::dispatch_http_call(
        &request.upstream,
        &headers,
        Duration::from_millis(request.timeout_ms),
    );
    match dispatched {
        Ok(token) => remote.call = Some((token, remote.seen_cas)),
        Err(status) => {
            remote.call = Some((0, remote.seen_cas));
            remote.fetcher.on_failure(now, FetchError::Dispatch);
            drop(store);
            log(
                LogLevel::Error,
                root_context_id,
                &format!(
                    "{}: cannot dispatch the fetch to upstream {:?}: {status:?}",
                    source_name(shared, source),
                    request.upstream
                ),
            );
            finish_fetch(
                shared,
                root_context_id,
                source,
                now,
                Err(FetchError::Dispatch),
            );
        }
    }
}

/// Takes the lease by compare-and-swap, for up to `until`.
fn take_lease(record: &str, worker: u64, now: UnixSeconds, until: UnixSeconds) -> bool {
    let Ok((current, Some(cas))) = abi::get_shared_data(record) else {
        return false;
    };
    if !Lease::can_take(current.as_deref(), worker, now) {
        return false;
    }
    let lease = Lease {
        holder: worker,
        expires_at: until,
    };
    abi::set_shared_data(record, &lease.encode(), Some(cas)).is_ok()
}

/// Frees the lease if this worker still holds it.
fn release_lease(record: &str, worker: u64) {
    if let Ok((Some(current), Some(cas))) = abi::get_shared_data(record) {
        if Lease::decode(&current).is_some_and(|lease| lease.holder == worker) {
            let _ = abi::set_shared_data(record, FREE_LEASE, Some(cas));
        }
    }
}

/// The host answered a key fetch (Envoy answers its own timeouts and connection failures
/// with `504`/`503`; no `:status` at all also means the call failed).
pub(crate) fn on_call_response(
    shared: &Shared,
    root_context_id: u32,
    token: u32,
    body_size: usize,
    now: UnixSeconds,
) {
    let source = {
        let store = shared.keys.borrow();
        store.remote.iter().position(|remote| {
            remote
                .as_ref()
                .is_some_and(|remote| remote.call.is_some_and(|(call, _)| call == token))
        })
    };
    let Some(source) = source else {
        return; // An answer to a call given up on.
    };
    let max_document_bytes = match shared.keys.borrow().remote.get(source) {
        Some(Some(remote)) => remote.fetcher.max_document_bytes(),
        _ => return,
    };
    let headers = abi::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    let status = header(":status").and_then(|status| status.parse::<u16>().ok());
    let readable = match status {
        Some(200) if body_size > max_document_bytes => None,
        Some(200) => Some(body_size),
        _ => Some(body_size.min(STATUS_BODY_PREFIX)),
    };
    let body = readable.map(|size| {
        abi::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    });
    let cache_control = header("cache-control");
    let result = {
        let mut store = shared.keys.borrow_mut();
        let Some(Some(remote)) = store.remote.get_mut(source) else {
            return;
        };
        let fetcher = &mut remote.fetcher;
        match (status, body) {
            (None, _) => {
                fetcher.on_failure(now, FetchError::Timeout);
                Err(FetchError::Timeout)
            }
            (Some(_), None) => {
                fetcher.on_failure(now, FetchError::TooLarge);
                Err(FetchError::TooLarge)
            }
            (Some(status), Some(body)) => {
                fetcher.on_response(now, status, cache_control.as_deref(), &body)
            }
        }
    };
    match result {
        // The JWKS fetch follows on the next tick, under the same lease.
        Ok(Progress::Discovered) => {}
        Ok(Progress::Updated { skipped }) => {
            let name = source_name(shared, source);
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
            finish_fetch(shared, root_context_id, source, now, Ok(()));
        }
        Err(error) => finish_fetch(shared, root_context_id, source, now, Err(error)),
    }
}

/// The source at `index` of the store, for logs: `provider "name"` or `address list "name"`.
fn source_name(shared: &Shared, index: usize) -> String {
    let config = &shared.config;
    match index.checked_sub(config.providers.len()) {
        None => config
            .providers
            .get(index)
            .map_or_else(String::new, |provider| {
                format!("provider {:?}", &*provider.name)
            }),
        Some(list) => config
            .address_lists
            .get(list)
            .map_or_else(String::new, |list| {
                format!("address list {:?}", &*list.name)
            }),
    }
}

fn source_kind(shared: &Shared, index: usize) -> SourceKind {
    if index < shared.config.providers.len() {
        SourceKind::Keys
    } else {
        SourceKind::AddressList
    }
}

/// An attempt ended (the fetcher already knows how): count it, publish the proxy-wide record
/// against the one read when the fetch started, free the lease, and wake the waiting requests.
fn finish_fetch(
    shared: &Shared,
    root_context_id: u32,
    source: usize,
    now: UnixSeconds,
    result: Result<(), FetchError>,
) {
    let kind = source_kind(shared, source);
    match result {
        Ok(()) => shared.stats.count_fetch_success(kind),
        Err(error) => {
            shared.stats.count_fetch_failure(kind, error);
            log(
                LogLevel::Warn,
                root_context_id,
                &format!(
                    "{}: fetch failed: {}",
                    source_name(shared, source),
                    error.as_str()
                ),
            );
        }
    }
    {
        let mut store = shared.keys.borrow_mut();
        let worker = store.worker;
        let Some(Some(remote)) = store.remote.get_mut(source) else {
            return;
        };
        let started_from = remote.call.take().and_then(|(_, cas)| cas);
        let record = remote.fetcher.to_share().encode();
        if abi::set_shared_data(&remote.keys_record, &record, started_from).is_ok() {
            // Our own publication is not news to us.
            if let Ok((_, cas)) = abi::get_shared_data(&remote.keys_record) {
                remote.seen_cas = cas;
            }
        }
        release_lease(&remote.lease_record, worker);
    }
    wake_ready(shared, now);
}

/// Before answering `503` for want of keys (or an address list), looks at what other workers
/// published since the last tick: keys fetched elsewhere a moment ago must not leave this worker refusing requests
/// until its next tick. Only runs in that rare state, never on the hot path.
pub(crate) fn adopt_if_unavailable(shared: &Shared, root_context_id: u32, now: UnixSeconds) {
    let unavailable: Vec<usize> = {
        let store = shared.keys.borrow();
        store
            .remote
            .iter()
            .enumerate()
            .filter(|(_, remote)| {
                remote.as_ref().is_some_and(|remote| {
                    matches!(remote.fetcher.in_force(now), InForce::Unavailable)
                })
            })
            .map(|(source, _)| source)
            .collect()
    };
    for source in unavailable {
        adopt_published(shared, root_context_id, source);
    }
}

/// A per-VM identity for leases, drawn from a shared counter (created on first use; the
/// counter only needs distinct values, which compare-and-swap gives once it exists).
pub(crate) fn allocate_worker_id() -> u64 {
    const KEY: &str = "wasm_jwt_authn.workers";
    for _ in 0..64 {
        let Ok((current, cas)) = abi::get_shared_data(KEY) else {
            break;
        };
        let next = current
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_add(1);
        if abi::set_shared_data(KEY, next.to_string().as_bytes(), cas).is_ok() {
            return next;
        }
    }
    // No shared data (or endless contention): a clock-derived id, distinct with high odds.
    abi::get_current_time().ok().map_or(u64::MAX, |elapsed| {
        u64::from(elapsed.subsec_nanos()) | (1 << 40)
    })
}
