//! The proxy-wasm ABI (v0.2.1), the part this filter uses: host functions it imports, with
//! safe wrappers that turn every status into a `Result`.
//!
//! Why our own bindings rather than the proxy-wasm Rust SDK:
//! - **Cost.** The SDK exports every callback of the ABI (response headers, body, trailers,
//!   access log, …), so the host calls into the VM for each of them on every request, and each
//!   call is a context-map lookup in the SDK. Measured with one Envoy worker, a module that does
//!   nothing through the SDK costs about a tenth of the throughput of one that exports only the
//!   callbacks it needs ([`super::entry`]), as much as this filter's own work on a remembered
//!   token.
//! - **No panics.** The SDK's wrappers `panic!` on any status they do not expect, trapping the
//!   VM and dropping the worker's traffic; these return the status instead.
//!
//! This and [`super::entry`] are the crate's only `unsafe` code: the calls across the ABI and
//! taking ownership of the memory the host fills in for us.
#![allow(unsafe_code)]

use std::ptr::{null, null_mut};
use std::time::Duration;

/// A status the host answered with (`WasmResult` in Envoy), or a reply we could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    Empty,
    CasMismatch,
    InternalFailure,
    /// A status code this ABI version does not define.
    Unknown(u32),
    /// The host's reply did not have the layout the ABI defines.
    MalformedReply,
}

