//! A tiny HTTP/1.1 client: one request per connection (`Connection: close`), the target sent
//! byte for byte (so `/healthz/../admin` reaches Envoy unnormalised), the response read to EOF.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (lower case) when present; panics if it occurs twice.
    pub fn header(&self, name: &str) -> Option<&str> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
            .collect();
        assert!(
            values.len() <= 1,
            "response has {name} {} times: {values:?}",
            values.len()
        );
        values.first().copied()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("response body is not JSON ({err}): {}", self.text()))
    }
}

/// Sends `method target` with `headers` (and `body` with its `content-length`, if not empty)
/// and returns the response.
pub fn send(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let mut stream =
        TcpStream::connect(address).map_err(|err| format!("connect to {address}: {err}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|err| err.to_string())?;
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    stream
        .write_all(&request)
        .map_err(|err| format!("send to {address}: {err}"))?;
    // Read until the response is complete rather than until EOF: after a local reply Envoy
    // waits (delayed_close_timeout, 1 s) for the client to close first.
    let mut raw = Vec::new();
    let mut buffer = [0; 16 * 1024];
    loop {
        let read = stream
            .read(&mut buffer)
            .map_err(|err| format!("read from {address}: {err}"))?;
        raw.extend_from_slice(&buffer[..read]);
        if read == 0 {
            return parse(&raw, true);
        }
        if let Ok(response) = parse(&raw, false) {
            return Ok(response);
        }
    }
}

/// `GET target` to the admin interface or a listener; panics on a connection failure.
pub fn get(address: SocketAddr, target: &str) -> Response {
    send(address, "GET", target, &[], &[]).unwrap_or_else(|err| panic!("GET {target}: {err}"))
}

/// Parses a response; unless `at_eof`, fails when more bytes are needed to complete it.
fn parse(raw: &[u8], at_eof: bool) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(raw)
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        match headers.iter().find(|(name, _)| name == "content-length") {
            Some((_, length)) => {
                let length: usize = length.parse().map_err(|_| "bad content-length")?;
                rest.get(..length)
                    .ok_or("body shorter than content-length")?
                    .to_vec()
            }
            None if status == 204 || status == 304 || (100..200).contains(&status) => Vec::new(),
            None if at_eof => rest.to_vec(),
            None => return Err("body delimited by the end of the connection".to_owned()),
        }
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or("truncated chunk")?);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}
