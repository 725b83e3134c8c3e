//! End-to-end tests of the ready-made identity-provider configs (`envoy/idp/<name>.json`): each
//! used verbatim in a real Envoy, its discovery documents and JWKS served from the provider's
//! fixtures (`tests/fixtures/idp/<name>/`, with their sources in the README there) by a
//! loopback server standing in for the provider's cluster, and tokens of the provider's
//! documented shape, re-signed with the repository's test key (whose public half replaces the
//! fixture key of the same `kid`: the providers' private keys are theirs).
//!
//! Needs `ENVOY_BIN` and `WASM_JWT_AUTHN_WASM`; `make test` provides them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::envoy;
use crate::envoy::Options;
use crate::stand::Stand;
use crate::support::{sign_raw, TestKey};
use crate::upstream::EchoUpstream;

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

fn read_json(path: &str) -> Value {
    let path = Path::new(REPOSITORY).join(path);
    serde_json::from_str(&fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// The path (and query) of an absolute URI.
fn path_of(uri: &str) -> String {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("/".to_owned(), |slash| after_scheme[slash..].to_owned())
}

/// A provider's fixtures and its ready-made config, ready to run.
struct Shape {
    /// `configuration` of `envoy/idp/<name>.json`, verbatim.
    configuration: Value,
    /// The cluster name the config's `upstream`s use.
    cluster: String,
    header: Value,
    claims: Value,
    /// The fixture JWKS with the token's key replaced by the test key's public half.
    jwks: Value,
}

impl Shape {
    fn load(name: &str) -> Shape {
        let ready_made = read_json(&format!("envoy/idp/{name}.json"));
        let token = read_json(&format!("tests/fixtures/idp/{name}/token.json"));
        let mut jwks = read_json(&format!("tests/fixtures/idp/{name}/jwks.json"));
        let kid = token["header"]["kid"].as_str().unwrap().to_owned();
        let test_key = TestKey::Rsa2048.jwk();
        let keys = jwks["keys"].as_array_mut().unwrap();
        let key = keys
            .iter_mut()
            .find(|key| key["kid"] == kid)
            .unwrap_or_else(|| panic!("{name}: no key {kid} in the fixture JWKS"));
        key["n"] = test_key["n"].clone();
        key["e"] = test_key["e"].clone();
        // The certificate chain and its thumbprint name the provider's own key, not ours.
        let key = key.as_object_mut().unwrap();
        key.remove("x5c");
        key.remove("x5t");
        key.remove("x5t#S256");
        Shape {
            cluster: ready_made["cluster"]["name"].as_str().unwrap().to_owned(),
            configuration: ready_made["configuration"].clone(),
            header: token["header"].clone(),
            claims: token["claims"].clone(),
            jwks,
        }
    }

    /// The fixture token's claims with `changes` (a `null` removes a claim), valid from now.
    fn claims_with(&self, changes: &Value) -> Value {
        let mut claims = self.claims.clone();
        let now = now();
        claims["iat"] = json!(now);
        claims["nbf"] = json!(now);
        claims["exp"] = json!(now + 3600);
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    /// A token of the provider's shape with `changes`, signed by the test key.
    fn token(&self, changes: &Value) -> String {
        sign_raw(
            self.header["alg"].as_str().unwrap(),
            TestKey::Rsa2048,
            &self.header.to_string(),
            &self.claims_with(changes).to_string(),
        )
    }

    /// Starts Envoy with the ready-made config, the provider's cluster pointing at a loopback
    /// server that serves `documents` (path → JSON).
    fn start(&self, name: &str, documents: &[(String, Value)]) -> (Stand, EchoUpstream) {
        let provider = EchoUpstream::start();
        for (path, document) in documents {
            provider.serve_document(path, "application/json", document.to_string());
        }
        let cluster = envoy::loopback_cluster(&self.cluster, provider.port());
        let options = Options {
            clusters: vec![cluster],
            ..Options::default()
        };
        (
            Stand::start_with(name, &self.configuration, &options),
            provider,
        )
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Microsoft Entra ID: a multi-tenant issuer template with an allow-list of tenants (v2.0 and
/// v1.0 issuers), `tid` agreeing with `iss`, `aud` as an application ID URI or a client GUID,
/// `scp` space-separated, `roles` for app roles, JWKS keys with `x5t`/`x5c` and no `alg`.
#[test]
fn entra_id_tokens_through_the_ready_made_config() {
    let shape = Shape::load("entra-id");
    let provider = &shape.configuration["providers"][0];
    let tenant = provider["tenants"][0].as_str().unwrap().to_owned();
    let audiences = provider["audiences"].as_array().unwrap().clone();
    let discovery_v2 = read_json("tests/fixtures/idp/entra-id/discovery.json");
    assert_eq!(
        discovery_v2["issuer"], "https://login.microsoftonline.com/{tenantid}/v2.0",
        "the multi-tenant discovery document names the template"
    );
    // The v1.0 endpoints' document: the same keys, the v1.0 issuer template.
    let mut discovery_v1 = discovery_v2.clone();
    discovery_v1["issuer"] = json!("https://sts.windows.net/{tenantid}/");
    let jwks_path = path_of(discovery_v2["jwks_uri"].as_str().unwrap());
    let documents = vec![
        (
            path_of(provider["discovery"]["uri"].as_str().unwrap()),
            discovery_v2.clone(),
        ),
        (
            path_of(
                shape.configuration["providers"][1]["discovery"]["uri"]
                    .as_str()
                    .unwrap(),
            ),
            discovery_v1,
        ),
        (jwks_path, shape.jwks.clone()),
    ];
    let (stand, _provider) = shape.start("idp-entra-id", &documents);
    let v2_issuer = format!("https://login.microsoftonline.com/{tenant}/v2.0");
    let ours = json!({"iss": v2_issuer, "tid": tenant, "aud": audiences[0], "scp": "Orders.Read User.Read"});
    let subject = shape.claims["sub"].as_str().unwrap().to_owned();

    stand.scenario("a_v2_token_of_the_tenant_is_allowed", || {
        let token = shape.token(&ours);
        let received = stand
            .get("/api/orders", &[("authorization", &bearer(&token))])
            .allowed(&subject);
        assert_eq!(received.header("x-tenant-id"), Some(tenant.as_str()));
        assert_eq!(received.header("x-user-oid"), shape.claims["oid"].as_str());
    });
    stand.scenario("aud_as_the_client_guid_is_accepted_too", || {
        let token = shape.token(
            &json!({"iss": v2_issuer, "tid": tenant, "aud": audiences[1], "scp": "Orders.Write"}),
        );
        stand
            .get("/api/orders", &[("authorization", &bearer(&token))])
            .allowed(&subject);
    });
    stand.scenario("a_v1_token_of_the_tenant_is_allowed", || {
        let token = shape.token(&json!({
            "iss": format!("https://sts.windows.net/{tenant}/"), "tid": tenant,
            "aud": audiences[0], "ver": "1.0", "scp": "Orders.Read", "appid": "v1-client"
        }));
        let received = stand
            .get("/api/orders", &[("authorization", &bearer(&token))])
            .allowed(&subject);
        assert_eq!(received.header("x-client-id"), Some("v1-client"));
    });
    stand.scenario("another_tenant_is_nobodys", || {
        let stranger = "99999999-9999-9999-9999-999999999999";
        let token = shape.token(&json!({
            "iss": format!("https://login.microsoftonline.com/{stranger}/v2.0"),
            "tid": stranger, "aud": audiences[0]
        }));
        stand
            .get("/api/orders", &[("authorization", &bearer(&token))])
            .denied("unknown_issuer");
    });
    stand.scenario("tid_must_name_the_tenant_of_iss", || {
        let token = shape.token(&json!({"iss": v2_issuer, "tid": "99999999-9999-9999-9999-999999999999", "aud": audiences[0]}));
        stand
            .get("/api/orders", &[("authorization", &bearer(&token))])
            .denied_for_claim("invalid_claim", "tid");
    });
    stand.scenario("app_roles_open_the_admin_area", || {
        let admin = shape.token(&json!({"iss": v2_issuer, "tid": tenant, "aud": audiences[0], "roles": ["Orders.Admin"]}));
        stand
            .get("/admin/x", &[("authorization", &bearer(&admin))])
            .allowed(&subject);
        let reader = shape.token(&json!({"iss": v2_issuer, "tid": tenant, "aud": audiences[0], "roles": ["Orders.Reader"]}));
        stand
            .get("/admin/x", &[("authorization", &bearer(&reader))])
            .forbidden(
                "insufficient_role",
                "admin",
                None,
                Some(("roles", json!(["Orders.Admin"]))),
            );
    });
    stand.scenario("scp_without_the_routes_scope_is_insufficient", || {
        let token = shape.token(&json!({"iss": v2_issuer, "tid": tenant, "aud": audiences[0], "scp": "User.Read"}));
        stand
            .get("/api/orders", &[("authorization", &bearer(&token))])
            .forbidden(
                "insufficient_scope",
                "api",
                Some("Bearer realm=\"wasm-jwt-authn\", error=\"insufficient_scope\", error_description=\"the token lacks a scope this route requires\", scope=\"Orders.Read Orders.Write\""),
                Some(("scope", json!("Orders.Read Orders.Write"))),
            );
    });
    stand.finish();
}

/// The documents a single-issuer provider serves: its discovery document where the config's
/// `discovery` (or the issuer's well-known URI) points, and its JWKS at the document's
/// `jwks_uri` (or the config's `jwks.uri`).
fn provider_documents(shape: &Shape, name: &str) -> Vec<(String, Value)> {
    let provider = &shape.configuration["providers"][0];
    let mut documents = Vec::new();
    let jwks_uri = if let Some(uri) = provider["jwks"]["uri"].as_str() {
        uri.to_owned()
    } else {
        let discovery = read_json(&format!("tests/fixtures/idp/{name}/discovery.json"));
        assert_eq!(
            discovery["issuer"], provider["issuer"],
            "{name}: discovery issuer"
        );
        let uri = provider["discovery"]["uri"].as_str().map_or_else(
            || {
                format!(
                    "{}/.well-known/openid-configuration",
                    provider["issuer"].as_str().unwrap().trim_end_matches('/')
                )
            },
            str::to_owned,
        );
        documents.push((path_of(&uri), discovery.clone()));
        discovery["jwks_uri"].as_str().unwrap().to_owned()
    };
    documents.push((path_of(&jwks_uri), shape.jwks.clone()));
    documents
}

/// Keycloak: a JWKS that mixes an encryption key (`use: enc`, `RSA-OAEP`, skipped and logged,
/// never fatal) with the signing key; roles in `realm_access.roles` and
/// `resource_access.<client>.roles`; `azp`; a `typ: Bearer` claim; `aud` an array.
#[test]
fn keycloak_tokens_through_the_ready_made_config() {
    let mut shape = Shape::load("keycloak");
    // A key of a type from the future next to them: skipped and logged, never fatal.
    shape.jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "ML-DSA", "kid": "post-quantum-1", "use": "sig"}));
    let (stand, _provider) = shape.start("idp-keycloak", &provider_documents(&shape, "keycloak"));
    let subject = shape.claims["sub"].as_str().unwrap().to_owned();
    stand.scenario("realm_and_client_roles_count", || {
        let token = shape.token(&json!({}));
        let received = stand
            .get("/api/orders", &[("authorization", &bearer(&token))])
            .allowed(&subject);
        assert_eq!(received.header("x-client-id"), shape.claims["azp"].as_str());
        // orders:write is a role of the API client (resource_access), not of the realm.
        stand
            .send(
                "POST",
                "/api/orders",
                &[("authorization", &bearer(&token))],
                b"",
            )
            .allowed(&subject);
        let realm_only =
            shape.token(&json!({"resource_access": {"account": {"roles": ["view-profile"]}}}));
        stand
            .send(
                "POST",
                "/api/orders",
                &[("authorization", &bearer(&realm_only))],
                b"",
            )
            .forbidden(
                "insufficient_role",
                "orders-write",
                None,
                Some(("roles", json!(["orders:write"]))),
            );
    });
    stand.scenario("the_encryption_key_is_skipped_not_fatal", || {
        let log = stand.envoy.log();
        assert!(
            log.contains("CANAG6lJUPKqKDoWxxXL5wAHf2U18BAzm_LJm7RPTGk")
                && log.contains("is not used"),
            "the skipped enc key is logged: {log}"
        );
        assert!(
            log.contains("post-quantum-1") && log.contains("unsupported `kty`"),
            "the unknown key type is logged: {log}"
        );
    });
    stand.finish();
}

/// Okta: a custom authorization server's issuer, `scp` an array, `cid` and `uid`, keys with
/// `alg` and `use`, no `typ` in the header.
#[test]
fn okta_tokens_through_the_ready_made_config() {
    let shape = Shape::load("okta");
    let (stand, _provider) = shape.start("idp-okta", &provider_documents(&shape, "okta"));
    let subject = shape.claims["sub"].as_str().unwrap().to_owned();
    stand.scenario("scp_array_uid_and_cid", || {
        let token = shape.token(&json!({}));
        let received = stand
            .get("/api/flights", &[("authorization", &bearer(&token))])
            .allowed(&subject);
        assert_eq!(received.header("x-user-id"), shape.claims["uid"].as_str());
        assert_eq!(received.header("x-client-id"), shape.claims["cid"].as_str());
        let without = shape.token(&json!({"scp": ["openid", "email"]}));
        let challenge = "Bearer realm=\"wasm-jwt-authn\", error=\"insufficient_scope\", \
             error_description=\"the token lacks a scope this route requires\", scope=\"flights\"";
        stand
            .get("/api/flights", &[("authorization", &bearer(&without))])
            .forbidden(
                "insufficient_scope",
                "api",
                Some(challenge),
                Some(("scope", json!("flights"))),
            );
    });
    stand.finish();
}

/// Auth0: an issuer with a trailing slash, `aud` an array that includes the userinfo URL,
/// `permissions`, and roles in a namespaced claim (a URL as the claim's name).
#[test]
fn auth0_tokens_through_the_ready_made_config() {
    let shape = Shape::load("auth0");
    let (stand, _provider) = shape.start("idp-auth0", &provider_documents(&shape, "auth0"));
    let subject = shape.claims["sub"].as_str().unwrap().to_owned();
    stand.scenario("namespaced_roles_permissions_and_an_aud_array", || {
        let token = shape.token(&json!({}));
        let received = stand
            .get("/api/patients", &[("authorization", &bearer(&token))])
            .allowed(&subject);
        assert_eq!(received.header("x-user-roles"), Some("admin,editor"));
        stand
            .get("/admin/users", &[("authorization", &bearer(&token))])
            .allowed(&subject);
        let no_admin = shape.token(&json!({"permissions": ["read:patients"]}));
        stand
            .get("/admin/users", &[("authorization", &bearer(&no_admin))])
            .forbidden(
                "claim_condition_failed",
                "admin",
                None,
                Some(("claim", json!(["permissions"]))),
            );
        let userinfo_only = shape.token(&json!({"aud": ["https://example.auth0.com/userinfo"]}));
        stand
            .get(
                "/api/patients",
                &[("authorization", &bearer(&userinfo_only))],
            )
            .denied("audience_mismatch");
    });
    stand.finish();
}

/// Google: keys served from another host than the issuer's (fetched from their JWKS URI),
/// published with `alg` and without `x5c`; `azp`, `email_verified` and `hd`.
#[test]
fn google_tokens_through_the_ready_made_config() {
    let mut shape = Shape::load("google");
    // Keys published with `alg` and without `use` are signing keys all the same.
    for key in shape.jwks["keys"].as_array_mut().unwrap() {
        key.as_object_mut().unwrap().remove("use");
        assert_eq!(key["alg"], "RS256");
    }
    let (stand, _provider) = shape.start("idp-google", &provider_documents(&shape, "google"));
    let subject = shape.claims["sub"].as_str().unwrap().to_owned();
    stand.scenario("a_verified_email_of_the_hosted_domain", || {
        let token = shape.token(&json!({}));
        let received = stand
            .get("/reports", &[("authorization", &bearer(&token))])
            .allowed(&subject);
        assert_eq!(
            received.header("x-user-email"),
            shape.claims["email"].as_str()
        );
        let unverified = shape.token(&json!({"email_verified": false}));
        stand
            .get("/reports", &[("authorization", &bearer(&unverified))])
            .forbidden(
                "claim_condition_failed",
                "company",
                None,
                Some(("claim", json!(["email_verified"]))),
            );
    });
    stand.finish();
}
