//! A real Envoy process running the built filter: bootstrap, start-up, admin (stats), logs.
//!
//! Each [`Envoy`] gets its own directory under Cargo's test temp dir with the bootstrap, Envoy's
//! log, its stdout/stderr and the access log. The listener and the admin interface bind port 0
//! and the real ports are read back from Envoy (`--admin-address-path`, admin `/listeners`),
//! so parallel tests never race for a port. `--disable-hot-restart` is what lets several
//! Envoys run at once: hot restart is what binds a shared per-`--base-id` socket and memory.
//!
//! Dropping an [`Envoy`] kills it; if the thread is panicking (a failed assertion or start-up),
//! it first prints Envoy's logs, and keeps the directory for a closer look.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::http::{self, Response};

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The filter-state keys the filter's `set_property(["wasm_jwt_authn.<name>"])` calls create.
pub const DECISION_KEY: &str = "wasm.wasm_jwt_authn.decision";
pub const SUBJECT_KEY: &str = "wasm.wasm_jwt_authn.subject";
pub const REASON_KEY: &str = "wasm.wasm_jwt_authn.reason";
pub const RULE_KEY: &str = "wasm.wasm_jwt_authn.rule";
/// Envoy's name for the filter's counters: `wasmcustom.` + the name the filter defines.
pub const COUNTER_PREFIX: &str = "wasmcustom.wasm_jwt_authn.";
/// The request header whose value the access log records, to find a request's line.
pub const REQUEST_ID_HEADER: &str = "x-e2e-id";

/// The Envoy binary: `ENVOY_BIN`, else `.venv/bin/envoy`. Missing is a failure, never a skip.
pub fn envoy_binary() -> PathBuf {
    let configured = std::env::var_os("ENVOY_BIN").map(PathBuf::from);
    let binary = configured
        .clone()
        .unwrap_or_else(|| Path::new(REPOSITORY).join(".venv/bin/envoy"));
    let found = if binary.components().count() > 1 {
        binary.is_file()
    } else {
        // A bare command name, as `ENVOY_BIN=envoy`: look it up on PATH.
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(&binary).is_file()))
    };
    assert!(
        found,
        "no Envoy at {} (ENVOY_BIN={configured:?}): run `make test`, which installs Envoy \
         (scripts/setup.sh envoy) and builds the filter before running these tests",
        binary.display()
    );
    binary
}

/// The filter: `WASM_JWT_AUTHN_WASM`, else the release artifact. Missing is a failure.
pub fn wasm_module() -> PathBuf {
    module_at("WASM_JWT_AUTHN_WASM", "wasm_jwt_authn.wasm")
}

/// The module built with Rego: `WASM_JWT_AUTHN_REGO_WASM`, else the release build's.
pub fn rego_module() -> PathBuf {
    module_at("WASM_JWT_AUTHN_REGO_WASM", "wasm_jwt_authn_rego.wasm")
}

fn module_at(variable: &str, file: &str) -> PathBuf {
    let module = std::env::var_os(variable).map_or_else(
        || {
            Path::new(REPOSITORY)
                .join("target/wasm32-wasip1/release")
                .join(file)
        },
        PathBuf::from,
    );
    let module = if module.is_relative() {
        Path::new(REPOSITORY).join(module)
    } else {
        module
    };
    assert!(
        module.is_file(),
        "no filter module at {}: run `make test` (or `make build`) to build it first",
        module.display()
    );
    static STALE_CHECK: Once = Once::new();
    STALE_CHECK.call_once(|| warn_if_stale(&module));
    module
}

/// The tests run whatever module is on disk; say so when `src/` has changed since it was built.
fn warn_if_stale(module: &Path) {
    let modified = |path: &Path| fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let Some(built) = modified(module) else {
        return;
    };
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut pending = vec![Path::new(REPOSITORY).join("src")];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some(time) = modified(&path) {
                if newest.as_ref().is_none_or(|(newest, _)| time > *newest) {
                    newest = Some((time, path));
                }
            }
        }
    }
    if let Some((time, path)) = newest {
        if time > built {
            eprintln!(
                "e2e: warning: {} is newer than {}: the tests run the old module; `make build` first",
                path.display(),
                module.display()
            );
        }
    }
}

/// A number no other Envoy of this test process has: tests of different suites may reuse a name.
fn next_instance() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How `path_with_escaped_slashes_action` treats `%2F` and `%5C` in paths.
#[derive(Debug, Clone, Copy)]
pub enum EscapedSlashes {
    /// What `envoy/envoy.yaml` uses in production: redirect to the unescaped path.
    UnescapeAndRedirect,
    /// Leave them for the filter, which must then refuse the path itself.
    KeepUnchanged,
}

impl EscapedSlashes {
    fn as_str(self) -> &'static str {
        match self {
            EscapedSlashes::UnescapeAndRedirect => "UNESCAPE_AND_REDIRECT",
            EscapedSlashes::KeepUnchanged => "KEEP_UNCHANGED",
        }
    }
}

