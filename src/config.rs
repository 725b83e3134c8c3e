//! The plugin configuration: JSON → [`Config`], a value that cannot be invalid.
//!
//! Parsing happens in two steps. Serde reads the document into `Raw*` structs that mirror the
//! JSON exactly, with `deny_unknown_fields` everywhere so a misspelt `audiences` is an error
//! rather than a silently skipped check. [`Config::from_json`] then checks what serde cannot
//! (non-empty lists, unique names, rules naming known providers, header names, key sets) and
//! builds the validated types the rest of the crate works with. Every error names the field.
//!
//! The README's configuration reference documents every field with its default; the defaults
//! are the `DEFAULT_*` constants and `default_*` functions below.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::base::http::HttpUri;
use crate::base::ids::{ListIndex, ProviderIndex};
use crate::fetch::remote::{Location, RemoteSettings, MAX_REFRESH_SECONDS, MIN_REFRESH_SECONDS};
use crate::introspection::{self, IntrospectionSettings};
use crate::jose::algorithm::Algorithm;
use crate::jose::jwks::{KeySet, SkippedKey};
use crate::policy::{self, RawRequirements, Requirements};
use crate::request::client_address::{self, ClientAddress, RawClientAddress};
use crate::request::token::TokenSource;
use crate::verify::cache::{DEFAULT_MAX_ENTRIES, MAX_ENTRIES_LIMIT};

/// Defaults to 16 KiB: larger than any real access token, small enough to bound the work.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Defaults to 60 seconds of tolerance for clock differences with the identity provider.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Defaults to `wasm-jwt-authn`.
pub const DEFAULT_REALM: &str = "wasm-jwt-authn";
/// Clock skew above a day is a misconfiguration, not a tolerance.
const MAX_CLOCK_SKEW_SECONDS: u64 = 86_400;

