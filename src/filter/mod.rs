//! The proxy-wasm adapter: the only module that talks to the host.
//!
//! It reads the plugin configuration into a [`Config`] once per configure, creates one
//! counter per outcome, and for each request hands the headers and the host clock to
//! [`crate::decision::authenticate`], then applies the [`crate::decision::Decision`]: edit and
//! continue, or send the denial's response. Nothing here decides anything.
//!
//! The host is reached through the crate's own bindings of the proxy-wasm ABI: `abi` (the
//! host functions, every status a `Result`, nothing panics) and `entry` (the callbacks the
//! module exports, only those it needs). Why not the proxy-wasm SDK: see `abi`.

mod abi;
mod apply;
mod crypto;
mod entry;
mod fetch;
mod http;
mod introspect;
mod resume;
mod stats;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use self::abi::{BufferType, LogLevel};

use crate::config::Config;
use crate::decision::{self, Attempt, Decision, Services};
use crate::fetch::Sources;
use crate::request::OwnedRequest;
use crate::verify::cache::TokenCache;

use self::crypto::{Signatures, Verifier};
use self::fetch::HostSharedData;
use self::introspect::Introspections;
use self::stats::Stats;

/// Logs a line prefixed with the context id, so lines of one request can be grepped together.
pub(crate) fn log(level: LogLevel, context_id: u32, message: &str) {
    // Logging must never take the request down; a host that cannot log loses the line.
    let _ = abi::log(
        level,
        &format!("[wasm-jwt-authn ctx={context_id}] {message}"),
    );
}

/// `wasm-jwt-authn <version> (revision <git describe>)`: which build is running, for logs. The
/// revision comes from `make build` (`WASM_JWT_AUTHN_REVISION`); other builds say `unknown`.
pub(crate) fn build_identity() -> String {
    let revision = option_env!("WASM_JWT_AUTHN_REVISION").unwrap_or("unknown");
    format!(
        "wasm-jwt-authn {} (revision {revision})",
        env!("CARGO_PKG_VERSION")
    )
}

/// The host clock in whole seconds since the epoch; `None` if the host cannot say.
pub(crate) fn now_seconds() -> Option<i64> {
    abi::get_current_time()
        .ok()
        .and_then(|elapsed| i64::try_from(elapsed.as_secs()).ok())
}

impl Shared {
    /// Decides a request against this configuration and the keys this worker has now.
    fn decide(&self, request: &OwnedRequest, now: i64, attempt: Attempt) -> Decision {
        let sources = self.sources.borrow();
        let introspections = self.introspections.borrow();
        let mut token_cache = self.token_cache.borrow_mut();
        let verifier = Verifier {
            signatures: self.signatures,
            stats: &self.stats,
            context_id: self.root_context_id,
        };
        let mut services = Services {
            remote: &*sources,
            introspections: &introspections.cache,
            signatures: &verifier,
            token_cache: &mut token_cache,
        };
        let decision =
            decision::authenticate(&self.config, &mut services, &request.view(), now, attempt);
        self.stats.record_decision(&decision, &token_cache);
        decision
    }
}

/// How often the root context looks at key fetches and parked requests.
const TICK: Duration = Duration::from_millis(200);

/// What every request of this plugin shares: the configuration, the counters, the fetched
/// documents.
struct Shared {
    config: Config,
    stats: Stats,
    /// Keys and address lists fetched at run time, and the requests waiting for them.
    sources: RefCell<Sources<OwnedRequest>>,
    /// Which code verifies signatures, chosen once per configuration.
    signatures: Signatures,
    /// Verified tokens of this configuration.
    token_cache: RefCell<TokenCache>,
    /// Introspection answers and calls in flight.
    introspections: RefCell<Introspections>,
    /// The root context that owns this state: key fetches and wake-ups run in it.
    root_context_id: u32,
}

struct AuthnRoot {
    context_id: u32,
    /// `None` until a configuration has loaded; requests are then refused (see `http`).
    state: Option<Rc<Shared>>,
}

