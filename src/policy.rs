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
//! Conditions within a rule all hold (AND); each list says itself whether any or all of it must.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

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
}

impl Requirements {
    /// True when the rule asks nothing of the claims, so they need not be kept.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_none() && self.claims.is_none()
    }
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
    /// The token lacks scopes the route needs: the rule's scope list, space-separated, for the
    /// `scope` attribute of the challenge.
    Scopes(String),
    /// A claim condition (or, for `any`, every one) does not hold; the path of the first that
    /// failed, for the response body.
    Claim(Vec<String>),
}

impl fmt::Display for Unmet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmet::Scopes(scopes) => write!(formatter, "the route needs scope(s) {scopes}"),
            Unmet::Claim(path) => write!(formatter, "claim condition on {path:?} not met"),
        }
    }
}

/// Checks `claims` (a verified token's payload) against `requirements`.
pub fn check(requirements: &Requirements, claims: &Map<String, Value>) -> Result<(), Unmet> {
    if let Some(wanted) = &requirements.scopes {
        let granted = scopes_of(claims);
        let has = |scope: &String| granted.contains(&scope.as_str());
        let met = match wanted.quantifier {
            Quantifier::All => wanted.items.iter().all(has),
            Quantifier::Any => wanted.items.iter().any(has),
        };
        if !met {
            return Err(Unmet::Scopes(wanted.items.join(" ")));
        }
    }
    if let Some(conditions) = &requirements.claims {
        let mut items = conditions.items.iter();
        let first_failed = items.clone().find(|condition| !condition.holds(claims));
        let met = match conditions.quantifier {
            Quantifier::All => first_failed.is_none(),
            Quantifier::Any => items.any(|condition| condition.holds(claims)),
        };
        if let (false, Some(condition)) = (met, first_failed) {
            return Err(Unmet::Claim(condition.path.clone()));
        }
    }
    Ok(())
}

/// Every scope the token grants, from `scope`, `scp` and `scopes`, strings split at spaces.
pub fn scopes_of(claims: &Map<String, Value>) -> Vec<&str> {
    let mut scopes = Vec::new();
    for name in ["scope", "scp", "scopes"] {
        match claims.get(name) {
            Some(Value::String(list)) => scopes.extend(list.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => {
                scopes.extend(items.iter().filter_map(Value::as_str));
            }
            _ => {}
        }
    }
    scopes
}

/// The value at `path` in `claims`, through nested objects.
pub fn claim_at<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
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
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequirements {
    scopes: Option<RawList<String>>,
    claims: Option<RawList<RawClaimCondition>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList<T> {
    any: Option<Vec<T>>,
    all: Option<Vec<T>>,
}

#[derive(Debug, Deserialize)]
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

/// A configuration field at fault and why; `config` turns it into its `ConfigError`.
pub(crate) type FieldError = (String, String);

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

pub(crate) fn validate(field: &str, raw: RawRequirements) -> Result<Requirements, FieldError> {
    let scopes = raw
        .scopes
        .map(|list| {
            quantified(&format!("{field}.scopes"), list, |field, scope| {
                if scope.is_empty() || scope.contains([' ', '"', '\\']) || !scope.is_ascii() {
                    return Err(field_error(
                        field,
                        "a scope is non-empty printable ASCII without spaces, `\"` or `\\` (RFC 6749 §3.3)",
                    ));
                }
                Ok(scope)
            })
        })
        .transpose()?;
    let claims = raw
        .claims
        .map(|list| quantified(&format!("{field}.claims"), list, validate_condition))
        .transpose()?;
    if scopes.is_none() && claims.is_none() {
        return Err(field_error(
            field,
            "name `scopes` or `claims` (or leave `require` out)",
        ));
    }
    Ok(Requirements { scopes, claims })
}

fn validate_condition(field: String, raw: RawClaimCondition) -> Result<ClaimCondition, FieldError> {
    if raw.claim.is_empty() || raw.claim.iter().any(String::is_empty) {
        return Err(field_error(
            format!("{field}.claim"),
            "a claim path is a non-empty array of non-empty member names",
        ));
    }
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
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn requirements(raw: Value) -> Result<Requirements, FieldError> {
        let raw: RawRequirements = serde_json::from_value(raw)
            .map_err(|error| field_error("rules[0].require", error.to_string()))?;
        validate("rules[0].require", raw)
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
            check(&all, &reader),
            Err(Unmet::Scopes("read write".to_owned()))
        );
        assert_eq!(check(&all, &both), Ok(()));
        assert_eq!(check(&any, &reader), Ok(()));
        assert_eq!(
            check(&any, &claims(json!({"scope": "reader writer"}))),
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
            assert_eq!(check(&rule, &token).is_ok(), expected, "{condition}");
        }
    }

    #[test]
    fn all_claims_or_any_claim() {
        let token = claims(json!({"a": 1, "b": 2}));
        let holds = json!({"claim": ["a"], "equals": 1});
        let fails = json!({"claim": ["b"], "equals": 1});
        let all = requirements(json!({"claims": {"all": [holds, fails]}})).unwrap();
        assert_eq!(check(&all, &token), Err(Unmet::Claim(vec!["b".to_owned()])));
        let any = requirements(json!({"claims": {"any": [fails, holds]}})).unwrap();
        assert_eq!(check(&any, &token), Ok(()));
        let none = requirements(json!({"claims": {"any": [fails, fails]}})).unwrap();
        assert_eq!(
            check(&none, &token),
            Err(Unmet::Claim(vec!["b".to_owned()]))
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
        assert!(requirements(json!({"roles": {"any": ["a"]}})).is_err());
    }
}
