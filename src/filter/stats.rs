//! One host counter per outcome: `wasm_jwt_authn.allowed`, `wasm_jwt_authn.allowed_anonymous`,
//! `wasm_jwt_authn.denied.<reason>` for every [`Reason`], and `wasm_jwt_authn.internal_error`
//! for requests refused because the host failed the filter. For providers with remote keys:
//! fetch outcomes, and per provider the gauges `wasm_jwt_authn.jwks.<provider>.age_seconds`
//! (since the keys in force were fetched) and `wasm_jwt_authn.jwks.<provider>.stale` (1 while
//! keys past their refresh time are in use because fetches fail). Address lists have the same
//! under `wasm_jwt_authn.address_lists.` (`fetch_success`, `fetch_failure.<error>`,
//! `adopted_from_other_worker`, `<list>.age_seconds`, `<list>.stale`). Introspection calls:
//! `wasm_jwt_authn.introspection.active`, `.inactive` (what the provider answered) and
//! `.failure` (no answer).
//!
//! Performance: `wasm_jwt_authn.token_cache.hit` / `.miss` (allowed requests whose token was
//! remembered / verified while the cache is on), the gauges `wasm_jwt_authn.token_cache.entries`
//! and `wasm_jwt_authn.memory_bytes` (the VM's linear memory, a high-water mark), recorded every
//! 256 decisions; `wasm_jwt_authn.crypto.host` (1 when the host verifies `RS*`/`ES*`) and the
//! counter `wasm_jwt_authn.crypto.host_fallback` (host calls that failed and were verified
//! portably instead).

use super::abi::{self, MetricType, Status};

use crate::config::{Config, KeySource};
use crate::decision::{Decision, Reason, Verification};
use crate::fetch::remote::FetchError;
use crate::fetch::SourceKind;
use crate::verify::cache::TokenCache;

pub(crate) struct Stats {
    allowed: u32,
    allowed_anonymous: u32,
    internal_error: u32,
    introspection_active: u32,
    introspection_inactive: u32,
    introspection_failure: u32,
    key_fetches: FetchCounters,
    list_fetches: FetchCounters,
    token_cache_hit: u32,
    token_cache_miss: u32,
    token_cache_entries: u32,
    memory_bytes: u32,
    crypto_host: u32,
    host_crypto_fallback: u32,
    /// Decisions since the gauges were last recorded.
    decisions_since_gauges: std::cell::Cell<u32>,
    /// Per provider (`None` for inline keys), then per address list: numbered like the
    /// key store's sources.
    source_gauges: Vec<Option<SourceGauges>>,
    /// Indexed like [`Reason::ALL`].
    denied: Vec<u32>,
}

impl Stats {
    /// Defines (or, on reconfigure, looks up again) every counter.
    pub(crate) fn define(config: &Config) -> Result<Stats, Status> {
        let counter = |name: &str| abi::define_metric(MetricType::Counter, name);
        let gauge = |name: &str| abi::define_metric(MetricType::Gauge, name);
        // Config validation keeps names to letters, digits, `_` and `-`.
        let source_gauges = |prefix: &str, name: &str| -> Result<SourceGauges, Status> {
            Ok(SourceGauges {
                age_seconds: gauge(&format!("wasm_jwt_authn.{prefix}.{name}.age_seconds"))?,
                stale: gauge(&format!("wasm_jwt_authn.{prefix}.{name}.stale"))?,
            })
        };
        let mut gauges = Vec::new();
        for provider in config.providers() {
            gauges.push(match provider.keys() {
                Some(KeySource::Inline(_)) | None => None,
                Some(KeySource::Remote(_)) => Some(source_gauges("jwks", &provider.name)?),
            });
        }
        for list in config.address_lists() {
            gauges.push(Some(source_gauges("address_lists", &list.name)?));
        }
        Ok(Stats {
            allowed: counter("wasm_jwt_authn.allowed")?,
            allowed_anonymous: counter("wasm_jwt_authn.allowed_anonymous")?,
            internal_error: counter("wasm_jwt_authn.internal_error")?,
            introspection_active: counter("wasm_jwt_authn.introspection.active")?,
            introspection_inactive: counter("wasm_jwt_authn.introspection.inactive")?,
            introspection_failure: counter("wasm_jwt_authn.introspection.failure")?,
            key_fetches: FetchCounters::define("wasm_jwt_authn.jwks")?,
            list_fetches: FetchCounters::define("wasm_jwt_authn.address_lists")?,
            token_cache_hit: counter("wasm_jwt_authn.token_cache.hit")?,
            token_cache_miss: counter("wasm_jwt_authn.token_cache.miss")?,
            token_cache_entries: gauge("wasm_jwt_authn.token_cache.entries")?,
            memory_bytes: gauge("wasm_jwt_authn.memory_bytes")?,
            crypto_host: gauge("wasm_jwt_authn.crypto.host")?,
            host_crypto_fallback: counter("wasm_jwt_authn.crypto.host_fallback")?,
            decisions_since_gauges: std::cell::Cell::new(0),
            source_gauges: gauges,
            denied: Reason::ALL
                .iter()
                .map(|reason| counter(&format!("wasm_jwt_authn.denied.{}", reason.as_str())))
                .collect::<Result<_, _>>()?,
        })
    }

