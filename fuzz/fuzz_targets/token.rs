//! A token (or a path) from arbitrary bytes, through extraction, strict parsing and the whole
//! decision against the fixed configuration: never panics, and never allows on a token route
//! without naming the provider that vouched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_jwt_authn::testing::config::DEFAULT_MAX_TOKEN_BYTES;
use wasm_jwt_authn::testing::decision::Decision;
use wasm_jwt_authn::testing::jose::token as jws;
use wasm_jwt_authn::testing::request::{token, Request};
use wasm_jwt_authn_fuzz::{decide_fully, fixture};

type Headers = Vec<(String, String)>;

fn header(name: &str, value: String) -> Headers {
    vec![(name.to_owned(), value)]
}

fuzz_target!(|data: &[u8]| {
    // Proxies hand the filter headers and paths as strings.
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let fixture = fixture();
    let config = &fixture.config;

    if let Ok(parsed) = jws::parse(input, DEFAULT_MAX_TOKEN_BYTES) {
        // The signature covers exactly the first two segments as they came.
        let signature_segment = input
            .strip_prefix(parsed.signing_input())
            .and_then(|rest| rest.strip_prefix('.'))
            .expect("the signing input is the token up to its last dot");
        assert!(!signature_segment.contains('.'));
        assert!(parsed.signing_input().ends_with(parsed.encoded_payload()));
    }

    // The input as a token in each kind of source, as a whole credential header, and as the
    // path of a request that carries a valid token.
    let valid = fixture.corp_tokens.first().map_or("", String::as_str);
    let on_token_route: [(&str, String, Headers); 5] = [
        (
            "/orders",
            String::new(),
            header("authorization", format!("Bearer {input}")),
        ),
        (
            "/partner/x",
            format!("?a=1&access_token={input}"),
            Vec::new(),
        ),
        (
            "/partner",
            String::new(),
            header("cookie", format!("theme=dark; session={input}")),
        ),
        (
            "/remote/x",
            String::new(),
            header("x-remote-token", input.to_owned()),
        ),
        (
            "/orders",
            String::new(),
            header("authorization", input.to_owned()),
        ),
    ];
    for (path, query, headers) in &on_token_route {
        let path = format!("{path}{query}");
        let request = Request {
            method: "GET",
            path: &path,
            headers,
            source_address: None,
        };
        if let Decision::Allow(allowed) = decide_fully(config, &fixture.remote, &request) {
            assert!(
                allowed.caller.provider().is_some(),
                "allowed without a provider: {allowed:?}"
            );
            let found = token::extract(&request, config.token_sources())
                .expect("an allowed request has one token")
                .expect("an allowed request on a token route has a token");
            assert!(jws::parse(found.value, config.max_token_bytes()).is_ok());
        }
    }

    let headers = header("authorization", format!("Bearer {valid}"));
    let method = if input.len() % 2 == 0 { "GET" } else { "post" };
    let request = Request {
        method,
        path: input,
        headers: &headers,
        source_address: None,
    };
    decide_fully(config, &fixture.remote, &request);
});
