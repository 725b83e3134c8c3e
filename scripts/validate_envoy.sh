#!/usr/bin/env bash
# Checks every envoy/*.yaml with `envoy --mode validate`, and the filter configurations in them
# against the JSON Schema (scripts/check_examples.py); the Kubernetes manifests in envoy/k8s/ for
# their fields, their configuration against the schema and, in a copy of envoy/envoy.yaml,
# against the filter itself. Validation loads the .wasm and runs the
# filter's on_configure, so it fails when the artifact is missing or the filter rejects the
# plugin configuration, not only on Envoy schema errors. Templates (with {{...}} placeholders)
# are rendered first, as scripts/run.sh renders them.
#
# Environment: ENVOY_BIN (.venv/bin/envoy)
set -euo pipefail
# Configs name the artifact relative to the repository root, and Envoy resolves relative paths
# against its working directory (not the config file's), so this must run from the root.
cd "$(dirname "$0")/.."

ENVOY_BIN=${ENVOY_BIN:-.venv/bin/envoy}
SYSTEM_PYTHON=/usr/bin/python3
[ -x "$SYSTEM_PYTHON" ] || SYSTEM_PYTHON=python3
OUT=target/validate
mkdir -p "$OUT"

failed=0
for config in envoy/*.yaml; do
    checked=$config
    if grep -q '{{' "$config"; then
        # Envoy loads the CA file while validating, so a template needs a real one.
        [ -f "$OUT/ca/ca.pem" ] || tests/idp/make-ca.sh "$OUT/ca" >/dev/null
        checked=$OUT/$(basename "$config")
        python3 scripts/render_config.py "$config" "$checked" IDP_PORT=9443 IDP_CA="$OUT/ca/ca.pem" \
            LISTEN_PORT=10000 ADMIN_PORT=9901 UPSTREAM_PORT=8080 \
            WASM=target/wasm32-wasip1/release/wasm_jwt_authn.wasm
    fi
    # The filter's configurations in it must match the JSON Schema as well. Debian's Python,
    # where scripts/setup.sh installs PyYAML and jsonschema (another python3 may lack them).
    "$SYSTEM_PYTHON" scripts/check_examples.py "$checked" || failed=1
    if "$ENVOY_BIN" --mode validate -c "$checked" >"$OUT/$(basename "$config").log" 2>&1; then
        echo "validate-envoy: $config OK"
    else
        echo "validate-envoy: $config FAILED:" >&2
        grep -E '\]\[(critical|error)\]|wasm log' "$OUT/$(basename "$config").log" >&2 || cat "$OUT/$(basename "$config").log" >&2
        failed=1
    fi
done
# The jwt_authn configuration docs/MIGRATION.md converts: Envoy's own filter, checked as is.
for config in docs/migration/*.yaml; do
    if "$ENVOY_BIN" --mode validate -c "$config" >"$OUT/$(basename "$config").log" 2>&1; then
        echo "validate-envoy: $config OK"
    else
        echo "validate-envoy: $config FAILED:" >&2
        cat "$OUT/$(basename "$config").log" >&2
        failed=1
    fi
done

# Kubernetes manifests and the ready-made identity-provider configs: their fields and their filter
# configuration checked, and that configuration run through the filter's own check in a copy of
# envoy/envoy.yaml (with the provider's cluster).
if ! generated=$("$SYSTEM_PYTHON" scripts/check_examples.py --envoy-template envoy/envoy.yaml \
    --out "$OUT/k8s" envoy/k8s/*.yaml envoy/idp/*.json); then
    failed=1
fi
for config in $(grep '\.yaml$' <<<"$generated"); do
    if "$ENVOY_BIN" --mode validate -c "$config" >"$config.log" 2>&1; then
        echo "validate-envoy: $config (from envoy/k8s/ or envoy/idp/) OK"
    else
        echo "validate-envoy: $config (from envoy/k8s/ or envoy/idp/) FAILED:" >&2
        grep -E '\]\[(critical|error)\]|wasm log' "$config.log" >&2 || cat "$config.log" >&2
        failed=1
    fi
done
grep -v '\.yaml$' <<<"$generated" || true
exit "$failed"
