//! Authorization on who the caller is: the conditions a rule puts on a verified token's claims
//! (`rules[].require`), checked after the signature and the time claims, on fresh and cached
//! tokens alike.
//!
//! - **Scopes** come from every claim identity providers put them in, normalised into one set:
//!   `scope` (RFC 8693 / RFC 9068: one space-separated string), `scp` (a string like `scope`, or
//!   an array of strings) and `scopes` (an array, or a string). A rule asks for `all` or `any`
//!   of a list. Missing scopes answer `403 insufficient_scope` with the scopes the route needs
//!   (RFC 6750 §3.1).
//! - **Claim conditions** test the value at a claim path (an array of member names, so names
//!   with dots and URLs work): `equals` one JSON value, is `in` a list, `contains` a value (an
//!   array holding it, or a single value equal to it), starts with a `prefix`, `exists`; `not`
//!   inverts any of them. A rule asks for `all` or `any` of its conditions.
//!
//! - **Roles** (or groups) are read from the claim paths the provider names in `role_claims`
//!   (default `["roles"]`; Keycloak puts them in `realm_access.roles`, Okta in `groups`), each
//!   a string or an array of strings; a rule asks for `all` or `any` of a list. Missing roles
//!   answer `403 insufficient_role`.
//! - **Step-up** (RFC 9470): `acr` lists the authentication context classes a route accepts
//!   (the token's `acr` must be one), `max_auth_age_seconds` how long ago the user may have
//!   authenticated (`auth_time`). A token that fails either answers `401
//!   insufficient_user_authentication` with `acr_values` and `max_age`, so the client knows
//!   what to ask the identity provider for; it is checked before scopes and claims, since a
//!   fresh, stronger login may bring those too.
//!
//! Conditions within a rule all hold (AND); each list says itself whether any or all of it must.

pub mod context;
pub mod rego;

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::base::claims::{claim_at, scopes_of};
use crate::base::time::UnixSeconds;
use crate::base::FieldError;
use context::{
    AddressCondition, AddressLists, ListMissing, RawAddressCondition, RawTimeWindow, TimeWindow,
};
use rego::{RawRego, RegoPolicy};
use std::net::IpAddr;

/// Whether one or every item of a list must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

/// A list of requirements, with whether any or all of them must hold. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantified<T> {
    pub quantifier: Quantifier,
    pub items: Vec<T>,
}

/// What one rule requires of a verified token; the default requires nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    pub scopes: Option<Quantified<String>>,
    pub claims: Option<Quantified<ClaimCondition>>,
    pub roles: Option<Quantified<String>>,
    /// The token's `acr` must be one of these.
    pub acr: Option<Vec<String>>,
    /// The user authenticated (`auth_time`) at most this long ago.
    pub max_auth_age_seconds: Option<u64>,
    /// Where the client may be.
    pub source_ips: Option<AddressCondition>,
    /// When the route is open.
    pub time: Option<TimeWindow>,
    /// A verified device token must come with the user's, meeting these conditions.
    pub device: Option<DeviceRequirement>,
    /// A Rego policy that must allow the request (see [`crate::policy::rego`]).
    pub rego: Option<RegoPolicy>,
}

/// What a rule requires of the device token (see [`crate::config::DevicePosture`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRequirement {
    /// Conditions on the device token's claims (`compliant: true`); `None`: a valid, bound
    /// device token is enough.
    pub claims: Option<Quantified<ClaimCondition>>,
}

impl Requirements {
    /// True when some condition reads a verified token's claims: the claims must then be
    /// kept, and an anonymous rule cannot carry it (nor can a deny rule be judged before the
    /// token is).
    pub fn reads_claims(&self) -> bool {
        self.scopes.is_some()
            || self.claims.is_some()
            || self.roles.is_some()
            || self.acr.is_some()
            || self.max_auth_age_seconds.is_some()
            || self.device.is_some()
    }

    /// True when remembered tokens must keep their claims for this rule: its conditions or its
    /// Rego policy read them.
    pub fn keeps_claims(&self) -> bool {
        self.reads_claims() || self.rego.is_some()
    }

    /// True when the rule asks nothing at all.
    pub fn is_nothing(&self) -> bool {
        !self.reads_claims()
            && self.source_ips.is_none()
            && self.time.is_none()
            && self.rego.is_none()
    }
}