    pub(crate) fn count_allowed(&self, anonymous: bool) {
        let id = if anonymous {
            self.allowed_anonymous
        } else {
            self.allowed
        };
        Self::increment(id);
    }

    pub(crate) fn count_denied(&self, reason: Reason) {
        let position = Reason::ALL.iter().position(|known| *known == reason);
        if let Some(id) = position.and_then(|position| self.denied.get(position)) {
            Self::increment(*id);
        }
    }

    pub(crate) fn count_internal_error(&self) {
        Self::increment(self.internal_error);
    }

    fn fetches(&self, kind: SourceKind) -> &FetchCounters {
        match kind {
            SourceKind::Keys => &self.key_fetches,
            SourceKind::AddressList => &self.list_fetches,
        }
    }

    /// An introspection call answered: the token is active, or not.
    pub(crate) fn count_introspection(&self, active: bool) {
        Self::increment(if active {
            self.introspection_active
        } else {
            self.introspection_inactive
        });
    }

    /// An introspection call gave no answer (not dispatched, timed out, refused, unreadable).
    pub(crate) fn count_introspection_failure(&self) {
        Self::increment(self.introspection_failure);
    }

    pub(crate) fn count_fetch_success(&self, kind: SourceKind) {
        Self::increment(self.fetches(kind).success);
    }

    pub(crate) fn count_adopted(&self, kind: SourceKind) {
        Self::increment(self.fetches(kind).adopted);
    }

    pub(crate) fn count_fetch_failure(&self, kind: SourceKind, error: FetchError) {
        let position = FetchError::ALL.iter().position(|known| *known == error);
        let failure = &self.fetches(kind).failure;
        if let Some(id) = position.and_then(|position| failure.get(position)) {
            Self::increment(*id);
        }
    }

    /// Counts a token-cache hit or miss for an allowed request, and every
    /// [`GAUGE_INTERVAL`] decisions records the cache size and the VM's memory.
    pub(crate) fn record_decision(&self, decision: &Decision, cache: &TokenCache) {
        if let Decision::Allow(allowed) = decision {
            match allowed.caller.verification() {
                Some(Verification::CacheHit) => Self::increment(self.token_cache_hit),
                Some(Verification::Signature) if cache.is_enabled() => {
                    Self::increment(self.token_cache_miss);
                }
                Some(Verification::Signature | Verification::Introspection) | None => {}
            }
        }
        let count = self.decisions_since_gauges.get().wrapping_add(1);
        if count >= GAUGE_INTERVAL {
            self.decisions_since_gauges.set(0);
            self.record_gauges(cache.len());
        } else {
            self.decisions_since_gauges.set(count);
        }
    }

    /// Records the token cache's size and the VM's linear memory.
    pub(crate) fn record_gauges(&self, cache_entries: usize) {
        let entries = u64::try_from(cache_entries).unwrap_or(u64::MAX);
        let _ = abi::record_metric(self.token_cache_entries, entries);
        let _ = abi::record_metric(self.memory_bytes, memory_bytes());
    }

    pub(crate) fn record_crypto_backend(&self, host: bool) {
        let _ = abi::record_metric(self.crypto_host, u64::from(host));
    }

    pub(crate) fn count_host_crypto_fallback(&self) {
        Self::increment(self.host_crypto_fallback);
    }

    /// Records the age of a source's document (numbered like the key store's sources) and
    /// whether it is stale.
    pub(crate) fn record_source(&self, source: usize, age_seconds: u64, stale: bool) {
        if let Some(Some(gauges)) = self.source_gauges.get(source) {
            let _ = abi::record_metric(gauges.age_seconds, age_seconds);
            let _ = abi::record_metric(gauges.stale, u64::from(stale));
        }
    }

    fn increment(id: u32) {
        // A lost increment is better than a failed request.
        let _ = abi::increment_metric(id, 1);
    }
}

/// How many decisions pass between two recordings of the size gauges: often enough to follow
/// a flood, rarely enough to cost nothing per request.
const GAUGE_INTERVAL: u32 = 256;

/// The VM's linear memory in bytes. Wasm memory only grows, so this is the high-water mark.
fn memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        let pages = core::arch::wasm32::memory_size(0);
        u64::try_from(pages)
            .unwrap_or(u64::MAX)
            .saturating_mul(65_536)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

struct SourceGauges {
    age_seconds: u32,
    stale: u32,
}

/// `<prefix>.fetch_success`, `<prefix>.adopted_from_other_worker` and
/// `<prefix>.fetch_failure.<error>` for every [`FetchError`].
struct FetchCounters {
    success: u32,
    adopted: u32,
    /// Indexed like [`FetchError::ALL`].
    failure: Vec<u32>,
}

impl FetchCounters {
    fn define(prefix: &str) -> Result<FetchCounters, Status> {
        let counter = |name: String| abi::define_metric(MetricType::Counter, &name);
        Ok(FetchCounters {
            success: counter(format!("{prefix}.fetch_success"))?,
            adopted: counter(format!("{prefix}.adopted_from_other_worker"))?,
            failure: FetchError::ALL
                .iter()
                .map(|error| counter(format!("{prefix}.fetch_failure.{}", error.as_str())))
                .collect::<Result<_, _>>()?,
        })
    }
}
