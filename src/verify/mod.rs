//! Signature and claims: [`UntrustedToken`] → [`VerifiedToken`], the only way to get one.
//!
//! The checks run cheapest first: token type, algorithm allow-list, required claims, lifetime,
//! audience, then the key lookup and the signature. Tokens that fail on public values cost no
//! signature math; a token that passes them costs at most one verification per key the
//! provider's set holds for its algorithm (exactly one when it names a `kid`). Every failure is
//! one [`Rejection`] variant.
//!
//! Numeric dates (`exp`, `nbf`, `iat`) are range-checked to `0..=MAX_NUMERIC_DATE` before any
//! arithmetic, and all arithmetic is checked: a token cannot make the filter overflow.

pub mod cache;

use serde_json::{Map, Value};

use crate::base::time::UnixSeconds;
use crate::jose::algorithm::Algorithm;
use crate::jose::jwks::{KeyFingerprint, KeySet};
use crate::jose::signature::{self, SignatureVerifier};
use crate::jose::token::UntrustedToken;

/// The last second of year 9999: later dates are not dates but attempts to overflow.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// What a provider expects of its tokens: the settings every check here reads. The
/// configuration's provider implements it, so this layer never depends on the configuration.
pub trait Expectations {
    /// Whether `issuer` (a token's `iss`) is this provider's.
    fn issues(&self, issuer: &str) -> bool;
    /// With an issuer template: the allowed tenant `issuer` names, if it names one.
    fn tenant_of(&self, issuer: &str) -> Option<&str>;
    fn audiences(&self) -> &[String];
    fn algorithms(&self) -> &[Algorithm];
    /// Whether a token whose header has `typ` (or none) is accepted.
    fn accepts_token_type(&self, token_type: Option<&str>) -> bool;
    fn clock_skew_seconds(&self) -> u64;
    fn required_claims(&self) -> &[String];
    fn max_lifetime_seconds(&self) -> Option<u64>;
}

/// Why a well-formed token from a known issuer is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// `typ` is not one of the provider's `token_types`.
    TokenTypeNotAllowed,
    /// `alg` is not in the provider's `algorithms`.
    AlgorithmNotAllowed,
    /// A required claim (or `aud`) is absent.
    MissingClaim(String),
    /// A registered claim has the wrong JSON type or an out-of-range date.
    InvalidClaim(&'static str),
    /// `now >= exp + skew` (RFC 7519 §4.1.4: the current time must be before `exp`).
    Expired,
    /// `nbf > now + skew`.
    NotYetValid,
    /// `iat > now + skew`.
    IssuedInFuture,
    /// `exp - iat > max_lifetime_seconds` (or no `iat` to bound the lifetime with).
    LifetimeTooLong,
    /// No value of `aud` is one of the provider's `audiences`.
    AudienceMismatch,
    /// The token names a `kid` the key set does not have.
    UnknownKeyId,
    /// No key in the set can verify this algorithm (by type, curve, `alg`).
    NoCompatibleKey,
    /// No candidate key verifies the signature.
    BadSignature,
}

/// A token whose signature, issuer, audience, lifetime and type all checked out.
///
/// Only [`verify`] constructs one; policy and the upstream view take this type, so nothing
/// can act on claims that were not verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken<'a> {
    claims: Map<String, Value>,
    /// The payload segment as received, for `payload_header`.
    encoded_payload: &'a str,
    subject: Option<String>,
    /// The key whose signature verified, for binding a cached verification to it.
    key: KeyFingerprint,
    /// The time claims, for re-checking a cached verification later.
    lifetime: Lifetime,
}

impl<'a> VerifiedToken<'a> {
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }

    pub fn encoded_payload(&self) -> &'a str {
        self.encoded_payload
    }

    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    pub fn key(&self) -> KeyFingerprint {
        self.key
    }

    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }
}

/// A token's time claims (`exp`, `nbf`, `iat`), range-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub expires_at: Option<UnixSeconds>,
    pub not_before: Option<UnixSeconds>,
    pub issued_at: Option<UnixSeconds>,
}

impl Lifetime {
    fn of(claims: &Map<String, Value>) -> Result<Lifetime, Rejection> {
        Ok(Lifetime {
            expires_at: numeric_date(claims, "exp")?,
            not_before: numeric_date(claims, "nbf")?,
            issued_at: numeric_date(claims, "iat")?,
        })
    }