/// What a verified token says about its holder, for [`check`].
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub claims: &'a Map<String, Value>,
    /// Where the token's provider puts roles.
    pub role_claims: &'a [Vec<String>],
}

/// One test of the value at a claim path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCondition {
    pub path: Vec<String>,
    pub test: ClaimTest,
    /// The condition holds when the test fails.
    pub negated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimTest {
    /// The value is exactly this JSON value.
    Equals(Value),
    /// The value is one of these.
    In(Vec<Value>),
    /// The value is an array holding this, or is this.
    Contains(Value),
    /// The value is a string starting with this.
    Prefix(String),
    /// The claim is present and not `null`.
    Exists,
}

/// Why a token does not meet a rule's requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The client's address is outside the rule's `source_ips` (or unknown).
    SourceAddress,
    /// The request came outside the rule's time window.
    OutsideTimeWindow,
    /// The user must authenticate again: too long ago, or not strongly enough.
    StepUp(StepUp),
    /// The token lacks scopes the route needs: the rule's scope list, space-separated, for the
    /// `scope` attribute of the challenge.
    Scopes(String),
    /// The holder lacks roles the route needs: the rule's role list.
    Roles(Vec<String>),
    /// A claim condition (or, for `any`, every one) does not hold; the path of the first that
    /// failed, for the response body.
    Claim(Vec<String>),
}

/// An RFC 9470 challenge: why, and every authentication requirement of the route, so one new
/// login can meet them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    pub cause: StepUpCause,
    /// The route's `acr` values, space-separated, when it has any.
    pub acr_values: Option<String>,
    pub max_age: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUpCause {
    /// `auth_time` missing, not a number, or older than `max_auth_age_seconds`.
    TooOld,
    /// `acr` missing or not one the route accepts.
    TooWeak,
}

impl fmt::Display for Unmet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmet::SourceAddress => write!(formatter, "the client address is not allowed"),
            Unmet::OutsideTimeWindow => write!(formatter, "outside the route's time window"),
            Unmet::StepUp(step_up) => match step_up.cause {
                StepUpCause::TooOld => write!(formatter, "authentication too old"),
                StepUpCause::TooWeak => write!(formatter, "authentication too weak"),
            },
            Unmet::Roles(roles) => write!(formatter, "the route needs role(s) {roles:?}"),
            Unmet::Scopes(scopes) => write!(formatter, "the route needs scope(s) {scopes}"),
            Unmet::Claim(path) => write!(formatter, "claim condition on {path:?} not met"),
        }
    }
}

/// Checks the request's context against `requirements`: the `client` address (when a rule
/// reads it; `None` if it cannot be known, which no address condition accepts) and `now`.
/// Before any token work: a request from the wrong place or at the wrong time is refused
/// whoever sends it. The outer `Err`: an address list the answer needs cannot be consulted,
/// so there is no answer.
pub fn check_context(
    requirements: &Requirements,
    client: impl FnOnce() -> Option<IpAddr>,
    lists: &dyn AddressLists,
    now: UnixSeconds,
) -> Result<Result<(), Unmet>, ListMissing> {
    if let Some(condition) = &requirements.source_ips {
        if !condition.holds(client(), lists)? {
            return Ok(Err(Unmet::SourceAddress));
        }
    }
    if let Some(window) = &requirements.time {
        if !window.contains(now) {
            return Ok(Err(Unmet::OutsideTimeWindow));
        }
    }
    Ok(Ok(()))
}

