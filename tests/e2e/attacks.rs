//! The attack catalog, end to end: every case of `tests/e2e/attacks/catalog.rs` crafted by
//! `tests/e2e/attacks/forge.rs` and sent through one real Envoy running the built `.wasm`.
//!
//! Each case asserts one exact outcome — the status and `reason` of the denial, or that the
//! request reached the upstream (with exactly the identity headers it should carry) — plus
//! everything around it: the `WWW-Authenticate` challenge and JSON body, the one counter that
//! moved, nothing reaching the upstream on a denial, the access-log line, and no connection to
//! the loopback listener that `jku`/`x5u` point at. Configuration-time cases (unusable keys in a
//! JWKS) are checked in Envoy's log (the key skipped, with its reason) and by Envoys that must
//! refuse to start. The suite prints a table (case, expected, got) and fails on any mismatch.
//!
//! Needs `ENVOY_BIN` and `WASM_JWT_AUTHN_WASM`, like `tests/e2e/filter.rs`; see SECURITY.md for what
//! each group means.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod canary;
mod catalog;
mod forge;
mod keys;

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wasm_jwt_authn::testing::decision::Reason;

use crate::envoy::{Envoy, Options};
use crate::stand::{Exchange, Stand, REALM};
use crate::support::TestKey;
use crate::{envoy, support};
use canary::Canary;
use catalog::{Case, ConfigCase, Context, Expect, Group};
use forge::{AT_ISSUER, AUDIENCE, ES_ONLY_ISSUER, MAIN_ISSUER};
use keys::{JwkEntry, Load, Signing};

/// One line of the report.
struct Row {
    group: &'static str,
    name: String,
    expected: String,
    got: String,
    ok: bool,
}

impl Row {
    fn new(group: &'static str, name: &str, expected: String, got: String) -> Row {
        let ok = expected == got;
        Row {
            group,
            name: name.to_owned(),
            expected,
            got,
            ok,
        }
    }
}

/// Three providers: `main` (every algorithm, the key set of `keys::main_key_set`, claim
/// headers), `es_only` (ES256 only, the only provider of `/es-only/`), and `at_only`
/// (`token_types: ["at+jwt"]`). No rule matches other paths, so they need a valid token from
/// any provider.
fn configuration(main_keys: &[JwkEntry], crypto: Crypto) -> Value {
    let main_keys: Vec<Value> = main_keys.iter().map(|entry| entry.jwk.clone()).collect();
    let mut at_key = Signing::Derived(0x41).jwk();
    at_key["kid"] = json!("at-key");
    json!({
        "providers": [
            {
                "name": "main",
                "issuer": MAIN_ISSUER,
                "audiences": [AUDIENCE],
                "jwks": {"inline": {"keys": main_keys}},
                "claims_to_headers": [
                    {"claim": ["sub"], "header": "x-jwt-sub"},
                    {"claim": ["name"], "header": "x-jwt-name"},
                    {"claim": ["roles"], "header": "x-jwt-roles"}
                ]
            },
            {
                "name": "es_only",
                "issuer": ES_ONLY_ISSUER,
                "audiences": [AUDIENCE],
                "algorithms": ["ES256"],
                "jwks": {"inline": support::jwks(&[TestKey::Rsa2048, TestKey::P256])}
            },
            {
                "name": "at_only",
                "issuer": AT_ISSUER,
                "audiences": [AUDIENCE],
                "token_types": ["at+jwt"],
                "jwks": {"inline": {"keys": [at_key]}}
            }
        ],
        "rules": [{"match": {"path_prefix": "/es-only"}, "providers": ["es_only"]}],
        "crypto": crypto.setting(),
        "token_cache": {"max_entries": crypto.token_cache_entries()}
    })
}

/// The two ways the suite runs: the host's crypto with the token cache on (the defaults), and
/// the portable code with the cache off. Both must give every case the same outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crypto {
    HostWithCache,
    PortableWithoutCache,
}

impl Crypto {
    fn setting(self) -> &'static str {
        match self {
            Crypto::HostWithCache => "auto",
            Crypto::PortableWithoutCache => "portable",
        }
    }

    fn token_cache_entries(self) -> u64 {
        match self {
            Crypto::HostWithCache => 1000,
            Crypto::PortableWithoutCache => 0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Crypto::HostWithCache => "host crypto, token cache",
            Crypto::PortableWithoutCache => "portable crypto, no cache",
        }
    }

    /// The `wasm_jwt_authn.crypto.host` gauge this mode must show.
    fn host_gauge(self) -> u64 {
        match self {
            Crypto::HostWithCache => 1,
            Crypto::PortableWithoutCache => 0,
        }
    }
}

