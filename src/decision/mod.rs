//! The request flow: rule → token → provider → verification → [`Decision`].
//!
//! [`authenticate`] is the whole of the filter's judgement, as a pure function of the
//! configuration, the request and the time. Every way a request can be refused is one
//! [`Denial`], and [`Denial::response`] is the one place that turns it into a status, a
//! `WWW-Authenticate` challenge (RFC 6750 §3) and a JSON body.

use std::sync::Arc;

use serde_json::json;

use crate::base::ids::ListIndex;
use crate::base::ids::ProviderIndex;
use crate::base::ids::RemoteSource;
use crate::base::time::UnixSeconds;
use crate::config::{Config, KeySource, PathMatch, Provider, Rule, RuleAction};
use crate::edits::{self, RequestEdits};
use crate::fetch::remote::{InForce, KeysNow, RemoteDocuments};
use crate::introspection::{Introspected, IntrospectionCache};
use crate::jose::jwks::KeySet;
use crate::jose::signature::SignatureVerifier;
use crate::jose::token::{self as jws, MalformedToken};
use crate::policy::context::{AddressLists, AddressSet, ListMissing};
use crate::policy::rego::{self, RegoDecision, TokenInput};
use crate::policy::{self, Identity, Requirements, StepUpCause, Unmet};
use crate::request::token::{self, ExtractError, FoundToken, TokenSource};
use crate::request::Request;
use crate::verify::cache::{CachedToken, TokenCache};
use crate::verify::{self, Rejection};

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Allowed),
    Deny(Denial),
    /// Hold the request until a provider's keys (or an address list) change, or the wait
    /// times out, then decide again with [`Attempt::AfterWait`].
    Wait(Wait),
    /// Hold the request until the provider has answered whether the token is active (one call
    /// per token: the adapter joins requests to a call in flight), then decide again with
    /// [`Attempt::AfterIntrospection`].
    Introspect(IntrospectionNeeded),
}

/// A token the identity provider must be asked about (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionNeeded {
    pub provider: ProviderIndex,
    pub token: String,
}

/// Why a request waits, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub source: RemoteSource,
    pub cause: WaitCause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCause {
    /// No keys fetched yet (cold start): wait for the first fetch.
    KeysPending,
    /// The token names a `kid` the keys lack: wait for a refetch, if the rate limit allows one.
    UnknownKeyId,
    /// An address list a rule needs is not fetched yet (cold start): wait for the first fetch.
    ListPending,
}

/// Whether this is the first decision on a request, the one after a [`Decision::Wait`] (for
/// keys or an address list: no second such wait, but the token may still be introspected), or
/// the one after a [`Decision::Introspect`] (final: no wait of any kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    First,
    AfterWait,
    AfterIntrospection,
}

/// The address lists as they are at `now`: stale lists are used (like stale keys), lists that
/// cannot be had are missing.
struct ListsAt<'a> {
    remote: &'a dyn RemoteDocuments,
    now: UnixSeconds,
}

impl AddressLists for ListsAt<'_> {
    fn address_list(&self, list: ListIndex) -> Result<&AddressSet, ListMissing> {
        match self.remote.address_list_now(list, self.now) {
            InForce::Fresh(addresses) | InForce::Stale(addresses) => Ok(addresses),
            InForce::Pending => Err(ListMissing {
                list,
                pending: true,
            }),
            InForce::Unavailable => Err(ListMissing {
                list,
                pending: false,
            }),
        }
    }
}

/// What a decision draws on besides the configuration, the request and the time.
pub struct Services<'a> {
    pub remote: &'a dyn RemoteDocuments,
    /// What identity providers answered about tokens, while it is trusted.
    pub introspections: &'a IntrospectionCache,
    /// The signature math backend.
    pub signatures: &'a dyn SignatureVerifier,
    /// Verified tokens of this configuration; read and written by decisions.
    pub token_cache: &'a mut TokenCache,
}

/// An allowed request: who the caller is and how to edit the request for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The rule that let the request through: its name, or `default` when none matched.
    pub rule: Arc<str>,
    pub caller: Caller,
    pub edits: RequestEdits,
}

/// Who an allowed request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An anonymous route: nobody was asked.
    Anonymous,
    /// A token a provider vouched for.
    Verified {
        /// The provider's name.
        provider: Arc<str>,
        /// The verified `sub` claim, when it is safe to log (see [`edits::is_safe_text`]).
        subject: Option<Arc<str>>,
        by: Verification,
    },
}

impl Caller {
    /// The provider that vouched for the caller; `None` on an anonymous route.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Verified { provider, .. } => Some(provider),
        }
    }

    /// The verified `sub` claim, when there is one and it is safe to log.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Verified { subject, .. } => subject.as_deref(),
        }
    }

    /// How the token was verified; `None` on an anonymous route.
    pub fn verification(&self) -> Option<Verification> {
        match self {
            Caller::Anonymous => None,
            Caller::Verified { by, .. } => Some(*by),
        }
    }
}

/// How a token was found good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The token was verified, signature and all.
    Signature,
    /// The token was verified earlier and remembered (see [`crate::verify::cache`]).
    CacheHit,
    /// An opaque token the identity provider said is active (see [`crate::introspection`]).
    Introspection,
}

/// Why a request is refused. Each variant maps to one response and one stat counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No token in any source the matched rule accepts.
    MissingToken,
    /// Tokens in more than one place.
    MultipleTokens,
    /// A path with dot segments, `//`, backslashes or encoded `/`, `\` or `.`: rules could not
    /// match it the way the upstream will resolve it.
    UnnormalizedPath,
    Malformed(MalformedToken),
    /// `iss` absent, not a string, or no provider has it.
    UnknownIssuer,
    /// A provider has the issuer, but the matched rule does not accept that provider.
    IssuerNotAccepted,
    /// The token was found where its provider does not put tokens.
    WrongTokenSource,
    Rejected(Rejection),
    /// The provider's keys cannot be had (IdP down, nothing cached): `503`, never allow.
    KeysUnavailable,
    /// An address list the named rule consults cannot be had (its source down, nothing
    /// cached): `503`, never a guess.
    AddressListUnavailable {
        rule: Arc<str>,
    },
    /// The identity provider says the token is not active (revoked, expired, unknown).
    TokenInactive,
    /// The identity provider could not say whether the token is active: `503`, never allow.
    IntrospectionUnavailable,
    /// The request, or its valid token, does not meet the matched rule's `require`: `403`
    /// (`401` for a step-up).
    Forbidden {
        rule: Arc<str>,
        unmet: Unmet,
    },
    /// A deny rule's conditions all held: `403`.
    DeniedByRule {
        rule: Arc<str>,
    },
    /// The rule's Rego policy did not allow the request: its status (`403` unless it says),
    /// headers and body.
    Rego {
        rule: Arc<str>,
        status: u32,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The rule's Rego policy failed at run time or answered nonsense: `403`, never allow.
    /// `problem` is for the log, not the client.
    RegoError {
        rule: Arc<str>,
        problem: String,
    },
    /// The matched rule requires a device token and the request's does not do: `403`.
    Device {
        rule: Arc<str>,
        problem: DeviceProblem,
    },
}

