//! Token introspection (RFC 7662): asking the identity provider whether a token is active.
//!
//! Two uses, one mechanism:
//! - **Opaque tokens.** A provider without keys vouches for tokens that are not JWTs through
//!   its introspection endpoint alone; the answer's members (`iss`, `aud`, `exp`, `scope`,
//!   `sub`, …) are checked like a JWT's claims and are what rules read.
//! - **Revocation checks.** A provider with keys and `introspection` verifies a JWT as always,
//!   then asks whether it is still active: a revoked token stops working within the cache time.
//!
//! This module is host-free: it builds the call ([`request`]), reads the answer
//! ([`read_response`]) and remembers answers ([`IntrospectionCache`]). The adapter dispatches
//! the call, at most one per token at a time, and parks the requests that wait for it.
//!
//! What is remembered, and how long:
//! - an active token until its `exp`, and at most `cache_seconds`: the window in which a
//!   revocation goes unnoticed;
//! - an inactive one for `negative_cache_seconds`: a client retrying a bad token costs one
//!   call per that many seconds, not one per request;
//! - every answer for the rest of the second it came in at least, since it is what decides the
//!   requests that waited for it;
//! - a failed call (the provider down, an unreadable answer) not at all: the requests waiting
//!   for it get `503`, and the next request asks again.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::base::fifo_map::FifoMap;
use crate::base::http::HttpUri;
use crate::base::ids::ProviderIndex;
use crate::base::time::UnixSeconds;

pub mod calls;

/// Defaults to 60 seconds: how long an active answer is trusted (never past the token's `exp`).
pub const DEFAULT_CACHE_SECONDS: u64 = 60;
/// Defaults to 10 seconds: how long an inactive answer is remembered.
pub const DEFAULT_NEGATIVE_CACHE_SECONDS: u64 = 10;
/// Introspection answers each worker remembers, across providers.
pub const CACHE_CAPACITY: usize = 10_000;
/// Largest introspection answer read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Validated settings of a provider's introspection endpoint. Defaults are in `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionSettings {
    pub endpoint: HttpUri,
    /// What the host dispatches the call to: an Envoy cluster name.
    pub upstream: String,
    /// The filter's own client credentials at the provider (RFC 6749 §2.3.1, HTTP Basic).
    pub client_id: String,
    pub client_secret: String,
    pub timeout_ms: u64,
    pub cache_seconds: u64,
    pub negative_cache_seconds: u64,
}

/// An HTTP POST the adapter should dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionCall {
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// The call asking about `token`: a form POST with the client's credentials in `Authorization:
/// Basic` (each form-urlencoded first, as RFC 6749 §2.3.1 says).
pub fn request(settings: &IntrospectionSettings, token: &str) -> IntrospectionCall {
    let credentials = format!(
        "{}:{}",
        form_encode(&settings.client_id),
        form_encode(&settings.client_secret)
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
    let body = format!("token={}&token_type_hint=access_token", form_encode(token));
    let uri = &settings.endpoint;
    IntrospectionCall {
        upstream: settings.upstream.clone(),
        headers: vec![
            (":method".to_owned(), "POST".to_owned()),
            (":path".to_owned(), uri.path.clone()),
            (":authority".to_owned(), uri.authority.clone()),
            (":scheme".to_owned(), uri.scheme().to_owned()),
            ("authorization".to_owned(), format!("Basic {basic}")),
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
            ("user-agent".to_owned(), "wasm-jwt-authn".to_owned()),
        ],
        body: body.into_bytes(),
        timeout_ms: settings.timeout_ms,
    }
}

/// `application/x-www-form-urlencoded`: unreserved characters as they are, the rest escaped.
fn form_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// What the provider said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspected {
    /// `active: true`, with the other members of the answer (for an opaque token: its claims).
    Active(Arc<Map<String, Value>>),
    /// `active: false`: revoked, expired, unknown — the provider does not say which.
    Inactive,
}

/// Why an introspection call gave no answer. The requests waiting for it get `503`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionError {
    /// The host could not dispatch the call, or no answer came in time.
    NoAnswer,
    /// The provider answered with a status other than 200 (e.g. `401`: the filter's client
    /// credentials are wrong).
    Status(u16),
    /// Not a JSON object with a boolean `active`, or larger than [`MAX_RESPONSE_BYTES`].
    Malformed,
}

impl IntrospectionError {
    pub fn describe(self) -> String {
        match self {
            IntrospectionError::NoAnswer => "no answer (timeout or connection failure)".to_owned(),
            IntrospectionError::Status(status) => format!("status {status}"),
            IntrospectionError::Malformed => "not an introspection answer".to_owned(),
        }
    }
}