pub struct Options {
    pub escaped_slashes: EscapedSlashes,
    /// `0`: any free port (read back after start-up).
    pub listener_port: u16,
    /// Envoy's worker threads (`--concurrency`). Defaults to 1.
    pub concurrency: u32,
    /// Clusters besides `backend` (the echo upstream), as Envoy `Cluster` JSON: e.g. the
    /// identity provider's, which the filter's `upstream` names.
    pub clusters: Vec<Value>,
    /// The authentication filter in front of the router: this filter (default) or Envoy's own.
    pub auth_filter: AuthFilter,
    /// The connection manager's `use_remote_address`: `true` makes the connection's peer the
    /// downstream remote address (`source.address`); Envoy's default `false` takes it from
    /// `X-Forwarded-For`.
    pub use_remote_address: bool,
    /// The Wasm filter's `vm_config.code` (e.g. `{"remote": …}`, or another module's
    /// `{"local": …}`); `None`: the built module, locally.
    pub code: Option<Value>,
}

/// Which HTTP filter authenticates requests, and so what the configuration passed to
/// [`Envoy::start`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthFilter {
    /// The built module ([`wasm_module`]) in `envoy.filters.http.wasm`; the configuration is the
    /// filter's JSON.
    #[default]
    Wasm,
    /// As `Wasm`, with the module built with Rego ([`rego_module`]).
    WasmRego,
    /// Envoy's native `envoy.filters.http.jwt_authn`, for differential tests; the configuration
    /// is an `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication` message as JSON
    /// (without `@type`). No module is needed.
    NativeJwtAuthn,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            escaped_slashes: EscapedSlashes::UnescapeAndRedirect,
            listener_port: 0,
            concurrency: 1,
            clusters: Vec::new(),
            auth_filter: AuthFilter::Wasm,
            use_remote_address: false,
            code: None,
        }
    }
}

pub struct Envoy {
    name: String,
    dir: PathBuf,
    child: Option<Child>,
    admin: Option<SocketAddr>,
    listener: Option<SocketAddr>,
}

impl Envoy {
    /// Starts Envoy with `plugin_configuration` (the filter's JSON, or `jwt_authn`'s with
    /// [`AuthFilter::NativeJwtAuthn`]) in front of the upstream on `upstream_port`, and waits
    /// until it is ready to serve.
    pub fn start(
        name: &str,
        plugin_configuration: &str,
        upstream_port: u16,
        options: &Options,
    ) -> Envoy {
        let mut envoy = Envoy::spawn(name, plugin_configuration, upstream_port, options);
        envoy.wait_ready();
        envoy
    }

    /// Writes the bootstrap and starts the process, without waiting for anything.
    pub fn spawn(
        name: &str,
        plugin_configuration: &str,
        upstream_port: u16,
        options: &Options,
    ) -> Envoy {
        let binary = envoy_binary();
        let auth_filter = auth_filter(plugin_configuration, options);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "e2e-{name}-{}-{}",
            std::process::id(),
            next_instance()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the Envoy directory");
        let bootstrap = bootstrap(auth_filter, upstream_port, options, &dir.join("access.log"));
        let bootstrap_path = dir.join("bootstrap.json");
        fs::write(
            &bootstrap_path,
            serde_json::to_string_pretty(&bootstrap).expect("bootstrap JSON"),
        )
        .expect("write the bootstrap");
        let output = fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&bootstrap_path)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--disable-hot-restart")
            .args(["-l", "warn", "--component-log-level", "wasm:info"])
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .arg("--admin-address-path")
            .arg(dir.join("admin.address"))
            // Access log lines reach the file within 50 ms rather than the default 10 s.
            .args(["--file-flush-interval-msec", "50"])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("stdout.log"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        Envoy {
            name: name.to_owned(),
            dir,
            child: Some(child),
            admin: None,
            listener: None,
        }
    }

    /// Polls admin `/ready` until `LIVE`, then reads the listener's port. Panics (and the drop
    /// prints the logs) if Envoy exits or is not ready within 20 s.
    pub fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("poll Envoy") {
                panic!("Envoy {} exited during start-up: {status}", self.name);
            }
            if let Some(admin) = self.admin_address() {
                let live = http::send(admin, "GET", "/ready", &[], &[]).is_ok_and(|response| {
                    response.status == 200 && response.text().trim() == "LIVE"
                });
                if live {
                    self.admin = Some(admin);
                    break;
                }
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "Envoy {} not ready after {START_TIMEOUT:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(50));
        }
        let listeners = http::get(self.admin(), "/listeners?format=json").json();
        let port = listeners["listener_statuses"][0]["local_address"]["socket_address"]
            ["port_value"]
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .unwrap_or_else(|| panic!("no listener port in {listeners}"));
        self.listener = Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("poll Envoy") {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "Envoy {} still running after {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child_mut().try_wait().expect("poll Envoy").is_none()
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("Envoy process")
    }

