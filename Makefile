# wasm-jwt-authn: the one front door. CI runs `make test` (.ci/run), the same as a developer.
# `make` lists the targets. Every target installs the tools it needs (scripts/setup.sh).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# Targets share target/ and Cargo's lock; run them one after another even under `make -j`.
.NOTPARALLEL:

WASM := target/wasm32-wasip1/release/wasm_jwt_authn.wasm
# The same filter with Rego policies (`--features rego`), built into its own target directory
# and copied next to the artifact: regorus adds about 0.9 MB, so it is a module of its own.
REGO_WASM := target/wasm32-wasip1/release/wasm_jwt_authn_rego.wasm
REGO_BUILD := target/rego/wasm32-wasip1/release/wasm_jwt_authn.wasm
# The benchmark's baseline build (`--features reference-rsa`), apart from the artifact.
REFERENCE_WASM := target/reference/wasm32-wasip1/release/wasm_jwt_authn.wasm
# The Envoy the end-to-end tests and demos run; set ENVOY_BIN to use another build.
ENVOY_BIN ?= $(CURDIR)/.venv/bin/envoy
# rustc 1.95 emits these Wasm features for wasm32-wasip1 (`rustc --print cfg --target
# wasm32-wasip1`), and the module carries no feature section after `strip`, so wasm-opt must be
# told or it rejects the module. -O3 rather than -Oz: 8 KB more (about 549 KB in all), and a
# request whose token is in the cache costs about 5 % less CPU in Envoy (`make bench`'s paired
# rounds, 4 of 4 pairs between 1.02 and 1.06); rustc's own opt-level stays "s" (Cargo.toml), as
# 2 or 3 measured no faster and 60-80 KB larger.
WASM_OPT_FLAGS := -O3 --enable-bulk-memory --enable-multivalue --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext

# The release version (Cargo.toml) and the source revision the artifact is built from: the
# filter logs both when its VM starts, and `make oci` labels the image with them.
VERSION := $(shell awk -F'"' '/^version = / { print $$2; exit }' Cargo.toml)
REVISION := $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
# Where `make oci` writes the image layout.
OCI_LAYOUT := target/oci

.PHONY: help setup build test test-unit test-wasm lint validate-envoy run bench clean differential fuzz oci schema

help: ## list the targets and what each is for
	@echo "usage: make TARGET"
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-15s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

setup: ## install every tool the targets use: Rust targets, binaryen, wrk, curl, skopeo, docker-registry, Envoy, wasm-bindgen
	@scripts/setup.sh

build: ## build the filter into target/wasm32-wasip1/release/wasm_jwt_authn.wasm, and with Rego into wasm_jwt_authn_rego.wasm (wasm-opt'd when installed)
	@scripts/setup.sh targets
	WASM_JWT_AUTHN_REVISION=$(REVISION) cargo build --locked --release --target wasm32-wasip1
	WASM_JWT_AUTHN_REVISION=$(REVISION) cargo build --locked --release --target wasm32-wasip1 --features rego --target-dir target/rego
# Cargo re-links the artifact from deps/ on every build, so wasm-opt always starts from Cargo's
# output; writing a new file and renaming it leaves deps/ untouched. The Rego module is
# optimized into a file of its own, so only when Cargo's output is newer (that takes 18 s).
# (The two builds need their own target directories: Cargo keeps one build of a cdylib per
# target directory, and alternating features would rebuild both every time.)
	@if command -v wasm-opt >/dev/null; then \
		wasm-opt $(WASM_OPT_FLAGS) $(WASM) -o $(WASM).opt && mv $(WASM).opt $(WASM); \
		[ $(REGO_WASM) -nt $(REGO_BUILD) ] || wasm-opt $(WASM_OPT_FLAGS) $(REGO_BUILD) -o $(REGO_WASM); \
	else \
		echo "build: wasm-opt not found (scripts/setup.sh apt installs it): artifacts not optimized"; \
		cp $(REGO_BUILD) $(REGO_WASM); \
	fi
	@echo "build: $(WASM) is $$(stat -c %s $(WASM)) bytes, $(REGO_WASM) $$(stat -c %s $(REGO_WASM)) bytes"

test: setup lint test-unit test-wasm validate-envoy ## everything CI checks: lints, native and end-to-end tests, Wasm tests, Envoy configs

test-unit: build ## native tests: the core's unit tests and the end-to-end tests against a real Envoy
	@scripts/setup.sh envoy idp apt
	ENVOY_BIN=$(ENVOY_BIN) WASM_JWT_AUTHN_WASM=$(CURDIR)/$(WASM) \
		WASM_JWT_AUTHN_REGO_WASM=$(CURDIR)/$(REGO_WASM) WASM_JWT_AUTHN_REVISION=$(REVISION) \
		cargo test --locked --features rego,schema