/// Reads the provider's answer (RFC 7662 §2.2). `status` is `None` when the call failed.
pub fn read_response(status: Option<u16>, body: &[u8]) -> Result<Introspected, IntrospectionError> {
    match status {
        None | Some(503 | 504) => return Err(IntrospectionError::NoAnswer),
        Some(200) => {}
        Some(other) => return Err(IntrospectionError::Status(other)),
    }
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(IntrospectionError::Malformed);
    }
    let Ok(Value::Object(mut members)) = serde_json::from_slice::<Value>(body) else {
        return Err(IntrospectionError::Malformed);
    };
    match members.remove("active") {
        Some(Value::Bool(true)) => Ok(Introspected::Active(Arc::new(members))),
        Some(Value::Bool(false)) => Ok(Introspected::Inactive),
        // A missing or non-boolean `active` is no answer: never read as active.
        _ => Err(IntrospectionError::Malformed),
    }
}

#[derive(Debug)]
struct Entry {
    /// Whose answer it is: a token asked about for one provider is unknown to the others.
    provider: ProviderIndex,
    answer: Introspected,
    /// Trusted before this second.
    until: UnixSeconds,
}

/// Answers remembered per provider and token (the whole token is the key, as in the token
/// cache). Bounded: the oldest answer is evicted first.
#[derive(Debug)]
pub struct IntrospectionCache {
    entries: FifoMap<Entry>,
}

impl IntrospectionCache {
    pub fn new(capacity: usize) -> IntrospectionCache {
        IntrospectionCache {
            entries: FifoMap::new(capacity),
        }
    }