#[test]
fn attacks_are_refused_through_envoy() {
    let started = Instant::now();
    let canary = Canary::start();
    let context = Context {
        canary_url: canary.url("/.well-known/jwks.json"),
    };
    let cases = catalog::catalog(&context);
    // Envoys that must refuse their configuration start and exit beside the main one.
    let refusals = thread::spawn(|| run_refusals(catalog::refused_configurations()));
    let mut rows = Vec::new();
    for crypto in [Crypto::HostWithCache, Crypto::PortableWithoutCache] {
        let mode_rows = run_catalog(&canary, &cases, crypto);
        rows.extend(mode_rows.into_iter().map(|mut row| {
            row.name = format!("{} [{}]", row.name, crypto.label());
            row
        }));
    }
    rows.extend(refusals.join().expect("the refusal runner"));
    rows.push(Row::new(
        "suite",
        "the loopback jku/x5u listener was never contacted",
        "0 connections".to_owned(),
        format!("{} connections", canary.connections()),
    ));
    print_report(&rows, started.elapsed());
    let mismatches: Vec<String> = rows
        .iter()
        .filter(|row| !row.ok)
        .map(|row| {
            format!(
                "[{}] {}: expected {}, got {}",
                row.group, row.name, row.expected, row.got
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} cases did not get the expected outcome:\n  {}",
        mismatches.len(),
        rows.len(),
        mismatches.join("\n  ")
    );
}

/// Runs every case through one Envoy whose filter verifies signatures as `crypto` says.
fn run_catalog(canary: &Canary, cases: &[Case], crypto: Crypto) -> Vec<Row> {
    let key_set = keys::main_key_set();
    let stand = Stand::start("attacks", &configuration(&key_set, crypto));
    let mut rows = vec![Row::new(
        "suite",
        "the signature backend in force",
        format!("crypto.host = {}", crypto.host_gauge()),
        format!(
            "crypto.host = {}",
            stand
                .envoy
                .stat("wasmcustom.wasm_jwt_authn.crypto.host")
                .unwrap_or(u64::MAX)
        ),
    )];
    rows.extend(
        cases
            .iter()
            .map(|case| run_case(&stand, canary, case, crypto)),
    );
    let log = stand.envoy.log();
    rows.extend(key_rows(&log, &key_set));
    rows.push(Row::new(
        "suite",
        "the Wasm VM never panicked",
        "no panic".to_owned(),
        if log.contains("panicked") {
            "panicked (see Envoy's log)".to_owned()
        } else {
            "no panic".to_owned()
        },
    ));
    rows.push(Row::new(
        "suite",
        "a valid token is still accepted after the catalog",
        "200 allow".to_owned(),
        {
            let token = forge::Spec::valid("ES256").mint();
            let authorization = format!("Bearer {token}");
            let exchange = stand.get("/attacks", &[("authorization", &authorization)]);
            judge(&exchange, &catalog::allow(), &stand, crypto)
        },
    ));

    rows.push(forged_log_lines_row(&stand));
    // The access-log lines noted while judging (decision, subject, reason per request).
    let access_log = panic::catch_unwind(AssertUnwindSafe(|| stand.finish()));
    rows.push(Row::new(
        "suite",
        "every request's access-log line has its decision, subject and reason",
        "as expected".to_owned(),
        match access_log {
            Ok(()) => "as expected".to_owned(),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "access log check failed".to_owned()),
        },
    ));
    rows
}

/// Every access-log line starts with `id=` (the bootstrap's format); any other line was forged
/// by a value the filter put into filter state (the catalog's `sub` with CR LF is the one that
/// can). Envoy writes filter state unescaped with `:PLAIN`, as `envoy/envoy.yaml` logs it.
fn forged_log_lines_row(stand: &Stand) -> Row {
    // Envoy flushes the access log every 50 ms: give it time to write the last lines.
    thread::sleep(Duration::from_millis(200));
    let forged: Vec<String> = stand
        .envoy
        .access_log()
        .lines()
        .filter(|line| !line.starts_with("id="))
        .map(str::to_owned)
        .collect();
    Row::new(
        "suite",
        "no access-log line forged by a claim (sub with CR LF)",
        "no forged line".to_owned(),
        if forged.is_empty() {
            "no forged line".to_owned()
        } else {
            format!("forged line(s) {forged:?}")
        },
    )
}

/// Waits, if need be, until early in a clock second, so a case one second from a time limit
/// is minted and judged within the same second.
fn align_to_second() {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let nanos = since_epoch.subsec_nanos();
    if nanos > 500_000_000 {
        thread::sleep(
            Duration::from_nanos(u64::from(1_000_000_000 - nanos)) + Duration::from_millis(20),
        );
    }
}

