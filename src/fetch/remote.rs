//! Documents fetched at run time — identity providers' keys and address lists — by a sans-I/O
//! state machine per source.
//!
//! A [`Fetcher`] never performs I/O and never reads a clock. The adapter asks it
//! [`Fetcher::poll`] whether a call is due, [`Fetcher::start`]s it, tells it the answer
//! ([`Fetcher::on_response`]) or that there was none ([`Fetcher::on_failure`]), and asks
//! [`Fetcher::keys`] which keys are in force ([`Fetcher::addresses`]: which address list).
//! With discovery, the fetcher first reads the
//! OpenID configuration (whose `issuer` must be the configured one) and then its `jwks_uri`.
//!
//! The rules it keeps:
//! - one call in flight at a time; a call that outlives its deadline counts as failed;
//! - a good JWKS replaces the keys and schedules a refresh after `refresh_seconds` (or the
//!   response's `Cache-Control: max-age`, clamped to `MIN_REFRESH..=MAX_REFRESH`), less up to a
//!   tenth as jitter so that proxies started together do not refresh together;
//! - a bad answer (not 200, not JSON, too large, no usable key) never replaces good keys: it is
//!   retried with exponential backoff, and the last good keys stay in force until
//!   `max_stale_seconds` after they were due for refresh — then no keys, and requests get `503`;
//!   an address list keeps the same rules (its document is read whole or not at all);
//! - an unknown `kid` may trigger one refetch per `min_refetch_seconds`;
//! - the worker that fetched publishes a [`SharedRecord`] record (keys, schedule, failure count,
//!   generation); the others adopt it, so the whole proxy keeps one schedule and one backoff.

use serde_json::Value;

use crate::base::http::HttpUri;
use crate::base::ids::{ListIndex, ProviderIndex};
use crate::base::time::UnixSeconds;
use crate::jose::jwks::{JwksError, KeySet, SkippedKey};
use crate::policy::context::{AddressSet, ListError};

/// Shortest refresh interval a `Cache-Control: max-age` may ask for.
pub const MIN_REFRESH_SECONDS: u64 = 30;
/// Longest refresh interval a `Cache-Control: max-age` may ask for.
pub const MAX_REFRESH_SECONDS: u64 = 86_400;
/// Largest JWKS or discovery document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// Largest address list accepted: room for [`crate::policy::context::MAX_LIST_ENTRIES`]
/// IPv4 blocks with comments.
pub const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;
/// First retry delay after a failure; doubles per consecutive failure.
const FIRST_RETRY_SECONDS: i64 = 1;
/// Longest retry delay.
const MAX_RETRY_SECONDS: i64 = 300;

/// Where a document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The document's own URI (a JWKS, an address list).
    Direct(HttpUri),
    /// Keys only: an OpenID configuration document whose `jwks_uri` is then fetched.
    Discovery(HttpUri),
}

/// Validated settings of a remote source. Defaults are in `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    pub location: Location,
    /// What the host dispatches to: an Envoy cluster name, a `host:port` elsewhere.
    pub upstream: String,
    /// With discovery: where the `jwks_uri` is fetched through, when its host is not the
    /// discovery document's (e.g. keys served from another domain). `None`: `upstream`.
    pub jwks_upstream: Option<String>,
    pub timeout_ms: u64,
    pub refresh_seconds: u64,
    pub max_stale_seconds: u64,
    pub min_refetch_seconds: u64,
    /// `http://` URIs allowed (and `jwks_uri`s from discovery).
    pub allow_http: bool,
}

/// What a source's documents are read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// A JWKS, for the provider with this `issuer` (which discovery must name) and these
    /// algorithms (a set must hold a key for one of them to be usable).
    Keys {
        issuer: String,
        algorithms: Vec<crate::jose::algorithm::Algorithm>,
    },
    /// An address list ([`AddressSet::parse_list`]).
    AddressList,
}

/// What a fetched document holds.
#[derive(Debug, Clone)]
pub enum Content {
    Keys(KeySet),
    Addresses(AddressSet),
}

/// An HTTP GET the adapter should dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub upstream: String,
    pub uri: HttpUri,
    pub timeout_ms: u64,
}

/// Which document a call fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    Discovery,
    Jwks,
    AddressList,
}

/// Why a fetch did not produce keys. Each is counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The host could not dispatch the call (e.g. unknown cluster).
    Dispatch,
    /// No response before the deadline (Envoy answers `504` for its own timeout).
    Timeout,
    /// The identity provider could not be reached: connection refused or reset, TLS handshake
    /// or certificate verification failed, no healthy endpoint (Envoy answers these `503`
    /// itself, with a body saying so).
    Unreachable,
    /// The provider answered with a status other than 200 (redirects included: they are never
    /// followed).
    Status,
    /// Larger than [`MAX_DOCUMENT_BYTES`] ([`MAX_LIST_BYTES`]), or more than
    /// [`crate::jose::jwks::MAX_KEYS`] keys ([`crate::policy::context::MAX_LIST_ENTRIES`] entries).
    TooLarge,
    /// Not a JSON object, or not a JWKS; an address list with a line that is not an address.
    Malformed,
    /// A JWKS without any key usable for the provider's algorithms.
    NoUsableKey,
    /// A discovery document for another issuer, or without a usable `jwks_uri`.
    Discovery,
}

impl FetchError {
    pub const ALL: [FetchError; 8] = [
        FetchError::Dispatch,
        FetchError::Timeout,
        FetchError::Unreachable,
        FetchError::Status,
        FetchError::TooLarge,
        FetchError::Malformed,
        FetchError::NoUsableKey,
        FetchError::Discovery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FetchError::Dispatch => "dispatch",
            FetchError::Timeout => "timeout",
            FetchError::Unreachable => "unreachable",
            FetchError::Status => "status",
            FetchError::TooLarge => "too_large",
            FetchError::Malformed => "malformed",
            FetchError::NoUsableKey => "no_usable_key",
            FetchError::Discovery => "discovery",
        }
    }
}

