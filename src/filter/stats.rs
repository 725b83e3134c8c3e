//! One host counter per outcome: `wasm_jwt_authn.allowed`, `wasm_jwt_authn.allowed_anonymous`,
//! `wasm_jwt_authn.denied.<reason>` for every [`Reason`], and `wasm_jwt_authn.internal_error`
//! for requests refused because the host failed the filter. For providers with remote keys:
//! fetch outcomes, and per provider the gauges `wasm_jwt_authn.jwks.<provider>.age_seconds`
//! (since the keys in force were fetched) and `wasm_jwt_authn.jwks.<provider>.stale` (1 while
//! keys past their refresh time are in use because fetches fail).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::config::{Config, KeySource, ProviderIndex};
use crate::decision::Reason;
use crate::remote::FetchError;

pub(crate) struct Stats {
    allowed: u32,
    allowed_anonymous: u32,
    internal_error: u32,
    fetch_success: u32,
    keys_adopted: u32,
    /// Per provider; `None` for inline keys.
    key_gauges: Vec<Option<KeyGauges>>,
    /// Indexed like [`FetchError::ALL`].
    fetch_failure: Vec<u32>,
    /// Indexed like [`Reason::ALL`].
    denied: Vec<u32>,
}

impl Stats {
    /// Defines (or, on reconfigure, looks up again) every counter.
    pub(crate) fn define(config: &Config) -> Result<Stats, Status> {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name);
        let gauge = |name: &str| hostcalls::define_metric(MetricType::Gauge, name);
        let mut key_gauges = Vec::with_capacity(config.providers.len());
        for provider in &config.providers {
            key_gauges.push(match provider.keys {
                KeySource::Inline(_) => None,
                KeySource::Remote(_) => {
                    // Config validation keeps names to letters, digits, `_` and `-`.
                    let name = &provider.name;
                    Some(KeyGauges {
                        age_seconds: gauge(&format!("wasm_jwt_authn.jwks.{name}.age_seconds"))?,
                        stale: gauge(&format!("wasm_jwt_authn.jwks.{name}.stale"))?,
                    })
                }
            });
        }
        Ok(Stats {
            allowed: counter("wasm_jwt_authn.allowed")?,
            allowed_anonymous: counter("wasm_jwt_authn.allowed_anonymous")?,
            internal_error: counter("wasm_jwt_authn.internal_error")?,
            fetch_success: counter("wasm_jwt_authn.jwks.fetch_success")?,
            keys_adopted: counter("wasm_jwt_authn.jwks.adopted_from_other_worker")?,
            key_gauges,
            fetch_failure: FetchError::ALL
                .iter()
                .map(|error| {
                    counter(&format!(
                        "wasm_jwt_authn.jwks.fetch_failure.{}",
                        error.as_str()
                    ))
                })
                .collect::<Result<_, _>>()?,
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

    pub(crate) fn count_fetch_success(&self) {
        Self::increment(self.fetch_success);
    }

    pub(crate) fn count_keys_adopted(&self) {
        Self::increment(self.keys_adopted);
    }

    pub(crate) fn count_fetch_failure(&self, error: FetchError) {
        let position = FetchError::ALL.iter().position(|known| *known == error);
        if let Some(id) = position.and_then(|position| self.fetch_failure.get(position)) {
            Self::increment(*id);
        }
    }

    /// Records the age of a provider's keys and whether they are stale.
    pub(crate) fn record_keys(&self, provider: ProviderIndex, age_seconds: u64, stale: bool) {
        if let Some(Some(gauges)) = self.key_gauges.get(provider) {
            let _ = hostcalls::record_metric(gauges.age_seconds, age_seconds);
            let _ = hostcalls::record_metric(gauges.stale, u64::from(stale));
        }
    }

    fn increment(id: u32) {
        // A lost increment is better than a failed request.
        let _ = hostcalls::increment_metric(id, 1);
    }
}

struct KeyGauges {
    age_seconds: u32,
    stale: u32,
}
