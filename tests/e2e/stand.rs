//! A test stand: one Envoy with the filter in front of one echo upstream, and the bookkeeping
//! that lets one `#[test]` run many scenarios against it.
//!
//! Each request is sent with a unique `x-e2e-id` and measured: the filter's counters before and
//! after, and what the upstream received. The assertions ([`Exchange::allowed`],
//! [`Exchange::denied`]) check the whole outcome — status, challenge, body, upstream view, the
//! one counter that moved — and note the access-log line the request must have produced;
//! [`Stand::finish`] checks those lines all at once (Envoy flushes the file every 50 ms).
//! A failing scenario does not stop the others: `finish` reports every failure.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasm_jwt_authn::testing::decision::Reason;

use super::envoy::{Envoy, Options, REQUEST_ID_HEADER};
use super::http::Response;
use super::upstream::{EchoUpstream, ReceivedRequest};

pub const REALM: &str = "wasm-jwt-authn";

pub struct Stand {
    // Envoy is dropped first: its upstream connections close and the echo threads end.
    pub envoy: Envoy,
    pub upstream: EchoUpstream,
    scenario: RefCell<String>,
    sequence: Cell<u32>,
    expected_log: RefCell<Vec<LogLine>>,
    failures: RefCell<Vec<String>>,
}

/// The access-log line a request must produce; `-` where the filter set no value. `rule` is
/// only compared when the expectation names one ([`Exchange::decided_by`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub id: String,
    pub status: String,
    pub decision: String,
    pub subject: String,
    pub reason: String,
    pub rule: Option<String>,
}

impl LogLine {
    fn parse(line: &str) -> Option<LogLine> {
        let mut fields = BTreeMap::new();
        for field in line.split(' ') {
            let (name, value) = field.split_once('=')?;
            fields.insert(name, value.to_owned());
        }
        let mut take = |name: &str| fields.remove(name);
        Some(LogLine {
            id: take("id")?,
            status: take("status")?,
            decision: take("decision")?,
            subject: take("subject")?,
            reason: take("reason")?,
            rule: take("rule"),
        })
    }

    /// `logged` is this expected line: every field, and the rule when one is expected.
    fn is_met_by(&self, logged: &LogLine) -> bool {
        let LogLine { rule, .. } = self;
        let without_rule = |line: &LogLine| LogLine {
            rule: None,
            ..line.clone()
        };
        without_rule(self) == without_rule(logged) && (rule.is_none() || *rule == logged.rule)
    }
}

impl Stand {
    pub fn start(name: &str, plugin_configuration: &Value) -> Stand {
        Stand::start_with(name, plugin_configuration, &Options::default())
    }

    pub fn start_with(name: &str, plugin_configuration: &Value, options: &Options) -> Stand {
        let upstream = EchoUpstream::start();
        let envoy = Envoy::start(
            name,
            &plugin_configuration.to_string(),
            upstream.port(),
            options,
        );
        Stand {
            envoy,
            upstream,
            scenario: RefCell::new(String::new()),
            sequence: Cell::new(0),
            expected_log: RefCell::new(Vec::new()),
            failures: RefCell::new(Vec::new()),
        }
    }

