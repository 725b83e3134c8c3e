//! Shipping tests: the module as an OCI image (the Wasm "compat" variant Istio and Envoy
//! Gateway pull) through a real registry and back into Envoy, and the module fetched by Envoy's
//! own `remote` code source with a `sha256`.
//!
//! - `scripts/oci.py build` writes the image layout (what `make oci` runs);
//! - Debian's `docker-registry` (the CNCF distribution registry) serves on loopback;
//! - `skopeo` pushes the layout and pulls it back;
//! - the pulled layer's `plugin.wasm` is the built module byte for byte, and Envoy loads it.
//!
//! Needs `ENVOY_BIN`, `WASM_JWT_AUTHN_WASM`, `skopeo` and `docker-registry` (`make test` installs
//! them). Without them the tests fail, they never skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::envoy::{Envoy, Options};
use crate::support::TestKey;
use crate::upstream::EchoUpstream;
use crate::{envoy, http, support};

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");
const ISSUER: &str = "https://idp.oci.test";
const AUDIENCE: &str = "api://oci";
const TAG: &str = "0.1.0-test";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A scratch directory for one test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oci-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `program` with `arguments`; its stdout, or a panic with its stderr.
fn run(program: &str, arguments: &[&str]) -> String {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err} (make test installs it)"));
    assert!(
        output.status.success(),
        "{program} {arguments:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A registry on a loopback port, storing into a scratch directory; killed on drop.
struct Registry {
    child: Child,
    address: SocketAddr,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = envoy::free_port();
        let config = dir.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start docker-registry: {err} (make test installs it)")
            });
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        // The distribution API's base endpoint answers 200 once the registry serves.
        while http::send(address, "GET", "/v2/", &[], &[]).map(|r| r.status) != Ok(200) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the registry did not come up: {}",
                fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
        Registry { child, address }
    }

    fn reference(&self) -> String {
        format!("docker://{}/wasm-jwt-authn:{TAG}", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The filter's configuration for the Envoys below: one provider with an inline key.
fn configuration() -> String {
    json!({"providers": [{
        "name": "main", "issuer": ISSUER, "audiences": [AUDIENCE],
        "jwks": {"inline": support::jwks(&[TestKey::Rsa2048])},
        "claims_to_headers": [{"claim": ["sub"], "header": "x-jwt-sub"}]
    }]})
    .to_string()
}

/// The module Envoy loaded authenticates: a valid token reaches the upstream as its subject,
/// no token gets `401`.
fn assert_authenticates(envoy: &Envoy) {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let claims =
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "shipped", "exp": now + 600, "iat": now});
    let token = support::token("RS256", TestKey::Rsa2048, &claims);
    let authorization = format!("Bearer {token}");
    let allowed = http::send(
        envoy.listener(),
        "GET",
        "/orders",
        &[("authorization", authorization.as_str())],
        &[],
    )
    .unwrap();
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.json()["headers"]["x-jwt-sub"], "shipped");
    let refused = http::send(envoy.listener(), "GET", "/orders", &[], &[]).unwrap();
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.json()["reason"], "missing_token");
}

fn layout_manifest(layout: &Path) -> (String, Value) {
    let index: Value =
        serde_json::from_str(&fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    let descriptor = &index["manifests"][0];
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"],
        TAG
    );
    let digest = descriptor["digest"].as_str().unwrap().to_owned();
    let manifest = blob(layout, &digest);
    assert_eq!(format!("sha256:{}", sha256_hex(&manifest)), digest);
    (digest, serde_json::from_slice(&manifest).unwrap())
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// `make oci`'s image goes to a registry and back unchanged, and what comes back runs.
#[test]
fn the_oci_image_round_trips_through_a_registry_and_loads_in_envoy() {
    let dir = scratch("registry");
    let module_path = envoy::wasm_module();
    let module = fs::read(&module_path).unwrap();
    let layout = dir.join("layout");
    let script = Path::new(REPOSITORY).join("scripts/oci.py");
    let built = run(
        "python3",
        &[
            script.to_str().unwrap(),
            "build",
            "--wasm",
            module_path.to_str().unwrap(),
            "--out",
            layout.to_str().unwrap(),
            "--tag",
            TAG,
            "--revision",
            "test",
        ],
    );
    let (digest, manifest) = layout_manifest(&layout);
    assert_eq!(built.trim(), digest);

    // The compat variant: one tar+gzip layer, the variant annotation.
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let registry = Registry::start(&dir);
    let reference = registry.reference();
    let source = format!("oci:{}:{TAG}", layout.display());
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &source,
            &reference,
        ],
    );
    // The registry serves the very manifest that was pushed.
    let served = run(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &reference],
    );
    assert_eq!(format!("sha256:{}", sha256_hex(served.as_bytes())), digest);
    let inspected: Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", "--tls-verify=false", &reference],
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], digest);
    assert_eq!(
        (inspected["Os"].as_str(), inspected["Architecture"].as_str()),
        (Some("wasip1"), Some("wasm"))
    );

    // Pulled back: the same digests, and the layer holds exactly the built module.
    let pulled = dir.join("pulled");
    let destination = format!("oci:{}:{TAG}", pulled.display());
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &reference,
            &destination,
        ],
    );
    let (pulled_digest, pulled_manifest) = layout_manifest(&pulled);
    assert_eq!(pulled_digest, digest);
    let layer_digest = pulled_manifest["layers"][0]["digest"].as_str().unwrap();
    let layer_path = dir.join("layer.tar.gz");
    fs::write(&layer_path, blob(&pulled, layer_digest)).unwrap();
    let listing = run("tar", &["-tzf", layer_path.to_str().unwrap()]);
    assert_eq!(listing, "plugin.wasm\n");
    let extracted = dir.join("extracted");
    fs::create_dir_all(&extracted).unwrap();
    run(
        "tar",
        &[
            "-xzf",
            layer_path.to_str().unwrap(),
            "-C",
            extracted.to_str().unwrap(),
        ],
    );
    let plugin = extracted.join("plugin.wasm");
    assert_eq!(sha256_hex(&fs::read(&plugin).unwrap()), sha256_hex(&module));

    let upstream = EchoUpstream::start();
    let options = Options {
        code: Some(json!({"local": {"filename": plugin}})),
        ..Options::default()
    };
    let envoy = Envoy::start("oci-pulled", &configuration(), upstream.port(), &options);
    assert_authenticates(&envoy);
    // The VM says which build it is: the version, and the revision `make build` embedded.
    let revision = option_env!("WASM_JWT_AUTHN_REVISION").unwrap_or("unknown");
    let identity = format!(
        "wasm-jwt-authn {} (revision {revision}) starting",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        envoy.log().contains(&identity),
        "{identity:?} not in {}",
        envoy.log()
    );
    eprintln!(
        "oci: pushed and pulled {digest} ({} byte module)",
        module.len()
    );
}

