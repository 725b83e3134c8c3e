//! The vocabulary every layer above uses: time, the numbering of providers and lists, HTTP
//! locations, claims. Depends on nothing else in the crate.

pub mod claims;
pub mod http;
pub mod ids;
pub mod time;
