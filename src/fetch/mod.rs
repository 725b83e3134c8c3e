//! The fetch protocol of one worker, host-free: every remote source (a provider's keys, an
//! address list) with its [`Fetcher`], the proxy-wide records it shares with the other
//! workers, the call in flight, and the requests parked until a document arrives.
//!
//! The adapter executes what this module asks for and reports what happened, like a sans-I/O
//! protocol: [`Sources::tick_source`] says which fetch to dispatch ([`Step::dispatch`]), the
//! adapter dispatches it and says how that went ([`Sources::dispatched`]), then hands over the
//! answer ([`Sources::on_answer`]); every step returns the requests to wake and the events to
//! log and count. Host shared data is the one thing reached directly, through [`SharedData`]:
//! it answers synchronously and never calls back into the VM, so modelling each
//! compare-and-swap as a returned step would split every function into continuations and
//! test nothing more (the tests' [`SharedData`] is in memory and shared by several workers).
//!
//! Workers share documents through shared data, under names that carry a digest of the
//! source's settings (so two configurations with a source of the same name never exchange
//! documents). Two records per source:
//! - the **lease**: the worker that takes it (compare-and-swap) fetches; it expires, so a
//!   worker that stops answering is replaced, and only its holder frees it;
//! - the **document record** ([`SharedRecord`]): what the last attempt left — document,
//!   schedule, failure count, generation. The fetcher publishes it with compare-and-swap
//!   against the record it read when it took the lease, so a slow worker can never overwrite
//!   newer news; the others adopt it on their next tick instead of fetching.

pub mod remote;
pub mod waiting;

use sha2::{Digest as _, Sha256};

use crate::base::ids::{ListIndex, ProviderIndex, RemoteSource};
use crate::base::time::UnixSeconds;
use crate::jose::algorithm::Algorithm;
use crate::jose::jwks::SkippedKey;
use remote::{
    AddressesNow, Document, FetchError, FetchRequest, Fetcher, InForce, KeysNow, Lease, Poll,
    Progress, RemoteDocuments, RemoteSettings, SharedRecord,
};
use waiting::{WaitList, Waiter};

#[cfg(test)]
mod tests;

/// A non-200 body is read only this far: enough to tell the proxy's own replies apart.
const STATUS_BODY_PREFIX: usize = 64;
/// A lease nobody holds: holder 0 (worker ids start at 1), expired at the epoch.
const FREE_LEASE: &[u8] = b"0 0";
/// The shared counter that numbers workers.
const WORKERS_RECORD: &str = "wasm_jwt_authn.workers";

/// The host refused a shared-data operation (no shared data, or a compare-and-swap mismatch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// A shared-data record as read: its value (`None`: no such record) and its CAS.
pub type Record = (Option<Vec<u8>>, Option<u32>);

/// The host's shared data, proxy-wide: the records every worker reads and writes.
pub trait SharedData {
    fn get(&self, name: &str) -> Result<Record, Refused>;
    /// Writes `value`; with `cas`, only if the record is still at that CAS.
    fn set(&mut self, name: &str, value: &[u8], cas: Option<u32>) -> Result<(), Refused>;
}

/// What a remote source is: the counters of its fetches are per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Keys,
    AddressList,
}

/// A source as [`Sources::new`] takes it: its fetcher and the names of its records.
pub struct SourceSpec {
    kind: SourceKind,
    /// `provider "name"` or `address list "name"`, for logs.
    label: String,
    fetcher: Fetcher,
    document_record: String,
    lease_record: String,
}

impl SourceSpec {
    /// A provider's remote keys.
    pub fn keys(
        provider: &str,
        issuer: &str,
        algorithms: &[Algorithm],
        settings: &RemoteSettings,
        now: UnixSeconds,
        jitter_permille: u64,
    ) -> SourceSpec {
        let identity = format!(
            "{issuer}\n{:?}\n{}\n{:?}\n{}\n{algorithms:?}",
            settings.location, settings.upstream, settings.jwks_upstream, settings.allow_http,
        );
        let (document_record, lease_record) = record_names("keys", provider, &identity);
        SourceSpec {
            kind: SourceKind::Keys,
            label: format!("provider {provider:?}"),
            fetcher: Fetcher::for_keys(settings.clone(), issuer, algorithms, now, jitter_permille),
            document_record,
            lease_record,
        }
    }