fn run_case(stand: &Stand, canary: &Canary, case: &Case, crypto: Crypto) -> Row {
    if case.aligned {
        align_to_second();
    }
    let token = case.token.mint();
    let headers: Vec<(&str, String)> = case
        .headers
        .iter()
        .map(|(name, value)| (*name, value.replace("{token}", &token)))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let connections = canary.connections();
    let exchange = stand.get(case.path, &headers);
    let mut got = judge(&exchange, &case.expect, stand, crypto);
    if canary.connections() != connections {
        got.push_str("; the jku/x5u listener was contacted");
    }
    Row::new(case.group.title(), &case.name, case.expect.summary(), got)
}

/// What happened to a request, in the form of [`Expect::summary`], followed by `; …` for
/// anything around it that is wrong (so the row then mismatches).
fn judge(exchange: &Exchange<'_>, expect: &Expect, stand: &Stand, crypto: Crypto) -> String {
    let response = &exchange.response;
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    let reason = body
        .as_ref()
        .and_then(|body| body["reason"].as_str())
        .map(str::to_owned);
    let mut problems = Vec::new();
    let mut counters = |expected: &[&str]| {
        let expected: BTreeMap<String, i128> = expected
            .iter()
            .map(|name| ((*name).to_owned(), 1))
            .collect();
        if exchange.counter_changes != expected {
            problems.push(format!("counters moved: {:?}", exchange.counter_changes));
        }
    };
    let cache_moved: Vec<&String> = exchange.cache_changes.keys().collect();
    let summary = if response.status == 200 && exchange.upstream.len() == 1 {
        counters(&["allowed"]);
        // With the cache on, an allowed token is either remembered or verified, never both.
        let cache_ok = match crypto {
            Crypto::HostWithCache => {
                exchange.cache_changes.len() == 1
                    && exchange.cache_changes.values().all(|change| *change == 1)
            }
            Crypto::PortableWithoutCache => exchange.cache_changes.is_empty(),
        };
        if !cache_ok {
            problems.push(format!("token cache counters moved: {cache_moved:?}"));
        }
        if let Expect::Allow { subject, headers } = expect {
            let received = &exchange.upstream[0];
            for (name, value) in headers {
                let values = received.header_values(name);
                let matches = match value {
                    None => values.is_empty(),
                    Some(value) => values == [*value],
                };
                if !matches {
                    problems.push(format!("upstream got {name}: {values:?}"));
                }
            }
            if let Some(subject) = subject {
                stand.expect_log(&exchange.id, 200, "allow", subject, "-");
            }
        }
        "200 allow".to_owned()
    } else if let Some(reason) = reason {
        let claim = body.as_ref().and_then(|body| body["claim"].as_str());
        counters(&[&format!("denied.{reason}")]);
        if !cache_moved.is_empty() {
            problems.push(format!("token cache counters moved: {cache_moved:?}"));
        }
        check_denial(exchange, &reason, claim, &mut problems);
        stand.expect_log(&exchange.id, response.status, "deny", "-", &reason);
        let claim = claim.map(|claim| format!("({claim})")).unwrap_or_default();
        format!("{} {reason}{claim}", response.status)
    } else {
        counters(&[]);
        if !exchange.upstream.is_empty() {
            problems.push("the upstream got the request".to_owned());
        }
        format!("{} envoy", response.status)
    };
    problems
        .iter()
        .fold(summary, |summary, problem| format!("{summary}; {problem}"))
}

/// The rest of a denial: the RFC 6750 challenge and the JSON body exactly, nothing upstream.
fn check_denial(
    exchange: &Exchange<'_>,
    reason: &str,
    claim: Option<&str>,
    problems: &mut Vec<String>,
) {
    let Some(known) = Reason::ALL.iter().find(|known| known.as_str() == reason) else {
        problems.push(format!("{reason:?} is not a reason of the filter"));
        return;
    };
    let description = known.description();
    let (status, error) = match reason {
        "missing_token" => (401, None),
        "multiple_tokens" | "unnormalized_path" => (400, Some("invalid_request")),
        "keys_unavailable" => (503, Some("temporarily_unavailable")),
        _ => (401, Some("invalid_token")),
    };
    let response = &exchange.response;
    if response.status != status {
        problems.push(format!("status {} for {reason}", response.status));
    }
    let challenge = match error {
        None => format!("Bearer realm=\"{REALM}\""),
        Some(error) => format!(
            "Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{description}\""
        ),
    };
    let challenges: Vec<&str> = response
        .headers
        .iter()
        .filter(|(name, _)| name == "www-authenticate")
        .map(|(_, value)| value.as_str())
        .collect();
    if reason != "keys_unavailable" && challenges != [challenge.as_str()] {
        problems.push(format!("www-authenticate {challenges:?}"));
    }
    let mut body = json!({
        "error": error.unwrap_or("unauthorized"),
        "reason": reason,
        "description": description,
    });
    if let Some(claim) = claim {
        body["claim"] = json!(claim);
    }
    if serde_json::from_slice::<Value>(&response.body).ok() != Some(body) {
        problems.push(format!("body {}", response.text()));
    }
    if !exchange.upstream.is_empty() {
        problems.push("a denied request reached the upstream".to_owned());
    }
}

