//! Prints the JSON Schema of the plugin configuration: `make schema` writes it to
//! `schema/config.schema.json`, which a test keeps current.
//!
//! ```text
//! cargo run --example schema --features schema > schema/config.schema.json
//! ```
#![allow(clippy::expect_used)]

fn main() {
    let schema = wasm_jwt_authn::testing::config::schema();
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).expect("a JSON value prints")
    );
}