    /// A fetched address list.
    pub fn address_list(
        list: &str,
        settings: &RemoteSettings,
        now: UnixSeconds,
        jitter_permille: u64,
    ) -> SourceSpec {
        let identity = format!(
            "{:?}\n{}\n{}",
            settings.location, settings.upstream, settings.allow_http
        );
        let (document_record, lease_record) = record_names("address_list", list, &identity);
        SourceSpec {
            kind: SourceKind::AddressList,
            label: format!("address list {list:?}"),
            fetcher: Fetcher::for_address_list(settings.clone(), now, jitter_permille),
            document_record,
            lease_record,
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

/// A source's position among the worker's sources: providers first (by [`ProviderIndex`]),
/// then address lists. The stats number their per-source gauges the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceId(usize);

impl SourceId {
    pub fn index(self) -> usize {
        self.0
    }
}

/// The fetch call of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Asked of the adapter, not dispatched yet; the CAS of the document record when it
    /// started (to publish against).
    Asked { started_from: Option<u32> },
    /// Dispatched: the host's token for it.
    InFlight {
        token: u32,
        started_from: Option<u32>,
    },
}

impl Call {
    fn started_from(self) -> Option<u32> {
        match self {
            Call::Asked { started_from } | Call::InFlight { started_from, .. } => started_from,
        }
    }
}

struct Source {
    spec: SourceSpec,
    /// The CAS of the document record last adopted or published: unchanged means nothing new.
    seen_cas: Option<u32>,
    call: Option<Call>,
}

/// A fetch for the adapter to dispatch; report how it went with [`Sources::dispatched`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub source: SourceId,
    pub request: FetchRequest,
    /// The `accept` header for the document asked for.
    pub accept: &'static str,
}

/// Something the adapter logs (as a warning) or counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// Another worker's record was adopted.
    Adopted(SourceKind),
    /// Another worker's record holds a document this worker cannot use.
    UnusableRecord {
        label: String,
        error: FetchError,
    },
    /// Another worker's record is not a record.
    UnreadableRecord {
        label: String,
    },
    /// A key of a newly fetched JWKS left out.
    SkippedKey {
        label: String,
        key: SkippedKey,
    },
    Succeeded(SourceKind),
    Failed {
        kind: SourceKind,
        label: String,
        error: FetchError,
    },
}

impl FetchEvent {
    /// The warning to log, for events that have one.
    pub fn warning(&self) -> Option<String> {
        match self {
            FetchEvent::Adopted(_) | FetchEvent::Succeeded(_) => None,
            FetchEvent::UnusableRecord { label, error } => Some(format!(
                "{label}: the document published by another worker is not usable: {}",
                error.as_str()
            )),
            FetchEvent::UnreadableRecord { label } => Some(format!(
                "{label}: the record published by another worker is unreadable"
            )),
            FetchEvent::SkippedKey { label, key } => Some(format!(
                "{label}: JWKS key {} (kid {:?}) is not used: {}",
                key.index, key.id, key.reason
            )),
            FetchEvent::Failed { label, error, .. } => {
                Some(format!("{label}: fetch failed: {}", error.as_str()))
            }
        }
    }
}

/// What one step of the protocol asks of the adapter, in this order: dispatch the fetch (then
/// report it), log and count the events, wake the requests.
#[derive(Debug)]
pub struct Step<R> {
    pub dispatch: Option<Dispatch>,
    pub events: Vec<FetchEvent>,
    pub wake: Vec<Waiter<R>>,
}

impl<R> Step<R> {
    fn new() -> Step<R> {
        Step {
            dispatch: None,
            events: Vec::new(),
            wake: Vec::new(),
        }
    }
}