/// One row per key of the main set: loaded, or skipped with exactly the expected reason (from
/// the warning the filter logs at configuration time).
fn key_rows(log: &str, key_set: &[JwkEntry]) -> Vec<Row> {
    key_set
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let marker = format!("JWKS key {index} (kid ");
            let skipped = log
                .lines()
                .find(|line| line.contains("provider \"main\"") && line.contains(&marker))
                .and_then(|line| line.split_once(" is not used: "))
                .map(|(_, reason)| reason.trim().to_owned());
            let got = match skipped {
                Some(reason) => format!("skipped: {reason}"),
                None => "used".to_owned(),
            };
            let expected = match &entry.load {
                Load::Used => "used".to_owned(),
                Load::Skipped(reason) => format!("skipped: {reason}"),
            };
            Row::new(
                Group::Jwks.title(),
                &format!("load: {} [kid {}]", entry.about, entry.kid),
                expected,
                got,
            )
        })
        .collect()
}

/// Starts an Envoy per configuration; each must exit at start-up, its log naming the problem.
fn run_refusals(cases: Vec<ConfigCase>) -> Vec<Row> {
    let upstream_port = envoy::free_port();
    cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let mut envoy = Envoy::spawn(
                &format!("attacks-refused-{index}"),
                &case.configuration.to_string(),
                upstream_port,
                &Options::default(),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while envoy.is_running() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(25));
            }
            let got = if envoy.is_running() {
                "Envoy started".to_owned()
            } else {
                let status = envoy.wait_exit(Duration::from_secs(1));
                let log = envoy.log();
                if status.success() {
                    "Envoy exited with success".to_owned()
                } else if !log.contains("Unable to create Wasm plugin wasm_jwt_authn") {
                    format!("Envoy exited ({status}) for another reason")
                } else if !log.contains(&case.logged) {
                    format!("refused, but the log lacks: {}", case.logged)
                } else {
                    "refused, naming the problem".to_owned()
                }
            };
            Row::new(
                Group::Jwks.title(),
                &format!("config: {}", case.name),
                "refused, naming the problem".to_owned(),
                got,
            )
        })
        .collect()
}

/// `text` with control characters escaped (`\r`, `\n`, `\u{0}`), so every row is one line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn print_report(rows: &[Row], elapsed: Duration) {
    let width = |column: fn(&Row) -> &str, cap: usize| {
        rows.iter()
            .map(|row| column(row).chars().count())
            .max()
            .unwrap_or(0)
            .min(cap)
    };
    let name_width = width(|row| &row.name, 72);
    let expected_width = width(|row| &row.expected, 44);
    let clip = |text: &str, cap: usize| {
        let text = printable(text);
        if text.chars().count() > cap {
            format!("{}…", text.chars().take(cap - 1).collect::<String>())
        } else {
            text
        }
    };
    let mut groups: Vec<&str> = Group::ALL.iter().map(|group| group.title()).collect();
    groups.push("suite");
    let mut report = String::from("\n");
    for group in &groups {
        report.push_str(&format!("\n== {group}\n"));
        report.push_str(&format!(
            "  {:<name_width$}  {:<expected_width$}  got\n",
            "case", "expected"
        ));
        for row in rows.iter().filter(|row| row.group == *group) {
            report.push_str(&format!(
                "{} {:<name_width$}  {:<expected_width$}  {}\n",
                if row.ok { " " } else { "✗" },
                clip(&row.name, name_width),
                clip(&row.expected, expected_width),
                printable(&row.got),
            ));
        }
    }
    report.push_str("\ncases per group:\n");
    for group in &groups {
        let in_group: Vec<&Row> = rows.iter().filter(|row| row.group == *group).collect();
        let failed = in_group.iter().filter(|row| !row.ok).count();
        report.push_str(&format!(
            "  {group:<28} {:>4} cases, {failed} mismatched\n",
            in_group.len()
        ));
    }
    let failed = rows.iter().filter(|row| !row.ok).count();
    report.push_str(&format!(
        "  {:<28} {:>4} cases, {failed} mismatched, in {:.1} s\n",
        "total",
        rows.len(),
        elapsed.as_secs_f64()
    ));
    eprintln!("{report}");
}
