//! Keys from the identity provider: a sans-I/O state machine per provider.
//!
//! A [`KeyFetcher`] never performs I/O and never reads a clock. The adapter asks it
//! [`KeyFetcher::poll`] which HTTP call to dispatch now, tells it the answer
//! ([`KeyFetcher::on_response`]) or that there was none ([`KeyFetcher::on_failure`]), and asks
//! [`KeyFetcher::keys`] which keys are in force. With discovery, the fetcher first reads the
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
//! - an unknown `kid` may trigger one refetch per `min_refetch_seconds`.

use serde_json::Value;

use crate::jwks::{KeySet, SkippedKey};
use crate::verify::UnixSeconds;

/// Shortest refresh interval a `Cache-Control: max-age` may ask for.
pub const MIN_REFRESH_SECONDS: u64 = 30;
/// Longest refresh interval a `Cache-Control: max-age` may ask for.
pub const MAX_REFRESH_SECONDS: u64 = 86_400;
/// Largest JWKS or discovery document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// First retry delay after a failure; doubles per consecutive failure.
const FIRST_RETRY_SECONDS: i64 = 1;
/// Longest retry delay.
const MAX_RETRY_SECONDS: i64 = 300;

/// An `http(s)://authority/path` URI, split the way a proxy dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUri {
    pub secure: bool,
    /// `host[:port]`, sent as `:authority`.
    pub authority: String,
    /// Path and query, sent as `:path`.
    pub path: String,
}

impl HttpUri {
    /// Parses an absolute `http` or `https` URI without user info or fragment.
    pub fn parse(uri: &str) -> Option<HttpUri> {
        let (secure, rest) = if let Some(rest) = uri.strip_prefix("https://") {
            (true, rest)
        } else {
            (false, uri.strip_prefix("http://")?)
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(position) => (rest.get(..position)?, rest.get(position..)?),
            None => (rest, "/"),
        };
        let valid_authority = !authority.is_empty()
            && authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c));
        let valid_path = path.starts_with('/')
            && !path.contains('#')
            && path.chars().all(|c| c.is_ascii_graphic());
        (valid_authority && valid_path).then(|| HttpUri {
            secure,
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }
}

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// A JWKS URI.
    Jwks(HttpUri),
    /// An OpenID configuration document whose `jwks_uri` is then fetched.
    Discovery(HttpUri),
}

/// Validated settings of a remote key source. Defaults are in `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKeys {
    pub location: KeyLocation,
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
    /// Larger than [`MAX_DOCUMENT_BYTES`].
    TooLarge,
    /// Not a JSON object, or not a JWKS.
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