test-wasm: ## the core's unit tests compiled to Wasm, run under Node (V8, the engine Envoy uses)
	@scripts/setup.sh targets wasm-bindgen
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
		cargo test --locked --target wasm32-unknown-unknown --lib

lint: ## rustfmt check, and clippy with warnings as errors, natively and for wasm32-wasip1
# Two passes cover every line: natively with every feature (tests, Rego, the schema, the adapter
# built for the host), and the module as it ships for wasm32-wasip1 without features (the
# Wasm-only code and the build that refuses Rego by name). Rego's code is the same on both
# targets, so a wasm32 pass with it would check nothing new.
	@scripts/setup.sh targets
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets --features rego,schema -- -D warnings
	cargo clippy --locked --target wasm32-wasip1 --lib -- -D warnings

validate-envoy: build ## check every envoy/*.yaml with `envoy --mode validate` (loads the filter, runs its on_configure) and its filter configuration against schema/config.schema.json
	@scripts/setup.sh envoy idp apt
	ENVOY_BIN=$(ENVOY_BIN) scripts/validate_envoy.sh

run: build ## the main job: a real OpenID Provider, Envoy + filter on 127.0.0.1:10000 before an echo upstream, a curl walkthrough; RUN_SMOKE=1 checks and exits
	@scripts/setup.sh envoy apt idp
	ENVOY_BIN=$(ENVOY_BIN) scripts/run.sh

differential: build ## the same ~9000 valid and mutated tokens through native jwt_authn and the filter; report in target/differential/
# tests/e2e/differential.rs is #[ignore]d so `make test` stays fast; it fails on an unexplained
# "we allow, native denies" or a valid token not allowed by both. Dev profile: its dependencies
# are optimised (Cargo.toml), and the filter under test is the release .wasm anyway.
	@scripts/setup.sh envoy
	ENVOY_BIN=$(ENVOY_BIN) WASM_JWT_AUTHN_WASM=$(CURDIR)/$(WASM) \
		cargo test --locked --test e2e differential:: -- --ignored --nocapture

fuzz: ## fuzz the token, JWKS, config, discovery and shared-record parsers, each FUZZ_SECONDS (default 60)
# Nightly + cargo-fuzz (libFuzzer), both installed by the script when missing; not part of
# `make test`. Seeds: fuzz/corpus/ (committed); crashes land in fuzz/artifacts/.
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) scripts/fuzz.sh

bench: build ## benchmark one Envoy worker: no auth vs native jwt_authn vs the filter; table in bench/results.md
# Reports, never fails on slow numbers; BENCH_ROUNDS, BENCH_DURATION, …: bench/README.md.
# Several minutes: not part of `make test`. The `portable-reference` row is the same filter
# built with `--features reference-rsa` (RSA through jwt-compact and the `rsa` crate), into
# its own target directory so it never replaces the artifact.
	@scripts/setup.sh envoy apt
	cargo build --locked --release --target wasm32-wasip1 --features reference-rsa --target-dir target/reference
	@if command -v wasm-opt >/dev/null; then \
		wasm-opt $(WASM_OPT_FLAGS) $(REFERENCE_WASM) -o $(REFERENCE_WASM).opt && mv $(REFERENCE_WASM).opt $(REFERENCE_WASM); \
	fi
	ENVOY_BIN=$(ENVOY_BIN) WASM_JWT_AUTHN_WASM=$(CURDIR)/$(WASM) WASM_JWT_AUTHN_REGO_WASM=$(CURDIR)/$(REGO_WASM) \
		BENCH_REFERENCE_WASM=$${BENCH_REFERENCE_WASM-$(CURDIR)/$(REFERENCE_WASM)} python3 scripts/bench.py

schema: ## write schema/config.schema.json, the configuration's JSON Schema, from the configuration types (a test checks it is current)
	cargo run --locked --quiet --example schema --features schema > schema/config.schema.json

oci: build ## the artifact as an OCI image (Wasm "compat" variant, what Istio and Envoy Gateway pull) in target/oci; OCI_PUSH=host/repo:tag pushes it
	@scripts/setup.sh apt
	scripts/oci.py build --wasm $(WASM) --out $(OCI_LAYOUT) --tag $(VERSION) --version $(VERSION) --revision $(REVISION)
	@if [ -n "$${OCI_PUSH:-}" ]; then \
		skopeo copy $${OCI_PUSH_FLAGS:-} oci:$(OCI_LAYOUT):$(VERSION) docker://$$OCI_PUSH; \
	else \
		echo "oci: push with OCI_PUSH=registry.example.com/wasm-jwt-authn:$(VERSION) (OCI_PUSH_FLAGS for skopeo, e.g. --dest-creds)"; \
	fi

clean: ## remove build outputs (target/); keeps the tools in .venv/
	cargo clean
