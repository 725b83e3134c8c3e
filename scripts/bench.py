#!/usr/bin/env python3
"""Benchmarks the filter against Envoy's native jwt_authn: `make bench` (see bench/README.md).

For each workload, starts one Envoy per mode (one worker, pinned to CPU 0 when `taskset` is
there), each in front of a trivial upstream (a second listener of the same Envoy that answers
200 with a `direct_response`), checks that each mode answers a valid token with 200 and a
missing or forged one with 401, warms each up, then measures them in interleaved rounds with
wrk (pinned to CPU 1), only one Envoy under load at a time. Prints a table and writes
bench/results.md (and the raw numbers as target/bench/results.json).

Modes:     none (no auth filter), native (envoy.filters.http.jwt_authn), auto (this filter,
           "crypto": "auto"), portable ("crypto": "portable"), portable-reference (the
           portable configuration with the module in BENCH_REFERENCE_WASM; only when set).
Workloads: rs256-distinct, es256-distinct (a few thousand distinct tokens, token caches off on
           both sides), repeated-100 (100 RS256 tokens over and over, caches on, both sized
           CACHE_ENTRIES).
Flood:     after the workloads, BENCH_FLOOD_TOKENS distinct ES256 tokens (minted by
           `cargo run --release --example mint -- tokens`), each sent once, through one Envoy in
           mode auto with the token cache at its default 1000 entries and then off; the
           filter's gauges memory_bytes and token_cache.entries before and after show whether
           the VM's memory stays bounded.

Environment (defaults): BENCH_ROUNDS (3) BENCH_DURATION (5, seconds per run) BENCH_WARMUP (2,
  seconds per Envoy) BENCH_CONNECTIONS (16) BENCH_TOKENS (3000 per algorithm) BENCH_WORKLOADS
  and BENCH_MODES (comma lists, default all) BENCH_REFERENCE_WASM (unset) BENCH_PIN (1: taskset
  when there are two CPUs) BENCH_NO_NEW_FIELDS (unset; 1 = --no-new-fields) ENVOY_BIN
  (.venv/bin/envoy) WASM_JWT_AUTHN_WASM (target/wasm32-wasip1/release/wasm_jwt_authn.wasm)
  BENCH_FLOOD (1; 0 = no flood) BENCH_FLOOD_TOKENS (100000).

Exit status: 0 when the harness ran, whatever the numbers (a mode that fails its checks is
reported and skipped); 1 when it cannot run (no Envoy, wrk, openssl or module; minting failed).
A flood that cannot run (its tokens cannot be minted, an Envoy fails) is reported in its table.
"""
import argparse
import atexit
import base64
import concurrent.futures
import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "target" / "bench"
RUN_DIR = OUT_DIR / "run"
LUA_SCRIPT = ROOT / "bench" / "wrk-tokens.lua"
RESULTS_MD = ROOT / "bench" / "results.md"
RESULTS_JSON = OUT_DIR / "results.json"
KEYS_DIR = ROOT / "tests" / "fixtures" / "keys"

ISSUER = "https://idp.bench.test"
AUDIENCE = "api://bench"
PROVIDER = "bench"
REQUEST_PATH = "/bench"
# Token caches for the cache-on workload, on both sides: comfortably above its 100 tokens.
CACHE_ENTRIES = 256

# Everything that decides the minted tokens (besides the key files, hashed separately): change
# any of it and the cached token files under target/bench/ are minted again.
TOKEN_SPEC = {
    # 2: tokens carry the scope and role the `auto-json-rule` mode's rule requires.
    "version": 2,
    "issuer": ISSUER,
    "audience": AUDIENCE,
    "lifetime_seconds": 2 * 365 * 86400,
    "keys": {
        "RS256": {"file": "rsa2048.pem", "kid": "bench-rsa-2048"},
        "ES256": {"file": "p256.pem", "kid": "bench-p256"},
    },
}

WORKLOADS = {
    "rs256-distinct": {"alg": "RS256", "pool": None, "cache": False,
                       "about": "distinct RS256 tokens, token caches off on both sides"},
    "es256-distinct": {"alg": "ES256", "pool": None, "cache": False,
                       "about": "distinct ES256 tokens, token caches off on both sides"},
    "repeated-100": {"alg": "RS256", "pool": 100, "cache": True, "policy_modes": True,
                     "about": f"100 RS256 tokens repeated, token caches on ({CACHE_ENTRIES} entries) on both sides"},
}
MODES = ["none", "native", "auto", "auto-json-rule", "auto-rego-rule", "portable",
         "portable-reference", "alternative"]
AUTH_MODES = {"native", "auto", "auto-json-rule", "auto-rego-rule", "portable", "portable-reference",
              "alternative"}
WASM_MODES = {"auto", "auto-json-rule", "auto-rego-rule", "portable", "portable-reference",
              "alternative"}
# Modes that measure an authorization policy on top of authentication: only in the workloads
# marked `policy_modes` (where tokens repeat, so the policy is not drowned by signature math).
POLICY_MODES = {"auto-json-rule", "auto-rego-rule"}
# The rule of `auto-json-rule`: what a zero-trust route typically asks on top of a valid token
# (a scope, a role at a nested claim path, the client's network), all met by the bench tokens.
JSON_RULE = {
    "name": "bench-policy",
    "match": {"path_prefix": "/"},
    "require": {
        "scopes": {"all": ["bench:read"]},
        "roles": {"any": ["bench-admin", "bench-user"]},
        "claims": {"all": [{"claim": ["sub"], "prefix": "bench-user-"}]},
        "source_ips": {"any": ["127.0.0.0/8", "::1"]},
    },
}
# The rule of `auto-rego-rule` (the module built with Rego): the same conditions in Rego.
REGO_RULE_POLICY = """package envoy.authz
import rego.v1
default allow := false
allow if {
    "bench:read" in input.token.scopes
    some role in input.token.claims.realm_access.roles
    role in {"bench-admin", "bench-user"}
    startswith(input.token.claims.sub, "bench-user-")
    input.attributes.source.address.socketAddress.address in {"127.0.0.1", "::1"}
}
"""

START_TIMEOUT = 30.0


class HarnessError(Exception):
    """The harness itself cannot run: reported, exit status 1."""


class ModeFailed(Exception):
    """One mode cannot be measured (Envoy refused it, or a check failed): that mode is skipped.
    The message is one line (for the tables); `details` (e.g. Envoy's log) goes to stderr."""

    def __init__(self, message, details=""):
        super().__init__(message)
        self.details = details


def say(message):
    print(f"bench: {message}", flush=True)


def warn(message):
    print(f"bench: WARNING: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The two authentication configurations. The filter's new top-level fields are added here and
# nowhere else.


def filter_configuration(jwks, crypto, cache_entries, new_fields, json_rule=False,
                         rego_rule=False):
    """This filter's JSON: one provider with the keys inline, required on every path (with
    `json_rule`: on the conditions of `JSON_RULE`)."""
    configuration = {
        "providers": [{
            "name": PROVIDER,
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwks": {"inline": jwks},
            "token_sources": [{"header": "authorization", "prefix": "Bearer "}],
            "forward_token": True,
        }],
        "rules": [{"match": {"path_prefix": "/"}, "providers": [PROVIDER]}],
    }
    if new_fields:
        configuration["crypto"] = crypto
        configuration["token_cache"] = {"max_entries": cache_entries}
    if json_rule:
        configuration["providers"][0]["role_claims"] = [["realm_access", "roles"]]
        configuration["rules"] = [dict(JSON_RULE, providers=[PROVIDER])]
    if rego_rule:
        configuration["rules"] = [{"name": "bench-rego", "match": {"path_prefix": "/"},
                                   "providers": [PROVIDER],
                                   "require": {"rego": {"policy": REGO_RULE_POLICY}}}]
    return configuration


def native_configuration(jwks, cache_entries):
    """jwt_authn's equivalent. Its JWT cache is on exactly when `jwt_cache_config` is present
    (jwks_cache.cc: `enable_jwt_cache = has_jwt_cache_config()`; a size of 0 there means the
    default 100), per worker thread, for tokens up to 4 KiB: omitted means off."""
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": json.dumps(jwks, separators=(",", ":"))},
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        # Like the filter's forward_token: the upstream gets the same request in both modes.
        "forward": True,
        # The filter requires `exp` by default.
        "require_expiration": True,
    }
    if cache_entries > 0:
        provider["jwt_cache_config"] = {"jwt_cache_size": cache_entries}
    return {
        "providers": {PROVIDER: provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}}],
    }