    /// Runs one named scenario; a panic inside is recorded as its failure and the next runs.
    pub fn scenario(&self, name: &str, body: impl FnOnce()) {
        *self.scenario.borrow_mut() = name.to_owned();
        self.sequence.set(0);
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(body)) {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| {
                    payload
                        .downcast_ref::<&str>()
                        .map(|text| (*text).to_owned())
                })
                .unwrap_or_else(|| "(non-text panic)".to_owned());
            self.failures
                .borrow_mut()
                .push(format!("{name}: {message}"));
        }
    }

    /// `GET target` with `headers` through Envoy, measured.
    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> Exchange<'_> {
        self.send("GET", target, headers, &[])
    }

    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Exchange<'_> {
        let sequence = self.sequence.get() + 1;
        self.sequence.set(sequence);
        let id = format!("{}#{sequence}", self.scenario.borrow());
        let mut headers = headers.to_vec();
        headers.push((REQUEST_ID_HEADER, &id));
        // Anything still recorded belongs to an earlier, failed scenario.
        self.upstream.take();
        let before = self.envoy.counters();
        let response = self.envoy.send(method, target, &headers, body);
        let after = self.envoy.counters();
        let (cache_changes, counter_changes) = after
            .iter()
            // Fetches of keys and address lists run in the background, and introspection calls
            // serve many requests: they count calls, not requests.
            .filter(|(name, _)| {
                !["jwks.", "address_lists.", "introspection."]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
            })
            .filter_map(|(name, value)| {
                let earlier = before.get(name).copied().unwrap_or(0);
                (*value != earlier)
                    .then(|| (name.clone(), i128::from(*value) - i128::from(earlier)))
            })
            .partition(|(name, _)| name.starts_with("token_cache."));
        Exchange {
            stand: self,
            id: id.clone(),
            target: target.to_owned(),
            response,
            upstream: self.upstream.take(),
            counter_changes,
            cache_changes,
        }
    }

    /// Notes the access-log line request `id` must produce (checked by [`Stand::finish`]).
    pub fn expect_log(&self, id: &str, status: u16, decision: &str, subject: &str, reason: &str) {
        self.expected_log.borrow_mut().push(LogLine {
            id: id.to_owned(),
            status: status.to_string(),
            decision: decision.to_owned(),
            subject: subject.to_owned(),
            reason: reason.to_owned(),
            rule: None,
        });
    }

    /// The access-log line of request `id` must also name `rule` as the deciding rule.
    pub fn expect_rule(&self, id: &str, rule: &str) {
        let mut expected = self.expected_log.borrow_mut();
        let line = expected.iter_mut().rev().find(|line| line.id == id);
        match line {
            Some(line) => line.rule = Some(rule.to_owned()),
            None => panic!("no access-log line is expected for {id} yet: assert the outcome first"),
        }
    }

    /// Checks the access log against every noted line, then fails with every scenario failure.
    pub fn finish(self) {
        let expected = self.expected_log.borrow().clone();
        let deadline = Instant::now() + Duration::from_secs(3);
        let logged = loop {
            let logged: BTreeMap<String, LogLine> = self
                .envoy
                .access_log()
                .lines()
                .filter_map(LogLine::parse)
                .map(|line| (line.id.clone(), line))
                .collect();
            if expected.iter().all(|line| logged.contains_key(&line.id))
                || Instant::now() > deadline
            {
                break logged;
            }
            thread::sleep(Duration::from_millis(50));
        };
        for line in &expected {
            match logged.get(&line.id) {
                Some(found) if line.is_met_by(found) => {}
                Some(found) => self.failures.borrow_mut().push(format!(
                    "access log for {}: expected {line:?}, found {found:?}",
                    line.id
                )),
                None => self
                    .failures
                    .borrow_mut()
                    .push(format!("access log has no line for {}", line.id)),
            }
        }
        let failures = self.failures.borrow();
        assert!(
            failures.is_empty(),
            "{} failure(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

/// One measured request: the response, what reached the upstream, which counters moved.
pub struct Exchange<'a> {
    stand: &'a Stand,
    pub id: String,
    target: String,
    pub response: Response,
    pub upstream: Vec<ReceivedRequest>,
    /// Counter (name without the `wasmcustom.wasm_jwt_authn.` prefix) → change; the token
    /// cache's counters are apart, in `cache_changes`, as they move on top of `allowed`.
    pub counter_changes: BTreeMap<String, i128>,
    pub cache_changes: BTreeMap<String, i128>,
}

impl Exchange<'_> {
    /// A token-authenticated request went through as `subject`: `200` from the upstream, which
    /// got exactly this one request; `allowed` went up by one and nothing else moved.
    pub fn allowed(&self, subject: &str) -> ReceivedRequest {
        let received = self.forwarded("allowed");
        self.stand.expect_log(&self.id, 200, "allow", subject, "-");
        received
    }

    /// An anonymous-route request went through: as [`Exchange::allowed`], counted as
    /// `allowed_anonymous`, with no subject.
    pub fn allowed_anonymously(&self) -> ReceivedRequest {
        let received = self.forwarded("allowed_anonymous");
        self.stand
            .expect_log(&self.id, 200, "allow_anonymous", "-", "-");
        received
    }

    fn forwarded(&self, counter: &str) -> ReceivedRequest {
        assert_eq!(
            self.response.status,
            200,
            "{}: expected the upstream's 200, got {} {}",
            self.target,
            self.response.status,
            self.response.text()
        );
        assert_eq!(
            self.upstream.len(),
            1,
            "{}: the upstream should have received exactly this request",
            self.target
        );
        self.counters_moved(&[counter]);
        // The echo's answer is what the client got: the full round trip went through.
        assert_eq!(
            self.response.json()["path"],
            json!(self.upstream[0].path),
            "response body is the echo"
        );
        self.upstream[0].clone()
    }

    /// The filter refused the request for `reason` with its exact response, and the upstream
    /// received nothing.
    pub fn denied(&self, reason: &str) {
        self.denied_with(reason, None);
    }

    /// [`Exchange::denied`] for `missing_claim`/`invalid_claim`: the body names the claim.
    pub fn denied_for_claim(&self, reason: &str, claim: &str) {
        self.denied_with(reason, Some(claim));
    }

    fn denied_with(&self, reason: &str, claim: Option<&str>) {
        let description = description_of(reason);
        // RFC 6750 §3: no error code when no token was sent; `invalid_request` for a request
        // the filter cannot judge; `invalid_token` for every problem with the token itself.
        let (status, error) = match reason {
            "missing_token" => (401, None),
            "multiple_tokens" | "unnormalized_path" => (400, Some("invalid_request")),
            _ => (401, Some("invalid_token")),
        };
        let response = &self.response;
        self.expect_status(status, reason);
        let challenge = match error {
            None => format!("Bearer realm=\"{REALM}\""),
            Some(error) => format!(
                "Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{description}\""
            ),
        };
        assert_eq!(
            response.header("www-authenticate"),
            Some(challenge.as_str())
        );
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let mut body = json!({
            "error": error.unwrap_or("unauthorized"),
            "reason": reason,
            "description": description,
        });
        if let Some(claim) = claim {
            body["claim"] = json!(claim);
        }
        self.refused(status, reason, &body);
    }

    fn expect_status(&self, status: u16, reason: &str) {
        let response = &self.response;
        assert_eq!(
            response.status,
            status,
            "{}: expected {status} for {reason}, got {} {}",
            self.target,
            response.status,
            response.text()
        );
    }

    /// The end of every refusal: exactly `body`, nothing reached the upstream, `denied.<reason>`
    /// counted, the access-log line noted.
    fn refused(&self, status: u16, reason: &str, body: &Value) {
        assert_eq!(self.response.json(), *body, "response body");
        assert!(
            self.upstream.is_empty(),
            "{}: a denied request reached the upstream: {:?}",
            self.target,
            self.upstream
        );
        self.counters_moved(&[&format!("denied.{reason}")]);
        self.stand.expect_log(&self.id, status, "deny", "-", reason);
    }

    /// A valid token the route's `require` turned away: `403` with the exact challenge (only
    /// `insufficient_scope` has one) and body, whose `detail` is the reason's own member
    /// (`scope` or `claim`); nothing reached the upstream; `denied.<reason>` counted, logged.
    pub fn forbidden(
        &self,
        reason: &str,
        rule: &str,
        challenge: Option<&str>,
        detail: Option<(&str, Value)>,
    ) {
        let error = if reason == "insufficient_scope" {
            "insufficient_scope"
        } else {
            "forbidden"
        };
        let extra = detail.map_or_else(|| json!({}), |(name, value)| json!({ name: value }));
        self.refused_by_rule(403, error, reason, rule, challenge, &extra);
    }

    /// An RFC 9470 step-up: `401` with exactly `challenge`, the body's `reason`, `description`
    /// and the members in `extra` (`acr_values`, `max_age`); nothing reached the upstream.
    pub fn stepped_up(&self, reason: &str, rule: &str, challenge: &str, extra: &Value) {
        let error = "insufficient_user_authentication";
        self.refused_by_rule(401, error, reason, rule, Some(challenge), extra);
    }

    /// A denial `rule` made: `status`, exactly `challenge`, a JSON body of `error`, `reason`,
    /// its description, `rule` and the members of `extra`; nothing reached the upstream;
    /// `denied.<reason>` counted; the access log names the rule.
    fn refused_by_rule(
        &self,
        status: u16,
        error: &str,
        reason: &str,
        rule: &str,
        challenge: Option<&str>,
        extra: &Value,
    ) {
        let description = description_of(reason);
        let response = &self.response;
        self.expect_status(status, reason);
        assert_eq!(response.header("www-authenticate"), challenge);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let mut body = json!({
            "error": error,
            "reason": reason,
            "description": description,
            "rule": rule,
        });
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        self.refused(status, reason, &body);
        self.decided_by(rule);
    }

    /// `503` for want of something fetched at run time (`reason`: `keys_unavailable`,
    /// `address_list_unavailable`), with `retry-after` and the exact body (naming `rule` when a
    /// rule needed it); nothing reached the upstream; `denied.<reason>` counted and logged.
    pub fn unavailable(&self, reason: &str, rule: Option<&str>) {
        let response = &self.response;
        self.expect_status(503, reason);
        assert_eq!(response.header("retry-after"), Some("5"));
        assert_eq!(response.header("www-authenticate"), None);
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let mut body = json!({
            "error": "temporarily_unavailable",
            "reason": reason,
            "description": description_of(reason),
        });
        if let Some(rule) = rule {
            body["rule"] = json!(rule);
        }
        self.refused(503, reason, &body);
        if let Some(rule) = rule {
            self.decided_by(rule);
        }
    }

    /// After the outcome's assertion: the rule that decided, as the access log must show it.
    pub fn decided_by(&self, rule: &str) {
        self.stand.expect_rule(&self.id, rule);
    }

    /// Exactly these counters went up by one, and no other counter of the filter moved.
    pub fn counters_moved(&self, counters: &[&str]) {
        let expected: BTreeMap<String, i128> = counters
            .iter()
            .map(|name| ((*name).to_owned(), 1))
            .collect();
        assert_eq!(
            self.counter_changes, expected,
            "{}: counter changes (wasmcustom.wasm_jwt_authn.*)",
            self.target
        );
        // The token cache counts allowed tokens only, each as a hit or a miss (or not at all
        // with the cache off).
        let cache_expected = if counters == ["allowed"] {
            self.cache_changes.len() <= 1 && self.cache_changes.values().all(|change| *change == 1)
        } else {
            self.cache_changes.is_empty()
        };
        assert!(
            cache_expected,
            "{}: token cache counter changes {:?}",
            self.target, self.cache_changes
        );
    }
}

/// The filter's description of `reason`, as its deny bodies carry it.
fn description_of(reason: &str) -> &'static str {
    Reason::ALL
        .iter()
        .find(|known| known.as_str() == reason)
        .unwrap_or_else(|| panic!("{reason:?} is not a deny reason of the filter"))
        .description()
}