/// The answer to a fetch call, as the adapter read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `None`: no `:status` at all, the call failed.
    pub status: Option<u16>,
    /// `None`: not read, too large (see [`Sources::readable_body`]).
    pub body: Option<Vec<u8>>,
    pub cache_control: Option<String>,
}

/// Every remote source of one worker, its calls and its parked requests (`R`: a request as
/// the adapter keeps it).
pub struct Sources<R> {
    sources: Vec<Option<Source>>,
    /// Where the address lists start in `sources`.
    provider_count: usize,
    /// This worker's identity in leases.
    worker: u64,
    waiting: WaitList<R>,
}

impl<R> RemoteDocuments for Sources<R> {
    fn keys_now(&self, provider: ProviderIndex, now: UnixSeconds) -> KeysNow<'_> {
        match self.source(RemoteSource::Keys(provider)) {
            Some((_, source)) => source.spec.fetcher.keys(now),
            None => KeysNow::Unavailable,
        }
    }

    fn address_list_now(&self, list: ListIndex, now: UnixSeconds) -> AddressesNow<'_> {
        match self.source(RemoteSource::AddressList(list)) {
            Some((_, source)) => source.spec.fetcher.addresses(now),
            None => AddressesNow::Unavailable,
        }
    }
}

impl<R> Sources<R> {
    /// `providers`: one entry per provider (`None`: its keys are not fetched); `lists`: one
    /// per address list.
    pub fn new(
        providers: Vec<Option<SourceSpec>>,
        lists: Vec<SourceSpec>,
        worker: u64,
    ) -> Sources<R> {
        let provider_count = providers.len();
        let source = |spec| Source {
            spec,
            seen_cas: None,
            call: None,
        };
        Sources {
            sources: providers
                .into_iter()
                .map(|spec| spec.map(source))
                .chain(lists.into_iter().map(|spec| Some(source(spec))))
                .collect(),
            provider_count,
            worker,
            waiting: WaitList::new(waiting::DEFAULT_CAPACITY),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.iter().all(Option::is_none)
    }

    /// Every source, in order.
    pub fn ids(&self) -> impl Iterator<Item = SourceId> + '_ {
        self.sources
            .iter()
            .enumerate()
            .filter(|(_, source)| source.is_some())
            .map(|(index, _)| SourceId(index))
    }

    fn source(&self, remote: RemoteSource) -> Option<(SourceId, &Source)> {
        let index = match remote {
            RemoteSource::Keys(provider) if provider.position() < self.provider_count => {
                provider.position()
            }
            RemoteSource::Keys(_) => return None,
            RemoteSource::AddressList(list) => self.provider_count.checked_add(list.position())?,
        };
        let source = self.sources.get(index)?.as_ref()?;
        Some((SourceId(index), source))
    }

    /// `provider "name"` or `address list "name"`, for logs (empty for no such source).
    pub fn label(&self, id: SourceId) -> &str {
        self.get(id).map_or("", |source| source.spec.label.as_str())
    }

    fn get(&self, id: SourceId) -> Option<&Source> {
        self.sources.get(id.0)?.as_ref()
    }

    fn get_mut(&mut self, id: SourceId) -> Option<&mut Source> {
        self.sources.get_mut(id.0)?.as_mut()
    }

    /// Creates the shared records that do not exist yet, so that taking a lease and
    /// publishing are always compare-and-swaps of an existing value (hosts cannot
    /// compare-and-swap a missing key).
    pub fn create_records(&self, store: &mut dyn SharedData) {
        let empty = SharedRecord::empty().encode();
        for source in self.sources.iter().flatten() {
            for (name, value) in [
                (&source.spec.lease_record, FREE_LEASE),
                (&source.spec.document_record, empty.as_slice()),
            ] {
                if let Ok((None, _)) = store.get(name) {
                    let _ = store.set(name, value, None);
                }
            }
        }
    }