/// What is wrong with the device token a rule requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceProblem {
    /// None in the device header (or more than one).
    Missing,
    /// Not a valid token of the device provider (malformed, another issuer, bad signature,
    /// expired, …).
    Invalid,
    /// Valid, but for another user (`device.bind`).
    NotBound,
    /// Valid and bound, but its claims fail the rule's `require.device.claims`: the path of
    /// the first failed condition.
    Posture(Vec<String>),
}

/// Declares [`Reason`] with its name and description per variant, and [`Reason::ALL`] from the
/// same list: a reason added here is counted, named and described, or the crate does not build.
macro_rules! reasons {
    ($($variant:ident => $name:literal, $description:literal;)*) => {
        /// The stable, machine-readable name of a denial: response bodies, stats and filter
        /// state.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            $($variant,)*
        }

        impl Reason {
            /// Every reason, so the adapter can create one counter per reason up front.
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }

        /// A short human explanation, safe inside an RFC 6750 `error_description` (no `"` or `\`).
            pub fn description(self) -> &'static str {
                match self {
                    $(Reason::$variant => $description,)*
                }
            }
        }
    };
}

reasons! {
    MissingToken => "missing_token", "a bearer token is required";
    MultipleTokens => "multiple_tokens", "the request carries more than one token";
    UnnormalizedPath => "unnormalized_path", "the request path is not normalized";
    TokenTooLarge => "token_too_large", "the token is too large";
    MalformedToken => "malformed_token", "the token is not a compact JWS of three segments";
    NonCanonicalBase64 => "non_canonical_base64", "a token segment is not canonical base64url";
    MalformedJson => "malformed_json", "the token header or payload is not a JSON object";
    DuplicateJsonMember => "duplicate_json_member", "the token header or payload repeats a member name";
    CriticalHeader => "critical_header", "the token has critical header extensions";
    UnencodedPayload => "unencoded_payload", "unencoded payloads are not accepted";
    MalformedHeader => "malformed_header", "the token header has a missing or mistyped member";
    UnsupportedAlgorithm => "unsupported_algorithm", "the token algorithm is not supported";
    UnknownIssuer => "unknown_issuer", "the token issuer is not known";
    IssuerNotAccepted => "issuer_not_accepted", "the token issuer is not accepted for this route";
    WrongTokenSource => "wrong_token_source", "the token was sent where its issuer does not send tokens";
    TokenTypeNotAllowed => "token_type_not_allowed", "the token type is not accepted";
    AlgorithmNotAllowed => "algorithm_not_allowed", "the token algorithm is not allowed";
    MissingClaim => "missing_claim", "the token lacks a required claim";
    InvalidClaim => "invalid_claim", "a token claim has an invalid value";
    Expired => "expired", "the token has expired";
    NotYetValid => "not_yet_valid", "the token is not valid yet";
    IssuedInFuture => "issued_in_future", "the token is issued in the future";
    LifetimeTooLong => "lifetime_too_long", "the token lifetime exceeds the allowed maximum";
    AudienceMismatch => "audience_mismatch", "the token audience is not accepted";
    UnknownKeyId => "unknown_key_id", "the token key id is not known";
    NoCompatibleKey => "no_compatible_key", "no key can verify the token algorithm";
    BadSignature => "bad_signature", "the token signature is invalid";
    KeysUnavailable => "keys_unavailable", "the identity provider keys are unavailable";
    AddressListUnavailable => "address_list_unavailable", "an address list this route needs is unavailable";
    TokenInactive => "token_inactive", "the identity provider says the token is not active";
    IntrospectionUnavailable => "introspection_unavailable", "the identity provider cannot say whether the token is active";
    DeniedByRule => "denied_by_rule", "a deny rule refuses this request";
    RegoDenied => "rego_denied", "the route's policy refuses this request";
    RegoError => "rego_error", "the route's policy failed";
    DeviceTokenMissing => "device_token_missing", "this route requires a device token";
    DeviceTokenInvalid => "device_token_invalid", "the device token is invalid";
    DeviceNotBound => "device_not_bound", "the device token belongs to another user";
    DevicePostureFailed => "device_posture_failed", "the device does not meet this route's posture requirements";
    SourceAddressNotAllowed => "source_address_not_allowed", "requests from this address are not allowed on this route";
    OutsideTimeWindow => "outside_time_window", "this route is closed at this time";
    InsufficientScope => "insufficient_scope", "the token lacks a scope this route requires";
    InsufficientRole => "insufficient_role", "the caller lacks a role this route requires";
    ClaimConditionFailed => "claim_condition_failed", "the token claims do not meet this route's conditions";
    AuthenticationTooOld => "authentication_too_old", "the user must authenticate again: the last authentication is too old";
    AuthenticationTooWeak => "authentication_too_weak", "the user must authenticate again with a stronger method";
}

