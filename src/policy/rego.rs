//! Rego policies in rules (`require.rego`), evaluated in the filter by the `regorus` crate —
//! only in the module built with the `rego` feature (`wasm_jwt_authn_rego.wasm`); the default
//! module refuses a configuration that has one, naming the module to use.
//!
//! The input is a superset of opa-envoy-plugin's, so policies written for it run unchanged
//! (apart from verifying the JWT themselves: the filter has done that, and hands over the
//! verified claims):
//!
//! ```json
//! {"attributes": {"request": {"http": {"method": "GET", "path": "/a?b=c", "host": "api",
//!                                      "headers": {"name": "value"}}},
//!                 "source": {"address": {"socketAddress": {"address": "192.0.2.1"}}}},
//!  "parsed_path": ["a"], "parsed_query": {"b": ["c"]},
//!  "token": {"issuer": "…", "claims": {…}, "scopes": ["…"]},
//!  "time_ns": 1800000000000000000}
//! ```
//!
//! `token` is `null` on an anonymous route. The result of the query is a boolean, or
//! opa-envoy's object: `allowed` (required), `headers` (on allow: set on the request for the
//! upstream; on deny: on the response), `http_status` (deny; default 403) and `body` (deny).
//! An undefined result denies. A policy that fails at run time denies too, as `rego_error`.

use std::fmt;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::base::time::UnixSeconds;
use crate::base::FieldError;
use crate::request::Request;

/// The query a rule evaluates unless it names another: opa-envoy-plugin's default decision.
pub const DEFAULT_QUERY: &str = "data.envoy.authz.allow";

/// A compiled policy and the rule it is asked for.
pub struct RegoPolicy {
    source: String,
    query: String,
    #[cfg(feature = "rego")]
    engine: std::cell::RefCell<regorus::Engine>,
}

impl fmt::Debug for RegoPolicy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RegoPolicy")
            .field("query", &self.query)
            .field("source_bytes", &self.source.len())
            .finish()
    }
}

impl Clone for RegoPolicy {
    fn clone(&self) -> RegoPolicy {
        RegoPolicy {
            source: self.source.clone(),
            query: self.query.clone(),
            #[cfg(feature = "rego")]
            engine: std::cell::RefCell::new(self.engine.borrow().clone()),
        }
    }
}

/// Two policies are the same when their text and query are.
impl PartialEq for RegoPolicy {
    fn eq(&self, other: &RegoPolicy) -> bool {
        self.source == other.source && self.query == other.query
    }
}

impl Eq for RegoPolicy {}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegoDecision {
    /// Let the request through, with these headers set on it for the upstream.
    Allow { headers: Vec<(String, String)> },
    /// Answer in the filter's place.
    Deny {
        status: u32,
        headers: Vec<(String, String)>,
        body: String,
    },
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRego {
    policy: String,
    query: Option<String>,
}

/// Compiles the policy at configure time: a policy that does not parse rejects the
/// configuration.
pub(crate) fn compile(field: &str, raw: RawRego) -> Result<RegoPolicy, FieldError> {
    let query = raw.query.unwrap_or_else(|| DEFAULT_QUERY.to_owned());
    let plain_path = query.starts_with("data.")
        && query.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if !plain_path {
        return Err((
            format!("{field}.query"),
            format!("{query:?}: a rule path like `data.envoy.authz.allow`"),
        ));
    }
    #[cfg(feature = "rego")]
    {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(format!("{field}.policy"), raw.policy.clone())
            .map_err(|error| {
                (
                    format!("{field}.policy"),
                    format!("the policy does not compile: {error}"),
                )
            })?;
        Ok(RegoPolicy {
            source: raw.policy,
            query,
            engine: std::cell::RefCell::new(engine),
        })
    }
    #[cfg(not(feature = "rego"))]
    {
        let _ = raw.policy;
        Err((
            field.to_owned(),
            "this module is built without Rego: load wasm_jwt_authn_rego.wasm for rules with `rego`"
                .to_owned(),
        ))
    }
}

/// The verified token, as a policy sees it.
pub struct TokenInput<'a> {
    pub issuer: &'a str,
    pub claims: &'a Map<String, Value>,
}

/// The policy's input for `request` (see the module documentation).
pub fn input(
    request: &Request<'_>,
    host: Option<&str>,
    client: Option<std::net::IpAddr>,
    token: Option<TokenInput<'_>>,
    now: UnixSeconds,
) -> Value {
    let mut headers = Map::new();
    for (name, value) in request.headers {
        if name.starts_with(':') {
            continue;
        }
        // Repeated headers read as one, comma-joined, as Envoy's own external authorization does.
        match headers.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    let path = request.path_only();
    let parsed_path: Vec<String> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| percent_decode(segment, false))
        .collect();
    let mut parsed_query = Map::new();
    for pair in request
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let values = parsed_query
            .entry(percent_decode(name, true))
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = values {
            values.push(Value::String(percent_decode(value, true)));
        }
    }
    let token = token.map_or(Value::Null, |token| {
        json!({
            "issuer": token.issuer,
            "claims": token.claims,
            "scopes": crate::base::claims::scopes_of(token.claims),
        })
    });
    json!({
        "attributes": {
            "request": {"http": {
                "method": request.method,
                "path": request.path,
                "host": host,
                "headers": headers,
            }},
            "source": {"address": {"socketAddress": {
                "address": client.map(|address| address.to_string()),
            }}},
        },
        "parsed_path": parsed_path,
        "parsed_query": parsed_query,
        "token": token,
        "time_ns": now.saturating_mul(1_000_000_000),
    })
}

