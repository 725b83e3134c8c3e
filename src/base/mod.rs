//! The vocabulary every layer above uses: time, the numbering of providers and lists, HTTP
//! locations, claims, and the bounded map the caches are built on. Depends on nothing else in the crate.

pub mod claims;
pub(crate) mod fifo_map;
pub mod http;
pub mod ids;
pub mod time;

/// A configuration field at fault (its path, `rules[2].require.scopes`) and why. Each layer
/// validates its own part of the configuration and says which field is wrong; `config` turns
/// the pair into its one `ConfigError`.
pub type FieldError = (String, String);