/// Checks a verified token's `identity` against `requirements` at `now`: authentication
/// first (step-up), then scopes, roles and claim conditions.
pub fn check(
    requirements: &Requirements,
    identity: Identity<'_>,
    now: UnixSeconds,
) -> Result<(), Unmet> {
    let claims = identity.claims;
    let step_up = |cause| {
        Unmet::StepUp(StepUp {
            cause,
            acr_values: requirements.acr.as_ref().map(|values| values.join(" ")),
            max_age: requirements.max_auth_age_seconds,
        })
    };
    if let Some(accepted) = &requirements.acr {
        let acr = claims.get("acr").and_then(Value::as_str);
        if !acr.is_some_and(|acr| accepted.iter().any(|value| value == acr)) {
            return Err(step_up(StepUpCause::TooWeak));
        }
    }
    if let Some(max_age) = requirements.max_auth_age_seconds {
        let authenticated_at = claims.get("auth_time").and_then(Value::as_i64);
        // A moment in the future (clocks apart) counts as now; a missing one as too old.
        let recent = authenticated_at.is_some_and(|at| {
            now.checked_sub(at)
                .is_some_and(|age| age <= i64::try_from(max_age).unwrap_or(i64::MAX))
        });
        if !recent {
            return Err(step_up(StepUpCause::TooOld));
        }
    }
    if let Some(wanted) = &requirements.scopes {
        let granted = scopes_of(claims);
        if !quantified_holds(wanted, |scope| granted.contains(&scope.as_str())) {
            return Err(Unmet::Scopes(wanted.items.join(" ")));
        }
    }
    if let Some(wanted) = &requirements.roles {
        let held = roles_of(claims, identity.role_claims);
        if !quantified_holds(wanted, |role| held.contains(&role.as_str())) {
            return Err(Unmet::Roles(wanted.items.clone()));
        }
    }
    if let Some(conditions) = &requirements.claims {
        if let Some(condition) = unmet_condition(conditions, claims) {
            return Err(Unmet::Claim(condition.path.clone()));
        }
    }
    Ok(())
}

fn quantified_holds<T>(wanted: &Quantified<T>, holds: impl FnMut(&T) -> bool) -> bool {
    match wanted.quantifier {
        Quantifier::All => wanted.items.iter().all(holds),
        Quantifier::Any => wanted.items.iter().any(holds),
    }
}

/// Every role at the provider's role claim paths: strings, or arrays of strings.
pub fn roles_of<'c>(claims: &'c Map<String, Value>, role_claims: &[Vec<String>]) -> Vec<&'c str> {
    let mut roles = Vec::new();
    for path in role_claims {
        match claim_at(claims, path) {
            Some(Value::String(role)) => roles.push(role.as_str()),
            Some(Value::Array(items)) => roles.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    roles
}

/// The first of `conditions` that fails on `claims` (for `all`), or the first when none holds
/// (for `any`); `None` when the list is met.
pub fn unmet_condition<'c>(
    conditions: &'c Quantified<ClaimCondition>,
    claims: &Map<String, Value>,
) -> Option<&'c ClaimCondition> {
    let mut items = conditions.items.iter();
    let first_failed = items.clone().find(|condition| !condition.holds(claims));
    let met = match conditions.quantifier {
        Quantifier::All => first_failed.is_none(),
        Quantifier::Any => items.any(|condition| condition.holds(claims)),
    };
    if met {
        None
    } else {
        first_failed
    }
}

impl ClaimCondition {
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        let value = claim_at(claims, &self.path).filter(|value| !value.is_null());
        let passed = match (&self.test, value) {
            (ClaimTest::Exists, value) => value.is_some(),
            (_, None) => false,
            (ClaimTest::Equals(expected), Some(value)) => value == expected,
            (ClaimTest::In(candidates), Some(value)) => candidates.contains(value),
            (ClaimTest::Contains(item), Some(Value::Array(items))) => items.contains(item),
            (ClaimTest::Contains(item), Some(value)) => value == item,
            (ClaimTest::Prefix(prefix), Some(value)) => value
                .as_str()
                .is_some_and(|text| text.starts_with(prefix.as_str())),
        };
        passed != self.negated
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration: `rules[].require`.

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequirements {
    scopes: Option<RawList<String>>,
    claims: Option<RawList<RawClaimCondition>>,
    roles: Option<RawList<String>>,
    acr: Option<Vec<String>>,
    max_auth_age_seconds: Option<u64>,
    source_ips: Option<RawAddressCondition>,
    time: Option<RawTimeWindow>,
    device: Option<RawDeviceRequirement>,
    rego: Option<RawRego>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawDeviceRequirement {
    claims: Option<RawList<RawClaimCondition>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "AnyOrAll_{T}"))]