    fn admin_address(&self) -> Option<SocketAddr> {
        fs::read_to_string(self.dir.join("admin.address"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn admin(&self) -> SocketAddr {
        self.admin.expect("Envoy is not ready")
    }

    pub fn listener(&self) -> SocketAddr {
        self.listener.expect("Envoy is not ready")
    }

    /// Sends a request through the listener.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http::send(self.listener(), method, target, headers, body)
            .unwrap_or_else(|err| panic!("{method} {target} through Envoy: {err}"))
    }

    /// Every counter the filter defined, by its name without [`COUNTER_PREFIX`]
    /// (`allowed`, `denied.expired`, …). Gauges (`memory_bytes`, …) are not counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let stats = http::get(
            self.admin(),
            "/stats?format=json&type=Counters&filter=wasmcustom",
        )
        .json();
        stats["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|stat| {
                let name = stat["name"].as_str()?.strip_prefix(COUNTER_PREFIX)?;
                Some((name.to_owned(), stat["value"].as_u64()?))
            })
            .collect()
    }

    /// One counter, by its name without [`COUNTER_PREFIX`]; panics if Envoy has no such stat.
    pub fn counter(&self, name: &str) -> u64 {
        *self
            .counters()
            .get(name)
            .unwrap_or_else(|| panic!("Envoy has no counter {COUNTER_PREFIX}{name}"))
    }

    /// Any of Envoy's own counters or gauges (`cluster.idp.ssl.handshake`, …) by its full
    /// name; `None` when Envoy has no such stat.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let target = format!("/stats?format=json&filter=^{}$", name.replace('.', "\\."));
        let stats = http::get(self.admin(), &target).json();
        stats["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|stat| stat["name"] == name)
            .and_then(|stat| stat["value"].as_u64())
    }

    /// The access log so far: one line per request (see [`bootstrap`] for the format).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Envoy's own log and its stdout/stderr.
    pub fn log(&self) -> String {
        let read = |file: &str| fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("envoy.log"))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "\n===== Envoy {} (files kept in {}) =====\n----- envoy.log and stdout -----\n{}\n----- access.log -----\n{}===== end of Envoy {} =====",
                self.name,
                self.dir.display(),
                self.log(),
                self.access_log(),
                self.name,
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A loopback port that was free a moment ago (for a listener that must have a known port
/// before Envoy starts; prefer port 0 where the port can be read back).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}

/// A plain-HTTP cluster `name` to a loopback port: the echo upstream, or a server standing in
/// for something the filter (or Envoy) fetches from.
pub fn loopback_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}
            }}}]}]
        }
    })
}

/// The authentication filter's entry in `http_filters`, configured with `configuration`.
fn auth_filter(configuration: &str, options: &Options) -> Value {
    let filter = options.auth_filter;
    match filter {
        AuthFilter::Wasm | AuthFilter::WasmRego => {
            let module = if filter == AuthFilter::WasmRego {
                rego_module()
            } else {
                wasm_module()
            };
            let code = options
                .code
                .clone()
                .unwrap_or_else(|| json!({"local": {"filename": module}}));
            json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "wasm_jwt_authn",
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": configuration
                    },
                    "vm_config": {
                        "vm_id": "wasm_jwt_authn",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": code
                    }
                }
            }
            })
        }
        AuthFilter::NativeJwtAuthn => {
            let mut typed_config: Value = serde_json::from_str(configuration)
                .unwrap_or_else(|err| panic!("jwt_authn configuration is not JSON: {err}"));
            typed_config["@type"] = json!(
                "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
            );
            json!({"name": "envoy.filters.http.jwt_authn", "typed_config": typed_config})
        }
    }
}

/// The bootstrap: static listener → HTTP connection manager (paths normalised, access log with
/// the filter's verdict) → the authentication filter → router → static cluster to the echo
/// upstream, plus [`Options::clusters`].
fn bootstrap(
    auth_filter: Value,
    upstream_port: u16,
    options: &Options,
    access_log: &Path,
) -> Value {
    let loopback =
        |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    let mut clusters = vec![loopback_cluster("backend", upstream_port)];
    clusters.extend(options.clusters.iter().cloned());
    // PLAIN prints the raw filter-state value, `-` when the filter set none.
    let access_log_format = format!(
        "id=%REQ({REQUEST_ID_HEADER})% status=%RESPONSE_CODE% \
         decision=%FILTER_STATE({DECISION_KEY}:PLAIN)% \
         subject=%FILTER_STATE({SUBJECT_KEY}:PLAIN)% \
         reason=%FILTER_STATE({REASON_KEY}:PLAIN)% \
         rule=%FILTER_STATE({RULE_KEY}:PLAIN)%\n"
    );
    json!({
        "admin": {"address": loopback(0)},
        // Envoy warns at start-up without a downstream connection limit.
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 1000
            }
        }]},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": loopback(options.listener_port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress_http",
                        "normalize_path": true,
                        "merge_slashes": true,
                        "use_remote_address": options.use_remote_address,
                        "path_with_escaped_slashes_action": options.escaped_slashes.as_str(),
                        "access_log": [{
                            "name": "envoy.access_loggers.file",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                                "path": access_log,
                                "log_format": {"text_format_source": {"inline_string": access_log_format}}
                            }
                        }],
                        "route_config": {"virtual_hosts": [{
                            "name": "backend",
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
                        }]},
                        "http_filters": [
                            auth_filter,
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                            }
                        ]
                    }
                }]}]
            }],
            "clusters": clusters
        }
    })
}
