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

Environment (defaults): BENCH_ROUNDS (3) BENCH_DURATION (5, seconds per run) BENCH_WARMUP (2,
  seconds per Envoy) BENCH_CONNECTIONS (16) BENCH_TOKENS (3000 per algorithm) BENCH_WORKLOADS
  and BENCH_MODES (comma lists, default all) BENCH_REFERENCE_WASM (unset) BENCH_PIN (1: taskset
  when there are two CPUs) BENCH_NO_NEW_FIELDS (unset; 1 = --no-new-fields) ENVOY_BIN
  (.venv/bin/envoy) WASM_JWT_AUTHN_WASM (target/wasm32-wasip1/release/wasm_jwt_authn.wasm).

Exit status: 0 when the harness ran, whatever the numbers (a mode that fails its checks is
reported and skipped); 1 when it cannot run (no Envoy, wrk, openssl or module; minting failed).
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
    "version": 1,
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
    "repeated-100": {"alg": "RS256", "pool": 100, "cache": True,
                     "about": f"100 RS256 tokens repeated, token caches on ({CACHE_ENTRIES} entries) on both sides"},
}
MODES = ["none", "native", "auto", "portable", "portable-reference"]
AUTH_MODES = {"native", "auto", "portable", "portable-reference"}
WASM_MODES = {"auto", "portable", "portable-reference"}

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


def filter_configuration(jwks, crypto, cache_entries, new_fields):
    """This filter's JSON: one provider with the keys inline, required on every path."""
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
    crypto = "auto" if mode == "auto" else "portable"
    configuration = filter_configuration(jwks, crypto, cache_entries, new_fields)
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
              "exp": issued_at + TOKEN_SPEC["lifetime_seconds"]}
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


def run_wrk(settings, port, token_file, seconds):
    command = settings.pin_wrk + [
        "wrk", "-t1", f"-c{settings.connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{port}{REQUEST_PATH}"]
    environment = dict(os.environ, BENCH_TOKEN_FILE=str(token_file), BENCH_PATH=REQUEST_PATH)
    result = subprocess.run(command, capture_output=True, text=True, env=environment,
                            timeout=seconds + 60, check=False)
    match = RESULT_LINE.search(result.stdout)
    if result.returncode != 0 or not match:
        raise ModeFailed(f"wrk failed (status {result.returncode})", result.stdout + result.stderr)
    fields = dict(item.split("=", 1) for item in match.group(1).split())
    run = {name: float(value) for name, value in fields.items()}
    run["rps"] = run["requests"] / (run["duration_us"] / 1e6) if run["duration_us"] else 0.0
    return run


def check_mode(envoy, token):
    """Before measuring: a valid token gets 200, and in auth modes a missing or forged one gets
    401. Returns how many check requests the filter must have allowed and denied."""
    bearer = {"Authorization": f"Bearer {token}"}
    status, body = http_get(envoy.port, REQUEST_PATH, bearer)
    if status != 200:
        raise ModeFailed(f"a valid token got {status}, not 200: {body[:300]!r}")
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
    state = {mode: {"runs": [], "error": None, "sent": 0, "checks": None} for mode in modes}
    envoys = {}
    sample = token_file.read_text().split()[0]
    try:
        for index, mode in enumerate(modes):
            wasm = settings.reference_wasm if mode == "portable-reference" else settings.wasm
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
                        state[mode]["checks"] = check_mode(envoy, sample)
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
            for mode in modes:
                envoy = envoys[mode]
                if state[mode]["error"]:
                    continue
                if not envoy.running():
                    state[mode]["error"] = "Envoy exited during the measurements"
                    warn(f"{name}/{mode}: {state[mode]['error']}:\n{envoy.log_tail()}")
                    continue
                try:
                    run = run_wrk(settings, envoy.port, token_file, settings.duration)
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
                    f"p99 {run['p99_us'] / 1000:6.2f} ms")
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
            "errors": sum(run["status"] + run["connect"] + run["read"] + run["write"] + run["timeout"]
                          for run in runs),
        }
        counters = state[mode].get("counters") or {}
        checks = state[mode]["checks"] or {"allowed": 0, "denied": 0}
        if "allowed" in counters:
            # wrk counts completed responses; a request in flight when a run stops was verified
            # but not counted: at most one per connection per run (warm-up included).
            expected = state[mode]["sent"] + checks["allowed"]
            row["allowed"] = counters["allowed"]
            row["allowed_expected"] = expected
            row["allowed_slack"] = connections * (len(runs) + 1)
            row["verified_ok"] = expected <= counters["allowed"] <= expected + row["allowed_slack"]
        rows[mode] = row
    native = rows.get("native")
    for row in rows.values():
        if native:
            row["rps_ratio"] = row["rps"] / native["rps"] if native["rps"] else None
            row["p99_ratio"] = row["p99_ms"] / native["p99_ms"] if native["p99_ms"] else None
    return rows