#[serde(deny_unknown_fields)]
struct RawList<T> {
    any: Option<Vec<T>>,
    all: Option<Vec<T>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawClaimCondition {
    claim: Vec<String>,
    equals: Option<Value>,
    #[serde(rename = "in")]
    one_of: Option<Vec<Value>>,
    contains: Option<Value>,
    prefix: Option<String>,
    exists: Option<bool>,
    #[serde(default)]
    not: bool,
}

fn field_error(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    (field.into(), problem.into())
}

fn quantified<R, T>(
    field: &str,
    raw: RawList<R>,
    mut item: impl FnMut(String, R) -> Result<T, FieldError>,
) -> Result<Quantified<T>, FieldError> {
    let (quantifier, items, name) = match (raw.any, raw.all) {
        (Some(items), None) => (Quantifier::Any, items, "any"),
        (None, Some(items)) => (Quantifier::All, items, "all"),
        _ => {
            return Err(field_error(
                field,
                "give exactly one of `any` and `all`, each a list",
            ))
        }
    };
    if items.is_empty() {
        return Err(field_error(format!("{field}.{name}"), "must not be empty"));
    }
    let items = items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| item(format!("{field}.{name}[{index}]"), raw))
        .collect::<Result<Vec<T>, FieldError>>()?;
    Ok(Quantified { quantifier, items })
}

/// A rule's `require`: at least one condition.
/// `list_names`: the configuration's `address_lists`, by position.
pub(crate) fn validate(
    field: &str,
    raw: RawRequirements,
    list_names: &[&str],
) -> Result<Requirements, FieldError> {
    let requirements = conditions(field, raw, list_names)?;
    if requirements.is_nothing() {
        return Err(field_error(
            field,
            "name at least one of `scopes`, `roles`, `claims`, `acr`, `max_auth_age_seconds`, `source_ips`, `time` (or leave `require` out)",
        ));
    }
    Ok(requirements)
}

/// A deny rule's `deny`: the conditions under which it refuses; none (`{}`) refuses every
/// request it matches.
pub(crate) fn validate_deny(
    field: &str,
    raw: RawRequirements,
    list_names: &[&str],
) -> Result<Requirements, FieldError> {
    if raw.device.is_some() {
        return Err(field_error(
            format!("{field}.device"),
            "only allow rules require a device token (`require.device`)",
        ));
    }
    if raw.rego.is_some() {
        return Err(field_error(
            format!("{field}.rego"),
            "only allow rules carry a Rego policy (`require.rego`): a policy can deny by itself",
        ));
    }
    conditions(field, raw, list_names)
}

fn conditions(
    field: &str,
    raw: RawRequirements,
    list_names: &[&str],
) -> Result<Requirements, FieldError> {
    let scopes = raw
        .scopes
        .map(|list| quantified(&format!("{field}.scopes"), list, validate_scope))
        .transpose()?;
    let claims = raw
        .claims
        .map(|list| quantified(&format!("{field}.claims"), list, validate_condition))
        .transpose()?;
    let roles = raw
        .roles
        .map(|list| quantified(&format!("{field}.roles"), list, validate_role))
        .transpose()?;
    let acr = validate_acr(field, raw.acr)?;
    if raw.max_auth_age_seconds == Some(0) {
        return Err(field_error(
            format!("{field}.max_auth_age_seconds"),
            "must be at least 1",
        ));
    }
    let source_ips = raw
        .source_ips
        .map(|raw| {
            context::validate_address_condition(&format!("{field}.source_ips"), raw, list_names)
        })
        .transpose()?;
    let time = raw
        .time
        .map(|raw| context::validate_time_window(&format!("{field}.time"), raw))
        .transpose()?;
    let device = raw
        .device
        .map(|device| validate_device_requirement(field, device))
        .transpose()?;
    let rego = raw
        .rego
        .map(|raw| rego::compile(&format!("{field}.rego"), raw))
        .transpose()?;
    Ok(Requirements {
        scopes,
        claims,
        roles,
        acr,
        max_auth_age_seconds: raw.max_auth_age_seconds,
        source_ips,
        time,
        device,
        rego,
    })
}

/// The `acr` values a rule accepts: each goes into a challenge's `acr_values`.
fn validate_acr(field: &str, acr: Option<Vec<String>>) -> Result<Option<Vec<String>>, FieldError> {
    Ok(match acr {
        None => None,
        Some(values) if values.is_empty() => {
            return Err(field_error(
                format!("{field}.acr"),
                "must not be empty (leave it out to accept any)",
            ))
        }
        Some(values) => {
            if let Some(index) = values.iter().position(|value| !is_challenge_word(value)) {
                return Err(field_error(
                    format!("{field}.acr[{index}]"),
                    "an `acr` value is non-empty printable ASCII without spaces, `\"` or `\\` (it goes into `acr_values`)",
                ));
            }
            Some(values)
        }
    })
}