/// A response to send instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// A JSON answer that no cache may keep: the shape of every denial but a Rego policy's
    /// own, and of the adapter's internal error.
    pub fn json(status: u32, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("cache-control".to_owned(), "no-store".to_owned()),
            ],
            body: body.to_string(),
        }
    }

    /// The answer to a request the filter could not judge because the host failed it: `500`,
    /// reason `internal_error` (the log line says what failed).
    pub fn internal_error() -> Response {
        Response::json(
            500,
            &json!({"error": "internal_error", "reason": "internal_error"}),
        )
    }

    /// With a `WWW-Authenticate` challenge, first.
    fn challenged(mut self, challenge: String) -> Response {
        self.headers
            .insert(0, ("www-authenticate".to_owned(), challenge));
        self
    }

    fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl Denial {
    pub fn reason(&self) -> Reason {
        match self {
            Denial::MissingToken => Reason::MissingToken,
            Denial::MultipleTokens => Reason::MultipleTokens,
            Denial::UnnormalizedPath => Reason::UnnormalizedPath,
            Denial::Malformed(malformed) => match malformed {
                MalformedToken::TooLarge => Reason::TokenTooLarge,
                MalformedToken::SegmentCount => Reason::MalformedToken,
                MalformedToken::NonCanonicalBase64 => Reason::NonCanonicalBase64,
                MalformedToken::NotJsonObject => Reason::MalformedJson,
                MalformedToken::DuplicateMember => Reason::DuplicateJsonMember,
                MalformedToken::CriticalHeader => Reason::CriticalHeader,
                MalformedToken::UnencodedPayload => Reason::UnencodedPayload,
                MalformedToken::BadHeaderMember => Reason::MalformedHeader,
                MalformedToken::UnsupportedAlgorithm => Reason::UnsupportedAlgorithm,
            },
            Denial::UnknownIssuer => Reason::UnknownIssuer,
            Denial::IssuerNotAccepted => Reason::IssuerNotAccepted,
            Denial::WrongTokenSource => Reason::WrongTokenSource,
            Denial::Rejected(rejection) => match rejection {
                Rejection::TokenTypeNotAllowed => Reason::TokenTypeNotAllowed,
                Rejection::AlgorithmNotAllowed => Reason::AlgorithmNotAllowed,
                Rejection::MissingClaim(_) => Reason::MissingClaim,
                Rejection::InvalidClaim(_) => Reason::InvalidClaim,
                Rejection::Expired => Reason::Expired,
                Rejection::NotYetValid => Reason::NotYetValid,
                Rejection::IssuedInFuture => Reason::IssuedInFuture,
                Rejection::LifetimeTooLong => Reason::LifetimeTooLong,
                Rejection::AudienceMismatch => Reason::AudienceMismatch,
                Rejection::UnknownKeyId => Reason::UnknownKeyId,
                Rejection::NoCompatibleKey => Reason::NoCompatibleKey,
                Rejection::BadSignature => Reason::BadSignature,
            },
            Denial::KeysUnavailable => Reason::KeysUnavailable,
            Denial::AddressListUnavailable { .. } => Reason::AddressListUnavailable,
            Denial::TokenInactive => Reason::TokenInactive,
            Denial::IntrospectionUnavailable => Reason::IntrospectionUnavailable,
            Denial::Forbidden {
                unmet: Unmet::SourceAddress,
                ..
            } => Reason::SourceAddressNotAllowed,
            Denial::Forbidden {
                unmet: Unmet::OutsideTimeWindow,
                ..
            } => Reason::OutsideTimeWindow,
            Denial::Forbidden {
                unmet: Unmet::Scopes(_),
                ..
            } => Reason::InsufficientScope,
            Denial::Forbidden {
                unmet: Unmet::Roles(_),
                ..
            } => Reason::InsufficientRole,
            Denial::Forbidden {
                unmet: Unmet::Claim(_),
                ..
            } => Reason::ClaimConditionFailed,
            Denial::DeniedByRule { .. } => Reason::DeniedByRule,
            Denial::Rego { .. } => Reason::RegoDenied,
            Denial::RegoError { .. } => Reason::RegoError,
            Denial::Device { problem, .. } => match problem {
                DeviceProblem::Missing => Reason::DeviceTokenMissing,
                DeviceProblem::Invalid => Reason::DeviceTokenInvalid,
                DeviceProblem::NotBound => Reason::DeviceNotBound,
                DeviceProblem::Posture(_) => Reason::DevicePostureFailed,
            },
            Denial::Forbidden {
                unmet: Unmet::StepUp(step_up),
                ..
            } => match step_up.cause {
                StepUpCause::TooOld => Reason::AuthenticationTooOld,
                StepUpCause::TooWeak => Reason::AuthenticationTooWeak,
            },
        }
    }

    /// The claim a `missing_claim`/`invalid_claim` denial is about.
    pub fn claim(&self) -> Option<&str> {
        match self {
            Denial::Rejected(Rejection::MissingClaim(claim)) => Some(claim),
            Denial::Rejected(Rejection::InvalidClaim(claim)) => Some(claim),
            _ => None,
        }
    }

    /// The rule that decided, when one did (requirements and deny rules).
    pub fn rule(&self) -> Option<&str> {
        match self {
            Denial::Forbidden { rule, .. }
            | Denial::DeniedByRule { rule }
            | Denial::Device { rule, .. }
            | Denial::Rego { rule, .. }
            | Denial::RegoError { rule, .. }
            | Denial::AddressListUnavailable { rule } => Some(rule),
            _ => None,
        }
    }

    /// The one response for this denial:
    /// - no token: `401` with a bare `Bearer realm` challenge (RFC 6750 §3.1: no error code
    ///   when the request lacks authentication information);
    /// - a malformed request (two tokens, unnormalized path): `400` with `invalid_request`;
    /// - any token problem: `401` with `invalid_token` and a short `error_description`;
    /// - a valid token the route's `require` turns away: `403`, with `insufficient_scope` and
    ///   the scopes the route needs when scopes are the reason (RFC 6750 §3.1).
    pub fn response(&self, realm: &str) -> Response {
        let reason = self.reason();
        match self {
            Denial::Forbidden { rule, unmet } => return forbidden(unmet, rule, reason, realm),
            Denial::Rego {
                status,
                headers,
                body,
                ..
            } => {
                // The policy's own answer, as opa-envoy gives it; never cached.
                let mut headers = headers.clone();
                headers.push(("cache-control".to_owned(), "no-store".to_owned()));
                return Response {
                    status: *status,
                    headers,
                    body: body.clone(),
                };
            }
            Denial::DeniedByRule { rule }
            | Denial::Device { rule, .. }
            | Denial::RegoError { rule, .. } => {
                let mut body = json!({
                    "error": "forbidden",
                    "reason": reason.as_str(),
                    "description": reason.description(),
                    "rule": &**rule,
                });
                if let (
                    Denial::Device {
                        problem: DeviceProblem::Posture(path),
                        ..
                    },
                    Some(object),
                ) = (self, body.as_object_mut())
                {
                    object.insert("claim".to_owned(), json!(path));
                }
                return Response::json(403, &body);
            }
            _ => {}
        }
        if let Denial::KeysUnavailable
        | Denial::AddressListUnavailable { .. }
        | Denial::IntrospectionUnavailable = self
        {
            let mut body = serde_json::Map::new();
            body.insert("error".to_owned(), json!("temporarily_unavailable"));
            body.insert("reason".to_owned(), json!(reason.as_str()));
            body.insert("description".to_owned(), json!(reason.description()));
            if let Some(rule) = self.rule() {
                body.insert("rule".to_owned(), json!(rule));
            }
            return Response::json(503, &serde_json::Value::Object(body))
                .with_header("retry-after", "5");
        }
        let (status, error) = match self {
            Denial::MissingToken => (401, None),
            Denial::MultipleTokens | Denial::UnnormalizedPath => (400, Some("invalid_request")),
            _ => (401, Some("invalid_token")),
        };
        let challenge = match error {
            None => format!("Bearer realm=\"{realm}\""),
            Some(error) => format!(
                "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
                reason.description()
            ),
        };
        let mut body = json!({
            "error": error.unwrap_or("unauthorized"),
            "reason": reason.as_str(),
            "description": reason.description(),
        });
        if let (Some(claim), Some(object)) = (self.claim(), body.as_object_mut()) {
            object.insert("claim".to_owned(), json!(claim));
        }
        Response::json(status, &body).challenged(challenge)
    }
}

