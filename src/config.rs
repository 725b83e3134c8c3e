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

use serde::Deserialize;
use serde_json::Value;

use crate::alg::Algorithm;
use crate::jwks::{KeySet, SkippedKey};
use crate::token::TokenSource;

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
#[serde(deny_unknown_fields)]
struct RawConfig {
    providers: Vec<RawProvider>,
    #[serde(default)]
    rules: Vec<RawRule>,
    max_token_bytes: Option<usize>,
    realm: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    algorithms: Option<Vec<String>>,
    jwks: RawJwks,
    token_sources: Option<Vec<RawTokenSource>>,
    clock_skew_seconds: Option<u64>,
    required_claims: Option<Vec<String>>,
    max_lifetime_seconds: Option<u64>,
    token_types: Option<Vec<String>>,
    forward_token: Option<bool>,
    #[serde(default)]
    claims_to_headers: Vec<RawClaimToHeader>,
    payload_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    inline: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenSource {
    header: Option<String>,
    prefix: Option<String>,
    query: Option<String>,
    cookie: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimToHeader {
    claim: Vec<String>,
    header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match", default)]
    request_match: RawMatch,
    allow: Option<RawAllow>,
    providers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    path_prefix: Option<String>,
    path_exact: Option<String>,
    methods: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawAllow {
    Anonymous,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

/// A validated configuration. Only [`Config::from_json`] makes one.
#[derive(Debug, Clone)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    pub max_token_bytes: usize,
    pub realm: String,
    /// Every provider's token sources, each once: where a request's token is looked for.
    pub token_sources: Vec<TokenSource>,
    /// Every header `claims_to_headers` and `payload_header` may set: removed from every
    /// request first, so a client can never supply them itself.
    pub identity_headers: Vec<String>,
}

/// Position of a provider in [`Config::providers`].
pub type ProviderIndex = usize;

/// One identity provider: who issues tokens, for whom, signed with which keys.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySet,
    pub token_sources: Vec<TokenSource>,
    pub clock_skew_seconds: u64,
    pub required_claims: Vec<String>,
    pub max_lifetime_seconds: Option<u64>,
    pub token_types: TokenTypes,
    pub forward_token: bool,
    pub claims_to_headers: Vec<ClaimToHeader>,
    pub payload_header: Option<String>,
}

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
    pub header: String,
}

/// What a rule does with the requests it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Let the request through without a token.
    AllowAnonymous,
    /// Require a valid token from one of these providers.
    RequireToken(Vec<ProviderIndex>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathMatch,
    /// Upper-case method names; `None` matches every method.
    pub methods: Option<Vec<String>>,
    pub action: RuleAction,
    /// The token sources of the providers this rule accepts, each once (empty when anonymous):
    /// a route only looks where its own providers put tokens.
    pub token_sources: Vec<TokenSource>,
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

/// A validated configuration plus what the caller should log about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// JWKS keys that were left out, per provider name.
    pub skipped_keys: Vec<(String, SkippedKey)>,
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

    /// The provider whose `issuer` is exactly `issuer`.
    pub fn provider_by_issuer(&self, issuer: &str) -> Option<ProviderIndex> {
        self.providers
            .iter()
            .position(|provider| provider.issuer == issuer)
    }
}

fn validate(raw: RawConfig) -> Result<Loaded, ConfigError> {
    if raw.providers.is_empty() {
        return Err(error("providers", "at least one provider is required"));
    }
    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut skipped_keys = Vec::new();
    for (index, raw_provider) in raw.providers.into_iter().enumerate() {
        let field = format!("providers[{index}]");
        if providers
            .iter()
            .any(|known: &Provider| known.name == raw_provider.name)
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
        skipped_keys.extend(skipped.into_iter().map(|key| (provider.name.clone(), key)));
        providers.push(provider);
    }

    let rules = raw
        .rules
        .into_iter()
        .enumerate()
        .map(|(index, rule)| validate_rule(&format!("rules[{index}]"), rule, &providers))
        .collect::<Result<Vec<_>, _>>()?;

    let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if max_token_bytes == 0 {
        return Err(error("max_token_bytes", "must be greater than 0"));
    }
    let realm = raw.realm.unwrap_or_else(|| DEFAULT_REALM.to_owned());
    // The realm is written into a quoted-string of the WWW-Authenticate header.
    if realm
        .chars()
        .any(|c| c == '"' || c == '\\' || !(' '..='~').contains(&c))
    {
        return Err(error(
            "realm",
            "must be printable ASCII without `\"` or `\\`",
        ));
    }

    let mut token_sources: Vec<TokenSource> = Vec::new();
    let mut identity_headers: Vec<String> = Vec::new();
    for provider in &providers {
        for source in &provider.token_sources {
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
                if identity_headers.contains(name) {
                    return Err(error(
                        format!("providers[{index}].token_sources"),
                        format!("header {name:?} is also set from claims; it would be removed before it is read"),
                    ));
                }
            }
        }
    }