fn validate_scope(field: String, scope: String) -> Result<String, FieldError> {
    if !is_challenge_word(&scope) {
        return Err(field_error(
            field,
            "a scope is non-empty printable ASCII without spaces, `\"` or `\\` (RFC 6749 §3.3)",
        ));
    }
    Ok(scope)
}

fn validate_role(field: String, role: String) -> Result<String, FieldError> {
    if role.is_empty() {
        return Err(field_error(field, "a role is a non-empty string"));
    }
    Ok(role)
}

fn validate_device_requirement(
    field: &str,
    device: RawDeviceRequirement,
) -> Result<DeviceRequirement, FieldError> {
    Ok(DeviceRequirement {
        claims: device
            .claims
            .map(|list| quantified(&format!("{field}.device.claims"), list, validate_condition))
            .transpose()?,
    })
}

/// Safe inside a quoted challenge attribute and as one word of a space-separated list.
fn is_challenge_word(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\')
}

/// A claim path (`["realm_access", "roles"]`) that can name a claim: `Err` with the problem.
pub(crate) fn check_claim_path(path: &[String]) -> Result<(), &'static str> {
    if path.is_empty() || path.iter().any(String::is_empty) {
        return Err("a claim path is a non-empty array of non-empty member names");
    }
    Ok(())
}

