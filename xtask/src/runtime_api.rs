//! Local stand-ins for what the Lambdas talk to when they run, for
//! `cargo xtask bench`: the Lambda Runtime API (a Lambda's runtime polls it
//! for invocations and posts results back) and EventBridge (`PutEvents`
//! always succeeds). Both sit on a tiny HTTP/1.1 server written here on `std`
//! alone: a listener on a free loopback port, a thread per connection,
//! keep-alive, `Content-Length` and chunked request bodies.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// The request line and headers together may not be longer than this.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A request body may not be longer than this.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

const RUNTIME_PREFIX: &str = "/2018-06-01/runtime/";
/// The ARN the stand-in says was invoked.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:111122223333:function:glasswatch-agent";
/// How far in the future each invocation's deadline is.
const INVOCATION_DEADLINE: Duration = Duration::from_secs(60);

/// One parsed HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client asked to close the connection after this request.
    pub close: bool,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP response; `Content-Length` is added when it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// One line up to `\n`, without the line ending; `None` at end of input.
/// Counts against `budget`, the bytes the caller still allows.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let limit = (*budget as u64).saturating_add(1);
    let n = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(invalid("request head is too long"));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed inside a request head",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("request head is not UTF-8"))
}

fn read_exact_body(reader: &mut impl Read, len: usize, body: &mut Vec<u8>) -> io::Result<()> {
    if body.len() + len > MAX_BODY_BYTES {
        return Err(invalid(format!(
            "request body is over {MAX_BODY_BYTES} bytes"
        )));
    }
    let start = body.len();
    body.resize(start + len, 0);
    reader.read_exact(&mut body[start..])
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let line = read_line(reader, &mut budget)?
            .ok_or_else(|| invalid("connection closed inside a chunked body"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let trailer = read_line(reader, &mut budget)?
                    .ok_or_else(|| invalid("connection closed inside chunked trailers"))?;
                if trailer.is_empty() {
                    return Ok(body);
                }
            }
        }
        read_exact_body(reader, size, &mut body)?;
        let end = read_line(reader, &mut budget)?;
        if end.as_deref() != Some("") {
            return Err(invalid("chunk data is not followed by CRLF"));
        }
    }
}

/// Read one request from a keep-alive connection: `Ok(None)` when the
/// client closed it cleanly between requests.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut budget = MAX_HEAD_BYTES;
    let mut request_line = None;
    // Tolerate empty lines before a request (RFC 9112 §2.2).
    while let Some(line) = read_line(reader, &mut budget)? {
        if !line.is_empty() {
            request_line = Some(line);
            break;
        }
    }
    let Some(request_line) = request_line else {
        return Ok(None);
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };
    if method.is_empty() || !path.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad request line {request_line:?}")));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut budget)?
            .ok_or_else(|| invalid("connection closed inside a request head"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body: Vec::new(),
        close: false,
    };
    let connection = request.header("connection").unwrap_or_default();
    request.close = if version == "HTTP/1.0" {
        !connection.eq_ignore_ascii_case("keep-alive")
    } else {
        connection.eq_ignore_ascii_case("close")
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(reader)?;
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
        let mut body = Vec::new();
        read_exact_body(reader, len, &mut body)?;
        request.body = body;
    }
    Ok(Some(request))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Unknown",
    }
}

pub fn write_response(writer: &mut impl Write, response: &Response) -> io::Result<()> {
    write!(
        writer,
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    )?;
    for (name, value) in &response.headers {
        write!(writer, "{name}: {value}\r\n")?;
    }
    write!(writer, "Content-Length: {}\r\n\r\n", response.body.len())?;
    writer.write_all(&response.body)?;
    writer.flush()
}

/// What a handler does with a request: answer it, or close the connection
/// without an answer.
type Handler = dyn Fn(Request) -> Option<Response> + Send + Sync;

