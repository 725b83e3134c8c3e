#!/usr/bin/env bash
# The demo behind `make run`: a real OpenID Provider (tests/idp: oidc-provider over HTTPS with a
# throwaway CA), an echo upstream, and Envoy with the filter in front of it, which finds the
# provider's keys by OIDC discovery. Prints a walkthrough: get a token from the provider with
# curl, call the API through Envoy with it and without it. Serves until Ctrl-C.
# RUN_SMOKE=1 runs the walkthrough itself, checks 200 and 401, and exits (for CI and quick checks).
#
# Environment (defaults): LISTEN_PORT (10000) ADMIN_PORT (9901) UPSTREAM_PORT (8080)
#   IDP_PORT (9443) IDP_ADMIN_PORT (9444) ENVOY_BIN (.venv/bin/envoy) NODE_BIN (node)
#   WASM_JWT_AUTHN_WASM (target/wasm32-wasip1/release/wasm_jwt_authn.wasm)
set -euo pipefail
cd "$(dirname "$0")/.."

LISTEN_PORT=${LISTEN_PORT:-10000}
ADMIN_PORT=${ADMIN_PORT:-9901}
UPSTREAM_PORT=${UPSTREAM_PORT:-8080}
IDP_PORT=${IDP_PORT:-9443}
IDP_ADMIN_PORT=${IDP_ADMIN_PORT:-9444}
NODE_BIN=${NODE_BIN:-node}
ENVOY_BIN=${ENVOY_BIN:-.venv/bin/envoy}
WASM=${WASM_JWT_AUTHN_WASM:-target/wasm32-wasip1/release/wasm_jwt_authn.wasm}
RUN_DIR=target/run

fail() { echo "run: $*" >&2; exit 1; }
[ -f "$WASM" ] || fail "$WASM not found: run 'make build' first"
[ -x "$ENVOY_BIN" ] || command -v "$ENVOY_BIN" >/dev/null || fail "no Envoy at $ENVOY_BIN: run 'scripts/setup.sh envoy'"
mkdir -p "$RUN_DIR"

[ -d tests/idp/node_modules ] || fail "tests/idp/node_modules missing: run 'scripts/setup.sh idp'"
issuer="https://localhost:$IDP_PORT"
tests/idp/make-ca.sh "$RUN_DIR/ca" >/dev/null
python3 scripts/render_config.py envoy/run.yaml "$RUN_DIR/envoy.yaml" IDP_PORT="$IDP_PORT" \
    IDP_CA="$RUN_DIR/ca/ca.pem" LISTEN_PORT="$LISTEN_PORT" ADMIN_PORT="$ADMIN_PORT" \
    UPSTREAM_PORT="$UPSTREAM_PORT" WASM="$WASM"