// ---------------------------------------------------------------------------------------------
// The document as written.

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawConfig {
    providers: Vec<RawProvider>,
    #[serde(default)]
    rules: Vec<RawRule>,
    max_token_bytes: Option<usize>,
    realm: Option<String>,
    crypto: Option<CryptoBackend>,
    token_cache: Option<RawTokenCache>,
    client_address: Option<RawClientAddress>,
    device: Option<RawDevice>,
    #[serde(default)]
    address_lists: Vec<RawAddressList>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawAddressList {
    name: String,
    uri: String,
    upstream: String,
    allow_http: Option<bool>,
    timeout_ms: Option<u64>,
    refresh_seconds: Option<u64>,
    max_stale_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawDevice {
    provider: String,
    bind: Option<RawDeviceBinding>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawDeviceBinding {
    device_claim: Vec<String>,
    user_claim: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawTokenCache {
    max_entries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    algorithms: Option<Vec<String>>,
    jwks: Option<RawJwks>,
    discovery: Option<RawDiscovery>,
    allow_http: Option<bool>,
    token_sources: Option<Vec<RawTokenSource>>,
    clock_skew_seconds: Option<u64>,
    required_claims: Option<Vec<String>>,
    max_lifetime_seconds: Option<u64>,
    token_types: Option<Vec<String>>,
    forward_token: Option<bool>,
    #[serde(default)]
    claims_to_headers: Vec<RawClaimToHeader>,
    payload_header: Option<String>,
    role_claims: Option<Vec<Vec<String>>>,
    introspection: Option<RawIntrospection>,
    tenants: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    endpoint: String,
    upstream: String,
    client_id: String,
    client_secret: String,
    timeout_ms: Option<u64>,
    cache_seconds: Option<u64>,
    negative_cache_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawJwks {
    inline: Option<Value>,
    uri: Option<String>,
    upstream: Option<String>,
    // Not `#[serde(flatten)]`: flattening disables `deny_unknown_fields`.
    timeout_ms: Option<u64>,
    refresh_seconds: Option<u64>,
    max_stale_seconds: Option<u64>,
    min_refetch_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    upstream: String,
    uri: Option<String>,
    jwks_upstream: Option<String>,
    timeout_ms: Option<u64>,
    refresh_seconds: Option<u64>,
    max_stale_seconds: Option<u64>,
    min_refetch_seconds: Option<u64>,
}

/// The fetch settings shared by `jwks` (with `uri`) and `discovery`.
#[derive(Debug)]
struct RawFetchTiming {
    timeout_ms: Option<u64>,
    refresh_seconds: Option<u64>,
    max_stale_seconds: Option<u64>,
    min_refetch_seconds: Option<u64>,
}

/// Gathers the fetch settings of a `RawJwks` or `RawDiscovery` (which cannot share a
/// flattened struct: flattening disables `deny_unknown_fields`).
macro_rules! fetch_timing {
    ($raw:expr) => {
        RawFetchTiming {
            timeout_ms: $raw.timeout_ms,
            refresh_seconds: $raw.refresh_seconds,
            max_stale_seconds: $raw.max_stale_seconds,
            min_refetch_seconds: $raw.min_refetch_seconds,
        }
    };
}

impl RawFetchTiming {
    fn is_set(&self) -> bool {
        self.timeout_ms.is_some()
            || self.refresh_seconds.is_some()
            || self.max_stale_seconds.is_some()
            || self.min_refetch_seconds.is_some()
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawTokenSource {
    header: Option<String>,
    prefix: Option<String>,
    query: Option<String>,
    cookie: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawClaimToHeader {
    claim: Vec<String>,
    header: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    #[serde(rename = "match", default)]
    request_match: RawMatch,
    allow: Option<RawAllow>,
    providers: Option<Vec<String>>,
    require: Option<RawRequirements>,
    deny: Option<RawRequirements>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawMatch {
    path_prefix: Option<String>,
    path_exact: Option<String>,
    methods: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
enum RawAllow {
    Anonymous,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

/// Which code does the signature math.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CryptoBackend {
    /// Defaults to this: the host's own crypto library (Envoy's `verify_signature`, i.e.
    /// BoringSSL) for `RS*` and `ES*` when the host passes a self-test at configure time, the
    /// portable code otherwise and for the other algorithms.
    #[default]
    Auto,
    /// Always the filter's own pure-Rust code: the same on every host.
    Portable,
}

/// A validated configuration. Only [`Config::from_json`] makes one.
#[derive(Debug, Clone)]
pub struct Config {
    providers: Vec<Provider>,
    rules: Vec<Rule>,
    max_token_bytes: usize,
    realm: String,
    /// Every provider's token sources, each once: where a request's token is looked for, on
    /// every route, so that a second token cannot ride along unverified.
    token_sources: Vec<TokenSource>,
    /// Every header `claims_to_headers` and `payload_header` may set: removed from every
    /// request first, so a client can never supply them itself.
    identity_headers: Vec<Arc<str>>,
    /// The request headers authentication reads (lower case): `:method`, `:path`, the token
    /// sources' headers, `cookie` when a token may be in one.
    read_headers: Vec<String>,
    crypto: CryptoBackend,
    /// How many verified tokens to remember; 0 disables the cache.
    token_cache_entries: usize,
    /// Some rule checks claims, so remembered tokens keep theirs.
    policy_reads_claims: bool,
    /// Which address `source_ips` conditions judge.
    client_address: ClientAddress,
    /// Some rule judges the client address the proxy determined: the adapter asks for it.
    reads_source_address: bool,
    /// The name decisions give when no rule matched ([`DEFAULT_RULE`]),
    /// made once rather than per request.
    default_rule: Arc<str>,
    /// Device tokens, when rules may require them.
    device: Option<DevicePosture>,
    /// A Rego policy sees every request header: the adapter copies them all.
    reads_all_headers: bool,
    /// Address lists fetched at run time, named by `source_ips` conditions.
    address_lists: Vec<AddressList>,
    /// The provider of opaque tokens, if any (at most one), found once at configure time.
    opaque_provider: Option<ProviderIndex>,
}

/// What the configuration is, read-only: the derived fields are computed once by `validate`
/// from the others, so nothing outside this module may change any of them.
impl Config {
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Every provider's token sources, each once: where a request's token is looked for, on
    /// every route, so that a second token cannot ride along unverified.
    pub fn token_sources(&self) -> &[TokenSource] {
        &self.token_sources
    }

    /// Every header `claims_to_headers` and `payload_header` may set: removed from every
    /// request first, so a client can never supply them itself.
    pub fn identity_headers(&self) -> &[Arc<str>] {
        &self.identity_headers
    }

    /// The request headers authentication reads (lower case): `:method`, `:path`, the token
    /// sources' headers, `cookie` when a token may be in one.
    pub fn read_headers(&self) -> &[String] {
        &self.read_headers
    }

    pub fn crypto(&self) -> CryptoBackend {
        self.crypto
    }

    /// How many verified tokens to remember; 0 disables the cache.
    pub fn token_cache_entries(&self) -> usize {
        self.token_cache_entries
    }

    /// Some rule checks claims, so remembered tokens keep theirs.
    pub fn policy_reads_claims(&self) -> bool {
        self.policy_reads_claims
    }

    /// Which address `source_ips` conditions judge.
    pub fn client_address(&self) -> ClientAddress {
        self.client_address
    }

    /// Some rule judges the client address the proxy determined: the adapter asks for it.
    pub fn reads_source_address(&self) -> bool {
        self.reads_source_address
    }

    /// The name decisions give when no rule matched ([`DEFAULT_RULE`]),
    /// made once rather than per request.
    pub fn default_rule(&self) -> &Arc<str> {
        &self.default_rule
    }

    /// Device tokens, when rules may require them.
    pub fn device(&self) -> Option<&DevicePosture> {
        self.device.as_ref()
    }

    /// Address lists fetched at run time, named by `source_ips` conditions.
    pub fn address_lists(&self) -> &[AddressList] {
        &self.address_lists
    }
}

/// A list of addresses fetched at run time (an IP reputation feed, a partner's ranges), which
/// `source_ips` conditions name in `any_lists` and `not_lists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressList {
    pub name: Arc<str>,
    pub remote: RemoteSettings,
}

/// Where device tokens come from and how they are tied to the user's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePosture {
    /// The provider that verifies device tokens (a device-trust service's issuer and keys); its
    /// one header token source is where they are sent. It vouches for no user.
    pub provider: ProviderIndex,
    /// The device token's claim at `device_claim` must equal the user token's at `user_claim`.
    pub binding: Option<DeviceBinding>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBinding {
    pub device_claim: Vec<String>,
    pub user_claim: Vec<String>,
}

/// One identity provider: who issues tokens, for whom, signed with which keys.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Shared with every allowed request that names it (no copy per request).
    pub name: Arc<str>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Keys (with introspection or without), or introspection alone.
    pub trust: Trust,
    pub token_sources: Vec<TokenSource>,
    pub clock_skew_seconds: u64,
    pub required_claims: Vec<String>,
    pub max_lifetime_seconds: Option<u64>,
    pub token_types: TokenTypes,
    pub forward_token: bool,
    pub claims_to_headers: Vec<ClaimToHeader>,
    pub payload_header: Option<Arc<str>>,
    /// Where this provider's tokens carry roles or groups, for `require.roles`.
    pub role_claims: Vec<Vec<String>>,
    /// With an issuer template (`…/{tenantid}/…`, a multi-tenant provider such as Entra ID):
    /// the tenants whose tokens it accepts. Never "any tenant".
    pub tenants: Option<Vec<String>>,
}

/// The name decisions give when no rule matched (a valid token from any provider was needed).
pub const DEFAULT_RULE: &str = "default";

/// The placeholder of a multi-tenant issuer template.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

impl Provider {
    /// Whether `issuer` (a token's `iss`) is this provider's: its issuer exactly, or with an
    /// issuer template, the template with one of its `tenants` in place of `{tenantid}`.
    pub fn issues(&self, issuer: &str) -> bool {
        self.tenant_of(issuer).is_some() || (self.tenants.is_none() && self.issuer == issuer)
    }

    /// With an issuer template: the allowed tenant `issuer` names, if it names one.
    pub fn tenant_of(&self, issuer: &str) -> Option<&str> {
        let tenants = self.tenants.as_ref()?;
        let (before, after) = self.issuer.split_once(TENANT_PLACEHOLDER)?;
        let tenant = issuer.strip_prefix(before)?.strip_suffix(after)?;
        tenants
            .iter()
            .find(|allowed| allowed.as_str() == tenant)
            .map(String::as_str)
    }

    /// A provider of opaque tokens: no keys, introspection only.
    pub fn is_opaque(&self) -> bool {
        matches!(self.trust, Trust::Opaque { .. })
    }

    /// Its keys; none for a provider of opaque tokens.
    pub fn keys(&self) -> Option<&KeySource> {
        match &self.trust {
            Trust::Keys { keys, .. } => Some(keys),
            Trust::Opaque { .. } => None,
        }
    }

    /// Its introspection endpoint, if it has one (every provider of opaque tokens has).
    pub fn introspection(&self) -> Option<&IntrospectionSettings> {
        match &self.trust {
            Trust::Keys { introspection, .. } => introspection.as_ref(),
            Trust::Opaque { introspection } => Some(introspection),
        }
    }
}

impl crate::verify::Expectations for Provider {
    fn issues(&self, issuer: &str) -> bool {
        Provider::issues(self, issuer)
    }
    fn tenant_of(&self, issuer: &str) -> Option<&str> {
        Provider::tenant_of(self, issuer)
    }
    fn audiences(&self) -> &[String] {
        &self.audiences
    }
    fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }
    fn accepts_token_type(&self, token_type: Option<&str>) -> bool {
        self.token_types.accepts(token_type)
    }
    fn clock_skew_seconds(&self) -> u64 {
        self.clock_skew_seconds
    }
    fn required_claims(&self) -> &[String] {
        &self.required_claims
    }
    fn max_lifetime_seconds(&self) -> Option<u64> {
        self.max_lifetime_seconds
    }
}

/// What vouches for a provider's tokens.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Signed JWTs, checked against its keys. With `introspection`, a token whose signature
    /// and claims hold is also asked about (revocation).
    Keys {
        keys: KeySource,
        introspection: Option<IntrospectionSettings>,
    },
    /// Opaque tokens (no `jwks`, no `discovery`), vouched for by introspection alone.
    Opaque {
        introspection: IntrospectionSettings,
    },
}

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `jwks.inline`: fixed in the configuration.
    Inline(KeySet),
    /// `jwks.uri` or `discovery`: fetched, refreshed and shared at run time.
    Remote(RemoteSettings),
}

/// Defaults to 5 seconds for one JWKS or discovery call.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Defaults to refreshing keys every 10 minutes (unless `Cache-Control: max-age` says otherwise).
pub const DEFAULT_REFRESH_SECONDS: u64 = 600;
/// Defaults to keeping the last good keys for a day past their refresh while the IdP fails.
pub const DEFAULT_MAX_STALE_SECONDS: u64 = 86_400;
/// Defaults to at most one unknown-`kid` refetch per 30 seconds.
pub const DEFAULT_MIN_REFETCH_SECONDS: u64 = 30;

/// The `typ` header values a provider accepts, normalised (lower case, no `application/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTypes {
    pub allow_absent: bool,
    pub allowed: Vec<String>,
}

impl TokenTypes {
    /// Defaults to: absent, `JWT`, or `at+jwt` (RFC 9068 access tokens).
    fn default_set() -> TokenTypes {
        TokenTypes {
            allow_absent: true,
            allowed: vec!["jwt".to_owned(), "at+jwt".to_owned()],
        }
    }

    /// Whether a token whose header has `typ` (or none) is accepted.
    pub fn accepts(&self, token_type: Option<&str>) -> bool {
        match token_type {
            None => self.allow_absent,
            Some(token_type) => {
                let normalised = normalise_token_type(token_type);
                self.allowed.contains(&normalised)
            }
        }
    }
}

/// RFC 7515 §4.1.9: media types compare case-insensitively and `application/` may be omitted.
fn normalise_token_type(token_type: &str) -> String {
    let lower = token_type.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// Copy a claim (found by its path of member names) into a request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    pub claim: Vec<String>,
    pub header: Arc<str>,
}

/// What a rule does with the requests it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Let the request through without a token.
    AllowAnonymous,
    /// Require a valid token from one of these providers.
    RequireToken(Vec<ProviderIndex>),
    /// Refuse the request when the rule's conditions (its `requirements`) all hold, whatever
    /// any other rule says: deny rules are checked before the first matching allow rule.
    Deny,
}

/// A `match.hosts` entry, compared with the request's host without its port, ASCII
/// case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `api.example.com`
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com` (not `example.com` itself); kept as
    /// the suffix with its dot.
    Subdomains(String),
}

impl HostMatch {
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
            HostMatch::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len().saturating_sub(suffix.len())..)
                        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// For explanations: `name`, or `rules[<index>]`.
    pub name: Arc<str>,
    pub path: PathMatch,
    /// Upper-case method names; `None` matches every method.
    pub methods: Option<Vec<String>>,
    /// `None` matches every host.
    pub hosts: Option<Vec<HostMatch>>,
    pub action: RuleAction,
    /// What the token must also show (scopes, claims); empty for anonymous rules.
    pub requirements: Requirements,
}

/// A configuration that cannot be used, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the field, e.g. `providers[0].audiences`.
    pub field: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() || self.field == "." {
            write!(formatter, "invalid configuration: {}", self.problem)
        } else {
            write!(
                formatter,
                "invalid configuration at `{}`: {}",
                self.field, self.problem
            )
        }
    }
}

impl std::error::Error for ConfigError {}

fn error(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The JSON Schema (draft 2020-12) of the plugin configuration, generated from the types the
/// configuration is read into, so it cannot drift from what the filter accepts: unknown fields
/// are refused in both. It checks the shape; [`Config::from_json`] checks the rest (unique
/// names, known providers, valid keys, …). `make schema` writes it to
/// `schema/config.schema.json`.
#[cfg(feature = "schema")]
pub fn schema() -> Value {
    let generated = serde_json::to_string(&schemars::schema_for!(RawConfig)).unwrap_or_default();
    // The definitions are named after the types that read the document (`RawProvider`): users
    // know them as the document's own parts (`Provider`).
    let renamed = generated
        .replace("\"#/$defs/Raw", "\"#/$defs/")
        .replace("_Raw", "_");
    let mut schema: Value = serde_json::from_str(&renamed).unwrap_or_default();
    if let Some(Value::Object(definitions)) = schema.get_mut("$defs") {
        let named = std::mem::take(definitions);
        for (name, definition) in named {
            let name = name.strip_prefix("Raw").unwrap_or(&name).to_owned();
            definitions.insert(name, definition);
        }
    }
    if let Some(members) = schema.as_object_mut() {
        members.insert(
            "$id".to_owned(),
            Value::from(
                "https://github.com/wasm-jwt-authn/wasm-jwt-authn/schema/config.schema.json",
            ),
        );
        members.insert(
            "title".to_owned(),
            Value::from("wasm-jwt-authn configuration"),
        );
        members.insert(
            "description".to_owned(),
            Value::from(
                "The plugin configuration of the wasm-jwt-authn proxy-wasm filter (README, Configuration reference).",
            ),
        );
    }
    schema
}

/// A key of a provider's inline JWKS that is not used, with the provider's name.
pub type SkippedInlineKey = (String, SkippedKey);

/// A validated configuration plus what the caller should log about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// JWKS keys that were left out, per provider name.
    pub skipped_keys: Vec<SkippedInlineKey>,
}

impl Config {
    /// Parses and validates the plugin configuration.
    pub fn from_json(document: &[u8]) -> Result<Loaded, ConfigError> {
        let deserializer = &mut serde_json::Deserializer::from_slice(document);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let field = err.path().to_string();
            error(field, err.into_inner().to_string())
        })?;
        validate(raw)
    }

    /// Whether authentication reads request header `name` (`:method`, `:path`, the token
    /// sources' headers, `cookie` when a token may be in one): the adapter copies only these
    /// out of the host.
    pub fn reads_header(&self, name: &str) -> bool {
        self.reads_all_headers
            || self
                .read_headers
                .iter()
                .any(|header| header.eq_ignore_ascii_case(name))
    }

    /// The provider whose `issuer` is exactly `issuer`, with its position.
    /// A provider of opaque tokens has no keys: a JWT naming its issuer is not its.
    pub fn provider_by_issuer(&self, issuer: &str) -> Option<(ProviderIndex, &Provider)> {
        self.providers
            .iter()
            .enumerate()
            .find(|(_, provider)| provider.issues(issuer) && !provider.is_opaque())
            .map(|(index, provider)| (ProviderIndex::new(index), provider))
    }

    /// The provider at `index`.
    pub fn provider(&self, index: ProviderIndex) -> Option<&Provider> {
        self.providers.get(index.position())
    }

    /// The provider of opaque tokens (at most one), with its position.
    pub fn opaque_provider(&self) -> Option<(ProviderIndex, &Provider)> {
        let index = self.opaque_provider?;
        self.provider(index).map(|provider| (index, provider))
    }
}

fn validate(raw: RawConfig) -> Result<Loaded, ConfigError> {
    let (providers, skipped_keys) = validate_providers(raw.providers)?;
    let address_lists = validate_address_lists(raw.address_lists)?;
    let rules = validate_rules(raw.rules, &providers, &address_lists)?;
    let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if max_token_bytes == 0 {
        return Err(error("max_token_bytes", "must be greater than 0"));
    }
    let realm = validate_realm(raw.realm)?;
    let token_cache_entries = validate_token_cache(raw.token_cache)?;
    let device = validate_device_settings(raw.device, &providers, &rules)?;
    let (token_sources, identity_headers) =
        token_sources_and_identity_headers(&providers, device.as_ref())?;
    let policy_reads_claims = rules.iter().any(|rule| rule.requirements.keeps_claims());
    let has_rego = rules.iter().any(|rule| rule.requirements.rego.is_some());
    let client_address = raw
        .client_address
        .map(|raw| client_address::validate_client_address("client_address", raw))
        .transpose()
        .map_err(|(field, problem)| error(field, problem))?
        .unwrap_or_default();
    let reads_addresses = has_rego
        || rules
            .iter()
            .any(|rule| rule.requirements.source_ips.is_some());
    let reads_source_address = reads_addresses && client_address == ClientAddress::Proxy;
    let read_headers = read_headers(
        &token_sources,
        &rules,
        &providers,
        device.as_ref(),
        reads_addresses && client_address != ClientAddress::Proxy,
    );
    Ok(Loaded {
        config: Config {
            policy_reads_claims,
            client_address,
            reads_source_address,
            default_rule: Arc::from(DEFAULT_RULE),
            device,
            reads_all_headers: has_rego,
            address_lists,
            opaque_provider: providers
                .iter()
                .position(Provider::is_opaque)
                .map(ProviderIndex::new),
            providers,
            rules,
            max_token_bytes,
            realm,
            token_sources,
            identity_headers,
            read_headers,
            crypto: raw.crypto.unwrap_or_default(),
            token_cache_entries,
        },
        skipped_keys,
    })
}

/// The realm of `WWW-Authenticate`, written into a quoted-string.
fn validate_realm(realm: Option<String>) -> Result<String, ConfigError> {
    let realm = realm.unwrap_or_else(|| DEFAULT_REALM.to_owned());
    if realm
        .chars()
        .any(|c| c == '"' || c == '\\' || !(' '..='~').contains(&c))
    {
        return Err(error(
            "realm",
            "must be printable ASCII without `\"` or `\\`",
        ));
    }

    Ok(realm)
}