    /// The answer about `token` still trusted at `now`.
    pub fn get(
        &self,
        provider: ProviderIndex,
        token: &str,
        now: UnixSeconds,
    ) -> Option<&Introspected> {
        self.entries
            .get(token)
            .filter(|entry| entry.provider == provider && now < entry.until)
            .map(|entry| &entry.answer)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remembers `answer` about `token`, received at `now`, as long as `settings` allow.
    pub fn insert(
        &mut self,
        provider: ProviderIndex,
        token: &str,
        answer: Introspected,
        settings: &IntrospectionSettings,
        now: UnixSeconds,
    ) {
        let seconds = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let until = match &answer {
            Introspected::Active(members) => {
                let trusted = now.saturating_add(seconds(settings.cache_seconds));
                let expires = members.get("exp").and_then(Value::as_i64);
                expires.map_or(trusted, |expires| trusted.min(expires))
            }
            Introspected::Inactive => now.saturating_add(seconds(settings.negative_cache_seconds)),
        };
        // At least for the rest of this second: the answer is how the requests that waited for
        // it are decided (an active answer past its `exp` is then refused as expired).
        let until = until.max(now.saturating_add(1));
        self.entries.insert(
            token,
            Entry {
                provider,
                answer,
                until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    const T0: i64 = 1_800_000_000;

    #[test]
    fn failures_are_described_for_the_logs() {
        assert_eq!(
            read_response(None, b"").map_err(IntrospectionError::describe),
            Err("no answer (timeout or connection failure)".to_owned())
        );
        assert_eq!(
            read_response(Some(401), b"").map_err(IntrospectionError::describe),
            Err("status 401".to_owned())
        );
        assert_eq!(
            read_response(Some(200), b"[]").map_err(IntrospectionError::describe),
            Err("not an introspection answer".to_owned())
        );
    }

    fn settings() -> IntrospectionSettings {
        IntrospectionSettings {
            endpoint: HttpUri::parse("https://idp.example.com/oauth/introspect").unwrap(),
            upstream: "idp".to_owned(),
            client_id: "gate way".to_owned(),
            client_secret: "s3cr:t/+".to_owned(),
            timeout_ms: 2_000,
            cache_seconds: 60,
            negative_cache_seconds: 10,
        }
    }

    fn active(members: serde_json::Value) -> Introspected {
        let serde_json::Value::Object(members) = members else {
            panic!("an object")
        };
        Introspected::Active(Arc::new(members))
    }

    #[test]
    fn the_call_is_a_form_post_with_basic_client_credentials() {
        let call = request(&settings(), "ab+c/d=");
        assert_eq!(call.upstream, "idp");
        assert_eq!(call.timeout_ms, 2_000);
        let header = |name: &str| {
            call.headers
                .iter()
                .find(|(header, _)| header == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(header(":method"), Some("POST"));
        assert_eq!(header(":path"), Some("/oauth/introspect"));
        assert_eq!(header(":authority"), Some("idp.example.com"));
        assert_eq!(header(":scheme"), Some("https"));
        assert_eq!(
            header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        // base64("gate%20way:s3cr%3At%2F%2B")
        assert_eq!(
            header("authorization"),
            Some("Basic Z2F0ZSUyMHdheTpzM2NyJTNBdCUyRiUyQg==")
        );
        assert_eq!(
            call.body,
            b"token=ab%2Bc%2Fd%3D&token_type_hint=access_token".to_vec()
        );
    }

    #[test]
    fn answers_are_active_inactive_or_no_answer() {
        assert_eq!(
            read_response(Some(200), br#"{"active":true,"sub":"u1","scope":"read"}"#),
            Ok(active(json!({"sub": "u1", "scope": "read"})))
        );
        assert_eq!(
            read_response(Some(200), br#"{"active":false}"#),
            Ok(Introspected::Inactive)
        );
        for (status, body, error) in [
            (None, &b""[..], IntrospectionError::NoAnswer),
            (
                Some(503),
                b"upstream connect error",
                IntrospectionError::NoAnswer,
            ),
            (Some(504), b"", IntrospectionError::NoAnswer),
            (
                Some(401),
                br#"{"error":"invalid_client"}"#,
                IntrospectionError::Status(401),
            ),
            (
                Some(200),
                br#"{"active":"true"}"#,
                IntrospectionError::Malformed,
            ),
            (Some(200), br#"{"sub":"u1"}"#, IntrospectionError::Malformed),
            (Some(200), br#"[true]"#, IntrospectionError::Malformed),
            (Some(200), b"<html>", IntrospectionError::Malformed),
        ] {
            assert_eq!(
                read_response(status, body),
                Err(error),
                "{status:?} {body:?}"
            );
        }
        let huge = format!(
            r#"{{"active":true,"pad":"{}"}}"#,
            "x".repeat(MAX_RESPONSE_BYTES)
        );
        assert_eq!(
            read_response(Some(200), huge.as_bytes()),
            Err(IntrospectionError::Malformed)
        );
    }

    #[test]
    fn active_answers_are_trusted_until_exp_or_cache_seconds_inactive_briefly() {
        let mut cache = IntrospectionCache::new(10);
        let settings = settings();
        cache.insert(
            ProviderIndex::new(0),
            "long",
            active(json!({"exp": T0 + 3_600})),
            &settings,
            T0,
        );
        cache.insert(
            ProviderIndex::new(0),
            "short",
            active(json!({"exp": T0 + 5})),
            &settings,
            T0,
        );
        cache.insert(
            ProviderIndex::new(0),
            "no-exp",
            active(json!({})),
            &settings,
            T0,
        );
        cache.insert(
            ProviderIndex::new(0),
            "revoked",
            Introspected::Inactive,
            &settings,
            T0,
        );
        assert!(cache.get(ProviderIndex::new(0), "long", T0 + 59).is_some());
        assert!(
            cache.get(ProviderIndex::new(0), "long", T0 + 60).is_none(),
            "cache_seconds bounds it"
        );
        assert!(cache.get(ProviderIndex::new(0), "short", T0 + 4).is_some());
        assert!(
            cache.get(ProviderIndex::new(0), "short", T0 + 5).is_none(),
            "exp bounds it"
        );
        assert!(cache
            .get(ProviderIndex::new(0), "no-exp", T0 + 59)
            .is_some());
        assert_eq!(
            cache.get(ProviderIndex::new(0), "revoked", T0 + 9),
            Some(&Introspected::Inactive)
        );
        assert!(cache
            .get(ProviderIndex::new(0), "revoked", T0 + 10)
            .is_none());
        assert!(
            cache.get(ProviderIndex::new(1), "long", T0).is_none(),
            "answers are per provider"
        );
        assert!(
            cache.get(ProviderIndex::new(0), "lon", T0).is_none(),
            "and per whole token"
        );
        // Every answer serves the requests that waited for it, this second at least: an
        // active answer already past its `exp` (the decision refuses it as expired).
        cache.insert(
            ProviderIndex::new(0),
            "expired",
            active(json!({"exp": T0 - 5})),
            &settings,
            T0,
        );
        assert!(cache.get(ProviderIndex::new(0), "expired", T0).is_some());
        assert!(cache
            .get(ProviderIndex::new(0), "expired", T0 + 1)
            .is_none());
    }

    #[test]
    fn the_cache_stays_bounded_oldest_out_first() {
        let mut cache = IntrospectionCache::new(3);
        let settings = settings();
        for round in 0..5 {
            for token in ["a", "b", "c", "d"] {
                cache.insert(
                    ProviderIndex::new(0),
                    token,
                    Introspected::Inactive,
                    &settings,
                    T0 + round,
                );
            }
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(ProviderIndex::new(0), "a", T0 + 4).is_none());
        assert!(cache.get(ProviderIndex::new(0), "d", T0 + 4).is_some());
        assert!(cache.entries.queue_len() <= 6);
        let mut disabled = IntrospectionCache::new(0);
        disabled.insert(
            ProviderIndex::new(0),
            "a",
            Introspected::Inactive,
            &settings,
            T0,
        );
        assert!(disabled.is_empty());
    }
}
