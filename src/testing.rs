//! The one way in for code outside the crate that tests it: the integration tests (`tests/`),
//! the crypto probe (`tests/crypto_probe`), the fuzz targets (`fuzz/`) and the schema example.
//!
//! Every module of the crate is `pub(crate)`, so rustc reports what nothing uses; the items
//! these callers need are re-exported here under their own paths (`testing::jose::token::parse`
//! is `crate::jose::token::parse`). Hidden from the documentation and not an API: what a
//! proxy loads is the module, and its interface is the configuration (`schema/`), the
//! responses, the headers and the stats `DESIGN.md` describes.

pub mod base {
    pub mod http {
        pub use crate::base::http::HttpUri;
    }
    pub mod ids {
        pub use crate::base::ids::{ListIndex, ProviderIndex};
    }
    pub mod time {
        pub use crate::base::time::UnixSeconds;
    }
}

pub mod jose {
    pub mod algorithm {
        pub use crate::jose::algorithm::Algorithm;
    }
    pub mod host_crypto {
        pub use crate::jose::host_crypto::{decode_result, hash_function, FUNCTION_NAME};
    }
    pub mod jwks {
        pub use crate::jose::jwks::{parse_key, Key, KeyProblem, KeySet};
    }
    pub mod signature {
        pub use crate::jose::signature::{
            check, verify_signature, CheckedSignature, Portable, SignatureError, SignatureVerifier,
        };
    }
    pub mod token {
        pub use crate::jose::token::{parse, JoseHeader, MalformedToken};
    }
}

pub mod verify {
    pub use crate::verify::verify;
    pub mod cache {
        pub use crate::verify::cache::TokenCache;
    }
}

pub mod request {
    pub use crate::request::Request;
    pub mod token {
        pub use crate::request::token::extract;
    }
}

pub mod fetch {
    pub mod remote {
        pub use crate::fetch::remote::{
            refresh_interval, AddressesNow, Document, Fetcher, KeysNow, Lease, Location, Poll,
            Progress, RemoteDocuments, RemoteSettings, SharedDocument, SharedRecord,
            MAX_REFRESH_SECONDS, MIN_REFRESH_SECONDS,
        };
    }
}

pub mod introspection {
    pub use crate::introspection::IntrospectionCache;
}

pub mod config {
    #[cfg(feature = "schema")]
    pub use crate::config::schema;
    pub use crate::config::{Config, KeySource, DEFAULT_MAX_TOKEN_BYTES};
}

pub mod decision {
    pub use crate::decision::{authenticate, Attempt, Decision, Reason, Services};
}
