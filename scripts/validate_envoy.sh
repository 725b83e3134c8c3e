#!/usr/bin/env bash
# Checks every envoy/*.yaml with `envoy --mode validate`. Validation loads the .wasm and runs the
# filter's on_configure, so it fails when the artifact is missing or the filter rejects the
# plugin configuration, not only on Envoy schema errors. Templates (with {{...}} placeholders)
# are rendered first, as scripts/run.sh renders them.
#
# Environment: ENVOY_BIN (.venv/bin/envoy), MINT (cargo run --quiet --example mint --)
set -euo pipefail
# Configs name the artifact relative to the repository root, and Envoy resolves relative paths
# against its working directory (not the config file's), so this must run from the root.
cd "$(dirname "$0")/.."

ENVOY_BIN=${ENVOY_BIN:-.venv/bin/envoy}
MINT=${MINT:-cargo run --quiet --example mint --}
OUT=target/validate
mkdir -p "$OUT"

failed=0
for config in envoy/*.yaml; do
    checked=$config
    if grep -q '{{' "$config"; then
        [ -f "$OUT/jwks.json" ] || $MINT jwks >"$OUT/jwks.json"
        checked=$OUT/$(basename "$config")
        python3 scripts/render_config.py "$config" "$checked" JWKS=@"$OUT/jwks.json" \
            LISTEN_PORT=10000 ADMIN_PORT=9901 UPSTREAM_PORT=8080 \
            WASM=target/wasm32-wasip1/release/wasm_jwt_authn.wasm
    fi
    if "$ENVOY_BIN" --mode validate -c "$checked" >"$OUT/$(basename "$config").log" 2>&1; then
        echo "validate-envoy: $config OK"
    else
        echo "validate-envoy: $config FAILED:" >&2
        grep -E '\]\[(critical|error)\]|wasm log' "$OUT/$(basename "$config").log" >&2 || cat "$OUT/$(basename "$config").log" >&2
        failed=1
    fi
done
rm -f "$OUT/jwks.json" # minted afresh next time, so it always matches the mint tool
exit "$failed"