impl AuthnRoot {
    fn new(context_id: u32) -> AuthnRoot {
        AuthnRoot {
            context_id,
            state: None,
        }
    }

    /// What this plugin's requests share; `None` until a configuration has loaded.
    fn shared(&self) -> Option<Rc<Shared>> {
        self.state.clone()
    }

    fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        if let (Some(shared), Some(now)) = (&self.state, now_seconds()) {
            match introspect::on_call_response(shared, self.context_id, token, body_size, now) {
                Some(released) => {
                    resume::wake_all(shared, released, now, Attempt::AfterIntrospection);
                }
                None => {
                    fetch::on_call_response(shared, self.context_id, token, body_size, now);
                }
            }
        }
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let (shared, now) = match self.configure(plugin_configuration_size) {
            Ok(configured) => configured,
            Err(message) => {
                log(LogLevel::Error, self.context_id, &message);
                return false;
            }
        };
        if let Some(previous) = self.state.take() {
            // Every request parked with the configuration being replaced is decided now
            // (with what keys there are, else `503`), so none waits on state nobody ticks.
            let parked = previous.sources.borrow_mut().take_all_waiters();
            let parked = parked
                .into_iter()
                .map(|waiter| (waiter.context_id, waiter.request));
            resume::wake_all(&previous, parked, now, Attempt::AfterWait);
            let waiting = previous.introspections.borrow_mut().calls.take_all();
            resume::wake_all(&previous, waiting, now, Attempt::AfterIntrospection);
        }
        self.state = Some(Rc::new(shared));
        true
    }

    /// Reads and loads the plugin configuration: what its requests will share, and the time
    /// it was loaded; `Err` is the line to log when it cannot be (the previous configuration,
    /// if any, stays).
    fn configure(&self, plugin_configuration_size: usize) -> Result<(Shared, i64), String> {
        let document = abi::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        )
        .map_err(|status| format!("cannot read the plugin configuration: {status:?}"))?
        .unwrap_or_default();
        let loaded = Config::from_json(&document).map_err(|error| error.to_string())?;
        for (provider, skipped) in &loaded.skipped_keys {
            log(
                LogLevel::Warn,
                self.context_id,
                &format!(
                    "provider {provider:?}: JWKS key {} (kid {:?}) is not used: {}",
                    skipped.index, skipped.id, skipped.reason
                ),
            );
        }
        let config = loaded.config;
        let stats =
            Stats::define(&config).map_err(|status| format!("cannot define stats: {status:?}"))?;
        let now = now_seconds().ok_or("cannot read the host clock")?;
        let sources = fetch::sources_of(&config, fetch::worker_id(), now);
        sources.create_records(&mut HostSharedData);
        let introspects = config
            .providers()
            .iter()
            .any(|provider| provider.introspection().is_some());
        if !sources.is_empty() || introspects {
            abi::set_tick_period(TICK)
                .map_err(|status| format!("cannot set the tick period: {status:?}"))?;
        }
        let signatures = Signatures::choose(config.crypto(), self.context_id);
        stats.record_crypto_backend(signatures == Signatures::Host);
        log(
            LogLevel::Info,
            self.context_id,
            &format!(
                "{}: configured {} provider(s), {} rule(s), {} address list(s); signatures by {} crypto; token cache of {} entries",
                build_identity(),
                config.providers().len(),
                config.rules().len(),
                config.address_lists().len(),
                signatures.name(),
                config.token_cache_entries(),
            ),
        );
        let shared = Shared {
            root_context_id: self.context_id,
            token_cache: RefCell::new(TokenCache::new(config.token_cache_entries())),
            introspections: RefCell::new(Introspections::new()),
            config,
            stats,
            sources: RefCell::new(sources),
            signatures,
        };
        Ok((shared, now))
    }

    fn on_tick(&mut self) {
        if let (Some(shared), Some(now)) = (&self.state, now_seconds()) {
            fetch::tick(shared, self.context_id, now);
            let overdue = introspect::tick(shared, self.context_id, now);
            resume::wake_all(shared, overdue, now, Attempt::AfterIntrospection);
        }
    }
}