/// A tiny HTTP/1.1 server on a free loopback port; stops accepting when
/// dropped.
#[derive(Debug)]
pub struct HttpServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(name: &str, handler: Arc<Handler>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .with_context(|| format!("cannot listen on 127.0.0.1 for the {name} stand-in"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = Arc::clone(&stop);
            let thread_name = name.to_owned();
            std::thread::Builder::new()
                .name(format!("{name} accept"))
                .spawn(move || accept_loop(&listener, &stop, &thread_name, &handler))
                .with_context(|| format!("cannot start the {name} stand-in"))?
        };
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag; if that fails, leave
        // the thread be rather than wait for it forever.
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(accept) = self.accept.take()
            && woken
        {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, name: &str, handler: &Arc<Handler>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let handler = Arc::clone(handler);
        // A connection that cannot get a thread is dropped; the client
        // sees it closed and reports that.
        let _ = std::thread::Builder::new()
            .name(format!("{name} connection"))
            .spawn(move || serve_connection(stream, &*handler));
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(write_half);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                let response = Response::new(400).body(format!("{e}\n"));
                let _ = write_response(&mut writer, &response);
                return;
            }
        };
        let close = request.close;
        let Some(response) = handler(request) else {
            return;
        };
        if write_response(&mut writer, &response).is_err() || close {
            return;
        }
    }
}

/// What the agent did, as the Runtime API stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The runtime asked for the next invocation (the end of init, the
    /// first time).
    Next { at: Instant },
    /// The runtime answered an invocation: `latency` is from handing out
    /// the event to receiving this answer, `at` when it was received.
    Completed {
        request_id: String,
        latency: Duration,
        at: Instant,
        body: Vec<u8>,
    },
    /// The runtime reported that an invocation failed.
    InvocationError { request_id: String, body: Vec<u8> },
    /// The runtime reported that its init failed.
    InitError { body: Vec<u8> },
    /// A request to a path the stand-in does not know.
    Unexpected { method: String, path: String },
}

/// One invocation to hand out on the next `GET .../invocation/next`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub event: Arc<[u8]>,
}

/// The Lambda Runtime API stand-in. `invoke` queues an event; the agent
/// gets it from `next`, and everything it does comes back on `reports`.
/// With nothing queued, `next` is held open, as Lambda does between
/// invocations. Use one per agent process.
#[derive(Debug)]
pub struct RuntimeApi {
    pub reports: Receiver<Report>,
    invocations: Sender<Invocation>,
    server: HttpServer,
}