    /// Parks a request until `remote` changes. `Err` gives the request back when waiting
    /// cannot help (`refetch`: it waits for a refetch that the rate limit refuses now; too
    /// many waiting already): decide again now, finally.
    pub fn park(
        &mut self,
        context_id: u32,
        remote: RemoteSource,
        refetch: bool,
        request: R,
        now: UnixSeconds,
    ) -> Result<(), R> {
        let Some((id, _)) = self.source(remote) else {
            return Err(request);
        };
        let Some(source) = self.get_mut(id) else {
            return Err(request);
        };
        let fetcher = &mut source.spec.fetcher;
        if refetch && !fetcher.request_refetch(now) {
            return Err(request);
        }
        let waiter = Waiter {
            context_id,
            source: id.0,
            version: fetcher.version(),
            generation: fetcher.generation(),
            deadline: fetcher.wait_deadline(now),
            request,
        };
        self.waiting.park(waiter).map_err(|waiter| waiter.request)
    }

    pub fn is_parked(&self, context_id: u32) -> bool {
        self.waiting.is_parked(context_id)
    }

    /// The request went away while parked.
    pub fn forget(&mut self, context_id: u32) {
        self.waiting.forget(context_id);
    }

    /// A new configuration replaces this one: every parked request, to be decided now.
    pub fn take_all_waiters(&mut self) -> Vec<Waiter<R>> {
        self.waiting.take_all()
    }

    /// Takes the parked requests whose wait is over: the document changed, an attempt ended,
    /// it became unavailable, or the deadline passed.
    pub fn ready_waiters(&mut self, now: UnixSeconds) -> Vec<Waiter<R>> {
        let sources = &self.sources;
        self.waiting.take_ready(now, |waiter| {
            let Some(Some(source)) = sources.get(waiter.source) else {
                return true;
            };
            let fetcher = &source.spec.fetcher;
            fetcher.version() != waiter.version
                || fetcher.generation() != waiter.generation
                || matches!(fetcher.in_force(now), InForce::Unavailable)
        })
    }

    /// A source's periodic work: adopt what other workers published, then start the fetch if
    /// one is due and this worker gets the lease, or give up on an overdue call.
    pub fn tick_source(
        &mut self,
        id: SourceId,
        store: &mut dyn SharedData,
        now: UnixSeconds,
    ) -> Step<R> {
        let mut step = Step::new();
        step.events.extend(self.adopt_published(id, store));
        let poll = match self.get_mut(id) {
            Some(source) => source.spec.fetcher.poll(now),
            None => return step,
        };
        match poll {
            Poll::Idle => {}
            Poll::Due => step.dispatch = self.start(id, store, now, &mut step.events),
            // `finish` forgets the call: a late answer to it finds nothing to match.
            Poll::GaveUp => self.finish(id, store, now, Err(FetchError::Timeout), &mut step),
        }
        step
    }

    /// A source's document age (seconds since it was fetched, 0 without one) and whether it is
    /// stale, for the gauges.
    pub fn gauges(&self, id: SourceId, now: UnixSeconds) -> Option<(u64, bool)> {
        let fetcher = &self.get(id)?.spec.fetcher;
        let age = fetcher.fetched().map_or(0, |fetched| {
            u64::try_from(now.saturating_sub(fetched.fetched_at)).unwrap_or(0)
        });
        let stale = matches!(fetcher.in_force(now), InForce::Stale(_));
        Some((age, stale))
    }

    /// Adopts the source's record if another worker changed it.
    fn adopt_published(&mut self, id: SourceId, store: &dyn SharedData) -> Option<FetchEvent> {
        let source = self.get_mut(id)?;
        let Ok((Some(bytes), cas)) = store.get(&source.spec.document_record) else {
            return None;
        };
        if cas.is_some() && cas == source.seen_cas {
            return None;
        }
        source.seen_cas = cas;
        let label = || source.spec.label.clone();
        match SharedRecord::decode(&bytes).map(|published| source.spec.fetcher.adopt(&published)) {
            Some(Ok(true)) => Some(FetchEvent::Adopted(source.spec.kind)),
            Some(Ok(false)) => None,
            Some(Err(error)) => Some(FetchEvent::UnusableRecord {
                label: label(),
                error,
            }),
            None => Some(FetchEvent::UnreadableRecord { label: label() }),
        }
    }

