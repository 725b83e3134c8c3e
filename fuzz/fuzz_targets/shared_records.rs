//! The records workers exchange through host shared data, and `Cache-Control` headers, from
//! arbitrary bytes: decoding never panics, what decodes re-encodes to the same record, and a
//! refresh interval is the configured one or within the clamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_jwt_authn::testing::base::http::HttpUri;
use wasm_jwt_authn::testing::fetch::remote::{
    refresh_interval, Fetcher, Lease, Location, RemoteSettings, SharedRecord, MAX_REFRESH_SECONDS,
    MIN_REFRESH_SECONDS,
};
use wasm_jwt_authn::testing::jose::algorithm::Algorithm;
use wasm_jwt_authn_fuzz::{ISSUER, NOW};

const CONFIGURED_REFRESH: u64 = 600;

fuzz_target!(|data: &[u8]| {
    if let Some(shared) = SharedRecord::decode(data) {
        assert_eq!(SharedRecord::decode(&shared.encode()), Some(shared.clone()));
        let settings = RemoteSettings {
            location: Location::Direct(
                HttpUri::parse("https://idp.example.com/jwks").expect("fixed URI"),
            ),
            upstream: "idp".to_owned(),
            jwks_upstream: None,
            timeout_ms: 5_000,
            refresh_seconds: CONFIGURED_REFRESH,
            max_stale_seconds: 3_600,
            min_refetch_seconds: 30,
            allow_http: false,
        };
        let mut fetcher = Fetcher::for_keys(settings, ISSUER, &Algorithm::ALL, NOW, 250);
        if fetcher.adopt(&shared) == Ok(true) {
            std::hint::black_box(fetcher.keys(NOW));
            std::hint::black_box(fetcher.keys(i64::MAX));
            std::hint::black_box(fetcher.poll(NOW));
            std::hint::black_box(fetcher.request_refetch(NOW));
        }
    }

    if let Some(lease) = Lease::decode(data) {
        assert_eq!(Lease::decode(&lease.encode()), Some(lease.clone()));
        assert!(Lease::can_take(Some(data), lease.holder, NOW));
    }
    std::hint::black_box(Lease::can_take(Some(data), 7, NOW));

    if let Ok(header) = std::str::from_utf8(data) {
        let interval = refresh_interval(CONFIGURED_REFRESH, Some(header));
        assert!(
            interval == CONFIGURED_REFRESH
                || (MIN_REFRESH_SECONDS..=MAX_REFRESH_SECONDS).contains(&interval),
            "{interval}"
        );
    }
});