fn forbidden(unmet: &Unmet, rule: &str, reason: Reason, realm: &str) -> Response {
    let description = reason.description();
    let mut status = 403;
    let mut challenge = None;
    // Scopes and `acr` values are checked at configure time to hold no `"` or `\`: safe to
    // quote in a challenge.
    let mut body = serde_json::Map::new();
    let error = match unmet {
        Unmet::StepUp(step_up) => {
            // RFC 9470 §3: a 401 whose challenge says what the new authentication must meet.
            status = 401;
            let mut step_up_challenge = format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_user_authentication\", error_description=\"{description}\""
            );
            if let Some(acr_values) = &step_up.acr_values {
                step_up_challenge.push_str(&format!(", acr_values=\"{acr_values}\""));
                body.insert("acr_values".to_owned(), json!(acr_values));
            }
            if let Some(max_age) = step_up.max_age {
                step_up_challenge.push_str(&format!(", max_age={max_age}"));
                body.insert("max_age".to_owned(), json!(max_age));
            }
            challenge = Some(step_up_challenge);
            "insufficient_user_authentication"
        }
        Unmet::Scopes(scopes) => {
            challenge = Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{description}\", scope=\"{scopes}\""
            ));
            body.insert("scope".to_owned(), json!(scopes));
            "insufficient_scope"
        }
        // No RFC 6750 error code fits these: no challenge, the body says why.
        Unmet::SourceAddress | Unmet::OutsideTimeWindow => "forbidden",
        Unmet::Roles(roles) => {
            body.insert("roles".to_owned(), json!(roles));
            "forbidden"
        }
        Unmet::Claim(path) => {
            body.insert("claim".to_owned(), json!(path));
            "forbidden"
        }
    };
    body.insert("error".to_owned(), json!(error));
    body.insert("rule".to_owned(), json!(rule));
    body.insert("reason".to_owned(), json!(reason.as_str()));
    body.insert("description".to_owned(), json!(description));
    let response = Response::json(status, &serde_json::Value::Object(body));
    match challenge {
        Some(challenge) => response.challenged(challenge),
        None => response,
    }
}

impl From<MalformedToken> for Denial {
    fn from(malformed: MalformedToken) -> Denial {
        Denial::Malformed(malformed)
    }
}

impl From<Rejection> for Denial {
    fn from(rejection: Rejection) -> Denial {
        Denial::Rejected(rejection)
    }
}

/// Decides what to do with `request` at time `now`.
pub fn authenticate(
    config: &Config,
    services: &mut Services<'_>,
    request: &Request<'_>,
    now: UnixSeconds,
    attempt: Attempt,
) -> Decision {
    match decide(config, services, request, now, attempt) {
        Ok(allowed) => Decision::Allow(allowed),
        Err(Stop::Deny(denial)) => Decision::Deny(denial),
        Err(Stop::Wait(wait)) => Decision::Wait(wait),
        Err(Stop::Introspect(needed)) => Decision::Introspect(needed),
    }
}

/// Why `decide` did not allow.
enum Stop {
    Deny(Denial),
    Wait(Wait),
    Introspect(IntrospectionNeeded),
}

impl<T: Into<Denial>> From<T> for Stop {
    fn from(denial: T) -> Stop {
        Stop::Deny(denial.into())
    }
}

fn decide(
    config: &Config,
    services: &mut Services<'_>,
    request: &Request<'_>,
    now: UnixSeconds,
    attempt: Attempt,
) -> Result<Allowed, Stop> {
    let route = Route::of(config, services.remote, request, now, attempt)?;
    // No rule matched: deny by default, i.e. a valid token from any provider is required.
    let accepted: Option<&[ProviderIndex]> = match route.rule.map(|rule| &rule.action) {
        Some(RuleAction::AllowAnonymous) => return route.anonymous(),
        Some(RuleAction::RequireToken(providers)) => Some(providers),
        // Deny rules are never the route's rule.
        Some(RuleAction::Deny) | None => None,
    };
    // Every source of every provider is searched, whatever the route accepts: a second token
    // elsewhere would reach the upstream unverified next to the one that was checked.
    let found = match token::extract(request, config.token_sources()) {
        Ok(Some(found)) => found,
        Ok(None) => return Err(Denial::MissingToken.into()),
        Err(ExtractError::MultipleTokens) => return Err(Denial::MultipleTokens.into()),
    };
    let credential = match opaque(&route, services, accepted, &found, attempt)? {
        Some(introspected) => introspected,
        None => match remembered_token(&route, services, accepted, &found) {
            Some(remembered) => remembered,
            None => verified_now(&route, services, accepted, &found, attempt)?,
        },
    };
    finish(&route, services, &found, credential, attempt)
}

/// The route a request takes: the allow rule that decides it (none: the default, a token from
/// any provider), with what judging it needs. Only made once the address lists its rules name
/// are at hand and every check that needs no token has passed.
struct Route<'a, 'r> {
    config: &'a Config,
    request: &'a Request<'r>,
    path: &'r str,
    host: Option<&'r str>,
    rule: Option<&'a Rule>,
    /// The rule's name, or the default rule's.
    rule_name: Arc<str>,
    lists: ListsAt<'a>,
    now: UnixSeconds,
}