# ---------------------------------------------------------------------------------------------
# Reporting.


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def summary_table(name, rows, state, modes):
    lines = [
        "| mode | req/s | p50 ms | p99 ms | req/s vs native | p99 vs native | allowed counter (expected) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for mode in modes:
        row = rows.get(mode)
        if row is None:
            reason = (state[mode]["error"] or "no runs").replace("|", "\\|")
            lines.append(f"| {mode} | skipped: {reason} | | | | | |")
            continue
        if "allowed" in row:
            mark = "" if row["verified_ok"] else " **MISMATCH**"
            counter = f"{row['allowed']} ({row['allowed_expected']:.0f} + ≤{row['allowed_slack']}){mark}"
        else:
            counter = "—"
        errors = f" ({row['errors']:.0f} errors!)" if row["errors"] else ""
        lines.append(
            f"| {mode} | {row['rps']:.0f}{errors} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{fmt(row.get('rps_ratio'), '.2f')} | {fmt(row.get('p99_ratio'), '.2f')} | {counter} |")
    if "portable" in rows and "portable-reference" in rows:
        portable, reference = rows["portable"], rows["portable-reference"]
        lines.append("")
        lines.append(f"portable vs portable-reference: req/s ×{portable['rps'] / reference['rps']:.2f}, "
                     f"p99 ×{portable['p99_ms'] / reference['p99_ms']:.2f}")
    return lines


def raw_table(results):
    lines = ["| workload | mode | round | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, result in results.items():
        for mode, mode_state in result["state"].items():
            for run in mode_state["runs"]:
                errors = run["status"] + run["connect"] + run["read"] + run["write"] + run["timeout"]
                lines.append(
                    f"| {name} | {mode} | {run['round']} | {run['requests']:.0f} | {run['rps']:.0f} | "
                    f"{run['p50_us'] / 1000:.2f} | {run['p90_us'] / 1000:.2f} | "
                    f"{run['p99_us'] / 1000:.2f} | {run['max_us'] / 1000:.2f} | {errors:.0f} |")
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


def write_results(settings, facts, results, elapsed):
    wasm_sizes = [f"`{settings.wasm.relative_to(ROOT) if settings.wasm.is_relative_to(ROOT) else settings.wasm}` "
                  f"{settings.wasm.stat().st_size} bytes"]
    if settings.reference_wasm:
        wasm_sizes.append(f"reference `{settings.reference_wasm}` {settings.reference_wasm.stat().st_size} bytes")
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
        name: {"rows": result["rows"], "state": result["state"]} for name, result in results.items()}},
        indent=1, default=str))


def print_table(results):
    header = f"{'workload':<16} {'mode':<19} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'rps/nat':>7} {'p99/nat':>7}  verified"
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
                  f"{fmt(row.get('rps_ratio'), '7.2f'):>7} {fmt(row.get('p99_ratio'), '7.2f'):>7}  {verified}")
        rows = result["rows"]
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
    settings.warmup = env_int("BENCH_WARMUP", 2)
    settings.connections = env_int("BENCH_CONNECTIONS", 16)
    settings.token_count = env_int("BENCH_TOKENS", 3000, minimum=100)
    settings.workloads = env_list("BENCH_WORKLOADS", list(WORKLOADS), list(WORKLOADS))
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
    default_modes = [mode for mode in MODES if mode != "portable-reference" or settings.reference_wasm]
    settings.modes = env_list("BENCH_MODES", MODES, default_modes)
    if "portable-reference" in settings.modes and not settings.reference_wasm:
        raise HarnessError("mode portable-reference needs BENCH_REFERENCE_WASM")

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
        results = {}
        for name in settings.workloads:
            workload = WORKLOADS[name]
            token_file = token_files[workload["alg"]]
            if workload["pool"]:
                token_file = pool_file(workload["alg"], token_file, workload["pool"])
            say(f"workload {name}: {workload['about']}")
            state = measure_workload(settings, name, workload, token_file, settings.modes)
            results[name] = {
                "modes": settings.modes, "state": state,
                "rows": summarize(state, settings.modes, settings.connections),
                "tokens": len(token_file.read_text().split()),
            }
        elapsed = time.monotonic() - started
        facts = environment_facts(settings)
        print_table(results)
        write_results(settings, facts, results, elapsed)
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