fn validate_condition(field: String, raw: RawClaimCondition) -> Result<ClaimCondition, FieldError> {
    check_claim_path(&raw.claim)
        .map_err(|problem| field_error(format!("{field}.claim"), problem))?;
    let mut tests = Vec::new();
    if let Some(value) = raw.equals {
        tests.push(ClaimTest::Equals(value));
    }
    if let Some(values) = raw.one_of {
        if values.is_empty() {
            return Err(field_error(format!("{field}.in"), "must not be empty"));
        }
        tests.push(ClaimTest::In(values));
    }
    if let Some(value) = raw.contains {
        tests.push(ClaimTest::Contains(value));
    }
    if let Some(prefix) = raw.prefix {
        if prefix.is_empty() {
            return Err(field_error(
                format!("{field}.prefix"),
                "must not be empty (use `exists`)",
            ));
        }
        tests.push(ClaimTest::Prefix(prefix));
    }
    let mut negated = raw.not;
    if let Some(exists) = raw.exists {
        tests.push(ClaimTest::Exists);
        // `"exists": false` is `exists` inverted.
        negated ^= !exists;
    }
    let mut tests = tests.into_iter();
    match (tests.next(), tests.next()) {
        (Some(test), None) => Ok(ClaimCondition {
            path: raw.claim,
            test,
            negated,
        }),
        _ => Err(field_error(
            field,
            "give exactly one of `equals`, `in`, `contains`, `prefix`, `exists` (a JSON `null` counts as none)",
        )),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    const NOW: UnixSeconds = 1_800_000_000;

    /// The test provider's role claims: Keycloak's place and the default.
    static ROLE_CLAIMS: std::sync::LazyLock<Vec<Vec<String>>> = std::sync::LazyLock::new(|| {
        vec![
            vec!["roles".to_owned()],
            vec!["realm_access".to_owned(), "roles".to_owned()],
        ]
    });

    fn identity(claims: &Map<String, Value>) -> Identity<'_> {
        Identity {
            claims,
            role_claims: &ROLE_CLAIMS,
        }
    }

    fn requirements(raw: Value) -> Result<Requirements, FieldError> {
        let raw: RawRequirements = serde_json::from_value(raw)
            .map_err(|error| field_error("rules[0].require", error.to_string()))?;
        validate("rules[0].require", raw, &[])
    }

    #[test]
    fn scopes_are_gathered_from_scope_scp_and_scopes() {
        let token = claims(json!({
            "scope": "orders:read  orders:write",
            "scp": ["admin"],
            "scopes": "audit",
        }));
        assert_eq!(
            scopes_of(&token),
            vec!["orders:read", "orders:write", "admin", "audit"]
        );
        assert_eq!(scopes_of(&claims(json!({"scp": "a b"}))), vec!["a", "b"]);
        assert!(scopes_of(&claims(json!({"scope": 7, "scp": {"a": 1}}))).is_empty());
    }

    #[test]
    fn all_scopes_or_any_scope() {
        let all = requirements(json!({"scopes": {"all": ["read", "write"]}})).unwrap();
        let any = requirements(json!({"scopes": {"any": ["read", "write"]}})).unwrap();
        let reader = claims(json!({"scope": "read"}));
        let both = claims(json!({"scp": ["write", "read"]}));
        assert_eq!(
            check(&all, identity(&reader), NOW),
            Err(Unmet::Scopes("read write".to_owned()))
        );
        assert_eq!(check(&all, identity(&both), NOW), Ok(()));
        assert_eq!(check(&any, identity(&reader), NOW), Ok(()));
        assert_eq!(
            check(
                &any,
                identity(&claims(json!({"scope": "reader writer"}))),
                NOW
            ),
            Err(Unmet::Scopes("read write".to_owned())),
            "scopes compare whole, never as substrings"
        );
    }

    #[test]
    fn each_claim_test() {
        let token = claims(json!({
            "sub": "svc-orders",
            "email_verified": true,
            "tid": "tenant-a",
            "realm_access": {"roles": ["admin", "ops"]},
            "https://example.com/tier": "gold",
            "gone": null,
        }));
        let cases = [
            (json!({"claim": ["email_verified"], "equals": true}), true),
            (
                json!({"claim": ["email_verified"], "equals": "true"}),
                false,
            ),
            (
                json!({"claim": ["tid"], "in": ["tenant-a", "tenant-b"]}),
                true,
            ),
            (json!({"claim": ["tid"], "in": ["tenant-c"]}), false),
            (
                json!({"claim": ["realm_access", "roles"], "contains": "ops"}),
                true,
            ),
            (
                json!({"claim": ["realm_access", "roles"], "contains": "root"}),
                false,
            ),
            (json!({"claim": ["tid"], "contains": "tenant-a"}), true),
            (json!({"claim": ["sub"], "prefix": "svc-"}), true),
            (json!({"claim": ["realm_access"], "prefix": "svc-"}), false),
            (
                json!({"claim": ["https://example.com/tier"], "equals": "gold"}),
                true,
            ),
            (
                json!({"claim": ["realm_access", "roles"], "exists": true}),
                true,
            ),
            (json!({"claim": ["gone"], "exists": true}), false),
            (json!({"claim": ["gone"], "exists": false}), true),
            (
                json!({"claim": ["missing", "deeper"], "exists": false}),
                true,
            ),
            (
                json!({"claim": ["tid"], "equals": "tenant-a", "not": true}),
                false,
            ),
            (
                json!({"claim": ["missing"], "equals": "x", "not": true}),
                true,
            ),
            (json!({"claim": ["missing"], "equals": "x"}), false),
        ];
        for (condition, expected) in cases {
            let rule = requirements(json!({"claims": {"all": [condition.clone()]}})).unwrap();
            assert_eq!(
                check(&rule, identity(&token), NOW).is_ok(),
                expected,
                "{condition}"
            );
        }
    }

    #[test]
    fn all_claims_or_any_claim() {
        let token = claims(json!({"a": 1, "b": 2}));
        let holds = json!({"claim": ["a"], "equals": 1});
        let fails = json!({"claim": ["b"], "equals": 1});
        let all = requirements(json!({"claims": {"all": [holds, fails]}})).unwrap();
        assert_eq!(
            check(&all, identity(&token), NOW),
            Err(Unmet::Claim(vec!["b".to_owned()]))
        );
        let any = requirements(json!({"claims": {"any": [fails, holds]}})).unwrap();
        assert_eq!(check(&any, identity(&token), NOW), Ok(()));
        let none = requirements(json!({"claims": {"any": [fails, fails]}})).unwrap();
        assert_eq!(
            check(&none, identity(&token), NOW),
            Err(Unmet::Claim(vec!["b".to_owned()]))
        );
    }

    #[test]
    fn roles_come_from_the_providers_role_claims() {
        let any = requirements(json!({"roles": {"any": ["admin", "ops"]}})).unwrap();
        let all = requirements(json!({"roles": {"all": ["admin", "ops"]}})).unwrap();
        let keycloak = claims(json!({"realm_access": {"roles": ["ops"]}, "roles": "admin"}));
        assert_eq!(check(&any, identity(&keycloak), NOW), Ok(()));
        assert_eq!(check(&all, identity(&keycloak), NOW), Ok(()));
        let groups_only = claims(json!({"groups": ["admin"]}));
        assert_eq!(
            check(&any, identity(&groups_only), NOW),
            Err(Unmet::Roles(vec!["admin".to_owned(), "ops".to_owned()])),
            "`groups` is not among this provider's role claims"
        );
    }

    #[test]
    fn step_up_on_acr_and_auth_time_names_every_authentication_requirement() {
        let rule = requirements(json!({
            "acr": ["urn:mfa", "phr"],
            "max_auth_age_seconds": 300,
            "scopes": {"all": ["admin"]}
        }))
        .unwrap();
        let step_up = |cause| {
            Err(Unmet::StepUp(StepUp {
                cause,
                acr_values: Some("urn:mfa phr".to_owned()),
                max_age: Some(300),
            }))
        };
        let fresh_mfa = json!({"acr": "phr", "auth_time": NOW - 300, "scope": "admin"});
        assert_eq!(check(&rule, identity(&claims(fresh_mfa)), NOW), Ok(()));
        let cases = [
            (
                json!({"acr": "pwd", "auth_time": NOW, "scope": "admin"}),
                StepUpCause::TooWeak,
            ),
            (
                json!({"auth_time": NOW, "scope": "admin"}),
                StepUpCause::TooWeak,
            ),
            (
                json!({"acr": "phr", "auth_time": NOW - 301}),
                StepUpCause::TooOld,
            ),
            (json!({"acr": "phr"}), StepUpCause::TooOld),
            (
                json!({"acr": "phr", "auth_time": "recently"}),
                StepUpCause::TooOld,
            ),
        ];
        for (token, cause) in cases {
            assert_eq!(
                check(&rule, identity(&claims(token.clone())), NOW),
                step_up(cause),
                "{token}"
            );
        }
        // Authentication is judged before scopes: a new login may bring them.
        let no_scope = claims(json!({"acr": "pwd", "auth_time": NOW}));
        assert_eq!(
            check(&rule, identity(&no_scope), NOW),
            step_up(StepUpCause::TooWeak)
        );
        let fresh_no_scope = claims(json!({"acr": "phr", "auth_time": NOW + 30}));
        assert_eq!(
            check(&rule, identity(&fresh_no_scope), NOW),
            Err(Unmet::Scopes("admin".to_owned())),
            "an auth_time slightly ahead of the clock counts as now"
        );
    }

    #[test]
    fn bad_requirements_name_the_field() {
        let field = |raw: Value| requirements(raw).unwrap_err().0;
        assert_eq!(field(json!({})), "rules[0].require");
        assert_eq!(
            field(json!({"scopes": {"any": []}})),
            "rules[0].require.scopes.any"
        );
        assert_eq!(
            field(json!({"scopes": {"any": ["a"], "all": ["b"]}})),
            "rules[0].require.scopes"
        );
        assert_eq!(
            field(json!({"scopes": {"all": ["a b"]}})),
            "rules[0].require.scopes.all[0]"
        );
        assert_eq!(
            field(json!({"claims": {"all": [{"claim": [], "exists": true}]}})),
            "rules[0].require.claims.all[0].claim"
        );
        assert_eq!(
            field(json!({"claims": {"all": [{"claim": ["a"], "equals": 1, "prefix": "x"}]}})),
            "rules[0].require.claims.all[0]"
        );
        assert_eq!(
            field(json!({"claims": {"all": [{"claim": ["a"]}]}})),
            "rules[0].require.claims.all[0]"
        );
        assert_eq!(
            field(json!({"claims": {"all": [{"claim": ["a"], "in": []}]}})),
            "rules[0].require.claims.all[0].in"
        );
        assert_eq!(field(json!({"acr": []})), "rules[0].require.acr");
        assert_eq!(field(json!({"acr": ["a b"]})), "rules[0].require.acr[0]");
        assert_eq!(
            field(json!({"max_auth_age_seconds": 0})),
            "rules[0].require.max_auth_age_seconds"
        );
        assert_eq!(
            field(json!({"roles": {"any": [""]}})),
            "rules[0].require.roles.any[0]"
        );
        assert!(requirements(json!({"groups": {"any": ["a"]}})).is_err());
    }
}