/// How many verified tokens to remember.
fn validate_token_cache(cache: Option<RawTokenCache>) -> Result<usize, ConfigError> {
    let token_cache_entries = match cache {
        None => DEFAULT_MAX_ENTRIES,
        Some(cache) => cache.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
    };
    if token_cache_entries > MAX_ENTRIES_LIMIT {
        return Err(error(
            "token_cache.max_entries",
            format!("must be at most {MAX_ENTRIES_LIMIT}"),
        ));
    }

    Ok(token_cache_entries)
}

/// The request headers authentication reads (lower case), each once: `:method`, `:path`, the
/// token sources' headers, `x-forwarded-for` when the client address comes from it,
/// `:authority` when a rule names hosts, and the device tokens' header.
fn read_headers(
    token_sources: &[TokenSource],
    rules: &[Rule],
    providers: &[Provider],
    device: Option<&DevicePosture>,
    reads_forwarded_for: bool,
) -> Vec<String> {
    let mut read_headers = vec![":method".to_owned(), ":path".to_owned()];
    for source in token_sources {
        let header = match source {
            TokenSource::Header { name, .. } => name.to_ascii_lowercase(),
            TokenSource::Cookie { .. } => "cookie".to_owned(),
            TokenSource::Query { .. } => continue,
        };
        if !read_headers.contains(&header) {
            read_headers.push(header);
        }
    }

    if reads_forwarded_for {
        read_headers.push("x-forwarded-for".to_owned());
    }
    if rules.iter().any(|rule| rule.hosts.is_some()) {
        read_headers.push(":authority".to_owned());
    }
    if let Some(device) = device {
        let header = providers
            .get(device.provider.position())
            .and_then(|provider| provider.token_sources.first())
            .and_then(|source| match source {
                TokenSource::Header { name, .. } => Some(name.to_ascii_lowercase()),
                _ => None,
            });
        if let Some(header) = header.filter(|header| !read_headers.contains(header)) {
            read_headers.push(header);
        }
    }
    read_headers
}

/// The providers, each valid and told apart from the others by name and issuer; the keys
/// their inline JWKS leave out, to be logged.
fn validate_providers(
    raw_providers: Vec<RawProvider>,
) -> Result<(Vec<Provider>, Vec<SkippedInlineKey>), ConfigError> {
    if raw_providers.is_empty() {
        return Err(error("providers", "at least one provider is required"));
    }
    let mut providers = Vec::with_capacity(raw_providers.len());
    let mut skipped_keys = Vec::new();
    for (index, raw_provider) in raw_providers.into_iter().enumerate() {
        let field = format!("providers[{index}]");
        if providers
            .iter()
            .any(|known: &Provider| *known.name == *raw_provider.name)
        {
            return Err(error(
                format!("{field}.name"),
                format!("duplicate provider name {:?}", raw_provider.name),
            ));
        }
        if providers
            .iter()
            .any(|known: &Provider| known.issuer == raw_provider.issuer)
        {
            return Err(error(
                format!("{field}.issuer"),
                "another provider has this issuer; a token picks its provider by `iss`",
            ));
        }
        let (provider, skipped) = validate_provider(&field, raw_provider)?;
        // An exact issuer that a template of another provider also matches would make the
        // choice of provider depend on their order.
        let overlapping = providers.iter().any(|known: &Provider| {
            (known.tenants.is_some() && known.issues(&provider.issuer))
                || (provider.tenants.is_some() && provider.issues(&known.issuer))
        });
        if overlapping {
            return Err(error(
                format!("{field}.issuer"),
                "another provider's issuer template matches this issuer (or this template matches another provider's issuer); a token picks its provider by `iss`",
            ));
        }
        skipped_keys.extend(
            skipped
                .into_iter()
                .map(|key| (provider.name.to_string(), key)),
        );
        providers.push(provider);
    }

    // A token that is not a JWT names no issuer: one provider must be the one it is for.
    if let Some(second) = providers
        .iter()
        .enumerate()
        .filter(|(_, provider)| provider.is_opaque())
        .nth(1)
        .map(|(index, _)| index)
    {
        return Err(error(
            format!("providers[{second}]"),
            "a second provider of opaque tokens (no `jwks` or `discovery`): an opaque token names no issuer, so at most one provider may take them",
        ));
    }
    Ok((providers, skipped_keys))
}

