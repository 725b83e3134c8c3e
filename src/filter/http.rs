//! Per-request adapter: read the request, ask the core, apply the answer.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};

use crate::decision::{self, Allowed, Decision, Denial};
use crate::token::Request;

use super::{log, Shared};

/// Filter-state properties (Envoy: `wasm.wasm_jwt_authn.<name>`), for access logs.
const DECISION_PROPERTY: &str = "wasm_jwt_authn.decision";
const SUBJECT_PROPERTY: &str = "wasm_jwt_authn.subject";
const REASON_PROPERTY: &str = "wasm_jwt_authn.reason";

pub(crate) struct AuthnHttpContext {
    context_id: u32,
    shared: Option<Rc<Shared>>,
}

impl AuthnHttpContext {
    pub(crate) fn new(context_id: u32, shared: Option<Rc<Shared>>) -> Self {
        AuthnHttpContext { context_id, shared }
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level, self.context_id, message);
    }

    fn allow(&self, shared: &Shared, allowed: Allowed) -> Action {
        let edits = &allowed.edits;
        for name in &edits.remove_headers {
            if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
                return self.fail_closed(&format!("cannot remove header {name}: {status:?}"));
            }
        }
        for (name, value) in &edits.set_headers {
            if let Err(status) =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
            {
                return self.fail_closed(&format!("cannot set header {name}: {status:?}"));
            }
        }
        if let Some(path) = &edits.path {
            if let Err(status) =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(path))
            {
                return self.fail_closed(&format!("cannot rewrite :path: {status:?}"));
            }
        }
        let anonymous = allowed.provider.is_none();
        shared.stats.count_allowed(anonymous);
        set_property(
            DECISION_PROPERTY,
            if anonymous {
                "allow_anonymous"
            } else {
                "allow"
            },
        );
        if let Some(subject) = &allowed.subject {
            set_property(SUBJECT_PROPERTY, subject);
        }
        Action::Continue
    }

    fn deny(&self, shared: &Shared, denial: &Denial) -> Action {
        let reason = denial.reason();
        shared.stats.count_denied(reason);
        set_property(DECISION_PROPERTY, "deny");
        set_property(REASON_PROPERTY, reason.as_str());
        self.log(LogLevel::Debug, &format!("denied: {}", reason.as_str()));
        let response = denial.response(&shared.config.realm);
        self.send(response.status, &response.headers, &response.body)
    }

    /// Something went wrong between us and the host: refuse rather than let through.
    fn fail_closed(&self, message: &str) -> Action {
        self.log(LogLevel::Error, message);
        if let Some(shared) = &self.shared {
            shared.stats.count_internal_error();
        }
        set_property(DECISION_PROPERTY, "deny");
        set_property(REASON_PROPERTY, "internal_error");
        let headers = [
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ];
        self.send(
            500,
            &headers,
            r#"{"error":"internal_error","reason":"internal_error"}"#,
        )
    }

    fn send(&self, status: u32, headers: &[(String, String)], body: &str) -> Action {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        if let Err(status) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
            self.log(
                LogLevel::Error,
                &format!("cannot send the local response: {status:?}"),
            );
        }
        // Paused either way: the request must not reach the upstream.
        Action::Pause
    }
}

fn set_property(name: &str, value: &str) {
    // Observability only, so a refusal is ignored. (The SDK turns most non-Ok statuses into a
    // panic before we see them; a host that answers `NotFound` for filter state returns here.)
    let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
}

impl Context for AuthnHttpContext {}

impl HttpContext for AuthnHttpContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return self.fail_closed("no valid configuration is loaded");
        };
        // `get_map_bytes`, not `get_map`: the SDK `unwrap`s UTF-8 conversion of values, and a
        // client can send any byte in a header value. Lossy text is fine for matching tokens:
        // a replacement character never decodes as base64url. (Header names are still
        // converted with `unwrap` inside the SDK; Envoy's codecs admit only RFC 9110 token
        // characters in names, so that cannot fail there.)
        let headers: Vec<(String, String)> =
            match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
                Ok(pairs) => pairs
                    .into_iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
                    .collect(),
                Err(status) => {
                    return self.fail_closed(&format!("cannot read request headers: {status:?}"))
                }
            };
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(header, _)| header == name)
                .map_or("", |(_, value)| value.as_str())
        };
        let request = Request {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers: &headers,
        };
        let now = match hostcalls::get_current_time()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .and_then(|elapsed| i64::try_from(elapsed.as_secs()).ok())
        {
            Some(now) => now,
            None => return self.fail_closed("cannot read the host clock"),
        };
        match decision::authenticate(&shared.config, &request, now) {
            Decision::Allow(allowed) => self.allow(&shared, allowed),
            Decision::Deny(denial) => self.deny(&shared, &denial),
        }
    }
}