    Ok(Loaded {
        config: Config {
            providers,
            rules,
            max_token_bytes,
            realm,
            token_sources,
            identity_headers,
        },
        skipped_keys,
    })
}

fn validate_provider(
    field: &str,
    raw: RawProvider,
) -> Result<(Provider, Vec<SkippedKey>), ConfigError> {
    if raw.name.is_empty() {
        return Err(error(format!("{field}.name"), "must not be empty"));
    }
    if raw.issuer.is_empty() {
        return Err(error(format!("{field}.issuer"), "must not be empty"));
    }
    if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
        return Err(error(
            format!("{field}.audiences"),
            "at least one non-empty audience is required",
        ));
    }

    let algorithms = match raw.algorithms {
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
    };

    let (keys, skipped) = KeySet::from_value(&raw.jwks.inline)
        .map_err(|problem| error(format!("{field}.jwks.inline"), problem.to_string()))?;
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
            format!("{field}.jwks.inline"),
            format!(
                "no key can verify any of the provider's algorithms{}{detail}",
                if detail.is_empty() { "" } else { ": " }
            ),
        ));
    }

    let token_sources = match raw.token_sources {
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
    };

    let clock_skew_seconds = raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(error(
            format!("{field}.clock_skew_seconds"),
            format!("at most {MAX_CLOCK_SKEW_SECONDS}"),
        ));
    }

    let required_claims = raw
        .required_claims
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

    let token_types = match raw.token_types {
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
    };

    let claims_to_headers = raw
        .claims_to_headers
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
                header: validate_claim_header(&format!("{field}.header"), &mapping.header)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let payload_header = raw
        .payload_header
        .map(|name| validate_claim_header(&format!("{field}.payload_header"), &name))
        .transpose()?;

    Ok((
        Provider {
            name: raw.name,
            issuer: raw.issuer,
            audiences: raw.audiences,
            algorithms,
            keys,
            token_sources,
            clock_skew_seconds,
            required_claims,
            max_lifetime_seconds: raw.max_lifetime_seconds,
            token_types,
            forward_token: raw.forward_token.unwrap_or(true),
            claims_to_headers,
            payload_header,
        },
        skipped,
    ))
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

/// Headers the filter must never set or strip from claims: they steer routing or framing.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "cookie",
    "authorization",
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

fn validate_rule(field: &str, raw: RawRule, providers: &[Provider]) -> Result<Rule, ConfigError> {
    let path = match (raw.request_match.path_prefix, raw.request_match.path_exact) {
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
    let methods = match raw.request_match.methods {
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
    let action =
        match (raw.allow, raw.providers) {
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
                            .position(|provider| provider.name == *name)
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
                "a rule has exactly one of `\"allow\": \"anonymous\"` and `\"providers\": [...]`",
            )),
        };
    let mut token_sources: Vec<TokenSource> = Vec::new();
    if let RuleAction::RequireToken(indexes) = &action {
        for source in indexes
            .iter()
            .filter_map(|index| providers.get(*index))
            .flat_map(|provider| &provider.token_sources)
        {
            if !token_sources.contains(source) {
                token_sources.push(source.clone());
            }
        }
    }
    Ok(Rule {
        path,
        methods,
        action,
        token_sources,
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
