//! A JWKS document from arbitrary bytes: parsing never panics, every entry is either kept or
//! reported skipped, and a set that verifies a fixture token holds that fixture's very key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use wasm_jwt_authn::testing::config::Config;
use wasm_jwt_authn::testing::decision::Decision;
use wasm_jwt_authn::testing::jose::algorithm::Algorithm;
use wasm_jwt_authn::testing::jose::jwks::KeySet;
use wasm_jwt_authn::testing::request::Request;
use wasm_jwt_authn_fuzz::support::jwks;
use wasm_jwt_authn_fuzz::{decide_fully, fixture, NoRemoteDocuments, AUDIENCE, CORP_KEYS, ISSUER};

/// The fixture keys as parsed, by `kid`, in their `Debug` form (the only comparison the key
/// types share).
fn fixture_keys() -> &'static Vec<(String, String)> {
    static KEYS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (set, _) = KeySet::from_value(&jwks(&CORP_KEYS)).expect("fixture keys parse");
        set.keys()
            .iter()
            .map(|key| {
                let id = key.id.clone().expect("fixture keys have a kid");
                (id, format!("{:?}", key.public_key))
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok((set, skipped)) = KeySet::from_json(data) else {
        return;
    };
    let entries = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|document| document.get("keys").and_then(Value::as_array).map(Vec::len))
        .expect("a parsed JWKS has a `keys` array");
    assert_eq!(
        set.len() + skipped.len(),
        entries,
        "every entry kept or skipped"
    );
    assert!(skipped.windows(2).all(|pair| pair[0].index < pair[1].index));
    assert!(skipped.iter().all(|key| key.index < entries));
    for key in set.keys() {
        for algorithm in Algorithm::ALL {
            std::hint::black_box(key.accepts(algorithm));
        }
    }
    if set.is_empty() {
        return;
    }

    // The same document inline in a configuration, against tokens of each fixture key.
    let Ok(document) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let config = json!({"providers": [{
        "name": "corp", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": {"inline": document}
    }]});
    let Ok(loaded) = Config::from_json(config.to_string().as_bytes()) else {
        return;
    };
    for (token, key) in fixture().corp_tokens.iter().zip(CORP_KEYS) {
        let headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
        let request = Request {
            method: "GET",
            path: "/orders",
            headers: &headers,
            source_address: None,
        };
        let decision = decide_fully(&loaded.config, &NoRemoteDocuments, &request);
        if let Decision::Allow(_) = decision {
            let (_, expected) = fixture_keys()
                .iter()
                .find(|(id, _)| id == key.kid())
                .expect("every corp key is a fixture key");
            let holds_it = set.keys().iter().any(|candidate| {
                candidate.id.as_deref() == Some(key.kid())
                    && format!("{:?}", candidate.public_key) == *expected
            });
            assert!(holds_it, "a {key:?} token verified under another key");
        }
    }
});