    /// Whether the token is valid at `now` for `provider` (clock skew applied).
    pub fn check(&self, provider: &dyn Expectations, now: UnixSeconds) -> Result<(), Rejection> {
        // `skew` is at most a day (config validation) and dates at most MAX_NUMERIC_DATE, so
        // these sums cannot overflow; saturating arithmetic keeps them safe if either changes.
        let skew = i64::try_from(provider.clock_skew_seconds()).unwrap_or(i64::MAX);
        let now_plus_skew = now.saturating_add(skew);
        if let Some(expires_at) = self.expires_at {
            if now >= expires_at.saturating_add(skew) {
                return Err(Rejection::Expired);
            }
        }
        if let Some(not_before) = self.not_before {
            if not_before > now_plus_skew {
                return Err(Rejection::NotYetValid);
            }
        }
        if let Some(issued_at) = self.issued_at {
            if issued_at > now_plus_skew {
                return Err(Rejection::IssuedInFuture);
            }
        }
        Ok(())
    }
}

/// Verifies `token` for `provider` at time `now`, with `signatures` doing the math.
pub fn verify<'a>(
    token: UntrustedToken<'a>,
    provider: &dyn Expectations,
    keys: &KeySet,
    now: UnixSeconds,
    signatures: &dyn SignatureVerifier,
) -> Result<VerifiedToken<'a>, Rejection> {
    let header = token.header();
    if !provider.accepts_token_type(header.token_type.as_deref()) {
        return Err(Rejection::TokenTypeNotAllowed);
    }
    if !provider.algorithms().contains(&header.algorithm) {
        return Err(Rejection::AlgorithmNotAllowed);
    }
    let lifetime = check_claims(token.claims(), provider, now)?;
    let key = check_signature(&token, keys, signatures)?;
    let subject = token
        .claims()
        .get("sub")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(VerifiedToken {
        encoded_payload: token.encoded_payload(),
        claims: token.into_claims(),
        subject,
        key,
        lifetime,
    })
}

/// Checks the members of an active introspection answer about an opaque token like a JWT's
/// claims: required claims, `iss` (the provider's), `sub` and `jti` strings, lifetime with
/// clock skew, audience — and `token_type`, when present, `Bearer` or `access_token`. The
/// provider said the token is active; this says it is an access token for us.
pub fn check_introspected(
    members: &Map<String, Value>,
    provider: &dyn Expectations,
    now: UnixSeconds,
) -> Result<(), Rejection> {
    // `token_type_hint` is only a hint: a provider may well call a refresh token active. When
    // the answer names the type, it must be an access token's.
    if let Some(token_type) = members.get("token_type") {
        let access = token_type
            .as_str()
            .is_some_and(|kind| kind.eq_ignore_ascii_case("bearer") || kind == "access_token");
        if !access {
            return Err(Rejection::InvalidClaim("token_type"));
        }
    }
    check_claims(members, provider, now).map(|_| ())
}

fn check_claims(
    claims: &Map<String, Value>,
    provider: &dyn Expectations,
    now: UnixSeconds,
) -> Result<Lifetime, Rejection> {
    if let Some(missing) = provider
        .required_claims()
        .iter()
        .find(|claim| !claims.contains_key(claim.as_str()))
    {
        return Err(Rejection::MissingClaim(missing.clone()));
    }
    match claims.get("iss") {
        Some(Value::String(issuer)) if provider.issues(issuer) => {
            // A multi-tenant provider's token names its tenant twice: in `iss` and in `tid`
            // (Entra ID). They must agree.
            if let Some(tenant) = provider.tenant_of(issuer) {
                match claims.get("tid") {
                    None => return Err(Rejection::MissingClaim("tid".to_owned())),
                    Some(Value::String(tid)) if tid == tenant => {}
                    Some(_) => return Err(Rejection::InvalidClaim("tid")),
                }
            }
        }
        // The provider was chosen by this very claim, so this is a defence in depth.
        _ => return Err(Rejection::InvalidClaim("iss")),
    }
    // RFC 7519 §4.1.2 and §4.1.7: `sub` and `jti` are strings (case-sensitive).
    for claim in ["sub", "jti"] {
        if claims.get(claim).is_some_and(|value| !value.is_string()) {
            return Err(Rejection::InvalidClaim(claim));
        }
    }

    let lifetime = Lifetime::of(claims)?;
    lifetime.check(provider, now)?;
    if let Some(max_lifetime) = provider.max_lifetime_seconds() {
        let max_lifetime = i64::try_from(max_lifetime).unwrap_or(i64::MAX);
        // A lifetime bound needs both ends; a token without them cannot prove it is short-lived.
        let (Some(expires_at), Some(issued_at)) = (lifetime.expires_at, lifetime.issued_at) else {
            return Err(Rejection::LifetimeTooLong);
        };
        if expires_at.saturating_sub(issued_at) > max_lifetime {
            return Err(Rejection::LifetimeTooLong);
        }
    }

    check_audience(claims, provider)?;
    Ok(lifetime)
}

