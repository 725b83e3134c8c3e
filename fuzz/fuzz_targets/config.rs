//! A plugin configuration from arbitrary bytes: loading never panics, a refusal always renders
//! a message, and a configuration that loads decides requests without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_jwt_authn::testing::config::Config;
use wasm_jwt_authn::testing::request::Request;
use wasm_jwt_authn_fuzz::{decide_fully, fixture, NoRemoteDocuments};

fuzz_target!(|data: &[u8]| {
    let loaded = match Config::from_json(data) {
        Ok(loaded) => loaded,
        Err(error) => {
            assert!(!error.problem.is_empty(), "a refusal says why: {error:?}");
            std::hint::black_box(error.to_string());
            return;
        }
    };
    for (provider, skipped) in &loaded.skipped_keys {
        std::hint::black_box(format!("{provider}: {} {:?}", skipped.reason, skipped.id));
    }
    let config = &loaded.config;
    assert!(!config.providers().is_empty());
    assert!(config.max_token_bytes() > 0);
    let token = fixture().corp_tokens.first().map_or("", String::as_str);
    let bearer = vec![("authorization".to_owned(), format!("Bearer {token}"))];
    let cookie = vec![("cookie".to_owned(), format!("session={token}"))];
    let query = format!("/partner?access_token={token}");
    let requests = [
        ("GET", "/orders", &bearer),
        ("POST", "/admin/", &bearer),
        ("GET", "/healthz/live", &cookie),
        ("GET", query.as_str(), &cookie),
        ("GET", query.as_str(), &Vec::new()),
    ];
    for (method, path, headers) in requests {
        let request = Request {
            method,
            path,
            headers,
            source_address: None,
        };
        decide_fully(config, &NoRemoteDocuments, &request);
        decide_fully(config, &fixture().remote, &request);
    }
});
