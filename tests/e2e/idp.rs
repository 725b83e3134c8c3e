//! A real OpenID Provider on loopback: `tests/idp/server.mjs` (the npm package `oidc-provider`)
//! as a child process, driven through its plain-HTTP admin API.
//!
//! [`Idp::start`] makes a throwaway CA and server certificate (`tests/idp/make-ca.sh`) in its own
//! directory under Cargo's test temp dir (`target/tmp/`), starts Node with them, and waits for
//! the server's `READY issuer=… port=… admin=…` line. Both ports are picked by the server (port
//! 0), so parallel tests never race for one. The OP serves discovery, a JWKS and a
//! `client_credentials` token endpoint issuing RFC 9068 JWT access tokens; the admin API mints
//! tokens, rotates the signing key, injects JWKS/discovery faults and reports request counters.
//! `tests/idp/README.md` documents both.
//!
//! Tests need no TLS client: the admin port is plain HTTP, and the server fetches tokens from
//! itself over HTTPS. Envoy (or `curl --cacert`) trusts [`Idp::ca_pem_path`].
//!
//! Needs Node (`NODE_BIN`, default `node`) and `tests/idp/node_modules` (`make test` runs
//! `scripts/setup.sh idp`, which installs them); without them this panics, it never skips.
//! Dropping an [`Idp`] kills it; if the thread is panicking it first prints the server's log and
//! keeps its directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");
/// Node starts the server in about 0.4 s; a loaded CI machine running tests in parallel is slower.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The server gives its own token request 10 s; the admin answer comes after that at the latest.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The client the OP knows: `client_secret_basic`, grant type `client_credentials`.
pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret";

/// How to start an [`Idp`]. `IdpOptions::default()`: HTTPS, RS256, audience `api://orders`,
/// issuer `https://127.0.0.1:<port>`.
#[derive(Debug, Clone)]
pub struct IdpOptions {
    /// Serve HTTPS with a certificate from a fresh test CA. Defaults to `true`.
    pub tls: bool,
    /// The JWS algorithm of the signing keys (`RS256`, `PS256`, `ES256`, `ES384`, `EdDSA`, …).
    /// Defaults to `RS256`.
    pub alg: String,
    /// The resource indicator tokens are for by default: their `aud`. Defaults to `api://orders`.
    pub resource: String,
    /// The issuer identifier (`iss`, discovery's `issuer`). A path (`…/realms/corp`) mounts the
    /// OP under it. Defaults to `None`: `http(s)://127.0.0.1:<port>`.
    pub issuer: Option<String>,
    /// The OP's port. Defaults to 0: the server picks a free one.
    pub port: u16,
    /// Access-token lifetime. Defaults to `None`: one hour.
    pub token_ttl_seconds: Option<u64>,
}

impl Default for IdpOptions {
    fn default() -> Self {
        IdpOptions {
            tls: true,
            alg: "RS256".to_owned(),
            resource: "api://orders".to_owned(),
            issuer: None,
            port: 0,
            token_ttl_seconds: None,
        }
    }
}

/// A running test OpenID Provider. Killed on drop.
#[derive(Debug)]
pub struct Idp {
    /// The issuer identifier, exactly as in discovery and every token's `iss`.
    pub issuer: String,
    /// The OP's port on 127.0.0.1 (discovery, JWKS, token endpoint).
    pub port: u16,
    /// The admin API's port on 127.0.0.1 (plain HTTP).
    pub admin_port: u16,
    /// The test CA that signed the OP's certificate (for Envoy's `validation_context`, `curl
    /// --cacert`). Created with `tls: false` too, though nothing uses it then.
    pub ca_pem_path: PathBuf,
    /// Whether the OP serves HTTPS.
    pub tls: bool,
    /// The default audience ([`IdpOptions::resource`]).
    pub resource: String,
    /// The directory with the certificates and the server's log (`idp.log`).
    pub dir: PathBuf,
    child: Option<Child>,
}

/// The server's request counters, as `GET /stats` reports them.
pub type Stats = (u64, u64, u64);

impl Idp {
    /// Makes the certificates, starts the server and waits until it listens. Panics, with the
    /// server's log, if it does not say READY within 20 s.
    pub fn start(options: IdpOptions) -> Idp {
        let node = node_binary();
        let idp_dir = Path::new(REPOSITORY).join("tests/idp");
        let oidc_provider = idp_dir.join("node_modules/oidc-provider");
        assert!(
            oidc_provider.is_dir(),
            "{} is missing: install the test IdP's packages with `make test` (or \
             `scripts/setup.sh idp`, which runs `npm ci` in tests/idp)",
            oidc_provider.display()
        );

        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "idp-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the IdP directory");
        make_ca(&idp_dir.join("make-ca.sh"), &dir);

