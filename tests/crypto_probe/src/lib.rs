//! A test-only proxy-wasm module that runs one signature through the filter's signature layer
//! inside a real proxy, so `tests/e2e/wycheproof_envoy.rs` can compare the two backends on every
//! Wycheproof vector.
//!
//! Each request names an algorithm, a JWK, a message and a signature in its headers:
//!
//! - `x-alg`: the JWA name (`RS256`, `ES384`, `PS512`, `EdDSA`, …);
//! - `x-jwk`: base64url of the JWK's JSON;
//! - `x-message`, `x-signature`: base64url of the bytes (the signature in JWS form).
//!
//! The answer is always `200` with the JSON
//! `{"key": "ok" | KeyProblem, "check": "ok" | SignatureError | null,
//!   "portable": bool | null, "host": bool | null | "unavailable:<why>"}`:
//! `key` is what [`jwks::parse_key`] made of the JWK, `check` what [`signature::check`] said (`null`
//! when there was no key), `portable` the [`Portable`] verdict and `host` the host's
//! `verify_signature` verdict on [`CheckedSignature::host_arguments`] (`null` when there was no
//! checked signature or the host does not verify this algorithm: `PS*`, EdDSA). The host is
//! called exactly as the filter's adapter (`src/filter/crypto.rs`) calls it. A JWK's `alg`
//! restriction (`Key::accepts`) is not applied here: the caller chooses the key.
//!
//! A request without those headers, or with one that does not decode, gets `400` and
//! `{"error": "…"}`: the test fails on it rather than mistaking it for a verdict.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use serde_json::{json, Value};
use wasm_jwt_authn::testing::jose::signature::{self, CheckedSignature, Portable, SignatureVerifier as _};
use wasm_jwt_authn::testing::jose::algorithm::Algorithm;
use wasm_jwt_authn::testing::jose::{host_crypto, jwks};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot) });
}}

struct ProbeRoot;

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe))
    }
}

struct Probe;

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (status, answer) = match ProbeRequest::read() {
            Ok(request) => (200, request.run()),
            Err(problem) => (400, json!({ "error": problem })),
        };
        // Test code: a host refusing a local reply is a broken test setup, and the trap shows it.
        hostcalls::send_http_response(
            status,
            vec![("content-type", "application/json")],
            Some(answer.to_string().as_bytes()),
        )
        .unwrap();
        Action::Pause
    }
}

/// One signature to run, decoded from the request headers.
struct ProbeRequest {
    algorithm: Algorithm,
    jwk: Value,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl ProbeRequest {
    fn read() -> Result<ProbeRequest, String> {
        let name = header("x-alg")?;
        let algorithm =
            Algorithm::from_name(&name).ok_or_else(|| format!("unknown algorithm {name:?}"))?;
        let jwk = serde_json::from_slice(&base64url_header("x-jwk")?)
            .map_err(|error| format!("x-jwk is not JSON: {error}"))?;
        Ok(ProbeRequest {
            algorithm,
            jwk,
            message: base64url_header("x-message")?,
            signature: base64url_header("x-signature")?,
        })
    }

    fn run(&self) -> Value {
        let key = match jwks::parse_key(&self.jwk) {
            Ok(key) => key,
            Err(problem) => {
                return json!({
                    "key": format!("{problem:?}"), "check": null, "portable": null, "host": null
                })
            }
        };
        let checked = match signature::check(self.algorithm, &key, &self.message, &self.signature) {
            Ok(checked) => checked,
            Err(error) => {
                return json!({
                    "key": "ok", "check": format!("{error:?}"), "portable": null, "host": null
                })
            }
        };
        json!({
            "key": "ok",
            "check": "ok",
            "portable": Portable.verify(&checked),
            "host": host_verdict(&checked),
        })
    }
}

/// The host's verdict, called as `src/filter/crypto.rs` calls it; `null` when the host does
/// not verify this algorithm.
fn host_verdict(checked: &CheckedSignature<'_>) -> Value {
    let Some(arguments) = checked.host_arguments() else {
        return Value::Null;
    };
    match hostcalls::call_foreign_function(host_crypto::FUNCTION_NAME, Some(&arguments)) {
        Ok(Some(answer)) => match host_crypto::decode_result(&answer) {
            Ok(verified) => Value::Bool(verified),
            Err(malformed) => Value::String(format!("unavailable:{malformed:?}")),
        },
        Ok(None) => Value::String("unavailable:no answer".to_owned()),
        Err(status) => Value::String(format!("unavailable:{status:?}")),
    }
}

fn header(name: &str) -> Result<String, String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .map_err(|status| format!("reading {name}: {status:?}"))?
        .ok_or_else(|| format!("missing header {name}"))
}

fn base64url_header(name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(header(name)?)
        .map_err(|error| format!("{name} is not base64url: {error}"))
}
