//! Reading a verified token's claims: one definition of a claim path and of a token's scopes
//! for every layer that reads them (conditions, Rego input, identity headers).

use serde_json::{Map, Value};

/// Every scope the token grants, from `scope`, `scp` and `scopes`, strings split at spaces.
pub fn scopes_of(claims: &Map<String, Value>) -> Vec<&str> {
    let mut scopes = Vec::new();
    for name in ["scope", "scp", "scopes"] {
        match claims.get(name) {
            Some(Value::String(list)) => scopes.extend(list.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => {
                scopes.extend(items.iter().filter_map(Value::as_str));
            }
            _ => {}
        }
    }
    scopes
}

/// The value at `path` in `claims`, through nested objects.
pub fn claim_at<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}