/// `%XX` sequences decoded (and `+` as a space in query strings); invalid sequences and
/// non-UTF-8 results kept as they were sent.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let hex = |offset: usize| {
            bytes
                .get(index.saturating_add(offset))
                .and_then(|digit| char::from(*digit).to_digit(16))
        };
        match (byte, hex(1), hex(2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(
                    u8::try_from(high.saturating_mul(16).saturating_add(low)).unwrap_or(b'?'),
                );
                index = index.saturating_add(3);
            }
            (b'+', _, _) if plus_is_space => {
                decoded.push(b' ');
                index = index.saturating_add(1);
            }
            _ => {
                decoded.push(byte);
                index = index.saturating_add(1);
            }
        }
    }
    String::from_utf8(decoded).unwrap_or_else(|_| text.to_owned())
}

impl RegoPolicy {
    /// Runs the policy on `input`. `Err` with a short reason when it fails at run time or
    /// answers something that is neither a boolean nor opa-envoy's object.
    pub fn evaluate(&self, input: &Value) -> Result<RegoDecision, String> {
        let result = self.run(input)?;
        decision_of(&result)
    }

    #[cfg(feature = "rego")]
    fn run(&self, input: &Value) -> Result<Value, String> {
        let mut engine = self
            .engine
            .try_borrow_mut()
            .map_err(|_| "the policy is already being evaluated".to_owned())?;
        let value = regorus::Value::from_json_str(&input.to_string())
            .map_err(|error| format!("input: {error}"))?;
        engine.set_input(value);
        match engine.eval_rule(self.query.clone()) {
            Ok(regorus::Value::Undefined) => Ok(Value::Null),
            Ok(value) => {
                let text = value
                    .to_json_str()
                    .map_err(|error| format!("result: {error}"))?;
                serde_json::from_str(&text).map_err(|error| format!("result: {error}"))
            }
            Err(error) => Err(format!("{error}")),
        }
    }

    #[cfg(not(feature = "rego"))]
    fn run(&self, _input: &Value) -> Result<Value, String> {
        Err("this module is built without Rego".to_owned())
    }
}

/// A boolean, opa-envoy's object, or nothing (undefined: deny).
fn decision_of(result: &Value) -> Result<RegoDecision, String> {
    let deny = |headers| RegoDecision::Deny {
        status: 403,
        headers,
        body: String::new(),
    };
    match result {
        Value::Null | Value::Bool(false) => Ok(deny(Vec::new())),
        Value::Bool(true) => Ok(RegoDecision::Allow {
            headers: Vec::new(),
        }),
        Value::Object(object) => {
            let allowed = object
                .get("allowed")
                .and_then(Value::as_bool)
                .ok_or("the result object has no boolean `allowed`")?;
            let headers = match object.get("headers") {
                None => Vec::new(),
                Some(Value::Object(headers)) => headers
                    .iter()
                    .map(|(name, value)| {
                        let value = value.as_str().ok_or("a header value is not a string")?;
                        checked_header(name, value)
                    })
                    .collect::<Result<Vec<_>, String>>()?,
                Some(_) => return Err("`headers` is not an object".to_owned()),
            };
            if allowed {
                return Ok(RegoDecision::Allow { headers });
            }
            let status = match object.get("http_status") {
                None => 403,
                Some(status) => status
                    .as_u64()
                    .and_then(|status| u32::try_from(status).ok())
                    .filter(|status| (400..=599).contains(status))
                    .ok_or("`http_status` is not a 4xx or 5xx status")?,
            };
            let body = match object.get("body") {
                None => String::new(),
                Some(Value::String(body)) => body.clone(),
                Some(_) => return Err("`body` is not a string".to_owned()),
            };
            Ok(RegoDecision::Deny {
                status,
                headers,
                body,
            })
        }
        _ => Err("the result is neither a boolean nor an object".to_owned()),
    }
}