impl<'a, 'r> Route<'a, 'r> {
    fn of(
        config: &'a Config,
        remote: &'a dyn RemoteDocuments,
        request: &'a Request<'r>,
        now: UnixSeconds,
        attempt: Attempt,
    ) -> Result<Route<'a, 'r>, Stop> {
        let path = request.path_only();
        if !is_normalized(path) {
            return Err(Denial::UnnormalizedPath.into());
        }
        let mut route = Route {
            config,
            request,
            path,
            host: request_host(request),
            rule: None,
            rule_name: Arc::clone(config.default_rule()),
            lists: ListsAt { remote, now },
            now,
        };
        route.rule = config
            .rules()
            .iter()
            .filter(|rule| !matches!(rule.action, RuleAction::Deny))
            .find(|rule| route.matches(rule));
        if let Some(rule) = route.rule {
            route.rule_name = Arc::clone(&rule.name);
        }
        // The address lists the matching rules name are at hand before anything is judged (or
        // the request waits for them, or is refused `503`): a list is never guessed at.
        for named in route.deny_rules().chain(route.rule) {
            let missing = named
                .requirements
                .source_ips
                .iter()
                .flat_map(|condition| condition.lists())
                .find_map(|list| route.lists.address_list(list).err());
            if let Some(missing) = missing {
                return Err(list_missing(named, missing, attempt));
            }
        }
        // Deny rules win: those that ask nothing of a token refuse before any token work.
        for rule in route
            .deny_rules()
            .filter(|rule| !rule.requirements.reads_claims())
        {
            if route.context(&rule.name, &rule.requirements)?.is_ok() {
                return Err(Denial::DeniedByRule {
                    rule: Arc::clone(&rule.name),
                }
                .into());
            }
        }
        if let Some(rule) = route.rule {
            route
                .context(&route.rule_name, &rule.requirements)?
                .map_err(|unmet| Denial::Forbidden {
                    rule: Arc::clone(&route.rule_name),
                    unmet,
                })?;
        }
        Ok(route)
    }

    fn matches(&self, rule: &Rule) -> bool {
        rule_matches(rule, self.request.method, self.path, self.host)
    }

    /// The deny rules that match the request.
    fn deny_rules(&self) -> impl Iterator<Item = &'a Rule> + '_ {
        self.config
            .rules()
            .iter()
            .filter(|rule| matches!(rule.action, RuleAction::Deny))
            .filter(|rule| self.matches(rule))
    }

    /// Whether the request's context meets `requirements` (of the rule named `rule`). The
    /// lists are at hand (see [`Route::of`]); were one missing, the request is refused all
    /// the same.
    fn context(
        &self,
        rule: &Arc<str>,
        requirements: &Requirements,
    ) -> Result<Result<(), Unmet>, Denial> {
        let client = || self.config.client_address().of(self.request);
        policy::check_context(requirements, client, &self.lists, self.now).map_err(|_| {
            Denial::AddressListUnavailable {
                rule: Arc::clone(rule),
            }
        })
    }

    /// What a verified token's claims must meet: no deny rule that reads them holds, and the
    /// route's rule's requirements do.
    fn authorize(&self, provider: &Provider, claims: Option<&Claims>) -> Result<(), Denial> {
        for deny in self
            .deny_rules()
            .filter(|rule| rule.requirements.reads_claims())
        {
            let holds = self.context(&deny.name, &deny.requirements)?.is_ok()
                && claims.is_some_and(|claims| {
                    let identity = Identity {
                        claims,
                        role_claims: &provider.role_claims,
                    };
                    policy::check(&deny.requirements, identity, self.now).is_ok()
                });
            if holds {
                return Err(Denial::DeniedByRule {
                    rule: Arc::clone(&deny.name),
                });
            }
        }
        let requirements = self.rule.map(|rule| &rule.requirements);
        meets(requirements, provider, claims, self.now).map_err(|unmet| Denial::Forbidden {
            rule: Arc::clone(&self.rule_name),
            unmet,
        })
    }

    /// A route that needs no token: allowed once its Rego policy (if any) agrees.
    fn anonymous(&self) -> Result<Allowed, Stop> {
        let mut edits = RequestEdits::removing_identity_headers(self.config);
        let headers = rego_decision(
            self.config,
            self.request,
            self.host,
            self.rule,
            None,
            self.now,
        )?;
        edits.set_headers.extend(headers);
        Ok(Allowed {
            rule: Arc::clone(&self.rule_name),
            caller: Caller::Anonymous,
            edits,
        })
    }

    /// What a token of `provider` earns on this route, before the checks every credential
    /// goes through ([`finish`]).
    fn allowance(
        &self,
        provider: &Provider,
        found: &FoundToken<'_>,
        identity_headers: &[(Arc<str>, Arc<str>)],
        subject: Option<Arc<str>>,
        verification: Verification,
    ) -> Allowed {
        allow_verified(
            provider,
            self.request,
            found,
            identity_headers,
            subject,
            RequestEdits::removing_identity_headers(self.config),
            Grounds {
                rule: Arc::clone(&self.rule_name),
                verification,
            },
        )
    }
}

/// A token that checked out — introspected, remembered, or verified now — and what it earns.
struct Credential<'a> {
    provider_index: ProviderIndex,
    provider: &'a Provider,
    /// Its claims, when a rule reads them (an introspected token's always).
    claims: Option<Arc<Claims>>,
    allowed: Allowed,
    /// Its provider's introspection is still to be consulted (it was not what vouched).
    introspect: bool,
}

/// A token that is not a JWT may be an opaque token of the provider that takes them (only
/// when one does: the shape test decodes the token's first segment); its provider's
/// introspection vouches for it. `None`: not such a token.
fn opaque<'a>(
    route: &Route<'a, '_>,
    services: &Services<'_>,
    accepted: Option<&[ProviderIndex]>,
    found: &FoundToken<'_>,
    attempt: Attempt,
) -> Result<Option<Credential<'a>>, Stop> {
    let Some((provider_index, provider)) = route.config.opaque_provider() else {
        return Ok(None);
    };
    if jws::has_jws_shape(found.value) {
        return Ok(None);
    }
    check_request(accepted, provider_index, provider, found)?;
    if found.value.len() > route.config.max_token_bytes() {
        return Err(Denial::Malformed(MalformedToken::TooLarge).into());
    }
    if !jws::is_b64token(found.value) {
        return Err(Denial::Malformed(MalformedToken::SegmentCount).into());
    }
    let answer = introspected(
        services,
        provider_index,
        provider,
        found.value,
        route.now,
        attempt,
    )?;
    // Without keys, introspection is what vouches: always configured.
    let claims = answer.ok_or(Denial::IntrospectionUnavailable)?;
    verify::check_introspected(&claims, provider, route.now)?;
    let identity_headers = edits::claim_headers(provider, &claims);
    let subject = claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .filter(|subject| edits::is_safe_text(subject))
        .map(Arc::from);
    let allowed = route.allowance(
        provider,
        found,
        &identity_headers,
        subject,
        Verification::Introspection,
    );
    Ok(Some(Credential {
        provider_index,
        provider,
        claims: Some(claims),
        allowed,
        introspect: false,
    }))
}