/// The rules, each valid, uniquely named; every address list must be named by one of them.
fn validate_rules(
    raw_rules: Vec<RawRule>,
    providers: &[Provider],
    address_lists: &[AddressList],
) -> Result<Vec<Rule>, ConfigError> {
    let list_names: Vec<&str> = address_lists.iter().map(|list| &*list.name).collect();
    let rules = raw_rules
        .into_iter()
        .enumerate()
        .map(|(index, rule)| validate_rule(index, rule, providers, &list_names))
        .collect::<Result<Vec<_>, _>>()?;
    for (index, list) in address_lists.iter().enumerate() {
        let used = rules.iter().any(|rule| {
            rule.requirements
                .source_ips
                .as_ref()
                .is_some_and(|condition| {
                    condition
                        .lists()
                        .any(|named| named == ListIndex::new(index))
                })
        });
        if !used {
            return Err(error(
                format!("address_lists[{index}]"),
                format!(
                    "{:?} is named by no rule's `source_ips` (`any_lists`, `not_lists`): a misspelt name would leave a list unchecked",
                    list.name
                ),
            ));
        }
    }
    for (index, rule) in rules.iter().enumerate() {
        if rules
            .iter()
            .take(index)
            .any(|earlier| earlier.name == rule.name)
        {
            return Err(error(
                format!("rules[{index}].name"),
                format!(
                    "{:?} names an earlier rule too: names explain decisions, so they are unique",
                    rule.name
                ),
            ));
        }
    }

    Ok(rules)
}

/// The device settings, required as soon as a rule requires a device token.
fn validate_device_settings(
    raw: Option<RawDevice>,
    providers: &[Provider],
    rules: &[Rule],
) -> Result<Option<DevicePosture>, ConfigError> {
    let device = raw
        .map(|raw| validate_device(raw, providers, rules))
        .transpose()?;
    if device.is_none() {
        if let Some(index) = rules
            .iter()
            .position(|rule| rule.requirements.device.is_some())
        {
            return Err(error(
                format!("rules[{index}].require.device"),
                "no top-level `device` names the provider that verifies device tokens",
            ));
        }
    }

    Ok(device)
}

/// Every provider's token sources, each once (a device provider's are searched only where a
/// rule requires a device token), and every header set from claims, each once; no token may
/// be read from a header that is set from claims.
fn token_sources_and_identity_headers(
    providers: &[Provider],
    device: Option<&DevicePosture>,
) -> Result<(Vec<TokenSource>, Vec<Arc<str>>), ConfigError> {
    let device_provider = device.map(|device| device.provider);
    let mut token_sources: Vec<TokenSource> = Vec::new();
    let mut identity_headers: Vec<Arc<str>> = Vec::new();
    for (index, provider) in providers.iter().enumerate() {
        // Device tokens are looked for only where a rule requires one: their header is not a
        // place for the user's token, nor a second token next to it.
        let sources = if device_provider == Some(ProviderIndex::new(index)) {
            &[][..]
        } else {
            &provider.token_sources[..]
        };
        for source in sources {
            if !token_sources.contains(source) {
                token_sources.push(source.clone());
            }
        }
        let headers = provider
            .claims_to_headers
            .iter()
            .map(|mapping| &mapping.header)
            .chain(&provider.payload_header);
        for header in headers {
            if !identity_headers.contains(header) {
                identity_headers.push(header.clone());
            }
        }
    }
    for (index, provider) in providers.iter().enumerate() {
        for source in &provider.token_sources {
            if let TokenSource::Header { name, .. } = source {
                if identity_headers.iter().any(|header| **header == **name) {
                    return Err(error(
                        format!("providers[{index}].token_sources"),
                        format!("header {name:?} is also set from claims; it would be removed before it is read"),
                    ));
                }
            }
        }
    }

    Ok((token_sources, identity_headers))
}

/// A provider's or address list's name: it appears in stat names and shared-data keys, where
/// `.` separates segments.
fn validate_source_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.is_empty() || !plain {
        return Err(error(
            format!("{field}.name"),
            "must be non-empty letters, digits, `_` and `-`",
        ));
    }
    Ok(())
}

fn validate_address_lists(raw: Vec<RawAddressList>) -> Result<Vec<AddressList>, ConfigError> {
    let mut lists: Vec<AddressList> = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let field = format!("address_lists[{index}]");
        validate_source_name(&field, &raw.name)?;
        if lists.iter().any(|known| *known.name == *raw.name) {
            return Err(error(
                format!("{field}.name"),
                format!("duplicate address list name {:?}", raw.name),
            ));
        }
        let allow_http = raw.allow_http.unwrap_or(false);
        let location = Location::Direct(remote_uri(&format!("{field}.uri"), &raw.uri, allow_http)?);
        let timing = RawFetchTiming {
            timeout_ms: raw.timeout_ms,
            refresh_seconds: raw.refresh_seconds,
            max_stale_seconds: raw.max_stale_seconds,
            min_refetch_seconds: None,
        };
        let remote = remote_settings(&field, location, raw.upstream, timing, allow_http)?;
        lists.push(AddressList {
            name: Arc::from(raw.name),
            remote,
        });
    }
    Ok(lists)
}

fn validate_provider(
    field: &str,
    mut raw: RawProvider,
) -> Result<(Provider, Vec<SkippedKey>), ConfigError> {
    validate_source_name(field, &raw.name)?;
    let tenants = validate_issuer_and_audiences(field, &mut raw)?;

    let algorithms_given = raw.algorithms.is_some();
    let algorithms = validate_algorithms(field, raw.algorithms.take())?;

    let allow_http = raw.allow_http.unwrap_or(false);
    let (trust, skipped) =
        validate_trust(field, &mut raw, &algorithms, algorithms_given, allow_http)?;

    let token_sources = validate_token_sources(field, raw.token_sources.take())?;

    let (clock_skew_seconds, required_claims) = validate_claim_checks(field, &mut raw)?;

    let token_types = validate_token_types(field, raw.token_types.take())?;

    let claims_to_headers =
        validate_claims_to_headers(field, std::mem::take(&mut raw.claims_to_headers))?;
    let payload_header = raw
        .payload_header
        .map(|name| validate_claim_header(&format!("{field}.payload_header"), &name))
        .transpose()?;
    let role_claims = validate_role_claims(field, raw.role_claims.take())?;

    Ok((
        Provider {
            name: raw.name.into(),
            issuer: raw.issuer,
            audiences: raw.audiences,
            algorithms,
            trust,
            token_sources,
            clock_skew_seconds,
            required_claims,
            max_lifetime_seconds: raw.max_lifetime_seconds,
            token_types,
            forward_token: raw.forward_token.unwrap_or(true),
            claims_to_headers,
            payload_header: payload_header.map(Arc::from),
            role_claims,
            tenants,
        },
        skipped,
    ))
}

/// Who a provider's tokens come from and are for: a non-empty issuer (or issuer template,
/// then with its tenants, and discovery at an address of its own), non-empty audiences.
fn validate_issuer_and_audiences(
    field: &str,
    raw: &mut RawProvider,
) -> Result<Option<Vec<String>>, ConfigError> {
    if raw.issuer.is_empty() {
        return Err(error(format!("{field}.issuer"), "must not be empty"));
    }
    let tenants = validate_tenants(field, &raw.issuer, raw.tenants.take())?;
    if tenants.is_some() && raw.discovery.as_ref().is_some_and(|d| d.uri.is_none()) {
        return Err(error(
            format!("{field}.discovery.uri"),
            "required with an issuer template: the discovery document of a multi-tenant provider is at an address of its own (Entra ID: https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration)",
        ));
    }
    if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
        return Err(error(
            format!("{field}.audiences"),
            "at least one non-empty audience is required",
        ));
    }
    Ok(tenants)
}

/// The clock skew allowed and the claims a provider's tokens must carry; a lifetime limit,
/// when set, is at least a second.
fn validate_claim_checks(
    field: &str,
    raw: &mut RawProvider,
) -> Result<(u64, Vec<String>), ConfigError> {
    let clock_skew_seconds = raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(error(
            format!("{field}.clock_skew_seconds"),
            format!("at most {MAX_CLOCK_SKEW_SECONDS}"),
        ));
    }

    let required_claims = raw
        .required_claims
        .take()
        .unwrap_or_else(|| vec!["exp".to_owned()]);
    if let Some(index) = required_claims.iter().position(String::is_empty) {
        return Err(error(
            format!("{field}.required_claims[{index}]"),
            "must not be empty",
        ));
    }

    if raw.max_lifetime_seconds == Some(0) {
        return Err(error(
            format!("{field}.max_lifetime_seconds"),
            "must be greater than 0",
        ));
    }
    Ok((clock_skew_seconds, required_claims))
}