/// A header a policy may set: a token name, not one the proxy or the filter owns, and a value
/// without control characters.
fn checked_header(name: &str, value: &str) -> Result<(String, String), String> {
    let lower = name.to_ascii_lowercase();
    let valid_name = !lower.is_empty()
        && lower
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
    let reserved = [
        "host",
        "authorization",
        "cookie",
        "content-length",
        "transfer-encoding",
        "connection",
    ];
    if !valid_name || reserved.contains(&lower.as_str()) {
        return Err(format!("the policy may not set header {name:?}"));
    }
    if value
        .bytes()
        .any(|byte| byte.is_ascii_control() && byte != b'\t')
    {
        return Err(format!("header {name:?} has a control character"));
    }
    Ok((lower, value.to_owned()))
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn results_map_to_decisions() {
        assert_eq!(
            decision_of(&json!(true)),
            Ok(RegoDecision::Allow { headers: vec![] })
        );
        for denied in [json!(false), Value::Null] {
            assert_eq!(
                decision_of(&denied),
                Ok(RegoDecision::Deny {
                    status: 403,
                    headers: vec![],
                    body: String::new()
                })
            );
        }
        assert_eq!(
            decision_of(&json!({"allowed": true, "headers": {"X-Policy": "ok"}})),
            Ok(RegoDecision::Allow {
                headers: vec![("x-policy".to_owned(), "ok".to_owned())]
            })
        );
        assert_eq!(
            decision_of(
                &json!({"allowed": false, "http_status": 451, "body": "no", "headers": {"x-why": "law"}})
            ),
            Ok(RegoDecision::Deny {
                status: 451,
                headers: vec![("x-why".to_owned(), "law".to_owned())],
                body: "no".to_owned()
            })
        );
        for bad in [
            json!(7),
            json!({"headers": {}}),
            json!({"allowed": false, "http_status": 200}),
            json!({"allowed": true, "headers": {"authorization": "Bearer x"}}),
            json!({"allowed": true, "headers": {"x-a": "line\nbreak"}}),
            json!({"allowed": true, "headers": {"x-a": 1}}),
        ] {
            assert!(decision_of(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_input_is_opa_envoys_and_more() {
        let headers = vec![
            (":authority".to_owned(), "api.example.com".to_owned()),
            ("x-a".to_owned(), "1".to_owned()),
            ("x-a".to_owned(), "2".to_owned()),
        ];
        let request = Request {
            method: "GET",
            path: "/people/al%20ice?tag=a+b&tag=c&empty",
            headers: &headers,
            source_address: None,
        };
        let claims = json!({"sub": "alice", "scope": "read write"});
        let claims = claims.as_object().unwrap();
        let input = input(
            &request,
            Some("api.example.com"),
            "192.0.2.1".parse().ok(),
            Some(TokenInput {
                issuer: "https://idp",
                claims,
            }),
            1_800_000_000,
        );
        assert_eq!(
            input,
            json!({
                "attributes": {
                    "request": {"http": {
                        "method": "GET",
                        "path": "/people/al%20ice?tag=a+b&tag=c&empty",
                        "host": "api.example.com",
                        "headers": {"x-a": "1,2"},
                    }},
                    "source": {"address": {"socketAddress": {"address": "192.0.2.1"}}},
                },
                "parsed_path": ["people", "al ice"],
                "parsed_query": {"tag": ["a b", "c"], "empty": [""]},
                "token": {"issuer": "https://idp", "claims": {"sub": "alice", "scope": "read write"},
                          "scopes": ["read", "write"]},
                "time_ns": 1_800_000_000_000_000_000_i64,
            })
        );
    }

    #[test]
    fn queries_are_rule_paths() {
        let raw = |query: &str| RawRego {
            policy: "package envoy.authz\nallow := true\n".to_owned(),
            query: Some(query.to_owned()),
        };
        for bad in ["allow", "data..x", "data.x[0]", "data.x; true"] {
            assert_eq!(compile("r", raw(bad)).unwrap_err().0, "r.query", "{bad}");
        }
    }

    #[cfg(feature = "rego")]
    #[test]
    fn policies_compile_and_decide() {
        let policy = compile(
            "r",
            RawRego {
                policy: r#"package envoy.authz
import rego.v1
default allow := false
allow if {
    input.attributes.request.http.method == "GET"
    glob.match("/people/*", ["/"], input.attributes.request.http.path)
    "guest" in input.token.claims.roles
}
"#
                .to_owned(),
                query: None,
            },
        )
        .unwrap();
        let request = |path| Request {
            method: "GET",
            path,
            headers: &[],
            source_address: None,
        };
        let claims = json!({"roles": ["guest"]});
        let token = || {
            Some(TokenInput {
                issuer: "i",
                claims: claims.as_object().unwrap(),
            })
        };
        let decide = |path, token| policy.evaluate(&input(&request(path), None, None, token, 0));
        assert_eq!(
            decide("/people/bob", token()),
            Ok(RegoDecision::Allow { headers: vec![] })
        );
        assert!(matches!(
            decide("/admin", token()),
            Ok(RegoDecision::Deny { status: 403, .. })
        ));
        assert!(matches!(
            decide("/people/bob", None),
            Ok(RegoDecision::Deny { .. })
        ));
        let broken = compile(
            "r",
            RawRego {
                policy: "package envoy.authz\nallow if {".to_owned(),
                query: None,
            },
        );
        assert_eq!(broken.unwrap_err().0, "r.policy");
    }
}