/// A token verified before, if its verification still holds for this request; one whose key
/// left its provider's keys, or whose time is up, is forgotten.
fn remembered_token<'a>(
    route: &Route<'a, '_>,
    services: &mut Services<'_>,
    accepted: Option<&[ProviderIndex]>,
    found: &FoundToken<'_>,
) -> Option<Credential<'a>> {
    let cached = services.token_cache.get(found.value)?;
    let remote = services.remote;
    match remembered(route.config, remote, cached, found, accepted, route.now) {
        Remembered::Holds(provider) => Some(Credential {
            provider_index: cached.provider,
            provider,
            claims: cached.claims.clone(),
            allowed: route.allowance(
                provider,
                found,
                &cached.identity_headers,
                cached.subject.clone(),
                Verification::CacheHit,
            ),
            introspect: true,
        }),
        Remembered::NoLonger => {
            services.token_cache.remove(found.value);
            None
        }
        Remembered::NotHere => None,
    }
}

/// A JWT verified now (strictly parsed, its provider picked by `iss`, then [`verify::verify`]),
/// and remembered. An unknown `kid` of remote keys waits, once, for a refetch.
fn verified_now<'a>(
    route: &Route<'a, '_>,
    services: &mut Services<'_>,
    accepted: Option<&[ProviderIndex]>,
    found: &FoundToken<'_>,
    attempt: Attempt,
) -> Result<Credential<'a>, Stop> {
    let (config, now) = (route.config, route.now);
    let untrusted = jws::parse(found.value, config.max_token_bytes())?;
    let (provider_index, provider) = untrusted
        .claims()
        .get("iss")
        .and_then(serde_json::Value::as_str)
        .and_then(|issuer| config.provider_by_issuer(issuer))
        .ok_or(Denial::UnknownIssuer)?;
    check_request(accepted, provider_index, provider, found)?;
    let keys = keys_to_verify(provider_index, provider, services.remote, now, attempt)?;
    let is_remote = matches!(provider.keys(), Some(KeySource::Remote(_)));
    let verified = match verify::verify(untrusted, provider, keys, now, services.signatures) {
        Ok(verified) => verified,
        Err(Rejection::UnknownKeyId) if is_remote && attempt == Attempt::First => {
            return Err(Stop::Wait(Wait {
                source: RemoteSource::Keys(provider_index),
                cause: WaitCause::UnknownKeyId,
            }))
        }
        Err(rejection) => return Err(rejection.into()),
    };
    let identity_headers = edits::identity_headers(provider, &verified);
    // The subject goes into filter state and from there into access logs.
    let subject: Option<Arc<str>> = verified
        .subject()
        .filter(|subject| edits::is_safe_text(subject))
        .map(Arc::from);
    let (key, lifetime) = (verified.key(), verified.lifetime());
    // Kept (and remembered) only when some rule reads them.
    let claims = config
        .policy_reads_claims()
        .then(|| Arc::new(verified.into_claims()));
    let allowed = route.allowance(
        provider,
        found,
        &identity_headers,
        subject.clone(),
        Verification::Signature,
    );
    // Remembered before the route's own checks: the token is valid whatever this route
    // requires of it (and whatever its provider says of it now: introspection answers are
    // remembered apart).
    services.token_cache.insert(
        found.value,
        CachedToken {
            provider: provider_index,
            key,
            lifetime,
            subject,
            identity_headers,
            claims: claims.clone(),
        },
    );
    Ok(Credential {
        provider_index,
        provider,
        claims,
        allowed,
        introspect: true,
    })
}

/// What every credential goes through, whichever way it checked out: its provider's
/// introspection (unless that is what vouched), the deny rules that read claims and the
/// route's requirements, the device posture, and last the Rego policy.
fn finish(
    route: &Route<'_, '_>,
    services: &Services<'_>,
    found: &FoundToken<'_>,
    credential: Credential<'_>,
    attempt: Attempt,
) -> Result<Allowed, Stop> {
    let Credential {
        provider_index,
        provider,
        claims,
        mut allowed,
        introspect,
    } = credential;
    let now = route.now;
    if introspect {
        introspected(
            services,
            provider_index,
            provider,
            found.value,
            now,
            attempt,
        )?;
    }
    route.authorize(provider, claims.as_deref())?;
    let posture = device_posture(
        route.config,
        services,
        route.request,
        route.rule,
        claims.as_deref(),
        now,
        attempt,
    )?;
    let token = claims.as_deref().map(|claims| TokenInput {
        issuer: &provider.issuer,
        claims,
    });
    let policy_headers = rego_decision(
        route.config,
        route.request,
        route.host,
        route.rule,
        token,
        now,
    )?;
    posture.apply(&mut allowed.edits);
    allowed.edits.set_headers.extend(policy_headers);
    Ok(allowed)
}

/// The matched rule's Rego policy, last, once everything else allowed: the headers it sets
/// for the upstream, or its denial.
fn rego_decision(
    config: &Config,
    request: &Request<'_>,
    host: Option<&str>,
    rule: Option<&Rule>,
    token: Option<TokenInput<'_>>,
    now: UnixSeconds,
) -> Result<Headers, Denial> {
    let Some((rule, policy)) =
        rule.and_then(|rule| rule.requirements.rego.as_ref().map(|policy| (rule, policy)))
    else {
        return Ok(Vec::new());
    };
    let client = config.client_address().of(request);
    let input = rego::input(request, host, client, token, now);
    match policy.evaluate(&input) {
        Ok(RegoDecision::Allow { headers }) => Ok(headers
            .into_iter()
            .map(|(name, value)| (Arc::from(name), Arc::from(value)))
            .collect()),
        Ok(RegoDecision::Deny {
            status,
            headers,
            body,
        }) => Err(Denial::Rego {
            rule: Arc::clone(&rule.name),
            status,
            headers,
            body,
        }),
        Err(problem) => Err(Denial::RegoError {
            rule: Arc::clone(&rule.name),
            problem,
        }),
    }
}

/// What a verified device token changes in the request for the upstream.
#[derive(Default)]
struct DeviceEdits {
    /// The device provider's claim headers.
    set_headers: Vec<(Arc<str>, Arc<str>)>,
    /// The device token's header, when the device provider does not forward tokens.
    remove_header: Option<Arc<str>>,
}