        let mut command = Command::new(&node);
        command
            .arg(idp_dir.join("server.mjs"))
            .current_dir(&idp_dir)
            .env("IDP_PORT", options.port.to_string())
            .env("IDP_ADMIN_PORT", "0")
            .env("IDP_ALG", &options.alg)
            .env("IDP_RESOURCE", &options.resource)
            .env_remove("IDP_ISSUER")
            .env_remove("IDP_TLS_CERT")
            .env_remove("IDP_TLS_KEY")
            .env_remove("IDP_TLS_CA")
            .env_remove("IDP_TOKEN_TTL");
        if options.tls {
            command
                .env("IDP_TLS_CERT", dir.join("server.pem"))
                .env("IDP_TLS_KEY", dir.join("server-key.pem"))
                .env("IDP_TLS_CA", dir.join("ca.pem"));
        }
        if let Some(issuer) = &options.issuer {
            command.env("IDP_ISSUER", issuer);
        }
        if let Some(ttl) = options.token_ttl_seconds {
            command.env("IDP_TOKEN_TTL", ttl.to_string());
        }
        let stdout = fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
        let log = fs::File::create(dir.join("idp.log")).expect("create idp.log");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start the test IdP with {}: {err}. It needs Node.js (set NODE_BIN, or \
                     put `node` on PATH) and its packages (`make test` installs them)",
                    node.display()
                )
            });

        let mut idp = Idp {
            issuer: String::new(),
            port: 0,
            admin_port: 0,
            ca_pem_path: dir.join("ca.pem"),
            tls: options.tls,
            resource: options.resource,
            dir,
            child: Some(child),
        };
        idp.wait_ready();
        idp
    }

    /// Polls the server's stdout for `READY issuer=<issuer> port=<port> admin=<admin port>`.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            let stdout = fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
            if let Some(line) = stdout.lines().find(|line| line.starts_with("READY ")) {
                let field = |name: &str| {
                    line.split(' ')
                        .find_map(|word| word.strip_prefix(name))
                        .unwrap_or_else(|| panic!("READY line without {name}: {line:?}"))
                };
                self.issuer = field("issuer=").to_owned();
                self.port = field("port=").parse().expect("READY port");
                self.admin_port = field("admin=").parse().expect("READY admin port");
                return;
            }
            let child = self.child.as_mut().expect("the IdP process");
            if let Some(status) = child.try_wait().expect("poll the IdP") {
                panic!("the test IdP exited during start-up ({status}); its log is below");
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the test IdP did not say READY within {START_TIMEOUT:?}; its log is below"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `https://127.0.0.1:<port>` (or `http://`): where the OP listens, whatever the issuer says.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{}", self.port, self.issuer_path())
    }

    /// The JWKS URI on loopback (discovery says the same when asked with `Host: 127.0.0.1:<port>`).
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.base_url())
    }

    /// The discovery document's URI on loopback.
    pub fn discovery_uri(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.base_url())
    }

    /// The token endpoint on loopback.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// The introspection endpoint (RFC 7662) on loopback.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.base_url())
    }

    /// Revokes an opaque access token at the OP's revocation endpoint (RFC 7009), as its
    /// client would.
    pub fn revoke(&self, token: &str) {
        let response = self.admin("POST", "/revoke", Some(&json!({ "token": token })));
        assert_eq!(response["revoked"], true, "admin POST /revoke: {response}");
    }

    /// What the OP's introspection endpoint says of `token` now.
    pub fn introspect(&self, token: &str) -> Value {
        self.admin("POST", "/introspect", Some(&json!({ "token": token })))
    }

    /// Introspection requests the OP has received ([`Idp::introspect`]'s included).
    pub fn introspection_requests(&self) -> u64 {
        let stats = self.admin("GET", "/stats", None);
        stats["introspection_requests"]
            .as_u64()
            .unwrap_or_else(|| panic!("admin GET /stats without introspection_requests: {stats}"))
    }

    /// The issuer's path (`/realms/corp`), or empty.
    fn issuer_path(&self) -> &str {
        let after_scheme = self
            .issuer
            .split_once("://")
            .map_or(self.issuer.as_str(), |(_, rest)| rest);
        after_scheme
            .find('/')
            .map_or("", |slash| after_scheme[slash..].trim_end_matches('/'))
    }

    /// A fresh access token for the default resource, signed by the current signing key.
    pub fn token(&self) -> String {
        self.token_with(&json!({}))
    }

    /// A fresh access token for `resource` (its `aud`); any absolute URI is accepted.
    pub fn token_for(&self, resource: &str) -> String {
        self.token_with(&json!({ "resource": resource }))
    }

    /// A fresh access token from admin `POST /token` with `request`: `resource`, `scope` (space
    /// separated, of `read write admin`), `claims` (an object merged into the payload last, so
    /// it can also override `iss`, `exp`, … for negative tests).
    pub fn token_with(&self, request: &Value) -> String {
        let response = self.admin("POST", "/token", Some(request));
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("admin POST /token answered without a token: {response}"))
            .to_owned()
    }

    /// Generates a new key, which signs every token from now on and comes first in the JWKS.
    /// The previous keys stay published unless `retire_previous`, which leaves only the new one.
    /// Returns the new key's `kid`.
    pub fn rotate(&self, retire_previous: bool) -> String {
        let response = self.admin(
            "POST",
            "/rotate",
            Some(&json!({ "retire_previous": retire_previous })),
        );
        response["kid"]
            .as_str()
            .unwrap_or_else(|| panic!("admin POST /rotate answered without a kid: {response}"))
            .to_owned()
    }

    /// Makes JWKS and/or discovery responses fail. `target`: `jwks`, `discovery` or `all`;
    /// `mode`: `normal`, `garbage` (200, not JSON), `error` (500), `slow` (`delay_ms`, then
    /// normal), `down` (the connection is closed without an answer).
    pub fn set_mode(&self, target: &str, mode: &str, delay_ms: u64) {
        self.admin(
            "POST",
            "/mode",
            Some(&json!({ "target": target, "mode": mode, "delay_ms": delay_ms })),
        );
    }

    /// Requests the OP has received since start (or the last [`Idp::reset_stats`]), whatever
    /// the fault mode: `(jwks, discovery, token)`.
    pub fn stats(&self) -> Stats {
        let stats = self.admin("GET", "/stats", None);
        let count = |name: &str| {
            stats[name]
                .as_u64()
                .unwrap_or_else(|| panic!("admin GET /stats without {name}: {stats}"))
        };
        (
            count("jwks_requests"),
            count("discovery_requests"),
            count("token_requests"),
        )
    }

    /// Sets every counter to zero.
    pub fn reset_stats(&self) {
        self.admin("POST", "/reset-stats", None);
    }

    /// The public JWKS the OP currently publishes (signing key first).
    pub fn jwks(&self) -> Value {
        self.admin("GET", "/jwks", None)
    }

    /// The `kid`s of [`Idp::jwks`], in order.
    pub fn kids(&self) -> Vec<String> {
        self.jwks()["keys"]
            .as_array()
            .expect("JWKS keys")
            .iter()
            .map(|key| key["kid"].as_str().expect("kid").to_owned())
            .collect()
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("idp.log")).unwrap_or_default()
    }

    /// One admin request; panics unless the answer is 200 with a JSON body.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(Value::to_string).unwrap_or_default();
        let (status, response) = http_request(self.admin_port, method, path, &body)
            .unwrap_or_else(|err| panic!("admin {method} {path}: {err}"));
        assert_eq!(
            status, 200,
            "admin {method} {path} {body} answered {status}: {response}"
        );
        serde_json::from_str(&response).unwrap_or_else(|err| {
            panic!("admin {method} {path} answered non-JSON ({err}): {response}")
        })
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            let issuer = if self.issuer.is_empty() {
                "(not ready)"
            } else {
                &self.issuer
            };
            eprintln!(
                "\n===== test IdP {issuer} (files kept in {}) =====\n{}===== end of test IdP =====",
                self.dir.display(),
                self.log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The Node binary: `NODE_BIN`, else `node` on PATH.
pub fn node_binary() -> PathBuf {
    std::env::var_os("NODE_BIN").map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

/// Runs `make-ca.sh dir`: `ca.pem`, `ca-key.pem`, `server.pem`, `server-key.pem`.
fn make_ca(script: &Path, dir: &Path) {
    let output = Command::new("bash")
        .arg(script)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One HTTP/1.1 exchange on a fresh loopback connection (`Connection: close`, the response read
/// to EOF): the status and the body. The admin API always sends `Content-Length`, never chunks.
fn http_request(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|err| format!("connect: {err}"))?;
    stream
        .set_read_timeout(Some(ADMIN_TIMEOUT))
        .map_err(|err| err.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("send: {err}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|err| format!("receive: {err}"))?;
    let response = String::from_utf8(response).map_err(|err| format!("not UTF-8: {err}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// A compact JWS's header and payload, decoded but NOT verified (for assertions in tests).
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = |name: &str| {
        let encoded = parts
            .next()
            .unwrap_or_else(|| panic!("token without a {name}: {token}"));
        let bytes = base64url_decode(encoded)
            .unwrap_or_else(|| panic!("token {name} is not base64url: {encoded}"));
        serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|err| panic!("token {name} is not JSON ({err}): {token}"))
    };
    let header = part("header");
    let payload = part("payload");
    (header, payload)
}

/// Unpadded base64url (RFC 4648 §5), as in JWS; `None` on any other character.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |byte: u8| -> Option<u32> {
        Some(u32::from(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        buffer = (buffer << 6) | value(byte)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}
