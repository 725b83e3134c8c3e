//! The callbacks the host calls, and which context each one goes to.
//!
//! Only the callbacks the filter needs are exported: for a plugin (its root context)
//! configure, tick and the answers to its HTTP calls; for a request, its headers, body and
//! trailers (the last two only matter while the request waits for keys) and its end. The host
//! skips callbacks a module does not export, which saves a call into the VM per response
//! event and per request end on every request (see [`super::abi`] for what that is worth).
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;

use super::abi::{self, Action, LogLevel};
use super::http::AuthnHttpContext;
use super::AuthnRoot;

/// Every live context of this VM, by the host's context id.
#[derive(Default)]
struct Contexts {
    /// One per plugin configuration sharing this VM.
    roots: HashMap<u32, AuthnRoot>,
    requests: HashMap<u32, AuthnHttpContext>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
}

/// Runs `callback` on the context `context_id` of the registry `select` picks, taken out of
/// it for the duration: a host call made inside cannot re-enter the registry while it is
/// borrowed. `default` when there is no such context.
fn with_context<C, T>(
    select: fn(&mut Contexts) -> &mut HashMap<u32, C>,
    context_id: u32,
    default: T,
    callback: impl FnOnce(&mut C) -> T,
) -> T {
    let taken = CONTEXTS.with(|contexts| select(&mut contexts.borrow_mut()).remove(&context_id));
    let Some(mut context) = taken else {
        return default;
    };
    let result = callback(&mut context);
    CONTEXTS.with(|contexts| select(&mut contexts.borrow_mut()).insert(context_id, context));
    result
}

fn with_root<T>(context_id: u32, default: T, callback: impl FnOnce(&mut AuthnRoot) -> T) -> T {
    with_context(
        |contexts| &mut contexts.roots,
        context_id,
        default,
        callback,
    )
}

fn with_request<T>(
    context_id: u32,
    default: T,
    callback: impl FnOnce(&mut AuthnHttpContext) -> T,
) -> T {
    with_context(
        |contexts| &mut contexts.requests,
        context_id,
        default,
        callback,
    )
}

/// Called once when the module is instantiated: WASI constructors, then the panic hook.
#[no_mangle]
pub extern "C" fn _initialize() {
    extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: the reactor's constructors, run once before anything else, as WASI requires.
    unsafe { __wasm_call_ctors() };
    // A panic traps the VM; the least we owe the operator is one critical line saying where.
    std::panic::set_hook(Box::new(|panic_info| {
        let _ = abi::log(
            LogLevel::Critical,
            &format!("wasm-jwt-authn panicked: {panic_info}"),
        );
    }));
}

/// The ABI version this module speaks; the host checks that the export exists.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory for the host's replies to our calls, handed over to us (see `abi::take_reply`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let memory: Box<[u8]> = vec![0; size].into_boxed_slice();
    Box::into_raw(memory).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_context_id: u32) {
    CONTEXTS.with(|contexts| {
        let mut contexts = contexts.borrow_mut();
        if parent_context_id == 0 {
            contexts
                .roots
                .insert(context_id, AuthnRoot::new(context_id));
        } else {
            // A request of a plugin whose root is unknown gets no configuration, so it is
            // refused (fail closed), never let through.
            let shared = contexts
                .roots
                .get(&parent_context_id)
                .and_then(AuthnRoot::shared);
            contexts
                .requests
                .insert(context_id, AuthnHttpContext::new(context_id, shared));
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, _vm_configuration_size: usize) -> bool {
    super::log(
        super::abi::LogLevel::Info,
        context_id,
        &format!("{} starting", super::build_identity()),
    );
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, plugin_configuration_size: usize) -> bool {
    with_root(context_id, false, |root| {
        root.on_configure(plugin_configuration_size)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    with_root(context_id, (), AuthnRoot::on_tick);
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    _num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    with_root(context_id, (), |root| {
        root.on_http_call_response(token, body_size);
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    _num_headers: usize,
    _end_of_stream: bool,
) -> Action {
    // No such request: nothing can vouch for it, so it does not go on.
    with_request(context_id, Action::Pause, |request| {
        request.on_http_request_headers()
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(
    context_id: u32,
    _body_size: usize,
    _end_of_stream: bool,
) -> Action {
    with_request(
        context_id,
        Action::Pause,
        AuthnHttpContext::hold_while_parked,
    )
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _num_trailers: usize) -> Action {
    with_request(
        context_id,
        Action::Pause,
        AuthnHttpContext::hold_while_parked,
    )
}

/// The host is done with a context: `true` means it may be deleted now.
#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> bool {
    with_request(context_id, (), AuthnHttpContext::on_done);
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    CONTEXTS.with(|contexts| {
        let mut contexts = contexts.borrow_mut();
        if contexts.requests.remove(&context_id).is_none() {
            contexts.roots.remove(&context_id);
        }
    });
}