/// The algorithms a provider accepts: all supported by default, never `none` or HMAC.
fn validate_algorithms(
    field: &str,
    names: Option<Vec<String>>,
) -> Result<Vec<Algorithm>, ConfigError> {
    Ok(match names {
        None => Algorithm::ALL.to_vec(),
        Some(names) => {
            if names.is_empty() {
                return Err(error(format!("{field}.algorithms"), "must not be empty"));
            }
            names
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    Algorithm::from_name(name).ok_or_else(|| {
                        error(
                            format!("{field}.algorithms[{index}]"),
                            format!("unsupported algorithm {name:?}; supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA (never `none` or HMAC)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    })
}

/// What vouches for the provider's tokens: keys inline or fetched (directly or through
/// discovery), with optional introspection; or, with neither `jwks` nor `discovery`,
/// introspection alone (then nothing of a JWT's may be configured).
fn validate_trust(
    field: &str,
    raw: &mut RawProvider,
    algorithms: &[Algorithm],
    algorithms_given: bool,
    allow_http: bool,
) -> Result<(Trust, Vec<SkippedKey>), ConfigError> {
    let (keys, skipped) = match (raw.jwks.take(), raw.discovery.take()) {
        (Some(jwks), None) => key_source(field, jwks, algorithms, allow_http)?,
        (None, Some(discovery)) => {
            let field = format!("{field}.discovery");
            let uri = discovery.uri.unwrap_or_else(|| {
                format!(
                    "{}/.well-known/openid-configuration",
                    raw.issuer.trim_end_matches('/')
                )
            });
            let location =
                Location::Discovery(remote_uri(&format!("{field}.uri"), &uri, allow_http)?);
            let timing = fetch_timing!(discovery);
            let mut remote =
                remote_settings(&field, location, discovery.upstream, timing, allow_http)?;
            if let Some(jwks_upstream) = discovery.jwks_upstream {
                remote.jwks_upstream = Some(validate_upstream(
                    &format!("{field}.jwks_upstream"),
                    jwks_upstream,
                )?);
            }
            (KeySource::Remote(remote), Vec::new())
        }
        (Some(_), Some(_)) => {
            return Err(error(field, "use one of `jwks` and `discovery`"));
        }
        (None, None) => {
            return Ok((
                opaque_trust(field, raw, algorithms_given, allow_http)?,
                Vec::new(),
            ))
        }
    };
    let introspection = raw
        .introspection
        .take()
        .map(|introspection| {
            validate_introspection(&format!("{field}.introspection"), introspection, allow_http)
        })
        .transpose()?;
    Ok((
        Trust::Keys {
            keys,
            introspection,
        },
        skipped,
    ))
}

/// A provider without `jwks` or `discovery`: its tokens are opaque, and nothing of a JWT's may
/// be configured.
fn opaque_trust(
    field: &str,
    raw: &mut RawProvider,
    algorithms_given: bool,
    allow_http: bool,
) -> Result<Trust, ConfigError> {
    let Some(introspection) = raw.introspection.take() else {
        return Err(error(
            field,
            "missing field `jwks` (or `discovery`, or `introspection` for opaque tokens)",
        ));
    };
    let jwt_only = [
        ("algorithms", algorithms_given),
        ("token_types", raw.token_types.is_some()),
        ("payload_header", raw.payload_header.is_some()),
        ("max_lifetime_seconds", raw.max_lifetime_seconds.is_some()),
    ];
    if let Some((name, _)) = jwt_only.iter().find(|(_, set)| *set) {
        return Err(error(
            format!("{field}.{name}"),
            "a provider without `jwks` or `discovery` has opaque tokens, vouched for by `introspection` alone: this applies to JWTs only",
        ));
    }
    Ok(Trust::Opaque {
        introspection: validate_introspection(
            &format!("{field}.introspection"),
            introspection,
            allow_http,
        )?,
    })
}

/// Where a provider's tokens are looked for: `Authorization: Bearer` by default.
fn validate_token_sources(
    field: &str,
    sources: Option<Vec<RawTokenSource>>,
) -> Result<Vec<TokenSource>, ConfigError> {
    Ok(match sources {
        None => vec![TokenSource::bearer_header()],
        Some(sources) => {
            if sources.is_empty() {
                return Err(error(format!("{field}.token_sources"), "must not be empty"));
            }
            sources
                .into_iter()
                .enumerate()
                .map(|(index, source)| {
                    validate_token_source(&format!("{field}.token_sources[{index}]"), source)
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    })
}

/// The `typ` values a provider's tokens may carry.
fn validate_token_types(
    field: &str,
    types: Option<Vec<String>>,
) -> Result<TokenTypes, ConfigError> {
    Ok(match types {
        None => TokenTypes::default_set(),
        Some(types) => {
            if types.is_empty() || types.iter().any(String::is_empty) {
                return Err(error(
                    format!("{field}.token_types"),
                    "list the accepted `typ` values (non-empty strings)",
                ));
            }
            TokenTypes {
                allow_absent: false,
                allowed: types.iter().map(|t| normalise_token_type(t)).collect(),
            }
        }
    })
}

/// The headers a provider's claims are copied into.
fn validate_claims_to_headers(
    field: &str,
    mappings: Vec<RawClaimToHeader>,
) -> Result<Vec<ClaimToHeader>, ConfigError> {
    mappings
        .into_iter()
        .enumerate()
        .map(|(index, mapping)| {
            let field = format!("{field}.claims_to_headers[{index}]");
            if mapping.claim.is_empty() {
                return Err(error(
                    format!("{field}.claim"),
                    "a claim path needs at least one segment",
                ));
            }
            Ok(ClaimToHeader {
                claim: mapping.claim,
                header: validate_claim_header(&format!("{field}.header"), &mapping.header)?.into(),
            })
        })
        .collect()
}

/// Where a provider's tokens carry roles: `roles` by default.
fn validate_role_claims(
    field: &str,
    paths: Option<Vec<Vec<String>>>,
) -> Result<Vec<Vec<String>>, ConfigError> {
    Ok(match paths {
        None => vec![vec!["roles".to_owned()]],
        Some(paths) => {
            if paths.is_empty() {
                return Err(error(
                    format!("{field}.role_claims"),
                    "list at least one claim path (leave it out for `[[\"roles\"]]`)",
                ));
            }
            for (index, path) in paths.iter().enumerate() {
                policy::check_claim_path(path)
                    .map_err(|problem| error(format!("{field}.role_claims[{index}]"), problem))?;
            }
            paths
        }
    })
}

/// An issuer with `{tenantid}` once is a template, and then `tenants` lists who is accepted;
/// `tenants` without a template is a mistake.
fn validate_tenants(
    field: &str,
    issuer: &str,
    tenants: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, ConfigError> {
    let placeholders = issuer.matches(TENANT_PLACEHOLDER).count();
    match (placeholders, tenants) {
        (0, None) => Ok(None),
        (0, Some(_)) => Err(error(
            format!("{field}.tenants"),
            "only with an issuer template, an `issuer` with `{tenantid}` in it",
        )),
        (1, None) => Err(error(
            format!("{field}.tenants"),
            "an issuer template needs the list of tenants it accepts: there is no \"any tenant\"",
        )),
        (1, Some(tenants)) => {
            let plain = |tenant: &String| {
                !tenant.is_empty()
                    && tenant.len() <= 128
                    && tenant
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
            };
            if tenants.is_empty() {
                return Err(error(format!("{field}.tenants"), "must not be empty"));
            }
            if let Some(index) = tenants.iter().position(|tenant| !plain(tenant)) {
                return Err(error(
                    format!("{field}.tenants[{index}]"),
                    "a tenant id: letters, digits, `-`, `_` and `.` (a GUID or a domain)",
                ));
            }
            Ok(Some(tenants))
        }
        _ => Err(error(
            format!("{field}.issuer"),
            "`{tenantid}` may appear once",
        )),
    }
}

fn validate_introspection(
    field: &str,
    raw: RawIntrospection,
    allow_http: bool,
) -> Result<IntrospectionSettings, ConfigError> {
    let endpoint = remote_uri(&format!("{field}.endpoint"), &raw.endpoint, allow_http)?;
    let upstream = validate_upstream(&format!("{field}.upstream"), raw.upstream)?;
    // The credentials go into an `Authorization` header, form-urlencoded: any text will do,
    // but not none.
    if raw.client_id.is_empty() {
        return Err(error(format!("{field}.client_id"), "must not be empty"));
    }
    if raw.client_secret.is_empty() {
        return Err(error(format!("{field}.client_secret"), "must not be empty"));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(error(format!("{field}.timeout_ms"), "must be 1 to 60000"));
    }
    let cache_seconds = raw
        .cache_seconds
        .unwrap_or(introspection::DEFAULT_CACHE_SECONDS);
    if !(1..=86_400).contains(&cache_seconds) {
        return Err(error(
            format!("{field}.cache_seconds"),
            "1 to 86400 (a day): it is how long a revoked token may still be accepted",
        ));
    }
    let negative_cache_seconds = raw
        .negative_cache_seconds
        .unwrap_or(introspection::DEFAULT_NEGATIVE_CACHE_SECONDS);
    if !(1..=3_600).contains(&negative_cache_seconds) {
        return Err(error(
            format!("{field}.negative_cache_seconds"),
            "1 to 3600",
        ));
    }
    Ok(IntrospectionSettings {
        endpoint,
        upstream,
        client_id: raw.client_id,
        client_secret: raw.client_secret,
        timeout_ms,
        cache_seconds,
        negative_cache_seconds,
    })
}

fn key_source(
    field: &str,
    jwks: RawJwks,
    algorithms: &[Algorithm],
    allow_http: bool,
) -> Result<(KeySource, Vec<SkippedKey>), ConfigError> {
    let field = format!("{field}.jwks");
    let timing = fetch_timing!(jwks);
    match (jwks.inline, jwks.uri, jwks.upstream) {
        (Some(inline), None, None) => {
            if timing.is_set() {
                return Err(error(
                    field,
                    "fetch settings apply to `uri` key sets, not `inline` ones",
                ));
            }
            let (keys, skipped) = KeySet::from_value(&inline)
                .map_err(|problem| error(format!("{field}.inline"), problem.to_string()))?;
            if !keys
                .keys()
                .iter()
                .any(|key| algorithms.iter().any(|algorithm| key.accepts(*algorithm)))
            {
                let detail = skipped
                    .iter()
                    .map(|key| format!("keys[{}]: {}", key.index, key.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(error(
                    format!("{field}.inline"),
                    format!(
                        "no key can verify any of the provider's algorithms{}{detail}",
                        if detail.is_empty() { "" } else { ": " }
                    ),
                ));
            }
            Ok((KeySource::Inline(keys), skipped))
        }
        (None, Some(uri), Some(upstream)) => {
            let location = Location::Direct(remote_uri(&format!("{field}.uri"), &uri, allow_http)?);
            let remote = remote_settings(&field, location, upstream, timing, allow_http)?;
            Ok((KeySource::Remote(remote), Vec::new()))
        }
        (None, Some(_), None) => Err(error(
            format!("{field}.upstream"),
            "a `uri` key set needs the `upstream` (cluster) to fetch it through",
        )),
        (None, None, Some(_)) => Err(error(
            format!("{field}.uri"),
            "missing: the JWKS URI to fetch",
        )),
        _ => Err(error(
            field,
            "a key set is exactly one of {\"inline\": …} and {\"uri\": …, \"upstream\": …}",
        )),
    }
}

fn remote_uri(field: &str, uri: &str, allow_http: bool) -> Result<HttpUri, ConfigError> {
    let parsed = HttpUri::parse(uri)
        .ok_or_else(|| error(field, format!("{uri:?} is not an absolute http(s) URI")))?;
    if !parsed.secure && !allow_http {
        return Err(error(
            field,
            "must be https:// (set `allow_http` to allow http://)",
        ));
    }
    Ok(parsed)
}

fn remote_settings(
    field: &str,
    location: Location,
    upstream: String,
    timing: RawFetchTiming,
    allow_http: bool,
) -> Result<RemoteSettings, ConfigError> {
    let upstream = validate_upstream(&format!("{field}.upstream"), upstream)?;
    let timeout_ms = timing.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(error(format!("{field}.timeout_ms"), "must be 1 to 60000"));
    }
    let refresh_seconds = timing.refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS);
    if !(MIN_REFRESH_SECONDS..=MAX_REFRESH_SECONDS).contains(&refresh_seconds) {
        return Err(error(
            format!("{field}.refresh_seconds"),
            format!("must be {MIN_REFRESH_SECONDS} to {MAX_REFRESH_SECONDS}"),
        ));
    }
    let max_stale_seconds = timing
        .max_stale_seconds
        .unwrap_or(DEFAULT_MAX_STALE_SECONDS);
    if max_stale_seconds > 30 * 86_400 {
        return Err(error(
            format!("{field}.max_stale_seconds"),
            "at most 2592000 (30 days)",
        ));
    }
    let min_refetch_seconds = timing
        .min_refetch_seconds
        .unwrap_or(DEFAULT_MIN_REFETCH_SECONDS);
    if min_refetch_seconds > MAX_REFRESH_SECONDS {
        return Err(error(
            format!("{field}.min_refetch_seconds"),
            format!("at most {MAX_REFRESH_SECONDS}"),
        ));
    }
    Ok(RemoteSettings {
        location,
        upstream,
        jwks_upstream: None,
        timeout_ms,
        refresh_seconds,
        max_stale_seconds,
        min_refetch_seconds,
        allow_http,
    })
}

fn validate_upstream(field: &str, upstream: String) -> Result<String, ConfigError> {
    if upstream.is_empty()
        || upstream
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(error(field, "must name a cluster (or host:port)"));
    }
    Ok(upstream)
}

fn validate_token_source(field: &str, raw: RawTokenSource) -> Result<TokenSource, ConfigError> {
    match (raw.header, raw.query, raw.cookie, raw.prefix) {
        (Some(header), None, None, prefix) => {
            let name = validate_header_name(&format!("{field}.header"), &header)?;
            let prefix = prefix.unwrap_or_default();
            if prefix.chars().any(char::is_control) {
                return Err(error(
                    format!("{field}.prefix"),
                    "must not contain control characters",
                ));
            }
            Ok(TokenSource::Header { name, prefix })
        }
        (None, Some(parameter), None, None) => {
            if parameter.is_empty() {
                return Err(error(format!("{field}.query"), "must not be empty"));
            }
            Ok(TokenSource::Query { parameter })
        }
        (None, None, Some(name), None) => {
            if name.is_empty() || !name.chars().all(is_token_char) {
                return Err(error(
                    format!("{field}.cookie"),
                    "must be a valid cookie name",
                ));
            }
            Ok(TokenSource::Cookie { name })
        }
        (None, _, _, Some(_)) => Err(error(
            format!("{field}.prefix"),
            "only a `header` source has a prefix",
        )),
        _ => Err(error(
            field,
            "a token source is exactly one of {\"header\": …, \"prefix\": …}, {\"query\": …} or {\"cookie\": …}",
        )),
    }
}

/// RFC 9110 `tchar`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Headers the filter must never set or strip from claims: they steer routing, framing or
/// credentials (hop-by-hop headers of RFC 9110 §7.6.1 and their historic spellings included).
const RESERVED_HEADERS: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "cookie",
    "authorization",
    "proxy-authorization",
];

fn validate_header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    if name.is_empty() || !name.chars().all(is_token_char) {
        return Err(error(field, format!("{name:?} is not a valid header name")));
    }
    let lower = name.to_ascii_lowercase();
    Ok(lower)
}

fn validate_claim_header(field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = validate_header_name(field, name)?;
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(error(field, format!("{name:?} cannot be set from claims")));
    }
    Ok(lower)
}

fn validate_rule(
    index: usize,
    raw: RawRule,
    providers: &[Provider],
    list_names: &[&str],
) -> Result<Rule, ConfigError> {
    let field = &format!("rules[{index}]");
    let name = validate_rule_name(field, raw.name)?;
    let Matching {
        hosts,
        path,
        methods,
    } = validate_match(field, raw.request_match)?;
    if raw.deny.is_some()
        && (raw.allow.is_some() || raw.providers.is_some() || raw.require.is_some())
    {
        return Err(error(
            field,
            "a deny rule has `deny` (its conditions) and no `allow`, `providers` or `require`",
        ));
    }
    let action = validate_action(
        field,
        raw.allow,
        raw.providers,
        raw.deny.is_some(),
        providers,
    )?;
    let requirements = match (raw.require, raw.deny) {
        (Some(raw), _) => policy::validate(&format!("{field}.require"), raw, list_names)
            .map_err(|(field, problem)| error(field, problem))?,
        (None, Some(raw)) => policy::validate_deny(&format!("{field}.deny"), raw, list_names)
            .map_err(|(field, problem)| error(field, problem))?,
        (None, None) => Requirements::default(),
    };
    if matches!(action, RuleAction::AllowAnonymous) && requirements.reads_claims() {
        return Err(error(
            format!("{field}.require"),
            "an anonymous rule has no token to require scopes, roles, claims or authentication of (`source_ips` and `time` it may have)",
        ));
    }
    Ok(Rule {
        name,
        path,
        methods,
        hosts,
        action,
        requirements,
    })
}

/// A rule's name: given, or its position.
fn validate_rule_name(field: &str, name: Option<String>) -> Result<Arc<str>, ConfigError> {
    Ok(match name {
        None => Arc::from(field),
        Some(name) => {
            let plain = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte));
            if !plain {
                return Err(error(
                    format!("{field}.name"),
                    "1 to 64 letters, digits, `-`, `_`, `.` or `:` (it goes into logs and responses)",
                ));
            }
            Arc::from(name)
        }
    })
}

/// A rule's `match`, validated.
struct Matching {
    hosts: Option<Vec<HostMatch>>,
    path: PathMatch,
    methods: Option<Vec<String>>,
}

/// What requests a rule matches: hosts, path, methods (each omitted: every one).
fn validate_match(field: &str, raw: RawMatch) -> Result<Matching, ConfigError> {
    let hosts = match raw.hosts {
        None => None,
        Some(hosts) if hosts.is_empty() => {
            return Err(error(
                format!("{field}.match.hosts"),
                "must not be empty (omit it to match every host)",
            ))
        }
        Some(hosts) => Some(
            hosts
                .iter()
                .enumerate()
                .map(|(index, host)| validate_host(&format!("{field}.match.hosts[{index}]"), host))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let path = match (raw.path_prefix, raw.path_exact) {
        (None, None) => PathMatch::Any,
        (Some(prefix), None) => PathMatch::Prefix(validate_path(
            &format!("{field}.match.path_prefix"),
            prefix,
        )?),
        (None, Some(exact)) => {
            PathMatch::Exact(validate_path(&format!("{field}.match.path_exact"), exact)?)
        }
        (Some(_), Some(_)) => {
            return Err(error(
                format!("{field}.match"),
                "use one of `path_prefix` and `path_exact`",
            ))
        }
    };
    let methods = match raw.methods {
        None => None,
        Some(methods) => {
            if methods.is_empty() {
                return Err(error(
                    format!("{field}.match.methods"),
                    "must not be empty (omit it to match every method)",
                ));
            }
            if let Some(index) = methods
                .iter()
                .position(|m| m.is_empty() || !m.chars().all(is_token_char))
            {
                return Err(error(
                    format!("{field}.match.methods[{index}]"),
                    "not a method name",
                ));
            }
            Some(methods.iter().map(|m| m.to_ascii_uppercase()).collect())
        }
    };
    Ok(Matching {
        hosts,
        path,
        methods,
    })
}

/// What a rule does: allow anonymous requests, require a token of the named providers, or
/// (with `deny`) refuse.
fn validate_action(
    field: &str,
    allow: Option<RawAllow>,
    names: Option<Vec<String>>,
    deny: bool,
    providers: &[Provider],
) -> Result<RuleAction, ConfigError> {
    Ok(match (allow, names) {
            (None, None) if deny => RuleAction::Deny,
            (Some(RawAllow::Anonymous), None) => RuleAction::AllowAnonymous,
            (None, Some(names)) => {
                if names.is_empty() {
                    return Err(error(
                        format!("{field}.providers"),
                        "name at least one provider",
                    ));
                }
                let indexes = names
                    .iter()
                    .enumerate()
                    .map(|(index, name)| {
                        providers
                            .iter()
                            .position(|provider| *provider.name == **name)
                            .map(ProviderIndex::new)
                            .ok_or_else(|| {
                                error(
                                    format!("{field}.providers[{index}]"),
                                    format!("no provider is named {name:?}"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                RuleAction::RequireToken(indexes)
            }
            _ => return Err(error(
                field,
                "a rule has exactly one of `\"allow\": \"anonymous\"`, `\"providers\": [...]` and `\"deny\": {...}`",
            )),
        })
}

fn validate_device(
    raw: RawDevice,
    providers: &[Provider],
    rules: &[Rule],
) -> Result<DevicePosture, ConfigError> {
    let Some((index, provider)) = providers
        .iter()
        .enumerate()
        .find(|(_, provider)| *provider.name == *raw.provider)
    else {
        return Err(error(
            "device.provider",
            format!("no provider is named {:?}", raw.provider),
        ));
    };
    if provider.introspection().is_some() {
        return Err(error(
            "device.provider",
            "device tokens are JWTs verified by keys alone: the device provider has `jwks` or `discovery` and no `introspection`",
        ));
    }
    if !matches!(
        provider.token_sources.as_slice(),
        [TokenSource::Header { .. }]
    ) {
        return Err(error(
            format!("providers[{index}].token_sources"),
            "the device provider takes its tokens from exactly one header, e.g. `[{\"header\": \"x-device-token\"}]`",
        ));
    }
    let named_by_rule = rules.iter().position(|rule| {
        matches!(&rule.action, RuleAction::RequireToken(accepted) if accepted.contains(&ProviderIndex::new(index)))
    });
    if let Some(rule) = named_by_rule {
        return Err(error(
            format!("rules[{rule}].providers"),
            format!(
                "{:?} verifies device tokens; it vouches for no user",
                raw.provider
            ),
        ));
    }
    let binding = match raw.bind {
        None => None,
        Some(bind) => {
            for (name, path) in [
                ("device_claim", &bind.device_claim),
                ("user_claim", &bind.user_claim),
            ] {
                policy::check_claim_path(path)
                    .map_err(|problem| error(format!("device.bind.{name}"), problem))?;
            }
            Some(DeviceBinding {
                device_claim: bind.device_claim,
                user_claim: bind.user_claim,
            })
        }
    };
    Ok(DevicePosture {
        provider: ProviderIndex::new(index),
        binding,
    })
}

/// `api.example.com` or `*.example.com`: lower-case letters, digits, `-` and `.` (IDNs in their
/// `xn--` form), or an IP address.
fn validate_host(field: &str, host: &str) -> Result<HostMatch, ConfigError> {
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.');
    let address = !wildcard
        && host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok();
    if !plain && !address {
        return Err(error(
            field,
            format!("{host:?}: a host name (`api.example.com`), `*.` and a domain, or an IP address; no port"),
        ));
    }
    let lower = name.to_ascii_lowercase();
    Ok(if wildcard {
        HostMatch::Subdomains(format!(".{lower}"))
    } else {
        HostMatch::Exact(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
        )
    })
}

fn validate_path(field: &str, path: String) -> Result<String, ConfigError> {
    if !path.starts_with('/') {
        return Err(error(field, "must start with `/`"));
    }
    if path.contains('?') || path.contains('#') {
        return Err(error(
            field,
            "paths match without the query string; remove `?`/`#`",
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::*;

    use crate::base::http::HttpUri;
    use crate::fetch::remote::Location;
    use crate::support::{jwks, TestKey};

    fn minimal() -> Value {
        json!({"providers": [{
            "name": "corp",
            "issuer": "https://idp.example.com",
            "audiences": ["api://orders"],
            "jwks": {"inline": jwks(&[TestKey::P256])}
        }]})
    }

    fn load(document: &Value) -> Result<Config, ConfigError> {
        Config::from_json(document.to_string().as_bytes()).map(|loaded| loaded.config)
    }

    fn problem(document: &Value) -> ConfigError {
        load(document).expect_err("configuration should be refused")
    }

    /// `document` with each JSON-pointer location set to its value (`null` removes it).
    fn changed(mut document: Value, changes: &[(&str, Value)]) -> Value {
        for (pointer, value) in changes {
            let (parent, member) = pointer.rsplit_once('/').unwrap();
            let parent = document.pointer_mut(parent).unwrap();
            if value.is_null() {
                parent.as_object_mut().unwrap().remove(member);
            } else {
                parent[member] = value.clone();
            }
        }
        document
    }

    fn assert_refused_at(document: &Value, field: &str) {
        let error = problem(document);
        assert_eq!(error.field, field, "{error}");
    }

    #[test]
    fn only_the_headers_authentication_reads_are_read() {
        let config = load(&minimal()).unwrap();
        assert_eq!(config.read_headers, [":method", ":path", "authorization"]);
        let sources = json!([
            {"header": "X-Token", "prefix": ""},
            {"cookie": "session"},
            {"query": "access_token"}
        ]);
        let config = load(&changed(
            minimal(),
            &[("/providers/0/token_sources", sources)],
        ))
        .unwrap();
        assert_eq!(
            config.read_headers,
            [":method", ":path", "x-token", "cookie"]
        );
        assert!(config.reads_header("Cookie"));
        assert!(!config.reads_header("authorization"));
    }

    #[test]
    fn minimal_provider_gets_the_documented_defaults() {
        let config = load(&minimal()).unwrap();
        let provider = &config.providers[0];
        assert_eq!(provider.algorithms, Algorithm::ALL.to_vec());
        assert_eq!(provider.token_sources, vec![TokenSource::bearer_header()]);
        assert_eq!(provider.clock_skew_seconds, 60);
        assert_eq!(provider.required_claims, vec!["exp"]);
        assert_eq!(provider.max_lifetime_seconds, None);
        assert!(provider.token_types.accepts(None));
        assert!(provider.token_types.accepts(Some("JWT")));
        assert!(provider.token_types.accepts(Some("at+jwt")));
        assert!(provider.forward_token);
        assert!(provider.claims_to_headers.is_empty());
        assert_eq!(provider.payload_header, None);
        assert_eq!(config.max_token_bytes, 16_384);
        assert_eq!(config.realm, "wasm-jwt-authn");
        assert!(config.rules.is_empty());
    }

    #[test]
    fn unknown_fields_are_errors_that_name_the_field() {
        let mut misspelt = minimal();
        misspelt["providers"][0]["audience"] = json!(["x"]);
        let error = problem(&misspelt);
        assert_eq!(error.field, "providers[0].audience");
        assert!(
            error.problem.contains("unknown field `audience`"),
            "{error}"
        );

        let mut top = minimal();
        top["rulez"] = json!([]);
        assert!(problem(&top).problem.contains("unknown field `rulez`"));

        let mut in_rule = minimal();
        in_rule["rules"] = json!([{"match": {"prefix": "/"}, "allow": "anonymous"}]);
        let error = problem(&in_rule);
        assert_eq!(error.field, "rules[0].match.prefix");
        assert!(error.problem.contains("unknown field `prefix`"));
    }

    #[test]
    fn wrong_types_and_missing_fields_name_the_field() {
        let mut wrong = minimal();
        wrong["providers"][0]["clock_skew_seconds"] = json!("60");
        assert_eq!(problem(&wrong).field, "providers[0].clock_skew_seconds");
        let mut missing = minimal();
        missing["providers"][0]
            .as_object_mut()
            .unwrap()
            .remove("issuer");
        assert!(problem(&missing).problem.contains("missing field `issuer`"));
        assert!(Config::from_json(b"not json").is_err());
        assert!(Config::from_json(b"").is_err());
    }

    #[test]
    fn insecure_or_unknown_algorithms_are_refused() {
        for name in ["none", "HS256", "rs256", "ES512"] {
            let mut document = minimal();
            document["providers"][0]["algorithms"] = json!(["ES256", name]);
            let error = problem(&document);
            assert_eq!(error.field, "providers[0].algorithms[1]", "{name}");
        }
    }

    #[test]
    fn semantic_problems_name_the_field() {
        let cases = [
            ("/providers", json!([]), "providers"),
            (
                "/providers/0/audiences",
                json!([]),
                "providers[0].audiences",
            ),
            ("/providers/0/issuer", json!(""), "providers[0].issuer"),
            ("/providers/0/name", json!("corp.eu"), "providers[0].name"),
            ("/providers/0/name", json!(""), "providers[0].name"),
            (
                "/providers/0/clock_skew_seconds",
                json!(100_000),
                "providers[0].clock_skew_seconds",
            ),
            (
                "/providers/0/max_lifetime_seconds",
                json!(0),
                "providers[0].max_lifetime_seconds",
            ),
            (
                "/providers/0/token_types",
                json!([]),
                "providers[0].token_types",
            ),
            (
                "/providers/0/token_sources",
                json!([{"query": "t", "cookie": "c"}]),
                "providers[0].token_sources[0]",
            ),
            (
                "/providers/0/token_sources",
                json!([{"query": "t", "prefix": "x"}]),
                "providers[0].token_sources[0].prefix",
            ),
            (
                "/providers/0/token_sources",
                json!([{"header": "bad header"}]),
                "providers[0].token_sources[0].header",
            ),
            (
                "/providers/0/claims_to_headers",
                json!([{"claim": [], "header": "x-a"}]),
                "providers[0].claims_to_headers[0].claim",
            ),
            (
                "/providers/0/claims_to_headers",
                json!([{"claim": ["sub"], "header": "Host"}]),
                "providers[0].claims_to_headers[0].header",
            ),
            (
                "/providers/0/payload_header",
                json!("authorization"),
                "providers[0].payload_header",
            ),
            (
                "/providers/0/jwks/inline",
                json!([]),
                "providers[0].jwks.inline",
            ),
            (
                "/providers/0/jwks/inline",
                jwks(&[TestKey::Rsa1024]),
                "providers[0].jwks.inline",
            ),
            (
                "/providers/0/algorithms",
                json!(["RS256"]),
                "providers[0].jwks.inline",
            ),
            ("/max_token_bytes", json!(0), "max_token_bytes"),
            ("/realm", json!("a\"b"), "realm"),
            (
                "/rules",
                json!([{"match": {}, "providers": ["nobody"]}]),
                "rules[0].providers[0]",
            ),
            (
                "/rules",
                json!([{"match": {}, "providers": ["corp"], "allow": "anonymous"}]),
                "rules[0]",
            ),
            ("/rules", json!([{"match": {}}]), "rules[0]"),
            (
                "/rules",
                json!([{"match": {"path_prefix": "x"}, "allow": "anonymous"}]),
                "rules[0].match.path_prefix",
            ),
            (
                "/rules",
                json!([{"match": {"path_prefix": "/a", "path_exact": "/a"}, "allow": "anonymous"}]),
                "rules[0].match",
            ),
            (
                "/rules",
                json!([{"match": {"methods": []}, "allow": "anonymous"}]),
                "rules[0].match.methods",
            ),
            (
                "/rules",
                json!([{"match": {}, "allow": "everyone"}]),
                "rules[0].allow",
            ),
        ];
        for (pointer, value, field) in cases {
            assert_refused_at(&changed(minimal(), &[(pointer, value)]), field);
        }
    }

    #[test]
    fn provider_names_and_issuers_are_unique() {
        let mut document = minimal();
        let second = document["providers"][0].clone();
        document["providers"]
            .as_array_mut()
            .unwrap()
            .push(second.clone());
        assert_eq!(problem(&document).field, "providers[1].name");
        document["providers"][1]["name"] = json!("other");
        assert_eq!(problem(&document).field, "providers[1].issuer");
    }

    #[test]
    fn unusable_keys_are_reported_but_do_not_block_a_usable_set() {
        let mut document = minimal();
        let mut keys = jwks(&[TestKey::P256, TestKey::Rsa1024]);
        keys["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"kty": "oct", "k": "c2VjcmV0"}));
        document["providers"][0]["jwks"]["inline"] = keys;
        let loaded = Config::from_json(document.to_string().as_bytes()).unwrap();
        let Some(KeySource::Inline(keys)) = loaded.config.providers[0].keys() else {
            panic!("inline keys expected");
        };
        assert_eq!(keys.len(), 1);
        let reasons: Vec<String> = loaded
            .skipped_keys
            .iter()
            .map(|(_, skipped)| skipped.reason.to_string())
            .collect();
        assert_eq!(
            reasons,
            vec![
                "RSA modulus of 1024 bits (2048 to 8192 allowed)",
                "symmetric (`oct`) keys are never used"
            ]
        );
    }

    #[test]
    fn token_sources_and_identity_headers_are_collected_once() {
        let mut document = minimal();
        document["providers"][0]["token_sources"] = json!([
            {"header": "Authorization", "prefix": "Bearer "},
            {"query": "access_token"},
            {"cookie": "session"}
        ]);
        document["providers"][0]["claims_to_headers"] =
            json!([{"claim": ["sub"], "header": "X-Jwt-Sub"}]);
        let config = load(&document).unwrap();
        assert_eq!(config.token_sources.len(), 3);
        assert_eq!(config.token_sources[0], TokenSource::bearer_header());
        assert_eq!(
            config.identity_headers,
            vec![std::sync::Arc::from("x-jwt-sub")]
        );
    }

    #[test]
    fn remote_key_sets_get_their_defaults_and_checks() {
        let mut document = minimal();
        document["providers"][0]["jwks"] =
            json!({"uri": "https://idp.example.com/certs", "upstream": "idp_cluster"});
        let config = load(&document).unwrap();
        let Some(KeySource::Remote(remote)) = config.providers[0].keys() else {
            panic!("remote keys expected");
        };
        assert_eq!(
            remote.location,
            Location::Direct(HttpUri::parse("https://idp.example.com/certs").unwrap())
        );
        assert_eq!(remote.upstream, "idp_cluster");
        assert_eq!(
            (
                remote.timeout_ms,
                remote.refresh_seconds,
                remote.max_stale_seconds,
                remote.min_refetch_seconds
            ),
            (5_000, 600, 86_400, 30)
        );

        let mut discovery = minimal();
        let provider = discovery["providers"][0].as_object_mut().unwrap();
        provider.remove("jwks");
        provider.insert("discovery".to_owned(), json!({"upstream": "idp"}));
        let config = load(&discovery).unwrap();
        let Some(KeySource::Remote(remote)) = config.providers[0].keys() else {
            panic!("remote keys expected");
        };
        assert_eq!(
            remote.location,
            Location::Discovery(
                HttpUri::parse("https://idp.example.com/.well-known/openid-configuration").unwrap()
            )
        );

        let remote = |extra: Value| {
            let mut jwks = json!({"uri": "https://i/c", "upstream": "idp"});
            for (name, value) in extra.as_object().unwrap() {
                jwks[name] = value.clone();
            }
            jwks
        };
        let jwks = "/providers/0/jwks";
        let discovery = "/providers/0/discovery";
        let cases = [
            (
                vec![(jwks, json!({"uri": "http://idp/certs", "upstream": "idp"}))],
                "providers[0].jwks.uri",
            ),
            (
                vec![(jwks, json!({"uri": "https://idp/certs"}))],
                "providers[0].jwks.upstream",
            ),
            (
                vec![(jwks, json!({"upstream": "idp"}))],
                "providers[0].jwks.uri",
            ),
            (
                vec![(jwks, remote(json!({"uri": "not a uri"})))],
                "providers[0].jwks.uri",
            ),
            (
                vec![("/providers/0/jwks/refresh_seconds", json!(60))],
                "providers[0].jwks",
            ),
            (
                vec![(jwks, remote(json!({"refresh_secs": 60})))],
                "providers[0].jwks.refresh_secs",
            ),
            (
                vec![(jwks, remote(json!({"refresh_seconds": 5})))],
                "providers[0].jwks.refresh_seconds",
            ),
            (
                vec![(jwks, remote(json!({"timeout_ms": 0})))],
                "providers[0].jwks.timeout_ms",
            ),
            (
                vec![(jwks, remote(json!({"upstream": "a b"})))],
                "providers[0].jwks.upstream",
            ),
            (
                vec![(discovery, json!({"upstream": "idp"}))],
                "providers[0]",
            ),
            (vec![(jwks, Value::Null)], "providers[0]"),
            (
                vec![
                    (jwks, Value::Null),
                    (discovery, json!({"upstream": "idp", "uri": "http://idp/x"})),
                ],
                "providers[0].discovery.uri",
            ),
            (
                vec![
                    (jwks, Value::Null),
                    (discovery, json!({"upstream": "idp", "jwks_upstream": ""})),
                ],
                "providers[0].discovery.jwks_upstream",
            ),
        ];
        for (changes, field) in cases {
            assert_refused_at(&changed(minimal(), &changes), field);
        }
        let mut plain = minimal();
        plain["providers"][0]["allow_http"] = json!(true);
        plain["providers"][0]["jwks"] =
            json!({"uri": "http://127.0.0.1:8080/certs", "upstream": "idp"});
        assert!(load(&plain).is_ok());
    }

    #[test]
    fn error_display_names_field_and_problem() {
        let error = ConfigError {
            field: "providers[0].audiences".to_owned(),
            problem: "at least one non-empty audience is required".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "invalid configuration at `providers[0].audiences`: at least one non-empty audience is required"
        );
    }

    #[cfg(feature = "schema")]
    #[test]
    fn the_committed_schema_is_current_and_the_readme_documents_every_field() {
        let root = env!("CARGO_MANIFEST_DIR");
        let committed: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{root}/schema/config.schema.json")).unwrap(),
        )
        .unwrap();
        assert!(
            committed == schema(),
            "schema/config.schema.json is not what the configuration types say: run `make schema`"
        );
        // Every field the schema knows, at any depth, is named in the README.
        fn field_names(node: &Value, names: &mut Vec<String>) {
            match node {
                Value::Object(members) => {
                    if let Some(Value::Object(properties)) = members.get("properties") {
                        names.extend(properties.keys().cloned());
                    }
                    members.values().for_each(|value| field_names(value, names));
                }
                Value::Array(items) => items.iter().for_each(|item| field_names(item, names)),
                _ => {}
            }
        }
        let mut names = Vec::new();
        field_names(&committed, &mut names);
        names.sort();
        names.dedup();
        assert!(names.len() > 60, "{names:?}");
        let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
        let undocumented: Vec<&String> = names
            .iter()
            .filter(|name| {
                // As itself (`audiences`, "audiences") or in a dotted path (`token_cache.max_entries`).
                let spellings = [
                    format!("`{name}`"),
                    format!("\"{name}\""),
                    format!(".{name}`"),
                    format!("`{name}."),
                    format!(".{name}."),
                ];
                !spellings
                    .iter()
                    .any(|spelling| readme.contains(spelling.as_str()))
            })
            .collect();
        assert!(
            undocumented.is_empty(),
            "not in README.md: {undocumented:?}"
        );
        // And the schema refuses what the filter refuses: an unknown (misspelt) field.
        let config_fields = committed["properties"].as_object().unwrap();
        assert!(config_fields.contains_key("providers"));
        assert_eq!(committed["additionalProperties"], json!(false));
    }
}
