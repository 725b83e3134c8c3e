//! Verified tokens remembered, so a client that sends the same token again costs a hash and a
//! lookup instead of a parse and a signature check.
//!
//! What makes a hit safe:
//! - **Keyed by the whole token.** A hit is the very token that was verified: the map hashes
//!   the token (SipHash with a per-VM random key, so nobody can aim tokens at one bucket) and
//!   then compares it whole. No digest stands in for it, so there is no collision to forge;
//!   and comparing costs less than a cryptographic hash would (SHA-256 of a typical token
//!   took most of the time of a hit).
//! - **Only successes are stored**, so a flood of bad tokens never touches the cache.
//! - **Bound to the provider and the key.** A hit counts only while the provider's current
//!   key set still holds the key that verified it (by [`KeyFingerprint`]): a key that leaves
//!   the JWKS takes its cached tokens with it, on the next request that presents one.
//! - **Time claims re-checked** on every hit, with the provider's clock skew.
//! - **Everything else is fixed by the token and the configuration** (issuer, audience, type,
//!   algorithm, claims), and the cache lives and dies with one configuration.
//! - Per-request checks (rule, accepted providers, token source) run on hits as on misses.
//!
//! Memory is bounded: at most `capacity` entries, the oldest evicted first (first in, first
//! out: under a flood of distinct valid tokens an LRU would evict just as much, at the cost of
//! bookkeeping on every hit).

use std::sync::Arc;

use crate::base::fifo_map::FifoMap;
use crate::base::ids::ProviderIndex;
use crate::jose::jwks::KeyFingerprint;
use crate::verify::Lifetime;

use serde_json::{Map, Value};

/// Defaults to 1 000 entries: one to two megabytes for typical tokens of about 1 KiB (each
/// entry holds its token and the identity headers made from it).
pub const DEFAULT_MAX_ENTRIES: usize = 1_000;

/// The most entries a configuration may ask for.
pub const MAX_ENTRIES_LIMIT: usize = 1_000_000;

/// What a verification established, enough to allow the request again without redoing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub provider: ProviderIndex,
    /// The key that verified the signature.
    pub key: KeyFingerprint,
    pub lifetime: Lifetime,
    /// The verified `sub`, when safe to log.
    pub subject: Option<Arc<str>>,
    /// The identity headers (claims and payload headers) the upstream receives.
    pub identity_headers: Vec<(Arc<str>, Arc<str>)>,
    /// The verified claims, kept only when some rule's `require` reads them.
    pub claims: Option<Arc<Map<String, Value>>>,
}

/// A bounded map from tokens to verification results.
#[derive(Debug)]
pub struct TokenCache {
    entries: FifoMap<CachedToken>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables caching.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: FifoMap::new(capacity),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.entries.capacity() > 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, token: &str) -> Option<&CachedToken> {
        self.entries.get(token)
    }

    pub fn remove(&mut self, token: &str) {
        self.entries.remove(token);
    }

    /// Remembers a verification, evicting the oldest entries to stay within capacity.
    pub fn insert(&mut self, token: &str, verified: CachedToken) {
        self.entries.insert(token, verified);
    }
}

#[cfg(test)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn entry(provider: ProviderIndex) -> CachedToken {
        CachedToken {
            provider,
            key: [7; 32],
            lifetime: Lifetime {
                expires_at: Some(2_000_000_000),
                not_before: None,
                issued_at: None,
            },
            subject: Some(Arc::from("a client")),
            identity_headers: vec![(Arc::from("x-jwt-sub"), Arc::from("a client"))],
            claims: None,
        }
    }

    #[test]
    fn a_disabled_cache_neither_hashes_nor_stores() {
        let mut cache = TokenCache::new(0);
        cache.insert("a.b.c", entry(ProviderIndex::new(0)));
        assert!(cache.is_empty());
        assert_eq!(cache.get("a.b.c"), None);
    }

    #[test]
    fn a_hit_is_the_same_token_only() {
        let mut cache = TokenCache::new(10);
        cache.insert("a.b.c", entry(ProviderIndex::new(1)));
        assert_eq!(cache.get("a.b.c"), Some(&entry(ProviderIndex::new(1))));
        assert_eq!(cache.get("a.b.d"), None);
        assert_eq!(cache.get("a.b.c "), None);
        cache.remove("a.b.c");
        assert_eq!(cache.get("a.b.c"), None);
    }

    #[test]
    fn a_flood_of_distinct_tokens_stays_within_capacity_oldest_out_first() {
        let mut cache = TokenCache::new(100);
        for index in 0..100_000 {
            cache.insert(&format!("token-{index}"), entry(ProviderIndex::new(0)));
            assert!(cache.len() <= 100);
            assert!(cache.entries.queue_len() <= 200);
        }
        assert_eq!(cache.len(), 100);
        assert!(cache.get("token-99899").is_none());
        assert!(cache.get("token-99900").is_some());
        assert!(cache.get("token-99999").is_some());
    }

    #[test]
    fn removals_and_reinsertions_keep_the_queue_bounded() {
        let mut cache = TokenCache::new(3);
        for _ in 0..1_000 {
            cache.insert("same", entry(ProviderIndex::new(0)));
            cache.remove("same");
            cache.insert("same", entry(ProviderIndex::new(0)));
            assert!(cache.entries.queue_len() <= 6);
        }
        assert_eq!(cache.len(), 1);
        // Stale queue entries of the re-inserted token evict nothing.
        for name in ["one", "two"] {
            cache.insert(name, entry(ProviderIndex::new(0)));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get("same").is_some());
    }
}
