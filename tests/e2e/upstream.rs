//! An in-process HTTP/1.1 echo upstream: it answers every request with `200` and a JSON body
//! `{"method", "path", "headers": {lower-case name: value}, "body"}`, and records each request so a test
//! can assert exactly what Envoy forwarded (or that it forwarded nothing).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use serde_json::{json, Map, Value};

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    /// The request target: path and query string.
    pub path: String,
    /// In arrival order, names in lower case; a repeated header appears repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// Every value of header `name` (lower case).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The value of header `name` when it occurs exactly once; panics if it occurs twice.
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.header_values(name);
        assert!(
            values.len() <= 1,
            "upstream received {name} {} times: {values:?}",
            values.len()
        );
        values.first().copied()
    }

    fn echo_body(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            let joined = match headers.get(name).and_then(Value::as_str) {
                Some(earlier) => format!("{earlier},{value}"),
                None => value.clone(),
            };
            headers.insert(name.clone(), Value::String(joined));
        }
        json!({
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": String::from_utf8_lossy(&self.body),
        })
    }
}

pub struct EchoUpstream {
    address: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedRequest>>>,
    /// Paths answered with a fixed document instead of the echo.
    documents: Documents,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl EchoUpstream {
    /// Listens on a free loopback port; the listener stays bound, so there is no port race.
    pub fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo upstream");
        let address = listener.local_addr().expect("echo upstream address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let documents = Documents::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let received = Arc::clone(&received);
            let documents = Arc::clone(&documents);
            let stopping = Arc::clone(&stopping);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let received = Arc::clone(&received);
                    let documents = Arc::clone(&documents);
                    // Envoy keeps upstream connections alive: one thread per connection, which
                    // ends when Envoy closes it (at the latest when the Envoy process dies).
                    thread::spawn(move || serve(stream, &received, &documents));
                }
            })
        };
        EchoUpstream {
            address,
            received,
            documents,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// From now on answers `GET path` with `200`, `content_type` and `body` (a document the
    /// filter fetches, such as an address list), until set again.
    pub fn serve_document(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) {
        self.documents
            .lock()
            .expect("upstream documents")
            .insert(path.to_owned(), (content_type.to_owned(), body.into()));
    }

    /// The requests received since the last call, oldest first.
    pub fn take(&self) -> Vec<ReceivedRequest> {
        std::mem::take(&mut *self.received.lock().expect("upstream record"))
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Documents served by path: content type and body.
type Documents = Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>;

fn serve(stream: TcpStream, received: &Mutex<Vec<ReceivedRequest>>, documents: &Documents) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let document = documents
            .lock()
            .expect("upstream documents")
            .get(&request.path)
            .cloned();
        let (content_type, body) = document.unwrap_or_else(|| {
            (
                "application/json".to_owned(),
                request.echo_body().to_string().into_bytes(),
            )
        });
        // Recorded before answering: once the client has its response, the record is complete.
        received.lock().expect("upstream record").push(request);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

/// Reads one request (request line, headers, `Content-Length` body); `None` at end of stream.
/// Envoy sends no chunked bodies here: the tests' requests have none.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<ReceivedRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(ReceivedRequest {
        method,
        path,
        headers,
        body,
    })
}