impl DeviceEdits {
    fn apply(self, edits: &mut RequestEdits) {
        edits.set_headers.extend(self.set_headers);
        edits.remove_headers.extend(self.remove_header);
    }
}

/// When the matched `rule` requires a device token: finds it in the device provider's header,
/// verifies it like any token of that provider (signature, issuer, audience, lifetime), checks
/// it is bound to the user (`user_claims`) and meets the rule's posture conditions. Returns the
/// device provider's claim headers to set (its `claims_to_headers`, stripped from every
/// request, so only a verified device token can set them).
fn device_posture(
    config: &Config,
    services: &Services<'_>,
    request: &Request<'_>,
    rule: Option<&Rule>,
    user_claims: Option<&Claims>,
    now: UnixSeconds,
    attempt: Attempt,
) -> Result<DeviceEdits, Stop> {
    let (Some(rule), Some(device)) = (rule, &config.device()) else {
        return Ok(DeviceEdits::default());
    };
    let Some(requirement) = &rule.requirements.device else {
        return Ok(DeviceEdits::default());
    };
    let refuse = |problem| Denial::Device {
        rule: Arc::clone(&rule.name),
        problem,
    };
    let Some(provider) = config.provider(device.provider) else {
        return Err(refuse(DeviceProblem::Invalid).into());
    };
    let found = match token::extract(request, &provider.token_sources) {
        Ok(Some(found)) => found,
        Ok(None) | Err(ExtractError::MultipleTokens) => {
            return Err(refuse(DeviceProblem::Missing).into())
        }
    };
    let untrusted = jws::parse(found.value, config.max_token_bytes())
        .map_err(|_| refuse(DeviceProblem::Invalid))?;
    let issuer = untrusted
        .claims()
        .get("iss")
        .and_then(serde_json::Value::as_str);
    if issuer != Some(provider.issuer.as_str()) {
        return Err(refuse(DeviceProblem::Invalid).into());
    }
    let keys = keys_to_verify(device.provider, provider, services.remote, now, attempt)?;
    let verified = verify::verify(untrusted, provider, keys, now, services.signatures)
        .map_err(|_| refuse(DeviceProblem::Invalid))?;
    if let Some(binding) = &device.binding {
        let device_value = crate::base::claims::claim_at(verified.claims(), &binding.device_claim);
        let user_value = user_claims
            .and_then(|claims| crate::base::claims::claim_at(claims, &binding.user_claim));
        let bound = matches!((device_value, user_value), (Some(device), Some(user)) if !device.is_null() && device == user);
        if !bound {
            return Err(refuse(DeviceProblem::NotBound).into());
        }
    }
    if let Some(conditions) = &requirement.claims {
        if let Some(failed) = policy::unmet_condition(conditions, verified.claims()) {
            return Err(refuse(DeviceProblem::Posture(failed.path.clone())).into());
        }
    }
    let remove_header = match found.source {
        TokenSource::Header { name, .. } if !provider.forward_token => {
            Some(Arc::from(name.as_str()))
        }
        _ => None,
    };
    Ok(DeviceEdits {
        set_headers: edits::identity_headers(provider, &verified),
        remove_header,
    })
}

type Claims = serde_json::Map<String, serde_json::Value>;

/// Headers for the upstream, shared with the cache and the configuration.
type Headers = Vec<(Arc<str>, Arc<str>)>;

/// The matched rule's `require` against a verified token's claims. Claims are kept whenever
/// some rule has requirements, so `None` with requirements cannot happen; it would refuse.
fn meets(
    requirements: Option<&Requirements>,
    provider: &Provider,
    claims: Option<&Claims>,
    now: UnixSeconds,
) -> Result<(), Unmet> {
    let Some(requirements) = requirements.filter(|requirements| requirements.reads_claims()) else {
        return Ok(());
    };
    let Some(claims) = claims else {
        return Err(Unmet::Claim(Vec::new()));
    };
    let identity = Identity {
        claims,
        role_claims: &provider.role_claims,
    };
    policy::check(requirements, identity, now)
}

/// The request's host (`:authority`, which HTTP/1.1's `Host` becomes in the proxy) without its
/// port; `None` when absent or repeated.
fn request_host<'r>(request: &Request<'r>) -> Option<&'r str> {
    let mut values = request.header_values(":authority");
    let authority = values.next()?;
    if values.next().is_some() {
        return None;
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split_once(']').map(|(address, _port)| address);
    }
    Some(
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _port)| host),
    )
}

/// The checks of the request rather than of its token, the same for a token verified now and
/// one remembered: the route accepts the token's provider, and the token was found where that
/// provider sends tokens.
fn check_request(
    accepted: Option<&[ProviderIndex]>,
    provider_index: ProviderIndex,
    provider: &Provider,
    found: &FoundToken<'_>,
) -> Result<(), Denial> {
    if accepted.is_some_and(|accepted| !accepted.contains(&provider_index)) {
        return Err(Denial::IssuerNotAccepted);
    }
    if !provider.token_sources.contains(found.source) {
        return Err(Denial::WrongTokenSource);
    }
    Ok(())
}

/// What the provider's introspection endpoint says of `token`, when it has one: `Ok(None)`
/// without introspection, the answer's members when active, `token_inactive` when not. With
/// no trusted answer at hand: ask (first attempt), or `503` (after asking).
fn introspected(
    services: &Services<'_>,
    provider_index: ProviderIndex,
    provider: &Provider,
    token: &str,
    now: UnixSeconds,
    attempt: Attempt,
) -> Result<Option<Arc<Claims>>, Stop> {
    if provider.introspection().is_none() {
        return Ok(None);
    }
    match (
        services.introspections.get(provider_index, token, now),
        attempt,
    ) {
        (Some(Introspected::Active(members)), _) => Ok(Some(Arc::clone(members))),
        (Some(Introspected::Inactive), _) => Err(Denial::TokenInactive.into()),
        (None, Attempt::First | Attempt::AfterWait) => Err(Stop::Introspect(IntrospectionNeeded {
            provider: provider_index,
            token: token.to_owned(),
        })),
        (None, Attempt::AfterIntrospection) => Err(Denial::IntrospectionUnavailable.into()),
    }
}

/// An address list `rule` names is missing: wait for its first fetch, or (after a wait, or
/// when it cannot be had) `503`.
fn list_missing(rule: &Rule, missing: ListMissing, attempt: Attempt) -> Stop {
    match (missing.pending, attempt) {
        (true, Attempt::First) => Stop::Wait(Wait {
            source: RemoteSource::AddressList(missing.list),
            cause: WaitCause::ListPending,
        }),
        _ => Denial::AddressListUnavailable {
            rule: Arc::clone(&rule.name),
        }
        .into(),
    }
}