    /// Starts the source's due fetch if this worker gets the lease.
    fn start(
        &mut self,
        id: SourceId,
        store: &mut dyn SharedData,
        now: UnixSeconds,
        events: &mut Vec<FetchEvent>,
    ) -> Option<Dispatch> {
        let worker = self.worker;
        let source = self.get_mut(id)?;
        let deadline = source.spec.fetcher.wait_deadline(now);
        if !take_lease(store, &source.spec.lease_record, worker, now, deadline) {
            // Another worker is fetching; its result arrives through shared data. Look again
            // in a second in case it gives up.
            source.spec.fetcher.defer(now.saturating_add(1));
            return None;
        }
        // What happened while we were not holding the lease may make this fetch unnecessary.
        events.extend(self.adopt_published(id, store));
        let source = self.get_mut(id)?;
        if source.spec.fetcher.poll(now) != Poll::Due {
            release_lease(store, &source.spec.lease_record, worker);
            return None;
        }
        let (document, request) = source.spec.fetcher.start(now);
        source.call = Some(Call::Asked {
            started_from: source.seen_cas,
        });
        let accept = match document {
            Document::Discovery | Document::Jwks => "application/json",
            Document::AddressList => "text/plain",
        };
        Some(Dispatch {
            source: id,
            request,
            accept,
        })
    }

    /// How the dispatch of [`Step::dispatch`] went: the host's token for the call, or refused.
    pub fn dispatched(
        &mut self,
        id: SourceId,
        dispatched: Result<u32, Refused>,
        store: &mut dyn SharedData,
        now: UnixSeconds,
    ) -> Step<R> {
        let mut step = Step::new();
        let Some(source) = self.get_mut(id) else {
            return step;
        };
        let Some(Call::Asked { started_from }) = source.call else {
            return step; // Not asked for: nothing to report.
        };
        match dispatched {
            Ok(token) => {
                source.call = Some(Call::InFlight {
                    token,
                    started_from,
                });
            }
            Err(Refused) => {
                source.spec.fetcher.on_failure(now, FetchError::Dispatch);
                self.finish(id, store, now, Err(FetchError::Dispatch), &mut step);
            }
        }
        step
    }

    /// The source waiting for the call with this token, and how much of a body it accepts;
    /// `None`: an answer to a call given up on (or not ours).
    pub fn call_of(&self, token: u32) -> Option<SourceId> {
        self.sources.iter().enumerate().find_map(|(index, source)| {
            let call = source.as_ref()?.call?;
            matches!(call, Call::InFlight { token: ours, .. } if ours == token)
                .then_some(SourceId(index))
        })
    }

    /// How much of an answer's body to read: all of a `200` that fits the source's limit
    /// (`None` past it: too large), the start of any other.
    pub fn readable_body(&self, id: SourceId, status: Option<u16>, size: usize) -> Option<usize> {
        let limit = self.get(id)?.spec.fetcher.max_document_bytes();
        match status {
            Some(200) if size > limit => None,
            Some(200) => Some(size),
            _ => Some(size.min(STATUS_BODY_PREFIX)),
        }
    }

    /// The host answered the source's call (Envoy answers its own timeouts and connection
    /// failures with `504`/`503`; no `:status` at all also means the call failed).
    pub fn on_answer(
        &mut self,
        id: SourceId,
        answer: Answer,
        store: &mut dyn SharedData,
        now: UnixSeconds,
    ) -> Step<R> {
        let mut step = Step::new();
        let Some(source) = self.get_mut(id) else {
            return step;
        };
        let fetcher = &mut source.spec.fetcher;
        let result = match (answer.status, answer.body) {
            (None, _) => {
                fetcher.on_failure(now, FetchError::Timeout);
                Err(FetchError::Timeout)
            }
            (Some(_), None) => {
                fetcher.on_failure(now, FetchError::TooLarge);
                Err(FetchError::TooLarge)
            }
            (Some(status), Some(body)) => {
                fetcher.on_response(now, status, answer.cache_control.as_deref(), &body)
            }
        };
        match result {
            // The JWKS fetch follows on the next tick, under the same lease.
            Ok(Progress::Discovered) => {}
            Ok(Progress::Updated { skipped }) => {
                let label = &source.spec.label;
                step.events
                    .extend(skipped.into_iter().map(|key| FetchEvent::SkippedKey {
                        label: label.clone(),
                        key,
                    }));
                self.finish(id, store, now, Ok(()), &mut step);
            }
            Err(error) => self.finish(id, store, now, Err(error), &mut step),
        }
        step
    }