/// What is in force for a source right now.
#[derive(Debug, Clone, Copy)]
pub enum InForce<'a, T> {
    /// Fetched and not yet due for refresh.
    Fresh(&'a T),
    /// Due for refresh (which has not succeeded yet), still within `max_stale_seconds`.
    Stale(&'a T),
    /// Nothing yet, and a fetch is pending or will be retried: requests may wait.
    Pending,
    /// Nothing usable: the last fetch failed and nothing good is cached.
    Unavailable,
}

/// The keys in force for a provider right now.
pub type KeysNow<'a> = InForce<'a, KeySet>;
/// The address list in force right now.
pub type AddressesNow<'a> = InForce<'a, AddressSet>;

/// A document as fetched and read, with when.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub content: Content,
    /// The document as received, to share with other workers.
    pub document: Vec<u8>,
    pub fetched_at: UnixSeconds,
    pub refresh_at: UnixSeconds,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Nothing in flight; fetch when `now >= next_fetch_at`.
    Idle { next_fetch_at: UnixSeconds },
    /// A call is in flight.
    InFlight {
        document: Document,
        deadline: UnixSeconds,
    },
}

/// What [`Fetcher::poll`] asks of the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Nothing to do now.
    Idle,
    /// A fetch is due: take the lease, then [`Fetcher::start`] it.
    Due,
    /// The call in flight passed its deadline and now counts as a `timeout` failure: forget
    /// the call (a late answer is no longer wanted), publish and release the lease.
    GaveUp,
}

/// The proxy-wide state of one provider's keys, as the worker that last fetched publishes it
/// for the others (through host shared data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecord {
    /// Counts ended fetch attempts proxy-wide; a record is news only with a higher one.
    pub generation: u64,
    /// When the last attempt ended (it counts against the unknown-`kid` refetch limit).
    pub attempted_at: UnixSeconds,
    /// When the next attempt is due, proxy-wide (refresh, or retry after failures).
    pub next_fetch_at: UnixSeconds,
    /// Consecutive failed attempts, proxy-wide: the backoff continues across workers.
    pub failures: u32,
    /// The document in force, if any was ever fetched.
    pub document: Option<SharedDocument>,
}

/// A published document (JWKS, address list) and its schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDocument {
    pub fetched_at: UnixSeconds,
    pub refresh_at: UnixSeconds,
    pub document: Vec<u8>,
}

/// What a completed call changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Discovery succeeded; the JWKS fetch follows at once.
    Discovered,
    /// A new document is in force (for keys: with the keys it left out).
    Updated { skipped: Vec<SkippedKey> },
}

/// The document lifecycle of one source (see the module docs).
#[derive(Debug, Clone)]
pub struct Fetcher {
    settings: RemoteSettings,
    reading: Reading,
    phase: Phase,
    /// The document's own URI: configured, or (for keys) from discovery.
    document_uri: Option<HttpUri>,
    fetched: Option<Fetched>,
    consecutive_failures: u32,
    last_attempt_at: Option<UnixSeconds>,
    /// Spreads refreshes: a value in `0..1000` chosen by the adapter.
    jitter_permille: u64,
    /// Increases whenever the document in force changes.
    version: u64,
    /// Ended attempts, here or (through adoption) anywhere in the proxy.
    generation: u64,
}

impl Fetcher {
    /// The fetcher of a provider's keys.
    pub fn for_keys(
        settings: RemoteSettings,
        issuer: &str,
        algorithms: &[crate::jose::algorithm::Algorithm],
        now: UnixSeconds,
        jitter_permille: u64,
    ) -> Fetcher {
        let reading = Reading::Keys {
            issuer: issuer.to_owned(),
            algorithms: algorithms.to_vec(),
        };
        Fetcher::new(settings, reading, now, jitter_permille)
    }

    /// The fetcher of an address list (its location is always [`Location::Direct`]).
    pub fn for_address_list(
        settings: RemoteSettings,
        now: UnixSeconds,
        jitter_permille: u64,
    ) -> Fetcher {
        Fetcher::new(settings, Reading::AddressList, now, jitter_permille)
    }

    fn new(
        settings: RemoteSettings,
        reading: Reading,
        now: UnixSeconds,
        jitter_permille: u64,
    ) -> Fetcher {
        let document_uri = match &settings.location {
            Location::Direct(uri) => Some(uri.clone()),
            Location::Discovery(_) => None,
        };
        Fetcher {
            settings,
            reading,
            phase: Phase::Idle { next_fetch_at: now },
            document_uri,
            fetched: None,
            consecutive_failures: 0,
            last_attempt_at: None,
            jitter_permille: jitter_permille % 1000,
            version: 0,
            generation: 0,
        }
    }