/// Envoy's `remote` code source: Envoy fetches the module over HTTP from loopback and checks
/// its `sha256` before loading it.
#[test]
fn envoy_loads_the_module_from_a_remote_source_checked_by_sha256() {
    let module = fs::read(envoy::wasm_module()).unwrap();
    let server = EchoUpstream::start();
    server.serve_document("/wasm-jwt-authn.wasm", "application/wasm", module.clone());
    let cluster = envoy::loopback_cluster("module_server", server.port());
    let upstream = EchoUpstream::start();
    let options = Options {
        clusters: vec![cluster],
        code: Some(json!({"remote": {
            "http_uri": {
                "uri": format!("http://127.0.0.1:{}/wasm-jwt-authn.wasm", server.port()),
                "cluster": "module_server",
                "timeout": "5s"
            },
            "sha256": sha256_hex(&module)
        }})),
        ..Options::default()
    };
    let envoy = Envoy::start("oci-remote", &configuration(), upstream.port(), &options);
    assert_authenticates(&envoy);
    let fetched: Vec<_> = server
        .take()
        .into_iter()
        .filter(|request| request.path == "/wasm-jwt-authn.wasm")
        .collect();
    assert!(!fetched.is_empty(), "Envoy fetched the module");
    assert!(fetched.iter().all(|request| request.method == "GET"));
}

/// A module that does not match the configured `sha256` is never run: nothing reaches the
/// upstream, whatever the token.
#[test]
fn a_remote_module_with_the_wrong_sha256_never_runs() {
    let module = fs::read(envoy::wasm_module()).unwrap();
    let server = EchoUpstream::start();
    server.serve_document("/wasm-jwt-authn.wasm", "application/wasm", module);
    let cluster = envoy::loopback_cluster("module_server", server.port());
    let upstream = EchoUpstream::start();
    let options = Options {
        listener_port: envoy::free_port(),
        clusters: vec![cluster],
        code: Some(json!({"remote": {
            "http_uri": {
                "uri": format!("http://127.0.0.1:{}/wasm-jwt-authn.wasm", server.port()),
                "cluster": "module_server",
                "timeout": "5s"
            },
            "sha256": sha256_hex(b"another module")
        }})),
        ..Options::default()
    };
    let listener = SocketAddr::from(([127, 0, 0, 1], options.listener_port));
    let mut envoy = Envoy::spawn("oci-wrong-sha", &configuration(), upstream.port(), &options);
    // Envoy serves without the filter's VM, and the filter fails closed: `503`, never `200`.
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        assert!(envoy.is_running(), "Envoy exited: {}", envoy.log());
        if let Ok(response) = http::send(listener, "GET", "/orders", &[], &[]) {
            answers.push(response.status);
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(!answers.is_empty(), "Envoy never answered: {}", envoy.log());
    assert!(answers.iter().all(|status| *status == 503), "{answers:?}");
    assert!(upstream.take().is_empty(), "a request reached the upstream");
    assert!(
        envoy
            .log()
            .contains("Retry limit exceeded for fetching data from remote data source"),
        "{}",
        envoy.log()
    );
}