def auth_filter(mode, jwks, cache_entries, new_fields, wasm):
    """The entry in `http_filters` before the router, or None for mode `none`."""
    if mode == "none":
        return None
    if mode == "native":
        typed_config = native_configuration(jwks, cache_entries)
        typed_config["@type"] = (
            "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication")
        return {"name": "envoy.filters.http.jwt_authn", "typed_config": typed_config}
    crypto = ("auto" if mode in ("auto", "auto-json-rule", "auto-rego-rule", "alternative")
              else "portable")
    configuration = filter_configuration(jwks, crypto, cache_entries, new_fields,
                                         json_rule=mode == "auto-json-rule",
                                         rego_rule=mode == "auto-rego-rule")
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "wasm_jwt_authn",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": json.dumps(configuration, separators=(",", ":")),
                },
                "vm_config": {
                    "vm_id": "wasm_jwt_authn",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
            },
        },
    }


def bootstrap(http_filter, upstream_pipe):
    """Listener `ingress` (port 0, read back) → auth filter → router → cluster `upstream` → the
    same Envoy's listener `upstream` on an abstract Unix socket, which answers 200 itself. No
    access log: file I/O on the worker would only add noise."""
    def loopback(port):
        return {"socket_address": {"address": "127.0.0.1", "port_value": port}}

    def connection_manager(stat_prefix, route, filters, normalize):
        config = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "route_config": {"virtual_hosts": [{
                "name": stat_prefix, "domains": ["*"],
                "routes": [dict({"match": {"prefix": "/"}}, **route)],
            }]},
            "http_filters": filters + [{
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }],
        }
        if normalize:  # as envoy/envoy.yaml recommends in front of the filter
            config.update(normalize_path=True, merge_slashes=True,
                          path_with_escaped_slashes_action="UNESCAPE_AND_REDIRECT")
        return {"filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager", "typed_config": config}]}]}

    pipe = {"pipe": {"path": upstream_pipe}}
    ingress = connection_manager("ingress_http", {"route": {"cluster": "upstream"}},
                                 [http_filter] if http_filter else [], normalize=True)
    upstream = connection_manager(
        "upstream_http",
        {"direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}, [],
        normalize=False)
    return {
        "admin": {"address": loopback(0)},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 1000,
            },
        }]},
        "static_resources": {
            "listeners": [
                dict({"name": "ingress", "address": loopback(0)}, **ingress),
                dict({"name": "upstream", "address": pipe}, **upstream),
            ],
            "clusters": [{
                "name": "upstream",
                "connect_timeout": "1s",
                "type": "STATIC",
                "load_assignment": {"cluster_name": "upstream", "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": pipe}}]}]},
            }],
        },
    }


# ---------------------------------------------------------------------------------------------
# Keys and tokens, with the openssl CLI only (no Python crypto package needed).


def der_read(data, offset):
    """One DER TLV at `offset`: (tag, value bytes, offset after it)."""
    tag = data[offset]
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[offset:offset + size], "big")
        offset += size
    return tag, data[offset:offset + length], offset + length


def der_sequence(value):
    items, offset = [], 0
    while offset < len(value):
        tag, item, offset = der_read(value, offset)
        items.append((tag, item))
    return items


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def openssl(*args, data=None):
    result = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    if result.returncode != 0:
        raise HarnessError(f"openssl {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def public_jwk(alg, key):
    """The public JWK of a fixture key, from its SubjectPublicKeyInfo."""
    spki = openssl("pkey", "-in", str(KEYS_DIR / key["file"]), "-pubout", "-outform", "DER")
    _, body, _ = der_read(spki, 0)
    (_, _algorithm), (_, bits) = der_sequence(body)
    public = bits[1:]  # the BIT STRING's unused-bits byte
    if alg == "RS256":
        _, rsa_key, _ = der_read(public, 0)
        (_, modulus), (_, exponent) = der_sequence(rsa_key)
        return {"kty": "RSA", "kid": key["kid"], "use": "sig", "alg": "RS256",
                "n": b64url(modulus.lstrip(b"\0")), "e": b64url(exponent.lstrip(b"\0"))}
    if public[0] != 4 or len(public) != 65:
        raise HarnessError(f"{key['file']}: not an uncompressed P-256 point")
    return {"kty": "EC", "crv": "P-256", "kid": key["kid"], "use": "sig", "alg": "ES256",
            "x": b64url(public[1:33]), "y": b64url(public[33:])}


def sign(alg, key_path, signing_input):
    signature = openssl("dgst", "-sha256", "-sign", str(key_path), "-binary", data=signing_input)
    if alg == "ES256":  # DER SEQUENCE { r, s } → the fixed-size r || s of JWS (RFC 7518 §3.4)
        _, body, _ = der_read(signature, 0)
        (_, r), (_, s) = der_sequence(body)
        signature = r.lstrip(b"\0").rjust(32, b"\0") + s.lstrip(b"\0").rjust(32, b"\0")
    return signature


def mint_one(alg, key, index, issued_at, run_id):
    header = {"alg": alg, "typ": "JWT", "kid": key["kid"]}
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"bench-user-{index}",
              "jti": f"bench-{alg}-{run_id}-{index}", "iat": issued_at,
              "exp": issued_at + TOKEN_SPEC["lifetime_seconds"],
              "scope": "bench:read bench:write", "realm_access": {"roles": ["bench-user"]}}
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    signature = sign(alg, KEYS_DIR / key["file"], signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def tokens_for(alg, count):
    """The token file for `alg` (at least `count` tokens), minted again when the key, the spec
    or the count changed, or when the tokens expire within a day."""
    key = TOKEN_SPEC["keys"][alg]
    spec = dict(TOKEN_SPEC, count=count, alg=alg,
                key_sha256=hashlib.sha256((KEYS_DIR / key["file"]).read_bytes()).hexdigest())
    spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    path, meta_path = OUT_DIR / f"tokens-{alg}.txt", OUT_DIR / f"tokens-{alg}.json"
    try:
        meta = json.loads(meta_path.read_text())
        if (meta["spec_hash"] == spec_hash and meta["exp"] > time.time() + 86400
                and len(path.read_text().split()) == count):
            return path
    except (OSError, ValueError, KeyError):
        pass
    started = time.monotonic()
    issued_at = int(time.time())
    run_id = f"{issued_at:x}"
    say(f"minting {count} {alg} tokens with openssl into {path.relative_to(ROOT)}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        tokens = list(pool.map(lambda index: mint_one(alg, key, index, issued_at, run_id),
                               range(count)))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens) + "\n")
    meta_path.write_text(json.dumps({"spec_hash": spec_hash,
                                     "exp": issued_at + TOKEN_SPEC["lifetime_seconds"]}))
    say(f"minted {count} {alg} tokens in {time.monotonic() - started:.1f} s")
    return path


def pool_file(alg, source, size):
    path = OUT_DIR / f"tokens-{alg}-pool{size}.txt"
    lines = source.read_text().split()[:size]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Envoy processes: every one started here is killed on exit, whatever happens.

CHILDREN = []


def kill_children():
    for child in CHILDREN:
        if child.poll() is None:
            child.kill()
    for child in CHILDREN:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    CHILDREN.clear()


atexit.register(kill_children)