    /// Ended attempts known here: requests waiting for a refetch wake when it changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The version of the keys in force; changes whenever they do.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn fetched(&self) -> Option<&Fetched> {
        self.fetched.as_ref()
    }

    pub fn in_flight(&self) -> bool {
        matches!(self.phase, Phase::InFlight { .. })
    }

    /// Seconds one call may take, as the host enforces it, plus a second for tick granularity.
    fn call_seconds(&self) -> i64 {
        crate::base::time::call_seconds(self.settings.timeout_ms)
    }

    /// How long a request may wait for keys from `now`: the calls still needed (two with
    /// discovery before its `jwks_uri` is known) and a second of lease and tick slack each.
    pub fn wait_deadline(&self, now: UnixSeconds) -> UnixSeconds {
        let calls = if self.document_uri.is_none() { 2 } else { 1 };
        now.saturating_add(self.call_seconds().saturating_add(1).saturating_mul(calls))
    }

    /// What to do at `now` (see [`Poll`]).
    pub fn poll(&mut self, now: UnixSeconds) -> Poll {
        match self.phase {
            Phase::InFlight { deadline, .. } if now > deadline => {
                self.on_failure(now, FetchError::Timeout);
                Poll::GaveUp
            }
            Phase::InFlight { .. } => Poll::Idle,
            Phase::Idle { next_fetch_at } if now >= next_fetch_at => Poll::Due,
            Phase::Idle { .. } => Poll::Idle,
        }
    }

    /// Starts the next call (when [`Fetcher::poll`] said [`Poll::Due`]): the fetcher counts
    /// it as in flight until [`Fetcher::on_response`] or [`Fetcher::on_failure`].
    pub fn start(&mut self, now: UnixSeconds) -> (Document, FetchRequest) {
        let direct = match self.reading {
            Reading::Keys { .. } => Document::Jwks,
            Reading::AddressList => Document::AddressList,
        };
        let (document, uri) = match (&self.document_uri, &self.settings.location) {
            (Some(uri), _) | (None, Location::Direct(uri)) => (direct, uri.clone()),
            (None, Location::Discovery(uri)) => (Document::Discovery, uri.clone()),
        };
        self.phase = Phase::InFlight {
            document,
            deadline: now.saturating_add(self.call_seconds()),
        };
        let upstream = match (document, &self.settings.jwks_upstream) {
            (Document::Jwks, Some(jwks_upstream)) => jwks_upstream,
            _ => &self.settings.upstream,
        };
        let request = FetchRequest {
            upstream: upstream.clone(),
            uri,
            timeout_ms: self.settings.timeout_ms,
        };
        (document, request)
    }

    /// Another worker holds the fetch lease: look again at `until`.
    pub fn defer(&mut self, until: UnixSeconds) {
        if let Phase::Idle { next_fetch_at } = &mut self.phase {
            *next_fetch_at = (*next_fetch_at).max(until);
        }
    }

    /// What is in force at `now`.
    pub fn in_force(&self, now: UnixSeconds) -> InForce<'_, Content> {
        match &self.fetched {
            Some(fetched) if now < fetched.refresh_at => InForce::Fresh(&fetched.content),
            Some(fetched) if now <= self.stale_until(fetched) => InForce::Stale(&fetched.content),
            // Past the stale limit: nothing is in force until a fetch succeeds.
            Some(_) => InForce::Unavailable,
            None if self.consecutive_failures > 0 => InForce::Unavailable,
            None => InForce::Pending,
        }
    }

    /// The keys in force at `now` (none for an address list's fetcher).
    pub fn keys(&self, now: UnixSeconds) -> KeysNow<'_> {
        self.in_force(now).map(|content| match content {
            Content::Keys(keys) => Some(keys),
            Content::Addresses(_) => None,
        })
    }

    /// The address list in force at `now` (none for a key fetcher).
    pub fn addresses(&self, now: UnixSeconds) -> AddressesNow<'_> {
        self.in_force(now).map(|content| match content {
            Content::Addresses(addresses) => Some(addresses),
            Content::Keys(_) => None,
        })
    }

    fn stale_until(&self, fetched: &Fetched) -> UnixSeconds {
        fetched
            .refresh_at
            .saturating_add(seconds(self.settings.max_stale_seconds))
    }

    /// A token named a `kid` the keys in force do not have: refetch now, unless an attempt
    /// ended within `min_refetch_seconds` anywhere in the proxy, or a call is already in flight
    /// (which will bring the newest keys anyway). Returns whether new keys may still arrive.
    pub fn request_refetch(&mut self, now: UnixSeconds) -> bool {
        if self.in_flight() {
            return true;
        }
        let allowed = self.last_attempt_at.is_none_or(|last| {
            now >= last.saturating_add(seconds(self.settings.min_refetch_seconds))
        });
        if allowed {
            // Counts as an attempt at once, so a storm of unknown `kid`s asks only once.
            self.last_attempt_at = Some(now);
            self.phase = Phase::Idle { next_fetch_at: now };
        }
        allowed
    }

    /// The answer to the call in flight: `status`, the `Cache-Control` header if any, the body.
    pub fn on_response(
        &mut self,
        now: UnixSeconds,
        status: u16,
        cache_control: Option<&str>,
        body: &[u8],
    ) -> Result<Progress, FetchError> {
        let Phase::InFlight { document, .. } = self.phase else {
            // The adapter forgets calls the fetcher gave up on; nothing else can get here.
            return Err(FetchError::Timeout);
        };
        let result = self.accept(now, document, status, cache_control, body);
        if let Err(error) = result {
            self.on_failure(now, error);
        }
        result
    }

    fn accept(
        &mut self,
        now: UnixSeconds,
        document: Document,
        status: u16,
        cache_control: Option<&str>,
        body: &[u8],
    ) -> Result<Progress, FetchError> {
        if status != 200 {
            return Err(failed_status(status, body));
        }
        if body.len() > self.max_document_bytes() {
            return Err(FetchError::TooLarge);
        }
        match document {
            Document::Discovery => {
                let jwks_uri = self.jwks_uri_from_discovery(body)?;
                self.document_uri = Some(jwks_uri);
                self.phase = Phase::Idle { next_fetch_at: now };
                Ok(Progress::Discovered)
            }
            Document::Jwks | Document::AddressList => {
                let refresh = refresh_interval(self.settings.refresh_seconds, cache_control);
                let refresh_at = now.saturating_add(self.jittered(refresh));
                let skipped = self.install(body, now, refresh_at)?;
                self.end_attempt(now);
                self.consecutive_failures = 0;
                self.phase = Phase::Idle {
                    next_fetch_at: refresh_at,
                };
                Ok(Progress::Updated { skipped })
            }
        }
    }

    /// The call in flight failed: keep the keys. Keys that are still fresh keep their refresh
    /// schedule (a failed unknown-`kid` refetch needs no retry: the next unknown `kid` asks
    /// again); otherwise retry with exponential backoff.
    pub fn on_failure(&mut self, now: UnixSeconds, _error: FetchError) {
        self.end_attempt(now);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let exponent = self.consecutive_failures.saturating_sub(1).min(16);
        let delay = FIRST_RETRY_SECONDS
            .saturating_mul(1_i64 << exponent)
            .min(MAX_RETRY_SECONDS);
        let next_fetch_at = match &self.fetched {
            Some(fetched) if now < fetched.refresh_at => fetched.refresh_at,
            _ => now.saturating_add(delay),
        };
        self.phase = Phase::Idle { next_fetch_at };
    }

    fn end_attempt(&mut self, now: UnixSeconds) {
        self.generation = self.generation.wrapping_add(1);
        self.last_attempt_at = Some(self.last_attempt_at.map_or(now, |last| last.max(now)));
    }

    /// The proxy-wide record to publish after an attempt ended here.
    pub fn to_share(&self) -> SharedRecord {
        let next_fetch_at = match self.phase {
            Phase::Idle { next_fetch_at } => next_fetch_at,
            Phase::InFlight { deadline, .. } => deadline,
        };
        SharedRecord {
            generation: self.generation,
            attempted_at: self.last_attempt_at.unwrap_or(0),
            next_fetch_at,
            failures: self.consecutive_failures,
            document: self.fetched.as_ref().map(|fetched| SharedDocument {
                fetched_at: fetched.fetched_at,
                refresh_at: fetched.refresh_at,
                document: fetched.document.clone(),
            }),
        }
    }

    /// Takes over a record another worker published, if it is news (a higher generation):
    /// its keys (when they differ from ours), its schedule, its failure count and its last
    /// attempt. A call in flight here keeps its own schedule.
    pub fn adopt(&mut self, shared: &SharedRecord) -> Result<bool, FetchError> {
        if shared.generation <= self.generation {
            return Ok(false);
        }
        if let Some(published) = &shared.document {
            let same = self
                .fetched
                .as_ref()
                .is_some_and(|own| own.document == published.document);
            if same {
                if let Some(own) = &mut self.fetched {
                    own.fetched_at = published.fetched_at;
                    own.refresh_at = published.refresh_at;
                }
            } else {
                self.install(
                    &published.document,
                    published.fetched_at,
                    published.refresh_at,
                )?;
            }
        }
        self.generation = shared.generation;
        self.consecutive_failures = shared.failures;
        self.last_attempt_at = Some(
            self.last_attempt_at
                .map_or(shared.attempted_at, |last| last.max(shared.attempted_at)),
        );
        if !self.in_flight() {
            self.phase = Phase::Idle {
                next_fetch_at: shared.next_fetch_at,
            };
        }
        Ok(true)
    }

    /// Installs a JWKS document fetched at `fetched_at` if it holds a usable key.
    fn install(
        &mut self,
        document: &[u8],
        fetched_at: UnixSeconds,
        refresh_at: UnixSeconds,
    ) -> Result<Vec<SkippedKey>, FetchError> {
        let (content, skipped) = read(&self.reading, document)?;
        self.fetched = Some(Fetched {
            content,
            document: document.to_vec(),
            fetched_at,
            refresh_at,
        });
        self.version = self.version.wrapping_add(1);
        // With discovery, the next refresh reads the configuration again (it may move the JWKS).
        if matches!(self.settings.location, Location::Discovery(_)) {
            self.document_uri = None;
        }
        Ok(skipped)
    }

    /// Largest document this source accepts.
    pub fn max_document_bytes(&self) -> usize {
        match self.reading {
            Reading::Keys { .. } => MAX_DOCUMENT_BYTES,
            Reading::AddressList => MAX_LIST_BYTES,
        }
    }

    fn jwks_uri_from_discovery(&self, body: &[u8]) -> Result<HttpUri, FetchError> {
        let document: Value = serde_json::from_slice(body).map_err(|_| FetchError::Malformed)?;
        let issuer = document.get("issuer").and_then(Value::as_str);
        let expected = match &self.reading {
            Reading::Keys { issuer, .. } => Some(issuer.as_str()),
            Reading::AddressList => None,
        };
        if issuer.is_none() || issuer != expected {
            return Err(FetchError::Discovery);
        }
        let discovery_authority = match &self.settings.location {
            Location::Discovery(uri) => Some(uri.authority.as_str()),
            Location::Direct(_) => None,
        };
        document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .and_then(HttpUri::parse)
            .filter(|uri| uri.secure || self.settings.allow_http)
            // The call goes through `upstream`, whose TLS names the discovery host: a JWKS on
            // another host needs its own `jwks_upstream`.
            .filter(|uri| {
                self.settings.jwks_upstream.is_some()
                    || Some(uri.authority.as_str()) == discovery_authority
            })
            .ok_or(FetchError::Discovery)
    }

    /// `interval` less up to a tenth, by the jitter.
    fn jittered(&self, interval: u64) -> i64 {
        let spread = (interval / 10).saturating_mul(self.jitter_permille) / 1000;
        seconds(interval.saturating_sub(spread))
    }
}