    /// An attempt ended (the fetcher already knows how): count it, publish the proxy-wide
    /// record against the one read when the fetch started, free the lease, and wake the
    /// requests whose wait is over.
    fn finish(
        &mut self,
        id: SourceId,
        store: &mut dyn SharedData,
        now: UnixSeconds,
        result: Result<(), FetchError>,
        step: &mut Step<R>,
    ) {
        let worker = self.worker;
        let Some(source) = self.get_mut(id) else {
            return;
        };
        step.events.push(match result {
            Ok(()) => FetchEvent::Succeeded(source.spec.kind),
            Err(error) => FetchEvent::Failed {
                kind: source.spec.kind,
                label: source.spec.label.clone(),
                error,
            },
        });
        let started_from = source.call.take().and_then(Call::started_from);
        let record = source.spec.fetcher.to_share().encode();
        if store
            .set(&source.spec.document_record, &record, started_from)
            .is_ok()
        {
            // Our own publication is not news to us.
            if let Ok((_, cas)) = store.get(&source.spec.document_record) {
                source.seen_cas = cas;
            }
        }
        release_lease(store, &source.spec.lease_record, worker);
        step.wake.extend(self.ready_waiters(now));
    }

    /// Before answering `503` for want of keys (or an address list), looks at what other
    /// workers published since the last tick: keys fetched elsewhere a moment ago must not
    /// leave this worker refusing requests until its next tick. Only runs in that rare state,
    /// never on the hot path.
    pub fn adopt_if_unavailable(
        &mut self,
        store: &dyn SharedData,
        now: UnixSeconds,
    ) -> Vec<FetchEvent> {
        let unavailable: Vec<SourceId> = self
            .ids()
            .filter(|&id| {
                self.get(id).is_some_and(|source| {
                    matches!(source.spec.fetcher.in_force(now), InForce::Unavailable)
                })
            })
            .collect();
        unavailable
            .into_iter()
            .filter_map(|id| self.adopt_published(id, store))
            .collect()
    }
}

/// Takes the lease by compare-and-swap, for up to `until`.
fn take_lease(
    store: &mut dyn SharedData,
    record: &str,
    worker: u64,
    now: UnixSeconds,
    until: UnixSeconds,
) -> bool {
    let Ok((current, Some(cas))) = store.get(record) else {
        return false;
    };
    if !Lease::can_take(current.as_deref(), worker, now) {
        return false;
    }
    let lease = Lease {
        holder: worker,
        expires_at: until,
    };
    store.set(record, &lease.encode(), Some(cas)).is_ok()
}

/// Frees the lease if this worker still holds it.
fn release_lease(store: &mut dyn SharedData, record: &str, worker: u64) {
    if let Ok((Some(current), Some(cas))) = store.get(record) {
        if Lease::decode(&current).is_some_and(|lease| lease.holder == worker) {
            let _ = store.set(record, FREE_LEASE, Some(cas));
        }
    }
}

/// A per-VM identity for leases, drawn from a shared counter (created on first use; the
/// counter only needs distinct values, which compare-and-swap gives once it exists). `None`
/// without shared data (or with endless contention): the caller picks another way.
pub fn allocate_worker_id(store: &mut dyn SharedData) -> Option<u64> {
    for _ in 0..64 {
        let Ok((current, cas)) = store.get(WORKERS_RECORD) else {
            return None;
        };
        let next = current
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_add(1);
        if store
            .set(WORKERS_RECORD, next.to_string().as_bytes(), cas)
            .is_ok()
        {
            return Some(next);
        }
    }
    None
}
