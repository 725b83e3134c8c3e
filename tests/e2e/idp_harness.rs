//! The test OpenID Provider (`tests/idp/`, driven by `tests/e2e/idp.rs`) does what the
//! end-to-end tests rely on: RFC 9068 access tokens signed by a published key, rotation without
//! a restart, and JWKS/discovery faults that are served and counted. Checked from outside with
//! `curl --cacert` against the real HTTPS endpoints, as Envoy will see them.
//!
//! Needs Node.js, `tests/idp/node_modules` and curl; `make test` provides them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::idp::{decode_jwt, Idp, IdpOptions};

/// What `curl` got: its exit code, the HTTP status (0 when there was no response) and the body.
struct Fetched {
    exit_code: i32,
    status: u16,
    body: String,
}

impl Fetched {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {:?}", self.body))
    }
}

/// GET `url` with curl, trusting only the IdP's test CA; `headers` as `Name: value`.
fn curl(idp: &Idp, url: &str, headers: &[&str]) -> Fetched {
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--max-time", "10", "--cacert"])
        .arg(&idp.ca_pem_path)
        .args(["--write-out", "\n%{http_code}"]);
    for header in headers {
        command.args(["--header", header]);
    }
    let output = command
        .arg(url)
        .output()
        .expect("run curl (`make test` installs it)");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 from curl");
    let (body, status) = stdout.rsplit_once('\n').expect("curl's status line");
    Fetched {
        exit_code: output.status.code().expect("curl exit code"),
        status: status.parse().expect("curl's status code"),
        body: body.to_owned(),
    }
}

#[test]
fn https_idp_issues_rfc9068_access_tokens_signed_by_a_published_key() {
    let idp = Idp::start(IdpOptions::default());
    assert_eq!(idp.issuer, format!("https://127.0.0.1:{}", idp.port));

    let discovery = curl(&idp, &idp.discovery_uri(), &[]);
    assert_eq!((discovery.exit_code, discovery.status), (0, 200));
    let discovery = discovery.json();
    assert_eq!(discovery["issuer"], idp.issuer.as_str());
    assert_eq!(discovery["jwks_uri"], idp.jwks_uri().as_str());
    assert_eq!(discovery["token_endpoint"], idp.token_endpoint().as_str());

    let published = curl(&idp, &idp.jwks_uri(), &[]);
    assert_eq!((published.exit_code, published.status), (0, 200));
    assert_eq!(
        published.json(),
        idp.jwks(),
        "admin /jwks is what jwks_uri serves"
    );

    let (header, payload) = decode_jwt(&idp.token());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().expect("kid in the header");
    assert_eq!(idp.kids(), [kid]);
    assert_eq!(payload["iss"], idp.issuer.as_str());
    assert_eq!(payload["aud"], "api://orders");
    assert_eq!(payload["sub"], "test-client");
    assert_eq!(payload["client_id"], "test-client");
    let issued_at = payload["iat"].as_i64().expect("iat");
    assert_eq!(payload["exp"].as_i64().expect("exp") - issued_at, 3600);

    let (_, payload) = decode_jwt(&idp.token_for("api://other"));
    assert_eq!(payload["aud"], "api://other");

    assert_eq!(
        idp.stats(),
        (1, 1, 2),
        "one JWKS, one discovery and two token requests"
    );
    idp.reset_stats();
    assert_eq!(idp.stats(), (0, 0, 0));
}

#[test]
fn rotated_key_signs_new_tokens_and_the_old_one_stays_published_until_retired() {
    let idp = Idp::start(IdpOptions::default());
    let (header, _) = decode_jwt(&idp.token());
    let first = header["kid"].as_str().expect("kid").to_owned();

    let second = idp.rotate(false);
    assert_ne!(second, first);
    let (header, _) = decode_jwt(&idp.token());
    assert_eq!(header["kid"], second.as_str(), "the new key signs");
    assert_eq!(idp.kids(), [second.clone(), first.clone()]);
    let published = curl(&idp, &idp.jwks_uri(), &[]).json();
    assert_eq!(published, idp.jwks(), "jwks_uri publishes both keys");

    let third = idp.rotate(true);
    let (header, _) = decode_jwt(&idp.token());
    assert_eq!(header["kid"], third.as_str());
    assert_eq!(idp.kids(), [third], "retired keys are no longer published");
    assert_eq!(curl(&idp, &idp.jwks_uri(), &[]).json(), idp.jwks());
}

#[test]
fn jwks_and_discovery_faults_are_served_and_every_request_is_counted() {
    let idp = Idp::start(IdpOptions::default());
    let jwks = idp.jwks_uri();
    let discovery = idp.discovery_uri();

    idp.set_mode("jwks", "garbage", 0);
    let garbage = curl(&idp, &jwks, &[]);
    assert_eq!((garbage.exit_code, garbage.status), (0, 200));
    assert!(serde_json::from_str::<Value>(&garbage.body).is_err());
    assert_eq!(
        curl(&idp, &discovery, &[]).status,
        200,
        "only the JWKS is broken"
    );

    idp.set_mode("all", "error", 0);
    assert_eq!(curl(&idp, &jwks, &[]).status, 500);
    assert_eq!(curl(&idp, &discovery, &[]).status, 500);

    idp.set_mode("all", "down", 0);
    for url in [&jwks, &discovery] {
        let down = curl(&idp, url, &[]);
        assert_eq!(down.status, 0, "no response from {url}");
        assert_ne!(down.exit_code, 0, "curl fails on {url}");
    }

    idp.set_mode("discovery", "slow", 300);
    let started = Instant::now();
    let slow = curl(&idp, &discovery, &[]);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.json()["issuer"], idp.issuer.as_str());

    idp.set_mode("all", "normal", 0);
    assert_eq!(curl(&idp, &jwks, &[]).json(), idp.jwks());

    assert_eq!(idp.stats(), (4, 4, 0));
}

#[test]
fn es256_over_plain_http_with_an_issuer_path_and_extra_claims() {
    let idp = Idp::start(IdpOptions {
        tls: false,
        alg: "ES256".to_owned(),
        resource: "api://e2e".to_owned(),
        issuer: Some("http://idp.e2e.test/realms/corp".to_owned()),
        ..IdpOptions::default()
    });
    assert_eq!(idp.issuer, "http://idp.e2e.test/realms/corp");
    assert_eq!(
        idp.jwks_uri(),
        format!("http://127.0.0.1:{}/realms/corp/jwks", idp.port)
    );

    // Discovery's URLs follow the Host header, as a proxy in front of the OP would send it.
    let discovery = curl(&idp, &idp.discovery_uri(), &["Host: idp.e2e.test"]).json();
    assert_eq!(discovery["issuer"], idp.issuer.as_str());
    assert_eq!(
        discovery["jwks_uri"],
        "http://idp.e2e.test/realms/corp/jwks"
    );

    let token = idp.token_with(&json!({
        "scope": "read write",
        "claims": {"realm_access": {"roles": ["reader"]}},
    }));
    let (header, payload) = decode_jwt(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(idp.kids(), [header["kid"].as_str().expect("kid")]);
    assert_eq!(idp.jwks()["keys"][0]["crv"], "P-256");
    assert_eq!(payload["iss"], idp.issuer.as_str());
    assert_eq!(payload["aud"], "api://e2e");
    assert_eq!(payload["scope"], "read write");
    assert_eq!(payload["realm_access"], json!({"roles": ["reader"]}));

    let (_, forged) = decode_jwt(&idp.token_with(&json!({"claims": {"iss": "https://evil"}})));
    assert_eq!(
        forged["iss"], "https://evil",
        "claims override the standard ones"
    );
}