/// The keys in force for a provider right now.
#[derive(Debug, Clone, Copy)]
pub enum KeysNow<'a> {
    /// Fetched and not yet due for refresh.
    Fresh(&'a KeySet),
    /// Due for refresh (which has not succeeded yet), still within `max_stale_seconds`.
    Stale(&'a KeySet),
    /// No keys yet, and a fetch is pending or will be retried: requests may wait.
    Pending,
    /// No usable keys: the last fetch failed and nothing good is cached.
    Unavailable,
}

/// Keys as fetched, with when.
#[derive(Debug, Clone)]
pub struct FetchedKeys {
    pub keys: KeySet,
    /// The JWKS document as received, to share with other workers.
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

/// Keys (or the lack of them) as one worker publishes them for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKeys {
    pub fetched_at: UnixSeconds,
    pub refresh_at: UnixSeconds,
    pub state: SharedState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedState {
    /// A JWKS document with at least one usable key.
    Keys { document: Vec<u8> },
    /// The fetch failed and no keys were ever had: answer `503` until `refresh_at`.
    FailedWithoutKeys,
}

/// What a completed call changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Discovery succeeded; the JWKS fetch follows at once.
    Discovered,
    /// New keys are in force.
    KeysUpdated { skipped: Vec<SkippedKey> },
}

/// The key lifecycle of one provider (see the module docs).
#[derive(Debug, Clone)]
pub struct KeyFetcher {
    settings: RemoteKeys,
    issuer: String,
    /// Decides "usable": a set must hold a key for one of these.
    algorithms: Vec<crate::alg::Algorithm>,
    phase: Phase,
    /// From discovery (or the configured JWKS URI).
    jwks_uri: Option<HttpUri>,
    fetched: Option<FetchedKeys>,
    consecutive_failures: u32,
    /// The last fetch failed and nothing good was cached at the time.
    failed_without_keys: bool,
    last_refetch_at: Option<UnixSeconds>,
    /// Spreads refreshes: a value in `0..1000` chosen by the adapter per worker.
    jitter_permille: u64,
    /// Increases whenever the keys in force change.
    version: u64,
    /// Increases whenever a fetch ends, well or not: requests waiting for a refetch wake on it.
    fetches_ended: u64,
}

impl KeyFetcher {
    pub fn new(
        settings: RemoteKeys,
        issuer: &str,
        algorithms: &[crate::alg::Algorithm],
        now: UnixSeconds,
        jitter_permille: u64,
    ) -> KeyFetcher {
        let jwks_uri = match &settings.location {
            KeyLocation::Jwks(uri) => Some(uri.clone()),
            KeyLocation::Discovery(_) => None,
        };
        KeyFetcher {
            settings,
            issuer: issuer.to_owned(),
            algorithms: algorithms.to_vec(),
            phase: Phase::Idle { next_fetch_at: now },
            jwks_uri,
            fetched: None,
            consecutive_failures: 0,
            failed_without_keys: false,
            last_refetch_at: None,
            jitter_permille: jitter_permille % 1000,
            version: 0,
            fetches_ended: 0,
        }
    }

    pub fn settings(&self) -> &RemoteKeys {
        &self.settings
    }

    /// How many fetches have ended (keys installed, adopted, or failed).
    pub fn fetches_ended(&self) -> u64 {
        self.fetches_ended
    }

    /// The version of the keys in force; changes whenever they do.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn fetched(&self) -> Option<&FetchedKeys> {
        self.fetched.as_ref()
    }

    pub fn in_flight(&self) -> bool {
        matches!(self.phase, Phase::InFlight { .. })
    }

    /// Whether a call is due at `now`. Also gives up on a call past its deadline (the host
    /// should have answered by then), which makes the retry due later.
    pub fn due(&mut self, now: UnixSeconds) -> bool {
        match self.phase {
            Phase::InFlight { deadline, .. } if now > deadline => {
                self.on_failure(now, FetchError::Timeout);
                false
            }
            Phase::InFlight { .. } => false,
            Phase::Idle { next_fetch_at } => now >= next_fetch_at,
        }
    }

    /// Starts the next call (check [`KeyFetcher::due`] first): the fetcher now counts it as
    /// in flight until [`KeyFetcher::on_response`] or [`KeyFetcher::on_failure`].
    pub fn start(&mut self, now: UnixSeconds) -> (Document, FetchRequest) {
        let (document, uri) = match (&self.jwks_uri, &self.settings.location) {
            (Some(uri), _) | (None, KeyLocation::Jwks(uri)) => (Document::Jwks, uri.clone()),
            (None, KeyLocation::Discovery(uri)) => (Document::Discovery, uri.clone()),
        };
        // The host times out at `timeout_ms`; one more second covers tick granularity.
        let timeout_seconds = seconds(self.settings.timeout_ms.div_ceil(1000)).saturating_add(1);
        self.phase = Phase::InFlight {
            document,
            deadline: now.saturating_add(timeout_seconds),
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

    /// The keys in force at `now`.
    pub fn keys(&self, now: UnixSeconds) -> KeysNow<'_> {
        match &self.fetched {
            Some(fetched) if now < fetched.refresh_at => KeysNow::Fresh(&fetched.keys),
            Some(fetched) if now <= self.stale_until(fetched) => KeysNow::Stale(&fetched.keys),
            _ if self.failed_without_keys => KeysNow::Unavailable,
            _ => KeysNow::Pending,
        }
    }

    fn stale_until(&self, fetched: &FetchedKeys) -> UnixSeconds {
        fetched
            .refresh_at
            .saturating_add(seconds(self.settings.max_stale_seconds))
    }

    /// A token named a `kid` the keys in force do not have: refetch now, unless a refetch
    /// happened within `min_refetch_seconds` or a call is already in flight (which will bring
    /// the newest keys anyway). Returns whether new keys may still arrive for this token.
    pub fn request_refetch(&mut self, now: UnixSeconds) -> bool {
        if self.in_flight() {
            return true;
        }
        let allowed = self.last_refetch_at.is_none_or(|last| {
            now >= last.saturating_add(seconds(self.settings.min_refetch_seconds))
        });
        if allowed {
            self.last_refetch_at = Some(now);
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
            // A late answer to a call already given up on: ignore it.
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
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge);
        }
        match document {
            Document::Discovery => {
                let jwks_uri = self.jwks_uri_from_discovery(body)?;
                self.jwks_uri = Some(jwks_uri);
                self.phase = Phase::Idle { next_fetch_at: now };
                Ok(Progress::Discovered)
            }
            Document::Jwks => {
                let refresh = refresh_interval(self.settings.refresh_seconds, cache_control);
                let refresh_at = now.saturating_add(self.jittered(refresh));
                let skipped = self.install(body, now, refresh_at)?;
                self.phase = Phase::Idle {
                    next_fetch_at: refresh_at,
                };
                Ok(Progress::KeysUpdated { skipped })
            }
        }
    }

    /// Adopts keys another worker fetched and published. A call in flight here is left alone;
    /// otherwise the next fetch moves to the publisher's refresh time.
    pub fn adopt(&mut self, shared: &SharedKeys) -> Result<(), FetchError> {
        match &shared.state {
            SharedState::Keys { document } => {
                self.install(document, shared.fetched_at, shared.refresh_at)?;
            }
            SharedState::FailedWithoutKeys => {
                if self.fetched.is_none() {
                    self.failed_without_keys = true;
                }
            }
        }
        if !self.in_flight() {
            self.phase = Phase::Idle {
                next_fetch_at: shared.refresh_at,
            };
        }
        Ok(())
    }

    /// What this worker has to publish for the others after a call completed.
    pub fn to_share(&self) -> Option<SharedKeys> {
        match (&self.fetched, self.failed_without_keys, &self.phase) {
            (Some(fetched), _, _) => Some(SharedKeys {
                fetched_at: fetched.fetched_at,
                refresh_at: fetched.refresh_at,
                state: SharedState::Keys {
                    document: fetched.document.clone(),
                },
            }),
            (None, true, Phase::Idle { next_fetch_at }) => Some(SharedKeys {
                fetched_at: 0,
                refresh_at: *next_fetch_at,
                state: SharedState::FailedWithoutKeys,
            }),
            _ => None,
        }
    }

    /// Installs a JWKS document fetched at `fetched_at` if it holds a usable key.
    fn install(
        &mut self,
        document: &[u8],
        fetched_at: UnixSeconds,
        refresh_at: UnixSeconds,
    ) -> Result<Vec<SkippedKey>, FetchError> {
        let (keys, skipped) = KeySet::from_json(document).map_err(|_| FetchError::Malformed)?;
        let usable = keys.keys().iter().any(|key| {
            self.algorithms
                .iter()
                .any(|algorithm| key.accepts(*algorithm))
        });
        if !usable {
            return Err(FetchError::NoUsableKey);
        }
        self.fetched = Some(FetchedKeys {
            keys,
            document: document.to_vec(),
            fetched_at,
            refresh_at,
        });
        self.version = self.version.wrapping_add(1);
        self.fetches_ended = self.fetches_ended.wrapping_add(1);
        // Any fetch brings the newest keys: a refetch for an unknown `kid` right after one
        // (here or by another worker) would only repeat it.
        self.last_refetch_at = Some(
            self.last_refetch_at
                .map_or(fetched_at, |last| last.max(fetched_at)),
        );
        self.consecutive_failures = 0;
        self.failed_without_keys = false;
        // With discovery, the next refresh reads the configuration again (it may move the JWKS).
        if matches!(self.settings.location, KeyLocation::Discovery(_)) {
            self.jwks_uri = None;
        }
        Ok(skipped)
    }

    /// The call in flight failed: keep the keys. Keys that are still fresh keep their refresh
    /// schedule (a failed unknown-`kid` refetch needs no retry: the next unknown `kid` asks
    /// again); otherwise retry with exponential backoff.
    pub fn on_failure(&mut self, now: UnixSeconds, _error: FetchError) {
        self.fetches_ended = self.fetches_ended.wrapping_add(1);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let exponent = self.consecutive_failures.saturating_sub(1).min(16);
        let delay = FIRST_RETRY_SECONDS
            .saturating_mul(1_i64 << exponent)
            .min(MAX_RETRY_SECONDS);
        if self.fetched.is_none() {
            self.failed_without_keys = true;
        }
        let next_fetch_at = match &self.fetched {
            Some(fetched) if now < fetched.refresh_at => fetched.refresh_at,
            _ => now.saturating_add(delay),
        };
        self.phase = Phase::Idle { next_fetch_at };
    }

    fn jwks_uri_from_discovery(&self, body: &[u8]) -> Result<HttpUri, FetchError> {
        let document: Value = serde_json::from_slice(body).map_err(|_| FetchError::Malformed)?;
        let issuer = document.get("issuer").and_then(Value::as_str);
        if issuer != Some(self.issuer.as_str()) {
            return Err(FetchError::Discovery);
        }
        document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .and_then(HttpUri::parse)
            .filter(|uri| uri.secure || self.settings.allow_http)
            .ok_or(FetchError::Discovery)
    }

    /// `interval` less up to a tenth, by this worker's jitter.
    fn jittered(&self, interval: u64) -> i64 {
        let spread = (interval / 10).saturating_mul(self.jitter_permille) / 1000;
        seconds(interval.saturating_sub(spread))
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

impl SharedKeys {
    /// `wjwt1 <fetched_at> <refresh_at> keys|failed\n<document>`: a line of numbers, then the
    /// JWKS as fetched, so workers adopting it parse exactly what the fetcher accepted.
    pub fn encode(&self) -> Vec<u8> {
        let (state, document): (&str, &[u8]) = match &self.state {
            SharedState::Keys { document } => ("keys", document),
            SharedState::FailedWithoutKeys => ("failed", &[]),
        };
        let mut encoded =
            format!("wjwt1 {} {} {state}\n", self.fetched_at, self.refresh_at).into_bytes();
        encoded.extend_from_slice(document);
        encoded
    }

    /// Reads what [`SharedKeys::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<SharedKeys> {
        let newline = bytes.iter().position(|byte| *byte == b'\n')?;
        let header = std::str::from_utf8(bytes.get(..newline)?).ok()?;
        let document = bytes.get(newline.checked_add(1)?..)?;
        let mut fields = header.split(' ');
        if fields.next()? != "wjwt1" {
            return None;
        }
        let fetched_at = fields.next()?.parse().ok()?;
        let refresh_at = fields.next()?.parse().ok()?;
        let state = match fields.next()? {
            "keys" => SharedState::Keys {
                document: document.to_vec(),
            },
            "failed" => SharedState::FailedWithoutKeys,
            _ => return None,
        };
        fields.next().is_none().then_some(SharedKeys {
            fetched_at,
            refresh_at,
            state,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use crate::alg::Algorithm;
    use crate::support::{jwks, TestKey};

    const T0: i64 = 1_800_000_000;
    const ISSUER: &str = "https://idp.example.com";

    fn settings(location: KeyLocation) -> RemoteKeys {
        RemoteKeys {
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

    fn jwks_fetcher() -> KeyFetcher {
        let uri = HttpUri::parse("https://idp.example.com/jwks").unwrap();
        KeyFetcher::new(
            settings(KeyLocation::Jwks(uri)),
            ISSUER,
            &[Algorithm::Es256],
            T0,
            0,
        )
    }

    fn good_jwks() -> Vec<u8> {
        jwks(&[TestKey::P256]).to_string().into_bytes()
    }

    fn fresh(fetcher: &KeyFetcher, now: i64) -> bool {
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
        assert!(fetcher.due(T0));
        let (document, request) = fetcher.start(T0);
        assert_eq!(document, Document::Jwks);
        assert_eq!(
            (request.upstream.as_str(), request.uri.path.as_str()),
            ("idp", "/jwks")
        );
        assert!(!fetcher.due(T0), "one call in flight at a time");
        let progress = fetcher
            .on_response(T0 + 1, 200, None, &good_jwks())
            .unwrap();
        assert_eq!(progress, Progress::KeysUpdated { skipped: vec![] });
        assert!(fresh(&fetcher, T0 + 1));
        assert!(!fetcher.due(T0 + 600));
        assert!(fetcher.due(T0 + 601));
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
        assert!(fetcher.due(T0 + 120) && !fetcher.due(T0 + 119));
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
            assert!(fetcher.due(now));
            fetcher.start(now);
            assert_eq!(fetcher.on_response(now, status, None, &body), Err(expected));
            assert_eq!(fetcher.version(), version, "{expected:?} replaced the keys");
            assert!(matches!(fetcher.keys(now), KeysNow::Stale(_)));
            let next = (now..now + 400).find(|t| fetcher.due(*t)).unwrap();
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
        let ended = fetcher.fetches_ended();
        assert!(fetcher.request_refetch(T0 + 30));
        fetcher.start(T0 + 30);
        fetcher.on_failure(T0 + 30, FetchError::Unreachable);
        assert_eq!(
            fetcher.fetches_ended(),
            ended + 1,
            "waiters for the refetch must wake"
        );
        assert!(fresh(&fetcher, T0 + 31));
        assert!(!fetcher.due(T0 + 599));
        assert!(fetcher.due(T0 + 600));
    }

    #[test]
    fn stale_keys_expire_after_max_stale_then_unavailable() {
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        fetcher.on_response(T0, 200, None, &good_jwks()).unwrap();
        fetcher.start(T0 + 600);
        fetcher.on_failure(T0 + 600, FetchError::Timeout);
        assert!(matches!(fetcher.keys(T0 + 600 + 3_600), KeysNow::Stale(_)));
        assert!(matches!(fetcher.keys(T0 + 600 + 3_601), KeysNow::Pending));
    }

    #[test]
    fn a_failed_first_fetch_makes_keys_unavailable_until_one_succeeds() {
        let mut fetcher = jwks_fetcher();
        fetcher.start(T0);
        fetcher.on_failure(T0, FetchError::Timeout);
        assert!(matches!(fetcher.keys(T0), KeysNow::Unavailable));
        assert!(fetcher.due(T0 + 1));
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
        assert!(!fetcher.due(T0 + 6));
        assert!(
            !fetcher.due(T0 + 7),
            "expiring the call schedules a retry, not an immediate call"
        );
        assert!(matches!(fetcher.keys(T0 + 7), KeysNow::Unavailable));
        assert!(fetcher.due(T0 + 8));
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
        assert!(fetcher.due(T0 + 30));
        fetcher.start(T0 + 30);
        assert!(
            fetcher.request_refetch(T0 + 31),
            "a call in flight will bring new keys"
        );
        fetcher
            .on_response(T0 + 31, 200, None, &good_jwks())
            .unwrap();
        assert!(!fetcher.request_refetch(T0 + 40));
        assert!(!fetcher.due(T0 + 40));
    }

    #[test]
    fn discovery_reads_the_configuration_then_its_jwks() {
        let discovery =
            HttpUri::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
        let mut discovery_settings = settings(KeyLocation::Discovery(discovery));
        discovery_settings.jwks_upstream = Some("keys".to_owned());
        let mut fetcher = KeyFetcher::new(discovery_settings, ISSUER, &[Algorithm::Es256], T0, 0);
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
        assert!(fetcher.due(now));
        fetcher.start(now);
        let good = json!({"issuer": ISSUER, "jwks_uri": "https://keys.example.com/certs"});
        assert_eq!(
            fetcher.on_response(now, 200, None, good.to_string().as_bytes()),
            Ok(Progress::Discovered)
        );
        assert!(fetcher.due(now));
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
    fn keys_published_by_another_worker_are_adopted() {
        let mut leader = jwks_fetcher();
        leader.start(T0);
        leader.on_response(T0, 200, None, &good_jwks()).unwrap();
        let published = SharedKeys::decode(&leader.to_share().unwrap().encode()).unwrap();
        assert_eq!(Some(published.clone()), leader.to_share());

        let mut follower = jwks_fetcher();
        follower.defer(T0 + 1);
        follower.adopt(&published).unwrap();
        assert!(fresh(&follower, T0 + 1));
        assert!(
            !follower.due(T0 + 1),
            "adopted keys move the next fetch to the leader's schedule"
        );
        assert!(
            !follower.request_refetch(T0 + 5),
            "the leader's fetch counts for the rate limit"
        );

        let mut failed = jwks_fetcher();
        failed.start(T0);
        failed.on_failure(T0, FetchError::Status);
        let shared = failed.to_share().unwrap();
        assert_eq!(shared.state, SharedState::FailedWithoutKeys);
        let mut follower = jwks_fetcher();
        follower.adopt(&shared).unwrap();
        assert!(matches!(follower.keys(T0), KeysNow::Unavailable));
    }

    #[test]
    fn shared_records_and_leases_round_trip_and_reject_garbage() {
        for garbage in [
            &b""[..],
            b"wjwt1 1 2",
            b"wjwt2 1 2 keys\n{}",
            b"wjwt1 x 2 keys\n",
            b"wjwt1 1 2 maybe\n",
        ] {
            assert_eq!(SharedKeys::decode(garbage), None);
        }
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