/// Reads a fetched document as `reading` says; a document without anything usable is refused.
fn read(reading: &Reading, document: &[u8]) -> Result<(Content, Vec<SkippedKey>), FetchError> {
    match reading {
        Reading::Keys { algorithms, .. } => {
            let (keys, skipped) = KeySet::from_json(document).map_err(|error| match error {
                JwksError::TooManyKeys => FetchError::TooLarge,
                JwksError::NotAnObject | JwksError::MissingKeys => FetchError::Malformed,
            })?;
            let usable = keys
                .keys()
                .iter()
                .any(|key| algorithms.iter().any(|algorithm| key.accepts(*algorithm)));
            if !usable {
                return Err(FetchError::NoUsableKey);
            }
            Ok((Content::Keys(keys), skipped))
        }
        Reading::AddressList => {
            let addresses = AddressSet::parse_list(document).map_err(|error| match error {
                ListError::TooManyEntries => FetchError::TooLarge,
                ListError::NotText | ListError::BadLine { .. } | ListError::Empty => {
                    FetchError::Malformed
                }
            })?;
            Ok((Content::Addresses(addresses), Vec::new()))
        }
    }
}

impl<'a, T> InForce<'a, T> {
    /// The same state, of a part of what is in force; `None` from `part` reads as unavailable.
    fn map<U>(self, part: impl FnOnce(&'a T) -> Option<&'a U>) -> InForce<'a, U> {
        match self {
            InForce::Fresh(whole) => part(whole).map_or(InForce::Unavailable, InForce::Fresh),
            InForce::Stale(whole) => part(whole).map_or(InForce::Unavailable, InForce::Stale),
            InForce::Pending => InForce::Pending,
            InForce::Unavailable => InForce::Unavailable,
        }
    }
}

fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Classifies a non-200 answer. The proxy answers a call it could not complete itself: `504`
/// for its timeout, `503` with an `upstream connect error …` or `no healthy upstream` body
/// for a connection or TLS failure (Envoy's local replies). Anything else came from the IdP.
fn failed_status(status: u16, body: &[u8]) -> FetchError {
    let from_proxy = |prefix: &[u8]| body.starts_with(prefix);
    match status {
        504 => FetchError::Timeout,
        503 if from_proxy(b"upstream connect error") || from_proxy(b"no healthy upstream") => {
            FetchError::Unreachable
        }
        _ => FetchError::Status,
    }
}

/// The refresh interval: `max-age` from `Cache-Control` when present, clamped to
/// `MIN_REFRESH_SECONDS..=MAX_REFRESH_SECONDS`; else the configured one.
pub fn refresh_interval(configured: u64, cache_control: Option<&str>) -> u64 {
    let max_age = cache_control.and_then(|header| {
        header.split(',').find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
    });
    match max_age {
        Some(max_age) => max_age.clamp(MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS),
        None => configured,
    }
}

impl SharedRecord {
    /// The record of a source nobody has fetched yet.
    pub fn empty() -> SharedRecord {
        SharedRecord {
            generation: 0,
            attempted_at: 0,
            next_fetch_at: 0,
            failures: 0,
            document: None,
        }
    }

    /// `wjwt2 <generation> <attempted_at> <next_fetch_at> <failures> [<fetched_at> <refresh_at>]`
    /// on one line, then the document as fetched, so workers adopting it parse exactly what the
    /// fetcher accepted.
    pub fn encode(&self) -> Vec<u8> {
        let mut encoded = format!(
            "wjwt2 {} {} {} {}",
            self.generation, self.attempted_at, self.next_fetch_at, self.failures
        );
        if let Some(shared) = &self.document {
            encoded.push_str(&format!(" {} {}", shared.fetched_at, shared.refresh_at));
        }
        encoded.push('\n');
        let mut encoded = encoded.into_bytes();
        if let Some(shared) = &self.document {
            encoded.extend_from_slice(&shared.document);
        }
        encoded
    }

    /// Reads what [`SharedRecord::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<SharedRecord> {
        let newline = bytes.iter().position(|byte| *byte == b'\n')?;
        let header = std::str::from_utf8(bytes.get(..newline)?).ok()?;
        let document = bytes.get(newline.checked_add(1)?..)?;
        let mut fields = header.split(' ');
        if fields.next()? != "wjwt2" {
            return None;
        }
        let generation = fields.next()?.parse().ok()?;
        let attempted_at = fields.next()?.parse().ok()?;
        let next_fetch_at = fields.next()?.parse().ok()?;
        let failures = fields.next()?.parse().ok()?;
        let shared = match (fields.next(), fields.next(), fields.next()) {
            (None, None, None) if document.is_empty() => None,
            (Some(fetched_at), Some(refresh_at), None) => Some(SharedDocument {
                fetched_at: fetched_at.parse().ok()?,
                refresh_at: refresh_at.parse().ok()?,
                document: document.to_vec(),
            }),
            _ => return None,
        };
        Some(SharedRecord {
            generation,
            attempted_at,
            next_fetch_at,
            failures,
            document: shared,
        })
    }
}

/// The right to fetch a provider's keys for the whole proxy, held by one worker at a time
/// through host shared data (compare-and-swap). It expires, so a worker that got stuck or went
/// away is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: u64,
    pub expires_at: UnixSeconds,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.holder, self.expires_at).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let (holder, expires_at) = std::str::from_utf8(bytes).ok()?.split_once(' ')?;
        Some(Lease {
            holder: holder.parse().ok()?,
            expires_at: expires_at.parse().ok()?,
        })
    }

    /// Whether `worker` may take the lease now, given what shared data holds.
    pub fn can_take(current: Option<&[u8]>, worker: u64, now: UnixSeconds) -> bool {
        match current.and_then(Lease::decode) {
            None => true,
            Some(lease) => lease.holder == worker || now >= lease.expires_at,
        }
    }
}

/// What is fetched at run time: keys of providers with remote keys, and address lists.
pub trait RemoteDocuments {
    fn keys_now(&self, provider: ProviderIndex, now: UnixSeconds) -> KeysNow<'_>;
    fn address_list_now(&self, list: ListIndex, now: UnixSeconds) -> AddressesNow<'_>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use crate::jose::algorithm::Algorithm;
    use crate::support::{jwks, TestKey};

    const T0: i64 = 1_800_000_000;
    const ISSUER: &str = "https://idp.example.com";

    fn settings(location: Location) -> RemoteSettings {
        RemoteSettings {
            location,
            upstream: "idp".to_owned(),
            jwks_upstream: None,
            timeout_ms: 5_000,
            refresh_seconds: 600,
            max_stale_seconds: 3_600,
            min_refetch_seconds: 30,
            allow_http: false,
        }
    }