def http_get(port, path, headers=None, timeout=5):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Envoy:
    def __init__(self, settings, workload, mode, http_filter, index):
        self.mode = mode
        self.dir = RUN_DIR / workload / mode
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        pipe = f"@wasm-jwt-authn-bench-{os.getpid()}-{workload}-{mode}"
        (self.dir / "bootstrap.json").write_text(json.dumps(bootstrap(http_filter, pipe), indent=1))
        command = settings.pin_envoy + [
            str(settings.envoy), "-c", str(self.dir / "bootstrap.json"),
            "--concurrency", "1", "--disable-hot-restart",
            # Ignored without hot restart; distinct anyway, so nothing shared can ever clash.
            "--base-id", str(700000 + (os.getpid() % 10000) * 10 + index),
            "-l", "warn", "--log-path", str(self.dir / "envoy.log"),
            "--admin-address-path", str(self.dir / "admin.address"),
        ]
        output = open(self.dir / "stdout.log", "wb")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                        stderr=subprocess.STDOUT, cwd=ROOT)
        output.close()
        CHILDREN.append(self.process)
        self.admin_port = None
        self.port = None

    def log_tail(self, lines=25):
        text = ""
        for name in ("stdout.log", "envoy.log"):
            path = self.dir / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def startup_error(self):
        """The line of the log that says why Envoy did not start, for the one-line summary."""
        lines = self.log_tail(200).splitlines()
        for marker in ("invalid configuration", "error initializing", "Unable to", "critical"):
            for line in lines:
                if marker in line:
                    return re.sub(r"^\[[^]]*\]\[\d+\]\[\w+\]\[\w+\] \[[^]]*\] ", "", line).strip()
        return "see its log"

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise ModeFailed(f"Envoy refused to start (status {self.process.returncode}): "
                                 f"{self.startup_error()}",
                                 f"log in {self.dir.relative_to(ROOT)}:\n{self.log_tail()}")
            try:
                address = (self.dir / "admin.address").read_text().strip()
                port = int(address.rsplit(":", 1)[1])
                status, body = http_get(port, "/ready", timeout=1)
                if status == 200 and body.strip() == b"LIVE":
                    self.admin_port = port
                    break
            except (OSError, ValueError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise ModeFailed(f"Envoy not ready after {START_TIMEOUT:.0f} s", self.log_tail())
            time.sleep(0.05)
        listeners = json.loads(self.admin("/listeners?format=json"))
        for listener in listeners.get("listener_statuses", []):
            if listener.get("name") == "ingress":
                self.port = listener["local_address"]["socket_address"]["port_value"]
        if not self.port:
            raise ModeFailed(f"no ingress listener port in {listeners}")

    def admin(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as response:
            return response.read().decode()

    def stats(self, pattern):
        """Counters whose name matches `pattern` (an RE2 filter), by full name."""
        stats = json.loads(self.admin(f"/stats?format=json&filter={pattern}"))
        return {stat["name"]: stat["value"] for stat in stats.get("stats", [])
                if "name" in stat and isinstance(stat.get("value"), int)}

    def running(self):
        return self.process.poll() is None

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# Measurements.

RESULT_LINE = re.compile(r"^BENCH_RESULT (.*)$", re.MULTILINE)


def cpu_seconds(pid):
    """CPU time the process has run, all threads, from the scheduler's own nanosecond account
    (`/proc/<pid>/task/*/schedstat`, first field): time stolen by the hypervisor or spent waiting
    is not in it, so per request it moves far less from run to run than requests/s does."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that exited between listing and reading
    return total / 1e9


def run_wrk(settings, port, token_file, seconds, pid=None):
    command = settings.pin_wrk + [
        "wrk", "-t1", f"-c{settings.connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{port}{REQUEST_PATH}"]
    environment = dict(os.environ, BENCH_TOKEN_FILE=str(token_file), BENCH_PATH=REQUEST_PATH)
    cpu_before = cpu_seconds(pid) if pid else None
    result = subprocess.run(command, capture_output=True, text=True, env=environment,
                            timeout=seconds + 60, check=False)
    cpu_after = cpu_seconds(pid) if pid else None
    match = RESULT_LINE.search(result.stdout)
    if result.returncode != 0 or not match:
        raise ModeFailed(f"wrk failed (status {result.returncode})", result.stdout + result.stderr)
    fields = dict(item.split("=", 1) for item in match.group(1).split())
    run = {name: float(value) for name, value in fields.items()}
    run["rps"] = run["requests"] / (run["duration_us"] / 1e6) if run["duration_us"] else 0.0
    if pid and run["requests"] and cpu_after is not None:
        run["cpu_us"] = (cpu_after - cpu_before) * 1e6 / run["requests"]
    return run


def check_mode(envoy, token, unchecked=False):
    """Before measuring: a valid token gets 200, and in auth modes a missing or forged one gets
    401. Returns how many check requests the filter must have allowed and denied. `unchecked`
    (an experimental build measured as `alternative`): only the 200, and no counter to check."""
    bearer = {"Authorization": f"Bearer {token}"}
    status, body = http_get(envoy.port, REQUEST_PATH, bearer)
    if status != 200:
        raise ModeFailed(f"a valid token got {status}, not 200: {body[:300]!r}")
    if unchecked:
        return None
    status, body = http_get(envoy.port, REQUEST_PATH)
    expected = 401 if envoy.mode in AUTH_MODES else 200
    if status != expected:
        raise ModeFailed(f"a request without a token got {status}, not {expected}: {body[:300]!r}")
    if envoy.mode not in AUTH_MODES:
        return {"allowed": 0, "denied": 0}
    header, payload, signature = token.split(".")
    # Another first signature character: canonical base64url still, the signature wrong.
    forged = f"{header}.{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    status, body = http_get(envoy.port, REQUEST_PATH, {"Authorization": f"Bearer {forged}"})
    if status != 401:
        raise ModeFailed(f"a token with a forged signature got {status}, not 401: {body[:300]!r}")
    return {"allowed": 1, "denied": 2}


def verification_counters(envoy):
    """The counters that prove the auth filter verified: allowed, denied, cache hits."""
    if envoy.mode == "native":
        stats = envoy.stats("jwt_authn")
        prefix = "http.ingress_http.jwt_authn."
        return {name[len(prefix):]: value for name, value in stats.items() if name.startswith(prefix)}
    if envoy.mode in WASM_MODES:
        stats = envoy.stats("wasmcustom")
        prefix = "wasmcustom.wasm_jwt_authn."
        return {name[len(prefix):]: value for name, value in stats.items()
                if name.startswith(prefix) and (value or name.endswith(".allowed"))}
    return {}


def measure_workload(settings, name, workload, token_file, modes):
    """Starts every mode's Envoy, checks and warms each, runs the interleaved rounds."""
    cache_entries = CACHE_ENTRIES if workload["cache"] else 0
    state = {mode: {"runs": [], "paired": [], "error": None, "sent": 0, "checks": None}
             for mode in modes}
    envoys = {}
    sample = token_file.read_text().split()[0]
    try:
        for index, mode in enumerate(modes):
            wasm = {"portable-reference": settings.reference_wasm,
                    "auto-rego-rule": settings.rego_wasm,
                    "alternative": settings.alternative_wasm}.get(mode, settings.wasm)
            http_filter = auth_filter(mode, settings.jwks, cache_entries, settings.new_fields, wasm)
            try:
                envoys[mode] = Envoy(settings, name, mode, http_filter, index)
            except OSError as error:
                raise HarnessError(f"cannot start {settings.envoy}: {error}") from error
        # Every Envoy is up (V8 has compiled the module) before any warm-up load, so start-up
        # work on CPU 0 never overlaps a warm-up either.
        for phase in ("check", "warm-up"):
            for mode in modes:
                envoy = envoys[mode]
                if state[mode]["error"]:
                    continue
                try:
                    if phase == "check":
                        envoy.wait_ready()
                        unchecked = mode == "alternative" and settings.alternative_unchecked
                        state[mode]["checks"] = check_mode(envoy, sample, unchecked)
                        continue
                    warm = run_wrk(settings, envoy.port, token_file, settings.warmup)
                    state[mode]["sent"] += warm["requests"]
                    if warm["status"]:
                        raise ModeFailed(f"{warm['status']:.0f} of {warm['requests']:.0f} warm-up "
                                         "responses were errors (4xx/5xx)")
                    say(f"{name}/{mode}: port {envoy.port}, checks passed, warm-up "
                        f"{warm['rps']:.0f} req/s")
                except ModeFailed as failure:
                    state[mode]["error"] = str(failure)
                    warn(f"{name}/{mode}: skipped: {failure}\n{failure.details}".rstrip())
                    if (mode in WASM_MODES and settings.new_fields
                            and re.search(r"`(crypto|token_cache)", f"{failure}{failure.details}")):
                        warn("if the filter rejected `crypto` or `token_cache`, it predates them: "
                             "rerun with --no-new-fields (BENCH_NO_NEW_FIELDS=1)")
                    envoy.stop()
        for round_number in range(1, settings.rounds + 1):
            # Each round starts one mode later (A B C, B C A, C A B, …): a mode's place in the
            # round measurably matters on this machine (up to ~10 %), so no mode keeps the
            # best or the worst place.
            shift = (round_number - 1) % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                envoy = envoys[mode]
                if state[mode]["error"]:
                    continue
                if not envoy.running():
                    state[mode]["error"] = "Envoy exited during the measurements"
                    warn(f"{name}/{mode}: {state[mode]['error']}:\n{envoy.log_tail()}")
                    continue
                try:
                    run = run_wrk(settings, envoy.port, token_file, settings.duration,
                                  envoy.process.pid)
                except ModeFailed as failure:
                    state[mode]["error"] = str(failure)
                    warn(f"{name}/{mode}: {failure}\n{failure.details}".rstrip())
                    continue
                run["round"] = round_number
                state[mode]["runs"].append(run)
                state[mode]["sent"] += run["requests"]
                errors = run["status"] + run["connect"] + run["read"] + run["write"] + run["timeout"]
                if errors:
                    warn(f"{name}/{mode} round {round_number}: {errors:.0f} errors "
                         f"({run['status']:.0f} non-2xx responses): this run is suspect")
                say(f"{name} round {round_number}/{settings.rounds} {mode:<18} "
                    f"{run['rps']:8.0f} req/s  p50 {run['p50_us'] / 1000:6.2f} ms  "
                    f"p99 {run['p99_us'] / 1000:6.2f} ms  CPU {fmt(run.get('cpu_us'), '.1f')} µs/req")
        measure_paired(settings, name, token_file, modes, envoys, state)
        for mode in modes:
            envoy = envoys[mode]
            if state[mode]["error"] is None and envoy.running():
                state[mode]["counters"] = verification_counters(envoy)
                state[mode]["http"] = {key.rsplit(".", 1)[1]: value for key, value in envoy.stats(
                    r"^http\.ingress_http\.downstream_rq_[245]xx$").items()}
    finally:
        for envoy in envoys.values():
            envoy.stop()
    return state


def measure_paired(settings, name, token_file, modes, envoys, state):
    """Paired rounds: `native` and one other mode loaded at the same time, both Envoys on CPU 0,
    so the kernel shares that CPU between them and whatever the machine does during the run
    (another tenant, frequency changes) hits both alike. Their request counts in the same
    window give the ratio of what a request costs each, without the drift between one run and
    the next that sequential rounds see."""
    native = state.get("native")
    if not settings.paired_rounds or native is None or native["error"]:
        return
    others = [mode for mode in modes if mode != "native" and not state[mode]["error"]]
    for round_number in range(1, settings.paired_rounds + 1):
        for mode in others:
            if state[mode]["error"] or native["error"]:
                continue
            if not envoys[mode].running() or not envoys["native"].running():
                continue  # the next counters read reports it
            pair = {}

            def load(which):
                envoy = envoys[which]
                try:
                    pair[which] = run_wrk(settings, envoy.port, token_file, settings.duration,
                                          envoy.process.pid)
                except ModeFailed as failure:
                    pair[which] = failure

            threads = [threading.Thread(target=load, args=(which,)) for which in ("native", mode)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            failed = [which for which in ("native", mode) if isinstance(pair[which], ModeFailed)]
            for which in ("native", mode):
                if which not in failed:
                    state[which]["sent"] += pair[which]["requests"]
                    state[which]["extra_runs"] = state[which].get("extra_runs", 0) + 1
            if failed:
                warn(f"{name} paired round {round_number} native+{mode}: "
                     + "; ".join(f"{which}: {pair[which]}" for which in failed))
                continue
            ours, theirs = pair[mode], pair["native"]
            errors = sum(run[key] for run in (ours, theirs)
                         for key in ("status", "connect", "read", "write", "timeout"))
            if errors:
                warn(f"{name} paired round {round_number} native+{mode}: {errors:.0f} errors: "
                     "this pair is not counted")
                continue
            ratio = ours["requests"] / theirs["requests"] if theirs["requests"] else 0.0
            state[mode]["paired"].append(ratio)
            native["paired"].append(1.0)
            say(f"{name} paired round {round_number}/{settings.paired_rounds} native + {mode:<18} "
                f"{theirs['rps']:6.0f} + {ours['rps']:6.0f} req/s: ratio {ratio:.3f}")


def summarize(state, modes, connections):
    rows = {}
    for mode in modes:
        runs = state[mode]["runs"]
        if not runs:
            continue
        row = {
            "rps": statistics.median(run["rps"] for run in runs),
            "p50_ms": statistics.median(run["p50_us"] for run in runs) / 1000,
            "p99_ms": statistics.median(run["p99_us"] for run in runs) / 1000,
            "cpu_us": (statistics.median(run["cpu_us"] for run in runs)
                       if all("cpu_us" in run for run in runs) else None),
            "paired": statistics.median(state[mode]["paired"]) if state[mode]["paired"] else None,
            "paired_runs": state[mode]["paired"],
            "errors": sum(run["status"] + run["connect"] + run["read"] + run["write"] + run["timeout"]
                          for run in runs),
        }
        counters = state[mode].get("counters") or {}
        checks = state[mode]["checks"]
        # An unchecked alternative build may count nothing, or count differently.
        if "allowed" in counters and checks is not None:
            # wrk counts completed responses; a request in flight when a run stops was verified
            # but not counted: at most one per connection per run (warm-up included).
            expected = state[mode]["sent"] + checks["allowed"]
            row["allowed"] = counters["allowed"]
            row["allowed_expected"] = expected
            row["allowed_slack"] = connections * (len(runs) + state[mode].get("extra_runs", 0) + 1)
            row["verified_ok"] = expected <= counters["allowed"] <= expected + row["allowed_slack"]
        rows[mode] = row
    native = rows.get("native")
    for row in rows.values():
        if native:
            row["rps_ratio"] = row["rps"] / native["rps"] if native["rps"] else None
            row["p99_ratio"] = row["p99_ms"] / native["p99_ms"] if native["p99_ms"] else None
            row["cpu_ratio"] = (row["cpu_us"] / native["cpu_us"]
                                if row["cpu_us"] and native["cpu_us"] else None)
    return rows


# ---------------------------------------------------------------------------------------------
# The token-cache flood: FLOOD_TOKENS distinct valid tokens, each once, through one Envoy in mode
# `auto`, with the filter's token cache at its default size and off; the VM's memory (the
# filter's gauge `memory_bytes`, a high-water mark: Wasm memory never shrinks) before and after.

FLOOD_ALG = "ES256"
# The filter's default `token_cache.max_entries`, set explicitly.
FLOOD_CACHE_SETTINGS = [1000, 0]
# Distinct tokens, apart from the flood's, cycled for the warm-up: under the cache size, so the
# cache is not full before the flood starts.
FLOOD_WARMUP_TOKENS = 256
# The filter records its gauges every this many decisions (src/filter/stats.rs).
GAUGE_INTERVAL = 256
FLOOD_SAMPLE_SECONDS = 1.0
# No response for this long during the pass: stop it and flag it.
FLOOD_STALL_SECONDS = 20.0
FLOOD_LUA = OUT_DIR / "wrk-flood.lua"
MINT_SOURCES = [ROOT / "examples" / "mint.rs", ROOT / "tests" / "support" / "mod.rs"]


class FloodFailed(ModeFailed):
    """The flood (or one of its Envoys) cannot run: reported in its table, nothing else stops."""


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def flood_tokens(count):
    """(warm-up file, flood file): FLOOD_WARMUP_TOKENS + `count` distinct ES256 tokens minted by
    `cargo run --release --example mint -- tokens` with the benchmark's `kid`, kept in
    target/bench/ and minted again when the spec, the key, the minting code or the count change,
    or when they expire within two hours (they live one day)."""
    key = TOKEN_SPEC["keys"][FLOOD_ALG]
    total = FLOOD_WARMUP_TOKENS + count
    spec = {"alg": FLOOD_ALG, "count": total, "issuer": ISSUER, "audience": AUDIENCE,
            "kid": key["kid"],
            "sha256": {str(path.relative_to(ROOT)): hashlib.sha256(path.read_bytes()).hexdigest()
                       for path in [KEYS_DIR / key["file"]] + MINT_SOURCES}}
    spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    path, meta_path = OUT_DIR / f"flood-{FLOOD_ALG}.txt", OUT_DIR / f"flood-{FLOOD_ALG}.json"
    warm_path, pass_path = OUT_DIR / "flood-warmup.txt", OUT_DIR / "flood-pass.txt"
    tokens = None
    try:
        meta = json.loads(meta_path.read_text())
        if meta["spec_hash"] == spec_hash and meta["exp"] > time.time() + 7200:
            tokens = path.read_text().split()
            if len(tokens) != total:
                tokens = None
    except (OSError, ValueError, KeyError):
        pass
    if tokens is None:
        if not shutil.which("cargo"):
            raise FloodFailed("cargo not found: it mints the flood's tokens (examples/mint.rs)")
        started = time.monotonic()
        say(f"minting {total} {FLOOD_ALG} tokens with examples/mint.rs into "
            f"{path.relative_to(ROOT)} (the first time, cargo builds the example)")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with open(partial, "wb") as output:
            result = subprocess.run(
                ["cargo", "run", "--release", "--quiet", "--example", "mint", "--", "tokens",
                 FLOOD_ALG, str(total), ISSUER, AUDIENCE, key["kid"]],
                cwd=ROOT, stdout=output, stderr=subprocess.PIPE, check=False)
        if result.returncode != 0:
            raise FloodFailed(f"minting failed (status {result.returncode}): "
                              + result.stderr.decode(errors="replace").strip()[-2000:])
        tokens = partial.read_text().split()
        if len(tokens) != total or len(set(tokens)) != total:
            raise FloodFailed(f"mint printed {len(tokens)} tokens ({len(set(tokens))} distinct), "
                              f"not {total}")
        partial.replace(path)
        meta_path.write_text(json.dumps({"spec_hash": spec_hash,
                                         "exp": jwt_claims(tokens[0])["exp"]}))
        say(f"minted {total} {FLOOD_ALG} tokens in {time.monotonic() - started:.1f} s")
    warm_path.write_text("\n".join(tokens[:FLOOD_WARMUP_TOKENS]) + "\n")
    pass_path.write_text("\n".join(tokens[FLOOD_WARMUP_TOKENS:]) + "\n")
    return warm_path, pass_path


def flood_lua():
    """bench/wrk-tokens.lua, but each token of the file once. wrk calls `request` once before
    it starts (script_verify_request, in the first thread's Lua state) and drops that request:
    token 1, which is therefore sent last, after the wrap. After that, `request` hands wrk an
    empty request (the connection sends nothing and idles), and the response that makes `count`
    prints BENCH_FLOOD_DONE, on which run_flood_pass stops wrk (SIGINT ends its sleep) and
    wrk's `done` prints the usual BENCH_RESULT line. (A wrk without that first call would send
    token 1 twice: one request more, the pass still complete.)"""
    FLOOD_LUA.write_text(f"""-- Written by scripts/bench.py (the token-cache flood); see there.
dofile([==[{LUA_SCRIPT}]==])
local cycle = request
local total = assert(tonumber(os.getenv("BENCH_FLOOD_COUNT")), "BENCH_FLOOD_COUNT")
local calls, answered = 0, 0
request = function()
   calls = calls + 1
   if calls > total + 1 then
      return ""
   end
   return cycle()
end
response = function(status, headers, body)
   answered = answered + 1
   if answered == total then
      io.write("BENCH_FLOOD_DONE\\n")
      io.flush()
      wrk.thread:stop()
   end
end
""")
    return FLOOD_LUA


def filter_stats(envoy):
    """The filter's counters and gauges, by short name (`allowed`, `memory_bytes`, ...)."""
    prefix = "wasmcustom.wasm_jwt_authn."
    return {name[len(prefix):]: value for name, value in envoy.stats("wasm_jwt_authn").items()
            if name.startswith(prefix)}


def decisions(stats):
    return sum(value for name, value in stats.items()
               if name in ("allowed", "allowed_anonymous", "internal_error")
               or name.startswith("denied."))


def run_flood_pass(settings, envoy, token_file, count):
    """wrk through the flood script: every token once. Samples the gauges every second.
    Returns (wrk's result, the samples, whether the pass completed)."""
    command = settings.pin_wrk + [
        "wrk", "-t1", f"-c{settings.connections}", f"-d{max(120, count // 100)}s",
        "--timeout", "10s", "-s", str(flood_lua()), f"http://127.0.0.1:{envoy.port}{REQUEST_PATH}"]
    environment = dict(os.environ, BENCH_TOKEN_FILE=str(token_file), BENCH_PATH=REQUEST_PATH,
                       BENCH_FLOOD_COUNT=str(count))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=environment)
    CHILDREN.append(process)
    output, done = [], []

    def reader():
        for line in process.stdout:
            output.append(line)
            if line.startswith("BENCH_FLOOD_DONE"):
                done.append(time.monotonic())
                process.send_signal(signal.SIGINT)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    started = time.monotonic()
    samples, last_decisions, last_progress, stalled = [], None, started, False
    while process.poll() is None:
        time.sleep(FLOOD_SAMPLE_SECONDS)
        try:
            stats = filter_stats(envoy)
        except OSError:
            continue
        samples.append({"seconds": round(time.monotonic() - started, 1),
                        "allowed": stats.get("allowed"),
                        "memory_bytes": stats.get("memory_bytes"),
                        "entries": stats.get("token_cache.entries")})
        if decisions(stats) != last_decisions:
            last_decisions, last_progress = decisions(stats), time.monotonic()
        elif time.monotonic() - last_progress > FLOOD_STALL_SECONDS and process.poll() is None:
            stalled = True
            process.send_signal(signal.SIGINT)
            break
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    thread.join(timeout=10)
    text = "".join(output)
    match = RESULT_LINE.search(text)
    if not match:
        raise FloodFailed(f"wrk failed (status {process.returncode})", text)
    run = {name: float(value) for name, value in
           (item.split("=", 1) for item in match.group(1).split())}
    run["seconds"] = (done[0] if done else time.monotonic()) - started
    run["stalled"] = stalled
    return run, samples, bool(done)


def flood_one(settings, cache_entries, index, warm_file, pass_file, count):
    """One Envoy (mode `auto`, `token_cache.max_entries` = cache_entries): check, warm up, read
    the gauges, the pass, 256 more decisions so the gauges are recorded after it, read again."""
    label = f"flood-cache-{cache_entries}"
    row = {"cache_entries": cache_entries, "tokens": count, "error": None}
    http_filter = auth_filter("auto", settings.jwks, cache_entries, True, settings.wasm)
    try:
        envoy = Envoy(settings, label, "auto", http_filter, 20 + index)
    except OSError as error:
        raise HarnessError(f"cannot start {settings.envoy}: {error}") from error
    try:
        envoy.wait_ready()
        warm_tokens = warm_file.read_text().split()
        check_mode(envoy, warm_tokens[0])
        warm = run_wrk(settings, envoy.port, warm_file, settings.warmup)
        if warm["status"]:
            raise FloodFailed(f"{warm['status']:.0f} of {warm['requests']:.0f} warm-up responses "
                              "were errors (4xx/5xx)")
        time.sleep(0.5)  # requests in flight when wrk stopped
        before = filter_stats(envoy)
        say(f"flood, token cache {cache_entries}: warm-up {warm['rps']:.0f} req/s; memory "
            f"{before.get('memory_bytes', 0) / 2**20:.2f} MiB, {before.get('token_cache.entries')} "
            f"entries; {count} distinct tokens, each once")
        run, samples, complete = run_flood_pass(settings, envoy, pass_file, count)
        time.sleep(0.5)
        after_pass = filter_stats(envoy)
        # The gauges are recorded every GAUGE_INTERVAL decisions: that many more (warm-up
        # tokens, already seen) and they are recorded after the pass, whatever the remainder.
        connection = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=5)
        try:
            for number in range(GAUGE_INTERVAL):
                connection.request("GET", REQUEST_PATH, headers={
                    "Authorization": f"Bearer {warm_tokens[number % len(warm_tokens)]}"})
                connection.getresponse().read()
        finally:
            connection.close()
        after = filter_stats(envoy)
        delta = {name: after_pass.get(name, 0) - before.get(name, 0)
                 for name in ("allowed", "token_cache.miss", "token_cache.hit")}
        denied = sum(after_pass.get(name, 0) - before.get(name, 0)
                     for name in set(after_pass) | set(before) if name.startswith("denied."))
        row.update({
            "allowed": delta["allowed"], "denied": denied,
            "cache_miss": delta["token_cache.miss"], "cache_hit": delta["token_cache.hit"],
            "responses": run["requests"], "non_2xx": run["status"],
            "errors": run["connect"] + run["read"] + run["write"] + run["timeout"],
            "complete": complete, "stalled": run["stalled"], "seconds": run["seconds"],
            "rate": count / run["seconds"] if complete and run["seconds"] else None,
            "entries_before": before.get("token_cache.entries"),
            "entries_after": after.get("token_cache.entries"),
            "memory_before": before.get("memory_bytes"),
            "memory_after": after.get("memory_bytes"),
            "samples": samples,
        })
        # The memory once a tenth of the tokens went through (the cache, if on, long full).
        tenth = [sample for sample in samples
                 if sample["allowed"] is not None and sample["memory_bytes"]
                 and sample["allowed"] - before.get("allowed", 0) >= count // 10]
        row["memory_tenth"] = tenth[0]["memory_bytes"] if tenth else None
        problems = []
        if not complete:
            problems.append("pass stalled" if run["stalled"] else "pass not completed")
        if row["non_2xx"] or row["errors"]:
            problems.append(f"{row['non_2xx']:.0f} non-2xx, {row['errors']:.0f} socket errors")
        if row["allowed"] < count:
            problems.append(f"only {row['allowed']} of {count} allowed")
        if cache_entries and row["cache_miss"] < count:
            problems.append(f"only {row['cache_miss']} cache misses")
        row["problems"] = problems
    except ModeFailed as failure:
        row["error"] = str(failure)
        warn(f"flood, token cache {cache_entries}: {failure}\n"
             f"{failure.details or envoy.log_tail()}".rstrip())
    finally:
        envoy.stop()
    return row


def measure_flood(settings):
    started = time.monotonic()
    count = settings.flood_tokens
    flood = {"tokens": count, "alg": FLOOD_ALG, "warmup_tokens": FLOOD_WARMUP_TOKENS,
             "rows": [], "error": None}
    try:
        if not settings.new_fields:
            raise FloodFailed("needs the `token_cache` field (--no-new-fields given)")
        warm_file, pass_file = settings.flood_files
        if warm_file is None:
            raise FloodFailed(pass_file)
        for index, cache_entries in enumerate(FLOOD_CACHE_SETTINGS):
            flood["rows"].append(flood_one(settings, cache_entries, index, warm_file, pass_file,
                                           count))
    except FloodFailed as failure:
        flood["error"] = str(failure)
        warn(f"flood: skipped: {failure}")
    flood["seconds"] = time.monotonic() - started + settings.flood_mint_seconds
    return flood


def mib(value):
    return "—" if value is None else f"{value / 2**20:.2f}"


def flood_lines(flood):
    """The flood's table (Markdown; the terminal prints the same)."""
    if flood["error"]:
        return [f"Skipped: {flood['error']}"]
    lines = [
        "| token cache | distinct tokens allowed | token_cache.miss | token_cache.entries after "
        "| memory_bytes before → after (MiB) | at 10 % of the pass (MiB) | pass |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for row in flood["rows"]:
        setting = (f"`max_entries: {row['cache_entries']}`"
                   + (" (default)" if row["cache_entries"] == 1000 else " (off)"
                      if row["cache_entries"] == 0 else ""))
        if row["error"]:
            lines.append(f"| {setting} | **failed: {row['error'].replace('|', '/')}** | | | | | |")
            continue
        allowed = f"{row['allowed']} of {row['tokens']}"
        if row["problems"]:
            allowed += " **" + "; ".join(row["problems"]) + "**"
        pace = (f"{row['seconds']:.1f} s, {row['rate']:.0f} tokens/s" if row["rate"]
                else f"{row['seconds']:.1f} s")
        lines.append(
            f"| {setting} | {allowed} | {row['cache_miss'] if row['cache_entries'] else '—'} | "
            f"{row['entries_after']} | {mib(row['memory_before'])} → {mib(row['memory_after'])} | "
            f"{mib(row['memory_tenth'])} | {pace} |")
    return lines


# ---------------------------------------------------------------------------------------------
# Reporting.


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def paired_cell(mode, row):
    if row.get("paired") is None:
        return "—"
    if mode == "native":
        return "1.00"
    spread = ", ".join(f"{ratio:.2f}" for ratio in row["paired_runs"])
    return f"**{row['paired']:.2f}** ({spread})"


def policy_cost(rows, mode):
    """What the rule of `mode` costs on top of authentication alone, in the same run."""
    plain, policy = rows["auto"], rows[mode]
    parts = [f"req/s ×{policy['rps'] / plain['rps']:.2f}" if plain["rps"] else "req/s —"]
    if plain.get("cpu_us") and policy.get("cpu_us"):
        parts.append(f"Envoy CPU per request ×{policy['cpu_us'] / plain['cpu_us']:.2f} "
                     f"(+{policy['cpu_us'] - plain['cpu_us']:.1f} µs)")
    if plain.get("paired") and policy.get("paired"):
        parts.append(f"paired ×{policy['paired'] / plain['paired']:.2f}")
    return ", ".join(parts)


def summary_table(name, rows, state, modes):
    lines = [
        "| mode | req/s | p50 ms | p99 ms | Envoy CPU µs/req | req/s vs native | p99 vs native | CPU/req vs native | **paired** req/s vs native | allowed counter (expected) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mode in modes:
        row = rows.get(mode)
        if row is None:
            reason = (state[mode]["error"] or "no runs").replace("|", "\\|")
            lines.append(f"| {mode} | skipped: {reason} | | | | | | | | |")
            continue
        if "allowed" in row:
            mark = "" if row["verified_ok"] else " **MISMATCH**"
            counter = f"{row['allowed']} ({row['allowed_expected']:.0f} + ≤{row['allowed_slack']}){mark}"
        else:
            counter = "—"
        errors = f" ({row['errors']:.0f} errors!)" if row["errors"] else ""
        lines.append(
            f"| {mode} | {row['rps']:.0f}{errors} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{fmt(row['cpu_us'], '.1f')} | {fmt(row.get('rps_ratio'), '.2f')} | "
            f"{fmt(row.get('p99_ratio'), '.2f')} | {fmt(row.get('cpu_ratio'), '.2f')} | "
            f"{paired_cell(mode, row)} | {counter} |")
    for mode in ("auto-json-rule", "auto-rego-rule"):
        if "auto" in rows and mode in rows:
            lines.append("")
            lines.append(f"policy ({mode} vs auto): {policy_cost(rows, mode)}")
    if "portable" in rows and "portable-reference" in rows:
        portable, reference = rows["portable"], rows["portable-reference"]
        lines.append("")
        lines.append(f"portable vs portable-reference: req/s ×{portable['rps'] / reference['rps']:.2f}, "
                     f"p99 ×{portable['p99_ms'] / reference['p99_ms']:.2f}")
    return lines


def raw_table(results):
    lines = ["| workload | mode | round | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | CPU µs/req | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, result in results.items():
        for mode, mode_state in result["state"].items():
            for run in mode_state["runs"]:
                errors = run["status"] + run["connect"] + run["read"] + run["write"] + run["timeout"]
                lines.append(
                    f"| {name} | {mode} | {run['round']} | {run['requests']:.0f} | {run['rps']:.0f} | "
                    f"{run['p50_us'] / 1000:.2f} | {run['p90_us'] / 1000:.2f} | "
                    f"{run['p99_us'] / 1000:.2f} | {run['max_us'] / 1000:.2f} | "
                    f"{fmt(run.get('cpu_us'), '.1f')} | {errors:.0f} |")
    return lines


def counters_lines(results):
    lines = []
    for name, result in results.items():
        for mode, mode_state in result["state"].items():
            counters = mode_state.get("counters")
            if counters:
                shown = ", ".join(f"`{key}` {value}" for key, value in sorted(counters.items()))
                http_codes = ", ".join(f"{key} {value}" for key, value in sorted(mode_state.get("http", {}).items()))
                lines.append(f"- {name} / {mode}: {shown}; responses {http_codes}")
    return lines


def command_output(command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
        return (result.stdout + result.stderr).strip()
    except OSError as error:
        return f"unavailable ({error})"


def load_average():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def environment_facts(settings):
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    envoy_version = command_output([str(settings.envoy), "--version"])
    match = re.search(r"version:\s*(\S+)", envoy_version)
    envoy_version = match.group(1) if match else envoy_version.strip() or "unknown"
    wrk_version = command_output(["wrk", "-v"]).splitlines()[0].split(" Copyright")[0].strip()
    commit = command_output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "uname": command_output(["uname", "-a"]),
        "cpu": f"{cpu} ({os.cpu_count()} logical CPUs)",
        "envoy": envoy_version,
        "wrk": wrk_version,
        "commit": commit,
        "load_start": settings.load_start,
        "load_end": load_average(),
    }


def write_results(settings, facts, results, elapsed, flood):
    wasm_sizes = [f"`{settings.wasm.relative_to(ROOT) if settings.wasm.is_relative_to(ROOT) else settings.wasm}` "
                  f"{settings.wasm.stat().st_size} bytes"]
    if settings.reference_wasm:
        wasm_sizes.append(f"reference `{settings.reference_wasm}` {settings.reference_wasm.stat().st_size} bytes")
    if settings.rego_wasm:
        wasm_sizes.append(f"with Rego `{settings.rego_wasm.name}` {settings.rego_wasm.stat().st_size} bytes")
    pinning = ("Envoy pinned to CPU 0, wrk to CPU 1 (taskset)" if settings.pin_envoy
               else "no CPU pinning")
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`scripts/bench.py`); how to read it: `bench/README.md`.",
        "",
        f"- date: {facts['date']}",
        f"- machine: `{facts['uname']}`",
        f"- CPU: {facts['cpu']}",
        f"- Envoy: {facts['envoy']}; one worker (`--concurrency 1`); {pinning}",
        f"- wrk: {facts['wrk']}; `-t1 -c{settings.connections} -d{settings.duration}s`, "
        f"{settings.warmup} s warm-up per Envoy",
        f"- rounds: {settings.rounds} (modes interleaved in each); medians of the rounds below",
        f"- paired rounds: {settings.paired_rounds} per workload (`native` and one other mode at "
        "the same time on CPU 0; the ratio of their request counts)",
        f"- load average (1, 5, 15 min) at start: {facts['load_start']}, at end: {facts['load_end']} "
        "(anything else busy on the machine skews every number)",
        f"- filter module: {'; '.join(wasm_sizes)}; commit `{facts['commit']}`",
        f"- filter configuration: " + (
            f"`crypto` per mode, `token_cache.max_entries` {CACHE_ENTRIES} (repeated-100) or 0"
            if settings.new_fields else
            "**without the `crypto` and `token_cache` fields (`--no-new-fields`): `auto` and "
            "`portable` run the same configuration, and the filter's own cache defaults apply**"),
        f"- native `jwt_authn`: `jwt_cache_config.jwt_cache_size` {CACHE_ENTRIES} for repeated-100, "
        "no `jwt_cache_config` (cache off) otherwise; `forward: true`",
        f"- total time: {elapsed:.0f} s",
        "",
    ]
    for name, result in results.items():
        lines += [f"## {name}", "", f"{WORKLOADS[name]['about']}; "
                  f"{result['tokens']} tokens cycled.", ""]
        lines += summary_table(name, result["rows"], result["state"], result["modes"])
        lines.append("")
    if flood:
        lines += [
            "## Token-cache flood", "",
            f"{flood['tokens']} distinct valid {FLOOD_ALG} tokens (unique `jti`), each sent once, "
            "through one Envoy in mode `auto`, after a warm-up on "
            f"{flood['warmup_tokens']} other tokens; `memory_bytes` is the VM's linear memory "
            "(a high-water mark: Wasm memory never shrinks), `token_cache.entries` the cache's "
            "size, both gauges recorded by the filter every 256 decisions. Bounded: with the "
            "cache on, memory stops growing once the cache is full (compare the memory at 10 % "
            "of the pass with the end, and with the cache off). Section time: "
            f"{flood['seconds']:.0f} s (minting included).", ""]
        lines += flood_lines(flood)
        lines.append("")
    lines += ["## Filter counters after the runs", "",
              "Read from each Envoy's admin `/stats` (`wasmcustom.wasm_jwt_authn.*`, native: "
              "`http.ingress_http.jwt_authn.*`); `allowed` must equal the responses wrk counted "
              "plus the one allowed check request, plus at most one request per connection per run "
              "still in flight when wrk stopped.", ""]
    lines += counters_lines(results) or ["- (none)"]
    lines += ["", "## Every run", ""] + raw_table(results) + [""]
    RESULTS_MD.write_text("\n".join(lines))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps({"facts": facts, "results": {
        name: {"rows": result["rows"], "state": result["state"]} for name, result in results.items()},
        "flood": flood}, indent=1, default=str))


def print_table(results):
    header = (f"{'workload':<16} {'mode':<19} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu µs':>7} "
              f"{'rps/nat':>7} {'p99/nat':>7} {'cpu/nat':>7} {'paired':>7}  verified")
    print()
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        for mode in result["modes"]:
            row = result["rows"].get(mode)
            if row is None:
                print(f"{name:<16} {mode:<19} skipped: {result['state'][mode]['error'] or 'no runs'}")
                continue
            verified = ("-" if "allowed" not in row else
                        f"allowed {row['allowed']} (expected {row['allowed_expected']:.0f}..+{row['allowed_slack']})"
                        + ("" if row["verified_ok"] else " MISMATCH"))
            if row["errors"]:
                verified += f"  {row['errors']:.0f} ERRORS"
            print(f"{name:<16} {mode:<19} {row['rps']:8.0f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
                  f"{fmt(row['cpu_us'], '7.1f'):>7} {fmt(row.get('rps_ratio'), '7.2f'):>7} "
                  f"{fmt(row.get('p99_ratio'), '7.2f'):>7} {fmt(row.get('cpu_ratio'), '7.2f'):>7} "
                  f"{fmt(row.get('paired'), '7.2f'):>7}  {verified}")
        rows = result["rows"]
        for mode in ("auto-json-rule", "auto-rego-rule"):
            if "auto" in rows and mode in rows:
                print(f"{name:<16} policy ({mode} vs auto): {policy_cost(rows, mode)}")
        if "portable" in rows and "portable-reference" in rows:
            print(f"{name:<16} portable vs portable-reference: req/s "
                  f"x{rows['portable']['rps'] / rows['portable-reference']['rps']:.2f}, "
                  f"p99 x{rows['portable']['p99_ms'] / rows['portable-reference']['p99_ms']:.2f}")
    print()


# ---------------------------------------------------------------------------------------------


def env_int(name, default, minimum=1):
    raw = os.environ.get(name, "").strip().rstrip("s") or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise HarnessError(f"{name}={os.environ.get(name)!r}: expected a whole number") from None
    if value < minimum:
        raise HarnessError(f"{name}={value}: must be at least {minimum}")
    return value


def env_list(name, known, default):
    raw = os.environ.get(name, "").strip()
    values = [item.strip() for item in raw.split(",") if item.strip()] if raw else default
    unknown = [value for value in values if value not in known]
    if unknown:
        raise HarnessError(f"{name}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return values


class Settings:
    pass


def configure(arguments):
    settings = Settings()
    settings.rounds = env_int("BENCH_ROUNDS", 3)
    settings.duration = env_int("BENCH_DURATION", 5)
    settings.paired_rounds = env_int("BENCH_PAIRED_ROUNDS", 3, minimum=0)
    settings.warmup = env_int("BENCH_WARMUP", 2)
    settings.connections = env_int("BENCH_CONNECTIONS", 16)
    settings.token_count = env_int("BENCH_TOKENS", 3000, minimum=100)
    settings.workloads = env_list("BENCH_WORKLOADS", list(WORKLOADS), list(WORKLOADS))
    settings.flood = os.environ.get("BENCH_FLOOD", "1").strip() != "0"
    settings.flood_tokens = env_int("BENCH_FLOOD_TOKENS", 100000, minimum=1000)
    settings.new_fields = not (arguments.no_new_fields or os.environ.get("BENCH_NO_NEW_FIELDS") == "1")

    envoy = os.environ.get("ENVOY_BIN") or str(ROOT / ".venv" / "bin" / "envoy")
    settings.envoy = Path(envoy) if "/" in envoy else Path(shutil.which(envoy) or envoy)
    if not settings.envoy.is_file():
        raise HarnessError(f"no Envoy at {settings.envoy}: run `scripts/setup.sh envoy` (or set ENVOY_BIN)")
    if not shutil.which("wrk"):
        raise HarnessError("wrk not found: run `scripts/setup.sh apt`")
    if not shutil.which("openssl"):
        raise HarnessError("openssl not found: it mints the benchmark's tokens")
    wasm = Path(os.environ.get("WASM_JWT_AUTHN_WASM") or
                ROOT / "target" / "wasm32-wasip1" / "release" / "wasm_jwt_authn.wasm")
    settings.wasm = (ROOT / wasm).resolve() if not wasm.is_absolute() else wasm
    if not settings.wasm.is_file():
        raise HarnessError(f"no filter module at {settings.wasm}: run `make build`")
    reference = os.environ.get("BENCH_REFERENCE_WASM", "").strip()
    settings.reference_wasm = None
    if reference:
        settings.reference_wasm = Path(reference).resolve()
        if not settings.reference_wasm.is_file():
            raise HarnessError(f"BENCH_REFERENCE_WASM={reference}: no such file")
    rego = Path(os.environ.get("WASM_JWT_AUTHN_REGO_WASM") or
                ROOT / "target" / "wasm32-wasip1" / "release" / "wasm_jwt_authn_rego.wasm")
    settings.rego_wasm = rego.resolve() if rego.is_file() else None
    alternative = os.environ.get("BENCH_ALTERNATIVE_WASM", "").strip()
    settings.alternative_wasm = Path(alternative).resolve() if alternative else None
    if settings.alternative_wasm and not settings.alternative_wasm.is_file():
        raise HarnessError(f"BENCH_ALTERNATIVE_WASM={alternative}: no such file")
    settings.alternative_unchecked = os.environ.get("BENCH_ALTERNATIVE_UNCHECKED") == "1"
    default_modes = [mode for mode in MODES
                     if (mode != "portable-reference" or settings.reference_wasm)
                     and (mode != "auto-rego-rule" or settings.rego_wasm)
                     and (mode != "alternative" or settings.alternative_wasm)]
    settings.modes = env_list("BENCH_MODES", MODES, default_modes)
    if "portable-reference" in settings.modes and not settings.reference_wasm:
        raise HarnessError("mode portable-reference needs BENCH_REFERENCE_WASM")
    if "alternative" in settings.modes and not settings.alternative_wasm:
        raise HarnessError("mode alternative needs BENCH_ALTERNATIVE_WASM")
    if "auto-rego-rule" in settings.modes and not settings.rego_wasm:
        raise HarnessError("mode auto-rego-rule needs the Rego module: run `make build`")

    pin = os.environ.get("BENCH_PIN", "1") != "0" and shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    settings.pin_envoy = ["taskset", "-c", "0"] if pin else []
    settings.pin_wrk = ["taskset", "-c", "1"] if pin else []
    return settings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-new-fields", action="store_true",
                        help="leave `crypto` and `token_cache` out of the filter's configuration "
                             "(for a filter that predates them; auto and portable then coincide)")
    arguments = parser.parse_args()
    # SIGTERM (e.g. from make or CI) unwinds like Ctrl-C, so the finally blocks kill the Envoys.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    try:
        settings = configure(arguments)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        settings.load_start = load_average()
        if float(settings.load_start.split()[0] if settings.load_start != "unknown" else 0) > 0.5:
            warn(f"load average {settings.load_start}: something else is running; expect noise")
        settings.jwks = {"keys": [public_jwk(alg, key) for alg, key in TOKEN_SPEC["keys"].items()]}
        say(f"Envoy {settings.envoy}, module {settings.wasm} ({settings.wasm.stat().st_size} bytes); "
            f"{settings.rounds} rounds × {settings.duration} s, {settings.connections} connections; "
            + ("Envoy on CPU 0, wrk on CPU 1" if settings.pin_envoy else "no CPU pinning")
            + ("" if settings.new_fields else "; WITHOUT the crypto/token_cache fields"))
        token_files = {alg: tokens_for(alg, settings.token_count)
                       for alg in sorted({WORKLOADS[name]["alg"] for name in settings.workloads})}
        settings.flood_files, settings.flood_mint_seconds = (None, "BENCH_FLOOD=0"), 0.0
        if settings.flood and settings.new_fields:
            # Minted (or built) now, not between measurements.
            minting = time.monotonic()
            try:
                settings.flood_files = flood_tokens(settings.flood_tokens)
            except FloodFailed as failure:
                settings.flood_files = (None, str(failure))
                warn(f"flood: {failure}")
            settings.flood_mint_seconds = time.monotonic() - minting
        results = {}
        for name in settings.workloads:
            workload = WORKLOADS[name]
            token_file = token_files[workload["alg"]]
            if workload["pool"]:
                token_file = pool_file(workload["alg"], token_file, workload["pool"])
            say(f"workload {name}: {workload['about']}")
            modes = [mode for mode in settings.modes
                     if mode not in POLICY_MODES or workload.get("policy_modes")]
            state = measure_workload(settings, name, workload, token_file, modes)
            results[name] = {
                "modes": modes, "state": state,
                "rows": summarize(state, modes, settings.connections),
                "tokens": len(token_file.read_text().split()),
            }
        flood = None
        if settings.flood:
            say(f"token-cache flood: {settings.flood_tokens} distinct {FLOOD_ALG} tokens, each once, "
                f"mode auto, token cache {' and '.join(map(str, FLOOD_CACHE_SETTINGS))}")
            flood = measure_flood(settings)
        elapsed = time.monotonic() - started
        facts = environment_facts(settings)
        print_table(results)
        if flood:
            print(f"token-cache flood ({flood['tokens']} distinct {FLOOD_ALG} tokens, mode auto; "
                  f"{flood['seconds']:.0f} s):")
            print("\n".join(flood_lines(flood)))
            print()
        write_results(settings, facts, results, elapsed, flood)
        say(f"wrote {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)} "
            f"({elapsed:.0f} s in all)")
        return 0
    except HarnessError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        kill_children()


if __name__ == "__main__":
    sys.exit(main())
