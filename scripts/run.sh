#!/usr/bin/env bash
# The demo behind `make run`: an echo upstream, Envoy with the filter in front of it, fresh keys
# and a token, and the two curl commands to try. Serves until Ctrl-C.
# RUN_SMOKE=1 runs both requests itself, checks 200 and 401, and exits (for CI and quick checks).
#
# Environment (defaults): LISTEN_PORT (10000) ADMIN_PORT (9901) UPSTREAM_PORT (8080)
#   ENVOY_BIN (.venv/bin/envoy) WASM_JWT_AUTHN_WASM (target/wasm32-wasip1/release/wasm_jwt_authn.wasm)
#   MINT (cargo run --quiet --example mint --): prints a JWKS for `jwks`, a signed token for `token`
set -euo pipefail
cd "$(dirname "$0")/.."

LISTEN_PORT=${LISTEN_PORT:-10000}
ADMIN_PORT=${ADMIN_PORT:-9901}
UPSTREAM_PORT=${UPSTREAM_PORT:-8080}
ENVOY_BIN=${ENVOY_BIN:-.venv/bin/envoy}
WASM=${WASM_JWT_AUTHN_WASM:-target/wasm32-wasip1/release/wasm_jwt_authn.wasm}
MINT=${MINT:-cargo run --quiet --example mint --}
RUN_DIR=target/run

fail() { echo "run: $*" >&2; exit 1; }
[ -f "$WASM" ] || fail "$WASM not found: run 'make build' first"
[ -x "$ENVOY_BIN" ] || command -v "$ENVOY_BIN" >/dev/null || fail "no Envoy at $ENVOY_BIN: run 'scripts/setup.sh envoy'"
mkdir -p "$RUN_DIR"

# The demo is its own identity provider: keys and a token come from the crate's mint example.
$MINT jwks >"$RUN_DIR/jwks.json"
token=$($MINT token)
python3 scripts/render_config.py envoy/run.yaml "$RUN_DIR/envoy.yaml" JWKS=@"$RUN_DIR/jwks.json" \
    LISTEN_PORT="$LISTEN_PORT" ADMIN_PORT="$ADMIN_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" WASM="$WASM"

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
if [ "${RUN_SMOKE:-}" = 1 ]; then
    allowed=$(curl -s -o "$RUN_DIR/allowed.body" -w '%{http_code}' -H "Authorization: Bearer $token" "$url")
    denied=$(curl -s -o "$RUN_DIR/denied.body" -w '%{http_code}' "$url")
    echo "run: with token: $allowed $(cat "$RUN_DIR/allowed.body")"
    echo "run: without token: $denied $(cat "$RUN_DIR/denied.body")"
    [ "$allowed" = 200 ] && [ "$denied" = 401 ] || { show_logs; fail "expected 200 with the token and 401 without"; }
    echo "run: smoke test passed"
    exit 0
fi

cat <<EOF

Envoy with wasm-jwt-authn listens on 127.0.0.1:$LISTEN_PORT (admin: http://127.0.0.1:$ADMIN_PORT/stats).
With a token (expect 200; the echo shows what the upstream received):
  curl -i -H 'Authorization: Bearer $token' $url
Without one (expect 401):
  curl -i $url
Ctrl-C stops Envoy and the echo upstream.

EOF
wait "$envoy_pid"