children=()
stop_children() {
    for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_children EXIT
# Background children of a script ignore SIGINT, so Ctrl-C must reach them through this trap.
trap 'exit 130' INT TERM

# In smoke mode the logs go to files, shown only if a check fails; interactively, to the terminal.
if [ "${RUN_SMOKE:-}" = 1 ]; then exec 3>"$RUN_DIR/envoy.log" 4>"$RUN_DIR/upstream.log"; else exec 3>&1 4>&1; fi
show_logs() { [ "${RUN_SMOKE:-}" = 1 ] && tail -n 40 "$RUN_DIR/upstream.log" "$RUN_DIR/envoy.log" >&2; true; }

IDP_PORT=$IDP_PORT IDP_ADMIN_PORT=$IDP_ADMIN_PORT IDP_ISSUER=$issuer IDP_RESOURCE=api://demo \
    IDP_TLS_CERT=$RUN_DIR/ca/server.pem IDP_TLS_KEY=$RUN_DIR/ca/server-key.pem \
    "$NODE_BIN" tests/idp/server.mjs >"$RUN_DIR/idp.out" 2>"$RUN_DIR/idp.log" &
children+=("$!")
for attempt in $(seq 100); do
    grep -q '^READY' "$RUN_DIR/idp.out" 2>/dev/null && break
    [ "$attempt" -lt 100 ] || { cat "$RUN_DIR/idp.log" >&2; fail "the OpenID Provider did not start"; }
    sleep 0.1
done

python3 scripts/echo_upstream.py "$UPSTREAM_PORT" >&4 2>&1 &
upstream_pid=$!
children+=("$upstream_pid")
# --disable-hot-restart: hot restart binds a per-base-id socket, so a second Envoy (tests, another
# demo) would fail to start. A short flush interval shows access log lines at once, not in 10 s.
"$ENVOY_BIN" -c "$RUN_DIR/envoy.yaml" --disable-hot-restart --file-flush-interval-msec 100 \
    --log-level warn --component-log-level wasm:info >&3 2>&1 &
envoy_pid=$!
children+=("$envoy_pid")

# Envoy's /ready says LIVE once listeners are up (about 0.2 s); the upstream is polled too, since
# Envoy does not wait for it. Give up after 10 s, or as soon as either process has died.
for attempt in $(seq 100); do
    [ "$(curl -s "http://127.0.0.1:$ADMIN_PORT/ready" || true)" = LIVE ] &&
        curl -s -o /dev/null "http://127.0.0.1:$UPSTREAM_PORT/" && break
    kill -0 "$envoy_pid" 2>/dev/null || { show_logs; fail "Envoy exited during start-up"; }
    kill -0 "$upstream_pid" 2>/dev/null || { show_logs; fail "echo upstream exited during start-up"; }
    [ "$attempt" -lt 100 ] || { show_logs; fail "not ready after 10 s"; }
    sleep 0.1
done

url="http://127.0.0.1:$LISTEN_PORT/hello"
token_request="curl -s --cacert $RUN_DIR/ca/ca.pem -u test-client:test-secret -d grant_type=client_credentials -d resource=api://demo $issuer/token"
extract_token="python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])'"
if [ "${RUN_SMOKE:-}" = 1 ]; then
    token=$($token_request | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
    allowed=$(curl -s -o "$RUN_DIR/allowed.body" -w '%{http_code}' -H "Authorization: Bearer $token" "$url")
    denied=$(curl -s -o "$RUN_DIR/denied.body" -w '%{http_code}' "$url")
    echo "run: with token: $allowed $(cat "$RUN_DIR/allowed.body")"
    echo "run: without token: $denied $(cat "$RUN_DIR/denied.body")"
    [ "$allowed" = 200 ] && [ "$denied" = 401 ] || { show_logs; fail "expected 200 with the token and 401 without"; }
    echo "run: smoke test passed"
    exit 0
fi

cat <<WALKTHROUGH

Envoy with wasm-jwt-authn listens on 127.0.0.1:$LISTEN_PORT (admin: http://127.0.0.1:$ADMIN_PORT/stats).
Its keys come from the OpenID Provider at $issuer (oidc-provider), found by OIDC discovery.

1. Get an access token from the provider (client credentials, resource api://demo):
     TOKEN=\$($token_request | $extract_token)
2. Call the API through Envoy with it (expect 200; the echo shows x-jwt-sub and x-jwt-client):
     curl -i -H "Authorization: Bearer \$TOKEN" $url
3. Without it (expect 401 and a Bearer challenge):
     curl -i $url
4. Rotate the provider's signing key, get a new token (step 1), call again: 200, no restart
   (the filter refetches keys for an unknown kid at most every 5 s in this demo).
     curl -s -X POST http://127.0.0.1:$IDP_ADMIN_PORT/rotate
5. The filter's counters:
     curl -s http://127.0.0.1:$ADMIN_PORT/stats | grep wasm_jwt_authn

Ctrl-C stops Envoy, the provider and the echo upstream.

WALKTHROUGH
wait "$envoy_pid"
