//! A key fetcher driven by arbitrary answers: an OpenID discovery document and then a JWKS
//! (the input split at its first NUL byte; without one, the whole input is both), and the
//! input as the answer of a JWKS-location fetcher. Never panics; keys accepted once are keys
//! every worker can adopt from the published record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_jwt_authn::testing::base::http::HttpUri;
use wasm_jwt_authn::testing::fetch::remote::{
    Document, Fetcher, KeysNow, Location, Poll, Progress, RemoteSettings, SharedRecord,
};
use wasm_jwt_authn::testing::jose::algorithm::Algorithm;
use wasm_jwt_authn_fuzz::{ISSUER, NOW};

fn settings(location: Location, lenient: bool) -> RemoteSettings {
    RemoteSettings {
        location,
        upstream: "idp".to_owned(),
        jwks_upstream: lenient.then(|| "keys".to_owned()),
        timeout_ms: 5_000,
        refresh_seconds: 600,
        max_stale_seconds: 3_600,
        min_refetch_seconds: 30,
        allow_http: lenient,
    }
}

fn uri(text: &str) -> HttpUri {
    HttpUri::parse(text).expect("fixed URI")
}

/// Answers the call in flight with `body`; on new keys, checks them and their published record.
fn answer(
    fetcher: &mut Fetcher,
    settings: &RemoteSettings,
    cache_control: Option<&str>,
    body: &[u8],
) -> Option<Progress> {
    let progress = fetcher.on_response(NOW, 200, cache_control, body).ok()?;
    if let Progress::Updated { .. } = progress {
        assert!(matches!(fetcher.keys(NOW), KeysNow::Fresh(keys) if !keys.is_empty()));
        let fetched = fetcher.fetched().expect("keys were just installed");
        assert!(fetched.refresh_at > NOW, "a refresh is scheduled ahead");
        let shared = fetcher.to_share();
        assert_eq!(
            SharedRecord::decode(&shared.encode()).as_ref(),
            Some(&shared)
        );
        let mut other = Fetcher::for_keys(settings.clone(), ISSUER, &Algorithm::ALL, NOW, 999);
        assert_eq!(
            other.adopt(&shared),
            Ok(true),
            "published keys are adoptable"
        );
        assert!(matches!(other.keys(NOW), KeysNow::Fresh(_)));
    }
    Some(progress)
}

fuzz_target!(|data: &[u8]| {
    let (discovery, jwks) = match data.iter().position(|byte| *byte == 0) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, data),
    };
    let location = uri("https://idp.example.com/.well-known/openid-configuration");
    for lenient in [false, true] {
        let settings = settings(Location::Discovery(location.clone()), lenient);
        let mut fetcher = Fetcher::for_keys(settings.clone(), ISSUER, &Algorithm::ALL, NOW, 500);
        assert_eq!(fetcher.poll(NOW), Poll::Due);
        let (document, _) = fetcher.start(NOW);
        assert_eq!(document, Document::Discovery);
        if answer(&mut fetcher, &settings, None, discovery) != Some(Progress::Discovered) {
            assert!(!fetcher.in_flight());
            continue;
        }
        assert_eq!(fetcher.poll(NOW), Poll::Due);
        let (document, request) = fetcher.start(NOW);
        assert_eq!(document, Document::Jwks);
        assert!(request.uri.secure || lenient, "http:// only when allowed");
        if !lenient {
            assert_eq!(request.uri.authority, location.authority);
        }
        answer(&mut fetcher, &settings, Some("public, max-age=300"), jwks);
        assert!(!fetcher.in_flight());
    }

    let settings = settings(Location::Direct(uri("https://idp.example.com/jwks")), false);
    let mut fetcher = Fetcher::for_keys(settings.clone(), ISSUER, &[Algorithm::Es256], NOW, 0);
    fetcher.start(NOW);
    answer(&mut fetcher, &settings, None, data);
});