impl RuntimeApi {
    pub fn start() -> Result<Self> {
        let (invocations, queue) = mpsc::channel::<Invocation>();
        let (report, reports) = mpsc::channel::<Report>();
        let state = RuntimeState {
            queue: Mutex::new(queue),
            report: Mutex::new(report),
            handed_out: Mutex::new(HashMap::new()),
        };
        let handler: Arc<Handler> = Arc::new(move |request| state.handle(request));
        let server = HttpServer::start("Lambda Runtime API", handler)?;
        Ok(Self {
            reports,
            invocations,
            server,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn host_port(&self) -> String {
        self.server.addr.to_string()
    }

    pub fn invoke(&self, invocation: Invocation) -> Result<()> {
        self.invocations
            .send(invocation)
            .context("the Runtime API stand-in has stopped")
    }
}

struct RuntimeState {
    queue: Mutex<Receiver<Invocation>>,
    report: Mutex<Sender<Report>>,
    /// When each request id was handed out.
    handed_out: Mutex<HashMap<String, Instant>>,
}

impl RuntimeState {
    fn report(&self, report: Report) {
        // The bench may have stopped listening; nothing to do then.
        let _ = self
            .report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(report);
    }

    fn handle(&self, request: Request) -> Option<Response> {
        let received = Instant::now();
        let route = request
            .path
            .strip_prefix(RUNTIME_PREFIX)
            .unwrap_or_default();
        let accepted = || Some(Response::new(202).body(r#"{"status":"OK"}"#));
        match (request.method.as_str(), route) {
            ("GET", "invocation/next") => {
                self.report(Report::Next { at: received });
                self.next_invocation()
            }
            ("POST", "init/error") => {
                self.report(Report::InitError { body: request.body });
                accepted()
            }
            ("POST", route) if route.starts_with("invocation/") => {
                let rest = &route["invocation/".len()..];
                if let Some(id) = rest.strip_suffix("/response") {
                    let handed_out = self
                        .handed_out
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(id);
                    self.report(Report::Completed {
                        request_id: id.to_owned(),
                        latency: handed_out.map_or(Duration::ZERO, |at| received - at),
                        at: received,
                        body: request.body,
                    });
                    return accepted();
                }
                if let Some(id) = rest.strip_suffix("/error") {
                    self.report(Report::InvocationError {
                        request_id: id.to_owned(),
                        body: request.body,
                    });
                    return accepted();
                }
                self.unexpected(request)
            }
            _ => self.unexpected(request),
        }
    }

    fn unexpected(&self, request: Request) -> Option<Response> {
        self.report(Report::Unexpected {
            method: request.method,
            path: request.path,
        });
        Some(Response::new(404).body(r#"{"errorType":"NotFound"}"#))
    }

    /// Wait for the next queued invocation; `None` (close without an
    /// answer) once the stand-in is dropped.
    fn next_invocation(&self) -> Option<Response> {
        let invocation = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv()
            .ok()?;
        let deadline = SystemTime::now() + INVOCATION_DEADLINE;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let response = Response::new(200)
            .header("Content-Type", "application/json")
            .header("Lambda-Runtime-Aws-Request-Id", &invocation.request_id)
            .header("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string())
            .header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
            .header(
                "Lambda-Runtime-Trace-Id",
                "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
            )
            .body(invocation.event.to_vec());
        self.handed_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(invocation.request_id, Instant::now());
        Some(response)
    }
}

/// An EventBridge stand-in: every `PutEvents` (any POST) succeeds, with one
/// made-up event id per entry. Counts the entries it accepted.
#[derive(Debug)]
pub struct EventBridgeStub {
    entries: Arc<AtomicUsize>,
    server: HttpServer,
}

impl EventBridgeStub {
    pub fn start() -> Result<Self> {
        let entries = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = {
            let entries = Arc::clone(&entries);
            Arc::new(move |request| Some(put_events(&request, &entries)))
        };
        let server = HttpServer::start("EventBridge", handler)?;
        Ok(Self { entries, server })
    }

    /// The value for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Entries accepted so far.
    pub fn entries(&self) -> usize {
        self.entries.load(Ordering::SeqCst)
    }
}

fn put_events(request: &Request, entries: &AtomicUsize) -> Response {
    let json_error = |status: u16, kind: &str, message: String| {
        Response::new(status)
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(serde_json::json!({"__type": kind, "message": message}).to_string())
    };
    if request.method != "POST" {
        return json_error(
            405,
            "UnknownOperationException",
            format!("{} is not supported", request.method),
        );
    }
    // Only the number of entries matters; `IgnoredAny` skips their
    // contents without building them (this runs unoptimized, inside the
    // time measured per event).
    #[derive(serde::Deserialize)]
    struct PutEvents {
        #[serde(rename = "Entries")]
        entries: Vec<serde::de::IgnoredAny>,
    }
    let count = match serde_json::from_slice::<PutEvents>(&request.body) {
        Ok(body) => body.entries.len(),
        Err(e) => {
            return json_error(
                400,
                "ValidationException",
                format!("the request body is not a PutEvents request: {e}"),
            );
        }
    };
    let first = entries.fetch_add(count, Ordering::SeqCst);
    let ids: Vec<serde_json::Value> = (first..first + count)
        .map(|n| serde_json::json!({"EventId": format!("00000000-0000-4000-8000-{n:012x}")}))
        .collect();
    Response::new(200)
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("x-amzn-RequestId", format!("bench-{first}"))
        .body(serde_json::json!({"FailedEntryCount": 0, "Entries": ids}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &[u8]) -> Vec<Request> {
        let mut reader = BufReader::new(raw);
        let mut out = Vec::new();
        while let Some(request) = read_request(&mut reader).unwrap() {
            out.push(request);
        }
        out
    }

    #[test]
    fn reads_keep_alive_requests_with_length_and_chunked_bodies() {
        let raw = b"POST /2018-06-01/runtime/invocation/abc/response HTTP/1.1\r\n\
            Host: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello\
            GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n\
            POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
            3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
        let requests = parse_all(raw);
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(
            requests[0].path,
            "/2018-06-01/runtime/invocation/abc/response"
        );
        assert_eq!(requests[0].header("HOST"), Some("127.0.0.1"));
        assert_eq!(requests[0].body, b"hello");
        assert!(!requests[0].close);
        assert_eq!(requests[1].method, "GET");
        assert!(requests[1].body.is_empty());
        assert_eq!(requests[2].body, b"abc0123456789");
        assert!(requests[2].close);
    }

    #[test]
    fn refuses_broken_requests() {
        let mut truncated =
            BufReader::new(&b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"[..]);
        assert!(read_request(&mut truncated).is_err());
        let mut garbage = BufReader::new(&b"hello\r\n\r\n"[..]);
        assert!(read_request(&mut garbage).is_err());
        let mut bad_length = BufReader::new(&b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"[..]);
        assert!(read_request(&mut bad_length).is_err());
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        let mut too_long = BufReader::new(long.as_bytes());
        assert!(read_request(&mut too_long).is_err());
        let mut empty = BufReader::new(&b""[..]);
        assert_eq!(read_request(&mut empty).unwrap(), None);
    }

    /// A minimal client: send `raw`, read one response (status, headers,
    /// Content-Length body).
    fn exchange(stream: &mut BufReader<TcpStream>, raw: &str) -> (u16, Vec<String>, String) {
        stream.get_mut().write_all(raw.as_bytes()).unwrap();
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).unwrap();
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        let status = head[0].split(' ').nth(1).unwrap().parse().unwrap();
        let len: usize = head
            .iter()
            .find_map(|h| h.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        stream.read_exact(&mut body).unwrap();
        (status, head, String::from_utf8(body).unwrap())
    }

    fn connect(addr: &str) -> BufReader<TcpStream> {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        BufReader::new(stream)
    }

    #[test]
    fn runtime_api_hands_out_events_and_reports_answers() {
        let api = RuntimeApi::start().unwrap();
        let mut client = connect(&api.host_port());
        api.invoke(Invocation {
            request_id: "req-1".into(),
            event: Arc::from(&br#"{"hello":1}"#[..]),
        })
        .unwrap();
        let (status, head, body) = exchange(
            &mut client,
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!(status, 200);
        assert_eq!(body, r#"{"hello":1}"#);
        assert!(head.contains(&"Lambda-Runtime-Aws-Request-Id: req-1".to_owned()));
        assert!(
            head.iter()
                .any(|h| h.starts_with("Lambda-Runtime-Deadline-Ms: "))
        );
        let timeout = Duration::from_secs(10);
        assert!(matches!(
            api.reports.recv_timeout(timeout).unwrap(),
            Report::Next { .. }
        ));
        // Same connection (keep-alive): the answer, then an error.
        let (status, _, _) = exchange(
            &mut client,
            "POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1\r\n\
             Content-Length: 4\r\n\r\n\"ok\"",
        );
        assert_eq!(status, 202);
        match api.reports.recv_timeout(timeout).unwrap() {
            Report::Completed {
                request_id, body, ..
            } => {
                assert_eq!(request_id, "req-1");
                assert_eq!(body, b"\"ok\"");
            }
            other => panic!("unexpected {other:?}"),
        }
        let (status, _, _) = exchange(
            &mut client,
            "POST /2018-06-01/runtime/invocation/req-2/error HTTP/1.1\r\n\
             Content-Length: 2\r\n\r\n{}",
        );
        assert_eq!(status, 202);
        assert_eq!(
            api.reports.recv_timeout(timeout).unwrap(),
            Report::InvocationError {
                request_id: "req-2".into(),
                body: b"{}".to_vec()
            }
        );
    }

    #[test]
    fn event_bridge_stub_answers_one_id_per_entry() {
        let stub = EventBridgeStub::start().unwrap();
        let addr = stub.endpoint().trim_start_matches("http://").to_owned();
        let mut client = connect(&addr);
        let body = r#"{"Entries":[{"Detail":"{}"},{"Detail":"{}"},{"Detail":"{}"}]}"#;
        let (status, head, answer) = exchange(
            &mut client,
            &format!(
                "POST / HTTP/1.1\r\nX-Amz-Target: AWSEvents.PutEvents\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(status, 200);
        assert!(head.contains(&"Content-Type: application/x-amz-json-1.1".to_owned()));
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["FailedEntryCount"], 0);
        assert_eq!(answer["Entries"].as_array().unwrap().len(), 3);
        assert_eq!(stub.entries(), 3);
        let (status, _, _) = exchange(
            &mut client,
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nnot",
        );
        assert_eq!(status, 400);
        assert_eq!(stub.entries(), 3);
    }
}
