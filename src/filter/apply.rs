//! Applying a decision to the request of the host's *effective* context: edit and continue,
//! or answer in the filter's place. Used on a request's first pass and, through
//! `set_effective_context`, when the root context wakes a request that waited for keys.

use super::abi::{self, LogLevel, MapType};

use crate::decision::{Allowed, Caller, Denial, Response};

use super::{log, Shared};

/// Filter-state properties (Envoy: `wasm.wasm_jwt_authn.<name>`), for access logs.
const DECISION_PROPERTY: &str = "wasm_jwt_authn.decision";
const SUBJECT_PROPERTY: &str = "wasm_jwt_authn.subject";
const REASON_PROPERTY: &str = "wasm_jwt_authn.reason";
const RULE_PROPERTY: &str = "wasm_jwt_authn.rule";

/// What became of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Edited: the request may continue upstream.
    Forward,
    /// A local response was sent: the request must stay paused.
    Answered,
}

/// Edits the request for the upstream; on any host failure, answers `500` instead.
pub(crate) fn allow(shared: &Shared, context_id: u32, allowed: &Allowed) -> Applied {
    let edits = &allowed.edits;
    let mut result = Ok(());
    for name in &edits.remove_headers {
        result = result.and_then(|()| abi::remove_map_value(MapType::HttpRequestHeaders, name));
    }
    for (name, value) in &edits.set_headers {
        result =
            result.and_then(|()| abi::replace_map_value(MapType::HttpRequestHeaders, name, value));
    }
    if let Some(path) = &edits.path {
        result = result
            .and_then(|()| abi::replace_map_value(MapType::HttpRequestHeaders, ":path", path));
    }
    if let Err(status) = result {
        return fail_closed(
            shared,
            context_id,
            &format!("cannot edit the request: {status:?}"),
        );
    }
    let anonymous = allowed.caller == Caller::Anonymous;
    shared.stats.count_allowed(anonymous);
    set_property(
        DECISION_PROPERTY,
        if anonymous {
            "allow_anonymous"
        } else {
            "allow"
        },
    );
    if let Some(subject) = allowed.caller.subject() {
        set_property(SUBJECT_PROPERTY, subject);
    }
    set_property(RULE_PROPERTY, &allowed.rule);
    Applied::Forward
}

/// Answers with the denial's response.
pub(crate) fn deny(shared: &Shared, context_id: u32, denial: &Denial) -> Applied {
    let reason = denial.reason();
    shared.stats.count_denied(reason);
    set_property(DECISION_PROPERTY, "deny");
    set_property(REASON_PROPERTY, reason.as_str());
    if let Some(rule) = denial.rule() {
        set_property(RULE_PROPERTY, rule);
    }
    match denial {
        // A policy that fails is the operator's to fix: say why, where it is seen.
        Denial::RegoError { rule, problem } => log(
            LogLevel::Warn,
            context_id,
            &format!("rule {rule}: the Rego policy failed: {problem}"),
        ),
        _ => log(
            LogLevel::Debug,
            context_id,
            &format!("denied: {}", reason.as_str()),
        ),
    }
    let response = denial.response(shared.config.realm());
    send(
        context_id,
        response.status,
        &response.headers,
        &response.body,
    )
}

/// Something went wrong between us and the host: refuse rather than let through.
pub(crate) fn fail_closed(shared: &Shared, context_id: u32, message: &str) -> Applied {
    shared.stats.count_internal_error();
    fail_closed_unconfigured(context_id, message)
}

/// As [`fail_closed`], for a request that arrived without a loaded configuration.
pub(crate) fn fail_closed_unconfigured(context_id: u32, message: &str) -> Applied {
    log(LogLevel::Error, context_id, message);
    set_property(DECISION_PROPERTY, "deny");
    set_property(REASON_PROPERTY, "internal_error");
    let response = Response::internal_error();
    send(
        context_id,
        response.status,
        &response.headers,
        &response.body,
    )
}

fn send(context_id: u32, status: u32, headers: &[(String, String)], body: &str) -> Applied {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    if let Err(status) = abi::send_http_response(status, &headers, body.as_bytes()) {
        log(
            LogLevel::Error,
            context_id,
            &format!("cannot send the local response: {status:?}"),
        );
    }
    Applied::Answered
}

fn set_property(name: &str, value: &str) {
    // Observability only, so a refusal is ignored. (The SDK turns most non-Ok statuses into a
    // panic before we see them; a host that answers `NotFound` for filter state returns here.)
    let _ = abi::set_property(name, value.as_bytes());
}