/// Reads a NumericDate (RFC 7519 §2): a JSON number of seconds, possibly fractional, within
/// `0..=MAX_NUMERIC_DATE`. A fraction is dropped (floor): for `exp` that is stricter by under a
/// second, for `nbf`/`iat` more lenient by under a second, both well inside the clock skew.
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<i64>, Rejection> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    let invalid = Rejection::InvalidClaim(claim);
    let Value::Number(number) = value else {
        return Err(invalid);
    };
    let seconds = match (number.as_i64(), number.as_f64()) {
        (Some(whole), _) => whole,
        (None, Some(fraction)) => whole_seconds(fraction).ok_or(invalid.clone())?,
        (None, None) => return Err(invalid),
    };
    if (0..=MAX_NUMERIC_DATE).contains(&seconds) {
        Ok(Some(seconds))
    } else {
        Err(invalid)
    }
}

/// The whole seconds of a non-integral date, if it is a finite number in the valid range.
#[allow(clippy::as_conversions, clippy::cast_possible_truncation)]
fn whole_seconds(fraction: f64) -> Option<i64> {
    // MAX_NUMERIC_DATE is below 2^53, so it and every whole number up to it are exact in f64,
    // and the range check makes the final conversion exact rather than saturating.
    let in_range = fraction.is_finite() && (0.0..=MAX_NUMERIC_DATE as f64).contains(&fraction);
    in_range.then(|| fraction.floor() as i64)
}

fn check_audience(
    claims: &Map<String, Value>,
    provider: &dyn Expectations,
) -> Result<(), Rejection> {
    let accepted = |audience: &str| provider.audiences().iter().any(|own| own == audience);
    match claims.get("aud") {
        None => Err(Rejection::MissingClaim("aud".to_owned())),
        Some(Value::String(audience)) => {
            if accepted(audience) {
                Ok(())
            } else {
                Err(Rejection::AudienceMismatch)
            }
        }
        Some(Value::Array(audiences)) => {
            let mut any_accepted = false;
            for audience in audiences {
                let audience = audience.as_str().ok_or(Rejection::InvalidClaim("aud"))?;
                any_accepted |= accepted(audience);
            }
            if any_accepted {
                Ok(())
            } else {
                Err(Rejection::AudienceMismatch)
            }
        }
        Some(_) => Err(Rejection::InvalidClaim("aud")),
    }
}

/// Verifies the signature with the candidate keys; the fingerprint of the key that verified.
fn check_signature(
    token: &UntrustedToken<'_>,
    keys: &KeySet,
    signatures: &dyn SignatureVerifier,
) -> Result<KeyFingerprint, Rejection> {
    let algorithm: Algorithm = token.header().algorithm;
    let key_id = token.header().key_id.as_deref();
    let mut candidates = keys.candidates(key_id).peekable();
    if key_id.is_some() && candidates.peek().is_none() {
        return Err(Rejection::UnknownKeyId);
    }
    let mut tried_any = false;
    for key in candidates.filter(|key| key.accepts(algorithm)) {
        tried_any = true;
        let verified = signature::verify_signature(
            signatures,
            algorithm,
            key,
            token.signing_input().as_bytes(),
            token.signature(),
        );
        if verified.is_ok() {
            return Ok(key.fingerprint);
        }
    }
    if tried_any {
        Err(Rejection::BadSignature)
    } else {
        Err(Rejection::NoCompatibleKey)
    }
}