    fn jwks_fetcher() -> Fetcher {
        let uri = HttpUri::parse("https://idp.example.com/jwks").unwrap();
        Fetcher::for_keys(
            settings(Location::Direct(uri)),
            ISSUER,
            &[Algorithm::Es256],
            T0,
            0,
        )
    }

    fn good_jwks() -> Vec<u8> {
        jwks(&[TestKey::P256]).to_string().into_bytes()
    }

    fn due(fetcher: &mut Fetcher, now: i64) -> bool {
        fetcher.poll(now) == Poll::Due
    }

    fn fresh(fetcher: &Fetcher, now: i64) -> bool {
        matches!(fetcher.keys(now), KeysNow::Fresh(_))
    }

    #[test]
    fn uris_split_into_authority_and_path() {
        let uri = HttpUri::parse("https://idp.example.com:8443/realms/a/certs?x=1").unwrap();
        assert_eq!(
            (uri.secure, uri.authority.as_str(), uri.path.as_str()),
            (true, "idp.example.com:8443", "/realms/a/certs?x=1")
        );
        assert_eq!(HttpUri::parse("http://127.0.0.1").unwrap().path, "/");
        for bad in [
            "ftp://x/",
            "https://",
            "https://user@host/",
            "https://h/a b",
            "https://h/#f",
            "//h/",
        ] {
            assert_eq!(HttpUri::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cold_start_fetches_once_and_refreshes_on_schedule() {
        let mut fetcher = jwks_fetcher();
        assert!(matches!(fetcher.keys(T0), KeysNow::Pending));
        assert!(due(&mut fetcher, T0));
        let (document, request) = fetcher.start(T0);
        assert_eq!(document, Document::Jwks);
        assert_eq!(
            (request.upstream.as_str(), request.uri.path.as_str()),
            ("idp", "/jwks")
        );
        assert!(!due(&mut fetcher, T0), "one call in flight at a time");
        let progress = fetcher
            .on_response(T0 + 1, 200, None, &good_jwks())
            .unwrap();
        assert_eq!(progress, Progress::Updated { skipped: vec![] });
        assert!(fresh(&fetcher, T0 + 1));
        assert!(!due(&mut fetcher, T0 + 600));
        assert!(due(&mut fetcher, T0 + 601));
        assert!(matches!(fetcher.keys(T0 + 601), KeysNow::Stale(_)));
    }

    #[test]
    fn cache_control_max_age_sets_the_refresh_within_bounds() {
        assert_eq!(refresh_interval(600, Some("public, max-age=120")), 120);
        assert_eq!(
            refresh_interval(600, Some("max-age=1")),
            MIN_REFRESH_SECONDS
        );
        assert_eq!(
            refresh_interval(600, Some("max-age=99999999")),
            MAX_REFRESH_SECONDS
        );
        assert_eq!(refresh_interval(600, Some("no-cache")), 600);
        assert_eq!(refresh_interval(600, Some("max-age=abc")), 600);
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        fetcher
            .on_response(T0, 200, Some("max-age=120"), &good_jwks())
            .unwrap();
        assert!(due(&mut fetcher, T0 + 120) && !due(&mut fetcher, T0 + 119));
    }

    #[test]
    fn bad_answers_never_replace_good_keys_and_back_off() {
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        fetcher.on_response(T0, 200, None, &good_jwks()).unwrap();
        let version = fetcher.version();
        let bad: [(u16, Vec<u8>, FetchError); 7] = [
            (500, good_jwks(), FetchError::Status),
            (
                504,
                b"upstream request timeout".to_vec(),
                FetchError::Timeout,
            ),
            (
                503,
                b"upstream connect error or disconnect/reset before headers".to_vec(),
                FetchError::Unreachable,
            ),
            (302, Vec::new(), FetchError::Status),
            (200, b"<html>".to_vec(), FetchError::Malformed),
            (
                200,
                json!({"keys": [{"kty": "oct", "k": "AA"}]})
                    .to_string()
                    .into_bytes(),
                FetchError::NoUsableKey,
            ),
            (
                200,
                vec![b' '; MAX_DOCUMENT_BYTES + 1],
                FetchError::TooLarge,
            ),
        ];
        let mut now = T0 + 600;
        let mut delays = Vec::new();
        for (status, body, expected) in bad {
            assert!(due(&mut fetcher, now));
            fetcher.start(now);
            assert_eq!(fetcher.on_response(now, status, None, &body), Err(expected));
            assert_eq!(fetcher.version(), version, "{expected:?} replaced the keys");
            assert!(matches!(fetcher.keys(now), KeysNow::Stale(_)));
            let next = (now..now + 400).find(|t| due(&mut fetcher, *t)).unwrap();
            delays.push(next - now);
            now = next;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn a_failed_refetch_while_keys_are_fresh_keeps_the_refresh_schedule() {
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        fetcher.on_response(T0, 200, None, &good_jwks()).unwrap();
        let ended = fetcher.generation();
        assert!(fetcher.request_refetch(T0 + 30));
        fetcher.start(T0 + 30);
        fetcher.on_failure(T0 + 30, FetchError::Unreachable);
        assert_eq!(
            fetcher.generation(),
            ended + 1,
            "waiters for the refetch must wake"
        );
        assert!(fresh(&fetcher, T0 + 31));
        assert!(!due(&mut fetcher, T0 + 599));
        assert!(due(&mut fetcher, T0 + 600));
    }

    #[test]
    fn stale_keys_expire_after_max_stale_then_unavailable() {
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        fetcher.on_response(T0, 200, None, &good_jwks()).unwrap();
        fetcher.start(T0 + 600);
        fetcher.on_failure(T0 + 600, FetchError::Timeout);
        assert!(matches!(fetcher.keys(T0 + 600 + 3_600), KeysNow::Stale(_)));
        assert!(matches!(
            fetcher.keys(T0 + 600 + 3_601),
            KeysNow::Unavailable
        ));
    }

    #[test]
    fn a_failed_first_fetch_makes_keys_unavailable_until_one_succeeds() {
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        fetcher.on_failure(T0, FetchError::Timeout);
        assert!(matches!(fetcher.keys(T0), KeysNow::Unavailable));
        assert!(due(&mut fetcher, T0 + 1));
        fetcher.start(T0 + 1);
        fetcher
            .on_response(T0 + 1, 200, None, &good_jwks())
            .unwrap();
        assert!(fresh(&fetcher, T0 + 1));
    }

    #[test]
    fn a_call_past_its_deadline_counts_as_failed() {
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        assert!(!due(&mut fetcher, T0 + 6));
        assert!(
            !due(&mut fetcher, T0 + 7),
            "expiring the call schedules a retry, not an immediate call"
        );
        assert!(matches!(fetcher.keys(T0 + 7), KeysNow::Unavailable));
        assert!(due(&mut fetcher, T0 + 8));
        // The host's late answer to the abandoned call is ignored.
        assert_eq!(
            fetcher.on_response(T0 + 8, 200, None, &good_jwks()),
            Err(FetchError::Timeout)
        );
    }

    #[test]
    fn unknown_kid_refetches_are_rate_limited() {
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        fetcher.on_response(T0, 200, None, &good_jwks()).unwrap();
        // A fetch just happened: a refetch within min_refetch_seconds is pointless.
        assert!(!fetcher.request_refetch(T0 + 10));
        assert!(fetcher.request_refetch(T0 + 30));
        assert!(due(&mut fetcher, T0 + 30));
        fetcher.start(T0 + 30);
        assert!(
            fetcher.request_refetch(T0 + 31),
            "a call in flight will bring new keys"
        );
        fetcher
            .on_response(T0 + 31, 200, None, &good_jwks())
            .unwrap();
        assert!(!fetcher.request_refetch(T0 + 40));
        assert!(!due(&mut fetcher, T0 + 40));
    }

    #[test]
    fn discovery_reads_the_configuration_then_its_jwks() {
        let discovery =
            HttpUri::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
        let mut discovery_settings = settings(Location::Discovery(discovery));
        discovery_settings.jwks_upstream = Some("keys".to_owned());
        let mut fetcher = Fetcher::for_keys(discovery_settings, ISSUER, &[Algorithm::Es256], T0, 0);
        let (document, request) = fetcher.start(T0);
        assert_eq!(
            (document, request.uri.path.as_str()),
            (Document::Discovery, "/.well-known/openid-configuration")
        );
        let wrong_issuer = json!({"issuer": "https://evil.example.com", "jwks_uri": "https://idp.example.com/certs"});
        assert_eq!(
            fetcher.on_response(T0, 200, None, wrong_issuer.to_string().as_bytes()),
            Err(FetchError::Discovery)
        );
        fetcher.start(T0 + 1);
        let plain_http = json!({"issuer": ISSUER, "jwks_uri": "http://idp.example.com/certs"});
        assert_eq!(
            fetcher.on_response(T0 + 1, 200, None, plain_http.to_string().as_bytes()),
            Err(FetchError::Discovery)
        );
        let now = T0 + 3;
        assert!(due(&mut fetcher, now));
        fetcher.start(now);
        let good = json!({"issuer": ISSUER, "jwks_uri": "https://keys.example.com/certs"});
        assert_eq!(
            fetcher.on_response(now, 200, None, good.to_string().as_bytes()),
            Ok(Progress::Discovered)
        );
        assert!(due(&mut fetcher, now));
        let (document, request) = fetcher.start(now);
        assert_eq!(
            (
                document,
                request.uri.authority.as_str(),
                request.upstream.as_str()
            ),
            (Document::Jwks, "keys.example.com", "keys")
        );
        fetcher.on_response(now, 200, None, &good_jwks()).unwrap();
        assert!(fresh(&fetcher, now));
        // The refresh reads the configuration again.
        assert_eq!(fetcher.start(now + 600).0, Document::Discovery);
    }

    #[test]
    fn keys_published_by_another_worker_are_adopted_once() {
        let mut leader = jwks_fetcher();
        leader.start(T0);
        leader.on_response(T0, 200, None, &good_jwks()).unwrap();
        let published = SharedRecord::decode(&leader.to_share().encode()).unwrap();
        assert_eq!(published, leader.to_share());
        assert_eq!((published.generation, published.failures), (1, 0));

        let mut follower = jwks_fetcher();
        follower.defer(T0 + 1);
        assert_eq!(follower.adopt(&published), Ok(true));
        assert!(fresh(&follower, T0 + 1));
        assert_eq!(
            follower.adopt(&published),
            Ok(false),
            "the same generation is no news"
        );
        assert!(
            !due(&mut follower, T0 + 1),
            "adopted keys bring the publisher's schedule"
        );
        assert!(
            !follower.request_refetch(T0 + 5),
            "the publisher's fetch counts for the rate limit"
        );
    }

    fn list_fetcher() -> Fetcher {
        let uri = HttpUri::parse("https://lists.example.com/drop.txt").unwrap();
        Fetcher::for_address_list(settings(Location::Direct(uri)), T0, 0)
    }

    fn listed(fetcher: &Fetcher, now: i64, address: &str) -> Option<bool> {
        match fetcher.addresses(now) {
            InForce::Fresh(set) | InForce::Stale(set) => {
                Some(set.contains(address.parse().unwrap()))
            }
            InForce::Pending | InForce::Unavailable => None,
        }
    }

    #[test]
    fn address_lists_are_fetched_refreshed_kept_and_shared_like_keys() {
        let mut fetcher = list_fetcher();
        assert!(matches!(fetcher.addresses(T0), InForce::Pending));
        assert!(matches!(fetcher.keys(T0), InForce::Pending));
        assert_eq!(fetcher.poll(T0), Poll::Due);
        let (document, request) = fetcher.start(T0);
        assert_eq!(document, Document::AddressList);
        assert_eq!(request.uri.path, "/drop.txt");
        let progress = fetcher.on_response(T0, 200, None, b"192.0.2.0/24\n");
        assert_eq!(progress, Ok(Progress::Updated { skipped: vec![] }));
        assert_eq!(listed(&fetcher, T0, "192.0.2.7"), Some(true));
        assert_eq!(listed(&fetcher, T0, "198.51.100.7"), Some(false));
        assert!(
            matches!(fetcher.keys(T0), InForce::Unavailable),
            "a list is no key set"
        );
        assert_eq!(fetcher.max_document_bytes(), MAX_LIST_BYTES);

        // The refresh brings the new list; a bad one never replaces it.
        assert_eq!(fetcher.poll(T0 + 600), Poll::Due);
        fetcher.start(T0 + 600);
        fetcher
            .on_response(T0 + 600, 200, None, b"198.51.100.0/24\n")
            .unwrap();
        assert_eq!(listed(&fetcher, T0 + 600, "192.0.2.7"), Some(false));
        assert_eq!(listed(&fetcher, T0 + 600, "198.51.100.7"), Some(true));
        fetcher.start(T0 + 1200);
        assert_eq!(
            fetcher.on_response(T0 + 1200, 200, None, b"198.51.100.0/24\nnot an address\n"),
            Err(FetchError::Malformed)
        );
        assert_eq!(listed(&fetcher, T0 + 1201, "198.51.100.7"), Some(true));
        fetcher.start(T0 + 1202);
        let too_large = vec![b'\n'; MAX_LIST_BYTES + 1];
        assert_eq!(
            fetcher.on_response(T0 + 1202, 200, None, &too_large),
            Err(FetchError::TooLarge)
        );
        // Past the stale limit, nothing is in force.
        assert!(matches!(
            fetcher.addresses(T0 + 1200 + 3_601),
            InForce::Unavailable
        ));

        // Another worker adopts the published list.
        let mut leader = list_fetcher();
        leader.start(T0);
        leader
            .on_response(T0, 200, None, b"203.0.113.0/24\n")
            .unwrap();
        let published = SharedRecord::decode(&leader.to_share().encode()).unwrap();
        let mut follower = list_fetcher();
        assert_eq!(follower.adopt(&published), Ok(true));
        assert_eq!(listed(&follower, T0, "203.0.113.1"), Some(true));
    }

    #[test]
    fn the_backoff_and_the_lack_of_keys_are_shared_across_workers() {
        let mut first = jwks_fetcher();
        first.start(T0);
        first.on_failure(T0, FetchError::Unreachable);
        let mut second = jwks_fetcher();
        second.adopt(&first.to_share()).unwrap();
        assert!(matches!(second.keys(T0), KeysNow::Unavailable));
        assert!(
            !due(&mut second, T0),
            "the retry is not due before the first's backoff"
        );
        assert!(due(&mut second, T0 + 1));
        second.start(T0 + 1);
        second.on_failure(T0 + 1, FetchError::Unreachable);
        // The second worker continues the first's backoff: 1 s, then 2 s.
        assert!(!due(&mut second, T0 + 2));
        assert!(due(&mut second, T0 + 3));
        assert_eq!(second.to_share().failures, 2);
        first.adopt(&second.to_share()).unwrap();
        assert!(!due(&mut first, T0 + 2));
    }

    #[test]
    fn a_record_from_a_worker_that_fell_behind_is_not_adopted() {
        let mut current = jwks_fetcher();
        current.start(T0);
        current.on_response(T0, 200, None, &good_jwks()).unwrap();
        assert!(current.request_refetch(T0 + 40));
        current.start(T0 + 40);
        let rotated = jwks(&[TestKey::P256, TestKey::P384])
            .to_string()
            .into_bytes();
        let mut multi = Fetcher::for_keys(
            current.settings.clone(),
            ISSUER,
            &[Algorithm::Es256, Algorithm::Es384],
            T0,
            0,
        );
        multi.start(T0);
        multi.on_response(T0, 200, None, &rotated).unwrap();
        let older = multi.to_share();
        current
            .on_response(T0 + 40, 200, None, &good_jwks())
            .unwrap();
        assert_eq!(current.generation(), 2);
        assert_eq!(current.adopt(&older), Ok(false));
    }

    #[test]
    fn shared_records_and_leases_round_trip_and_reject_garbage() {
        for garbage in [
            &b""[..],
            b"wjwt2 1 2 3",
            b"wjwt2 1 2 3 4",
            b"wjwt2 1 2 3 4\n{}",
            b"wjwt2 1 2 3 4 5\n{}",
            b"wjwt2 x 2 3 4\n",
            b"wjwt1 1 2 keys\n{}",
            b"wjwt2 1 2 3 4 5 6 7\n{}",
        ] {
            assert_eq!(
                SharedRecord::decode(garbage),
                None,
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        let empty = SharedRecord::empty();
        assert_eq!(SharedRecord::decode(&empty.encode()), Some(empty));
        let lease = Lease {
            holder: 3,
            expires_at: T0 + 7,
        };
        assert_eq!(Lease::decode(&lease.encode()), Some(lease.clone()));
        assert!(Lease::can_take(None, 1, T0));
        assert!(Lease::can_take(Some(&lease.encode()), 3, T0));
        assert!(!Lease::can_take(Some(&lease.encode()), 1, T0));
        assert!(Lease::can_take(Some(&lease.encode()), 1, T0 + 7));
        assert!(Lease::can_take(Some(b"nonsense"), 1, T0));
    }
}