/// The keys to verify a token of `provider` with: on the first attempt, wait for keys not
/// fetched yet; after a wait, or when they cannot be had, `503`.
fn keys_to_verify<'k>(
    provider_index: ProviderIndex,
    provider: &'k Provider,
    remote: &'k dyn RemoteDocuments,
    now: UnixSeconds,
    attempt: Attempt,
) -> Result<&'k KeySet, Stop> {
    match (
        provider_keys(provider_index, provider, remote, now),
        attempt,
    ) {
        (KeysNow::Fresh(keys) | KeysNow::Stale(keys), _) => Ok(keys),
        (KeysNow::Pending, Attempt::First) => Err(Stop::Wait(Wait {
            source: RemoteSource::Keys(provider_index),
            cause: WaitCause::KeysPending,
        })),
        (KeysNow::Pending | KeysNow::Unavailable, _) => Err(Denial::KeysUnavailable.into()),
    }
}

/// A provider's keys at `now`: inline keys are always fresh.
fn provider_keys<'k>(
    provider_index: ProviderIndex,
    provider: &'k Provider,
    remote: &'k dyn RemoteDocuments,
    now: UnixSeconds,
) -> KeysNow<'k> {
    match provider.keys() {
        Some(KeySource::Inline(keys)) => KeysNow::Fresh(keys),
        Some(KeySource::Remote(_)) => remote.keys_now(provider_index, now),
        // Never asked: JWTs never pick an opaque provider (see `Config::provider_by_issuer`).
        None => KeysNow::Unavailable,
    }
}

/// How a request came to be allowed: by which rule, on what verification.
struct Grounds {
    rule: Arc<str>,
    verification: Verification,
}

/// Allows a request whose token `provider` vouched for: its identity headers set, the token
/// stripped where the provider says so.
fn allow_verified(
    provider: &Provider,
    request: &Request<'_>,
    found: &FoundToken<'_>,
    identity_headers: &[(Arc<str>, Arc<str>)],
    subject: Option<Arc<str>>,
    mut edits: RequestEdits,
    grounds: Grounds,
) -> Allowed {
    edits.set_headers.extend(identity_headers.iter().cloned());
    if !provider.forward_token {
        edits.strip_token(request, found);
    }
    Allowed {
        rule: grounds.rule,
        caller: Caller::Verified {
            provider: Arc::clone(&provider.name),
            subject,
            by: grounds.verification,
        },
        edits,
    }
}

/// What a remembered verification is worth for this request.
enum Remembered<'c> {
    /// It still holds: allow, as `provider`'s.
    Holds(&'c Provider),
    /// Its key left the provider's keys, or its time is up: forget it.
    NoLonger,
    /// Not for this request (another route or token source) or not now (keys unavailable):
    /// keep it; the full path gives this request its exact answer.
    NotHere,
}

fn remembered<'c>(
    config: &'c Config,
    remote: &dyn RemoteDocuments,
    cached: &CachedToken,
    found: &FoundToken<'_>,
    accepted: Option<&[ProviderIndex]>,
    now: UnixSeconds,
) -> Remembered<'c> {
    let Some(provider) = config.provider(cached.provider) else {
        return Remembered::NotHere;
    };
    if check_request(accepted, cached.provider, provider, found).is_err() {
        return Remembered::NotHere;
    }
    let (KeysNow::Fresh(keys) | KeysNow::Stale(keys)) =
        provider_keys(cached.provider, provider, remote, now)
    else {
        return Remembered::NotHere;
    };
    let key_still_published = keys.keys().iter().any(|key| key.fingerprint == cached.key);
    if key_still_published && cached.lifetime.check(provider, now).is_ok() {
        Remembered::Holds(provider)
    } else {
        Remembered::NoLonger
    }
}

fn rule_matches(rule: &Rule, method: &str, path: &str, host: Option<&str>) -> bool {
    let path_matches = match &rule.path {
        PathMatch::Any => true,
        PathMatch::Prefix(prefix) => matches_path_prefix(path, prefix),
        PathMatch::Exact(exact) => without_trailing_slash(path) == without_trailing_slash(exact),
    };
    // Methods are case-sensitive in HTTP, but some frameworks route `post` as `POST`: comparing
    // case-insensitively keeps a lower-case method from slipping past its rule.
    path_matches
        && rule.methods.as_ref().is_none_or(|methods| {
            methods
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(method))
        })
        // A rule for some hosts matches no request whose host is unknown.
        && rule.hosts.as_ref().is_none_or(|hosts| {
            host.is_some_and(|host| hosts.iter().any(|pattern| pattern.matches(host)))
        })
}

/// `/a/b/` and `/a/b` name the same resource to most upstream frameworks, so an exact rule
/// matches both; `/` stays `/`.
fn without_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

/// A prefix matches whole segments: `/healthz` matches `/healthz` and `/healthz/live` but not
/// `/healthzadmin` or `/healthz-internal` (Envoy's `path_separated_prefix`; a plain string
/// prefix would quietly open every sibling path to an anonymous rule). A prefix ending in `/`
/// matches everything below it.
fn matches_path_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// Whether `path` (without query) is in the one form rules can safely match, the form an
/// upstream resolves it to. Refused: empty, `.` and `..` segments; backslashes; `;` (path
/// parameters, which servlet containers strip: `/public/..;/admin`); and percent-escapes that
/// are malformed or that encode an unreserved character, `/` or `\` (RFC 3986 §6.2.2.2: they
/// have an unescaped spelling, so `/adm%69n` would otherwise miss an `/admin` rule). Escapes of
/// other characters (`%20`, `%C3%A9`) are fine. Envoy's `normalize_path`, `merge_slashes` and
/// `path_with_escaped_slashes_action` produce such paths; this check makes a host that does not
/// fail closed.
pub fn is_normalized(path: &str) -> bool {
    if !path.starts_with('/') || path.contains(['\\', ';']) {
        return false;
    }
    let mut escapes = path.split('%').skip(1);
    let escapes_are_necessary = escapes.all(|after_percent| {
        let decoded = after_percent
            .get(..2)
            .filter(|hex| hex.bytes().all(|digit| digit.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            None => false,
            Some(byte) => !(byte.is_ascii_alphanumeric() || b"-._~/\\".contains(&byte)),
        }
    });
    if !escapes_are_necessary {
        return false;
    }
    // The first segment is the empty one before the leading `/`.
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !is_last) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