impl Status {
    /// `Ok(())` for the ABI's `Ok` (0), the status otherwise.
    fn check(code: u32) -> Result<(), Status> {
        match code {
            0 => Ok(()),
            1 => Err(Status::NotFound),
            2 => Err(Status::BadArgument),
            3 => Err(Status::SerializationFailure),
            4 => Err(Status::ParseFailure),
            7 => Err(Status::Empty),
            8 => Err(Status::CasMismatch),
            10 => Err(Status::InternalFailure),
            other => Err(Status::Unknown(other)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// What a stream callback tells the host to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Action {
    Continue = 0,
    Pause = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum BufferType {
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MapType {
    HttpRequestHeaders = 0,
    HttpCallResponseHeaders = 6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MetricType {
    Counter = 0,
    Gauge = 1,
}

/// `StreamType::HttpRequest` of `proxy_continue_stream`.
const STREAM_HTTP_REQUEST: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_milliseconds: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_call_foreign_function(
        name_data: *const u8,
        name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

/// Memory the host allocated in the VM for a reply ([`super::entry`]'s
/// `proxy_on_memory_allocate`), taken over as a `Vec`; `None` for a null pointer.
///
/// # Safety
/// `data` must be null or point to `size` bytes allocated by `proxy_on_memory_allocate` and
/// handed over to us by the host (which then no longer uses them).
unsafe fn take_reply(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: per this function's contract the allocation is a boxed slice of `size`
        // bytes (alignment 1), which is exactly a `Vec` of that length and capacity.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

pub(crate) fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: the pointer and length describe `message`, which outlives the call.
    Status::check(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

/// The host clock, as the time since the Unix epoch.
pub(crate) fn get_current_time() -> Result<Duration, Status> {
    let mut nanoseconds: u64 = 0;
    // SAFETY: the host writes one u64 through a pointer to a live local.
    Status::check(unsafe { proxy_get_current_time_nanoseconds(&mut nanoseconds) })?;
    Ok(Duration::from_nanos(nanoseconds))
}

pub(crate) fn set_tick_period(period: Duration) -> Result<(), Status> {
    let milliseconds = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    Status::check(unsafe { proxy_set_tick_period_milliseconds(milliseconds) })
}

pub(crate) fn get_buffer(
    buffer_type: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
    // SAFETY: the host writes a pointer and a size through pointers to live locals.
    let status = unsafe {
        proxy_get_buffer_bytes(buffer_type as u32, start, max_size, &mut data, &mut size)
    };
    match Status::check(status) {
        // SAFETY: on success the host handed over `size` bytes it allocated through us.
        Ok(()) => Ok(unsafe { take_reply(data, size) }),
        Err(Status::NotFound) => Ok(None),
        Err(status) => Err(status),
    }
}

/// Every header of `map_type` as (name, value), in the host's order, repeats included. Text
/// that is not UTF-8 is taken lossily: a client can send any byte in a header value, and a
/// replacement character never decodes as base64url, so no token can come of it.
pub(crate) fn get_map(map_type: MapType) -> Result<Vec<(String, String)>, Status> {
    get_map_where(map_type, |_| true)
}

/// As [`get_map`], keeping only the headers whose (lower-case) name `wanted` accepts: the
/// others are never copied out of the reply.
pub(crate) fn get_map_where(
    map_type: MapType,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, Status> {
    let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
    // SAFETY: the host writes a pointer and a size through pointers to live locals.
    Status::check(unsafe { proxy_get_header_map_pairs(map_type as u32, &mut data, &mut size) })?;
    // SAFETY: on success the host handed over `size` bytes it allocated through us.
    match unsafe { take_reply(data, size) } {
        None => Ok(Vec::new()),
        Some(bytes) => decode_pairs(&bytes, wanted).ok_or(Status::MalformedReply),
    }
}

pub(crate) fn remove_map_value(map_type: MapType, name: &str) -> Result<(), Status> {
    // SAFETY: the pointer and length describe `name`, which outlives the call.
    Status::check(unsafe {
        proxy_remove_header_map_value(map_type as u32, name.as_ptr(), name.len())
    })
}

/// Sets header `name` to `value`, replacing every value it had.
pub(crate) fn replace_map_value(map_type: MapType, name: &str, value: &str) -> Result<(), Status> {
    // SAFETY: the pointers and lengths describe `name` and `value`, which outlive the call.
    Status::check(unsafe {
        proxy_replace_header_map_value(
            map_type as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Sets the property at `path` (one segment here: filter state by name).
pub(crate) fn set_property(path: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: the pointers and lengths describe `path` and `value`, which outlive the call.
    Status::check(unsafe {
        proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
    })
}

/// A host property by its path of segments (Envoy: `["source", "address"]`); `None` when the
/// host has no such property.
pub(crate) fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    // The ABI takes the segments joined by NUL bytes.
    let path = path.join("\0");
    let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
    // SAFETY: the pointer and length describe `path`, which outlives the call; the host writes
    // a pointer and a size through pointers to live locals.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match Status::check(status) {
        // SAFETY: on success the host handed over `size` bytes it allocated through us.
        Ok(()) => Ok(unsafe { take_reply(data, size) }),
        Err(Status::NotFound) => Ok(None),
        Err(status) => Err(status),
    }
}

/// The value and CAS of a shared-data record: `(None, None)` when there is no such record.
pub(crate) fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let (mut data, mut size, mut cas): (*mut u8, usize, u32) = (null_mut(), 0, 0);
    // SAFETY: the host writes a pointer, a size and a CAS through pointers to live locals.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match Status::check(status) {
        Ok(()) => {
            // SAFETY: on success the host handed over `size` bytes it allocated through us.
            let value = unsafe { take_reply(data, size) };
            Ok((value, (cas != 0).then_some(cas)))
        }
        Err(Status::NotFound) => Ok((None, None)),
        Err(status) => Err(status),
    }
}

/// Writes a shared-data record; with `cas`, only if the record is still at that CAS
/// (`Err(CasMismatch)` otherwise).
pub(crate) fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: the pointers and lengths describe `key` and `value`, which outlive the call.
    Status::check(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// Resumes the effective context's paused request.
pub(crate) fn resume_http_request() -> Result<(), Status> {
    // SAFETY: no pointers.
    Status::check(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

/// Answers the effective context's request in the proxy's place.
pub(crate) fn send_http_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let headers = encode_pairs(headers);
    // SAFETY: the pointers and lengths describe `body` and `headers`, which outlive the call;
    // details are null with length 0, which the ABI allows; -1: not a gRPC response.
    Status::check(unsafe {
        proxy_send_local_response(
            status_code,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Sends an HTTP request to cluster `upstream`; the answer arrives in
/// `proxy_on_http_call_response` of the calling context, with the returned token.
pub(crate) fn dispatch_http_call(
    upstream: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<u32, Status> {
    dispatch_http_call_with_body(upstream, headers, &[], timeout)
}

/// [`dispatch_http_call`] with a request body (e.g. a form POST).
pub(crate) fn dispatch_http_call_with_body(
    upstream: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = encode_pairs(headers);
    let trailers = encode_pairs(&[]);
    let milliseconds = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token: u32 = 0;
    let body_pointer = if body.is_empty() {
        null()
    } else {
        body.as_ptr()
    };
    // SAFETY: the pointers and lengths describe live buffers (an empty body: null, 0); the
    // host writes the token through a pointer to a live local.
    Status::check(unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            body_pointer,
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            milliseconds,
            &mut token,
        )
    })?;
    Ok(token)
}

/// Makes `context_id` the context later calls act on (a waiting request, from the root).
pub(crate) fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    Status::check(unsafe { proxy_set_effective_context(context_id) })
}

/// Calls the host's foreign function `name`; its reply, if it gave one.
pub(crate) fn call_foreign_function(
    name: &str,
    arguments: &[u8],
) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
    // SAFETY: the pointers and lengths describe `name` and `arguments`, which outlive the
    // call; the host writes a pointer and a size through pointers to live locals.
    Status::check(unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    })?;
    // SAFETY: on success the host handed over `size` bytes it allocated through us.
    Ok(unsafe { take_reply(data, size) })
}

pub(crate) fn define_metric(metric_type: MetricType, name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    // SAFETY: the pointer and length describe `name`; the host writes the id to a live local.
    Status::check(unsafe {
        proxy_define_metric(metric_type as u32, name.as_ptr(), name.len(), &mut id)
    })?;
    Ok(id)
}

pub(crate) fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    Status::check(unsafe { proxy_increment_metric(id, offset) })
}

pub(crate) fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: no pointers.
    Status::check(unsafe { proxy_record_metric(id, value) })
}

/// The ABI's header-map encoding: the number of pairs (u32, little-endian), each pair's name
/// and value lengths (u32 each), then each name and value followed by a NUL byte.
fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let length = |text: &str| u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes();
    let mut encoded = Vec::new();
    encoded.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (name, value) in pairs {
        encoded.extend_from_slice(&length(name));
        encoded.extend_from_slice(&length(value));
    }
    for (name, value) in pairs {
        encoded.extend_from_slice(name.as_bytes());
        encoded.push(0);
        encoded.extend_from_slice(value.as_bytes());
        encoded.push(0);
    }
    encoded
}

/// Reads [`encode_pairs`]' layout; `None` if the bytes do not have it.
fn decode_pairs(bytes: &[u8], wanted: impl Fn(&str) -> bool) -> Option<Vec<(String, String)>> {
    let read_u32 = |at: usize| -> Option<usize> {
        let field: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(field)).ok()
    };
    let count = read_u32(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for index in 0..count {
        let at = index.checked_mul(8)?.checked_add(4)?;
        sizes.push((read_u32(at)?, read_u32(at.checked_add(4)?)?));
    }
    let mut data = bytes.get(count.checked_mul(8)?.checked_add(4)?..)?;
    let mut pairs = Vec::new();
    for (name_size, value_size) in sizes {
        let (name, rest) = data.split_at_checked(name_size)?;
        let rest = rest.strip_prefix(&[0])?;
        let (value, rest) = rest.split_at_checked(value_size)?;
        data = rest.strip_prefix(&[0])?;
        let name = text(name);
        if wanted(&name) {
            pairs.push((name.into_owned(), text(value).into_owned()));
        }
    }
    Some(pairs)
}

/// UTF-8 text as is, anything else lossily; borrowed, so a header that is not wanted costs
/// no copy.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_pairs_round_trip() {
        let pairs = [
            (":path", "/orders?x=1"),
            ("authorization", "Bearer a.b.c"),
            ("empty", ""),
        ];
        let decoded = decode_pairs(&encode_pairs(&pairs), |_| true).unwrap();
        let expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        assert_eq!(decoded, expected);
        assert_eq!(
            decode_pairs(&encode_pairs(&[]), |_| true).unwrap(),
            Vec::new()
        );
        let only_path = decode_pairs(&encode_pairs(&pairs), |name| name == ":path").unwrap();
        assert_eq!(
            only_path,
            vec![(":path".to_owned(), "/orders?x=1".to_owned())]
        );
    }

    #[test]
    fn malformed_header_pairs_are_refused_not_trusted() {
        let encoded = encode_pairs(&[("a", "b")]);
        for cut in 0..encoded.len() {
            assert_eq!(
                decode_pairs(&encoded[..cut], |_| true),
                None,
                "cut at {cut}"
            );
        }
        // A count far beyond the data.
        assert_eq!(decode_pairs(&[0xff, 0xff, 0xff, 0xff], |_| true), None);
        // A missing NUL terminator.
        let mut unterminated = encoded.clone();
        let last = unterminated.len() - 1;
        unterminated[last] = b'x';
        assert_eq!(decode_pairs(&unterminated, |_| true), None);
    }
}
