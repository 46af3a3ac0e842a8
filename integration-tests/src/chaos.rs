//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1, between the Lambdas and
//! what they call (moto, the Slack stand-in).
//!
//! Each request either passes through or meets one fault, drawn from a
//! seeded generator ([`fastrand`]), so a failing run can be repeated with
//! its seed (the order of concurrent requests still varies). Faults are
//! what the real services do:
//! - HTTP 500 with an AWS JSON `InternalFailure` body (or a bare 500 for
//!   Slack);
//! - HTTP 400 `ThrottlingException` (AWS);
//! - HTTP 429 with `Retry-After: 1` (Slack);
//! - the connection dropped before the request is forwarded;
//! - the request forwarded and done, then the connection dropped before
//!   the answer (AWS only: the caller cannot know it succeeded);
//! - a slow answer.
//!
//! Faults can also be scripted ([`ChaosProxy::script`]): "the next N
//! requests whose `X-Amz-Target` (or path) contains S meet fault F", for
//! deterministic regression tests.
//!
//! moto answers Organizations only in the management account, while the
//! aggregator runs in the audit account (a delegated administrator on
//! AWS). [`ChaosProxy::answer_as`] makes the proxy add moto's
//! `x-moto-account-id` header to requests whose target starts with a
//! prefix, so they reach the management account's organization.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest request head the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;

/// What one request meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// HTTP 500; the request is not forwarded.
    ServerError,
    /// HTTP 400 `ThrottlingException`; not forwarded.
    Throttle,
    /// HTTP 429 with `Retry-After: 1`; not forwarded.
    RateLimited,
    /// The connection is dropped before forwarding.
    DropBefore,
    /// Forwarded (and done upstream), then the connection is dropped
    /// before the answer.
    LoseResponse,
    /// Forwarded after a delay.
    Slow(Duration),
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Self::ServerError => "http-500",
            Self::Throttle => "throttle",
            Self::RateLimited => "http-429",
            Self::DropBefore => "drop-before",
            Self::LoseResponse => "lose-response",
            Self::Slow(_) => "slow",
        }
    }
}

/// Which faults fit the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// moto: 500, throttling, dropped connections before and after the
    /// work, slow answers.
    Aws,
    /// Slack: 500, 429 with `Retry-After`, dropped connections before
    /// forwarding, slow answers. Never a lost answer: Slack would have
    /// posted the message, and a retry posts it twice, which the client
    /// accepts as the price of never losing one (`aggregator::slack`).
    Slack,
}

/// A fault for `count` requests matching `contains`, after letting the
/// first `after` of them pass.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// Matched against `X-Amz-Target`, else the request path.
    pub contains: String,
    pub after: u32,
    pub fault: Fault,
    pub count: u32,
}

#[derive(Debug)]
struct State {
    upstream: String,
    profile: Profile,
    seed: u64,
    /// Fault probability in millionths.
    rate_ppm: AtomicU64,
    rng: Mutex<fastrand::Rng>,
    script: Mutex<Vec<Scripted>>,
    answer_as: Mutex<Option<(String, String)>>,
    requests: AtomicU64,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    http: reqwest::Client,
}

/// A running proxy; stopped when dropped.
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

/// A seed for a chaos run: `GLASSWATCH_CHAOS_SEED` when set (to repeat a
/// failed run), else a fresh one. Print it so a failure shows it.
pub fn seed_from_env() -> u64 {
    std::env::var("GLASSWATCH_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

impl ChaosProxy {
    /// Start a proxy to `upstream` (e.g. `http://127.0.0.1:5000`) with no
    /// faults yet ([`set_rate`](Self::set_rate) turns them on).
    pub async fn start(upstream: &str, profile: Profile, seed: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the chaos proxy")?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .context("proxy HTTP client")?;
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            profile,
            seed,
            rate_ppm: AtomicU64::new(0),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            script: Mutex::new(Vec::new()),
            answer_as: Mutex::new(None),
            requests: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            http,
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(connection(socket, serving.clone()));
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The proxy's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seed(&self) -> u64 {
        self.state.seed
    }

    /// Make a share `rate` (0.0–1.0) of requests meet a random fault.
    pub fn set_rate(&self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u64;
        self.state.rate_ppm.store(ppm, Ordering::SeqCst);
    }

    /// Add deterministic faults, applied before random ones.
    pub fn script(&self, scripted: Scripted) {
        lock(&self.state.script).push(scripted);
    }

    /// Send requests whose `X-Amz-Target` starts with `target_prefix` to
    /// moto as `account` (its `x-moto-account-id` header).
    pub fn answer_as(&self, target_prefix: &str, account: &str) {
        *lock(&self.state.answer_as) = Some((target_prefix.to_owned(), account.to_owned()));
    }

    /// Requests seen and faults injected so far, for a failure message.
    pub fn report(&self) -> String {
        let counts = lock(&self.state.counts);
        let faults: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!(
            "chaos proxy to {} (seed {}): {} requests; {}",
            self.state.upstream,
            self.state.seed,
            self.state.requests.load(Ordering::SeqCst),
            if faults.is_empty() {
                "no faults".to_owned()
            } else {
                faults.join(", ")
            }
        )
    }

    /// How many faults were injected.
    pub fn faults(&self) -> u64 {
        lock(&self.state.counts).values().sum()
    }

    /// How many requests the proxy saw.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// What scripts match on: the AWS operation, else the path.
    fn operation(&self) -> &str {
        self.header("x-amz-target").unwrap_or(&self.target)
    }
}

impl State {
    fn decide(&self, request: &Request) -> Option<Fault> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let scripted = {
            let mut script = lock(&self.script);
            let operation = request.operation();
            let hit = script
                .iter_mut()
                .find(|s| s.count > 0 && operation.contains(&s.contains));
            hit.and_then(|s| {
                if s.after > 0 {
                    s.after -= 1;
                    return None;
                }
                s.count -= 1;
                Some(s.fault)
            })
        };
        let fault = scripted.or_else(|| self.random());
        if let Some(f) = fault {
            *lock(&self.counts).entry(f.label()).or_default() += 1;
        }
        fault
    }

    fn random(&self) -> Option<Fault> {
        let ppm = self.rate_ppm.load(Ordering::SeqCst);
        let mut rng = lock(&self.rng);
        if ppm == 0 || rng.u64(0..1_000_000) >= ppm {
            return None;
        }
        let pick = rng.u32(0..100);
        Some(match self.profile {
            Profile::Aws => match pick {
                0..25 => Fault::ServerError,
                25..50 => Fault::Throttle,
                50..65 => Fault::DropBefore,
                65..80 => Fault::LoseResponse,
                _ => Fault::Slow(Duration::from_millis(rng.u64(200..1500))),
            },
            // Slow Slack answers stay well under the client's shortest
            // attempt timeout (2 s): a request it gave up on must not
            // reach Slack afterwards and post twice.
            Profile::Slack => match pick {
                0..30 => Fault::ServerError,
                30..60 => Fault::RateLimited,
                60..80 => Fault::DropBefore,
                _ => Fault::Slow(Duration::from_millis(rng.u64(100..700))),
            },
        })
    }
}

async fn connection(mut socket: TcpStream, state: Arc<State>) {
    let mut buffer = Vec::new();
    loop {
        let request = match read_request(&mut socket, &mut buffer).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = respond(&mut socket, 400, &[], e.to_string().as_bytes()).await;
                return;
            }
        };
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let result = match state.decide(&request) {
            None => forward(&state, &mut socket, &request).await,
            Some(Fault::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                forward(&state, &mut socket, &request).await
            }
            Some(Fault::DropBefore) => return drop_connection(socket),
            Some(Fault::LoseResponse) => {
                let _ = upstream(&state, &request).await;
                return drop_connection(socket);
            }
            Some(Fault::ServerError) => match state.profile {
                Profile::Aws => {
                    aws_error(&mut socket, 500, "InternalFailure", "injected server error").await
                }
                Profile::Slack => respond(&mut socket, 500, &[], b"injected server error").await,
            },
            Some(Fault::Throttle) => {
                aws_error(&mut socket, 400, "ThrottlingException", "Rate exceeded").await
            }
            Some(Fault::RateLimited) => {
                respond(
                    &mut socket,
                    429,
                    &[
                        ("retry-after".into(), "1".into()),
                        ("content-type".into(), "application/json".into()),
                    ],
                    br#"{"ok":false,"error":"ratelimited"}"#,
                )
                .await
            }
        };
        if result.is_err() || close {
            return;
        }
    }
}

/// Close with a reset (no FIN handshake), as a crashed peer would.
fn drop_connection(socket: TcpStream) {
    let _ = socket.set_zero_linger();
    drop(socket);
}

async fn aws_error(
    socket: &mut TcpStream,
    status: u16,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    let body = serde_json::json!({"__type": code, "message": message}).to_string();
    respond(
        socket,
        status,
        &[
            ("content-type".into(), "application/x-amz-json-1.0".into()),
            ("x-amzn-errortype".into(), code.to_owned()),
        ],
        body.as_bytes(),
    )
    .await
}

async fn forward(state: &State, socket: &mut TcpStream, request: &Request) -> std::io::Result<()> {
    match upstream(state, request).await {
        Ok((status, headers, body)) => respond(socket, status, &headers, &body).await,
        Err(e) => respond(socket, 502, &[], format!("proxy: {e:#}").as_bytes()).await,
    }
}

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

async fn upstream(state: &State, request: &Request) -> Result<Answer> {
    let url = format!("{}{}", state.upstream, request.target);
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .with_context(|| format!("method {}", request.method))?;
    let mut builder = state.http.request(method, &url);
    for (name, value) in &request.headers {
        if !is_hop_header(name) {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let answer_as = lock(&state.answer_as).clone();
    if let Some((prefix, account)) = answer_as
        && request
            .header("x-amz-target")
            .is_some_and(|t| t.starts_with(&prefix))
    {
        builder = builder.header("x-moto-account-id", account);
    }
    let response = builder
        .body(request.body.clone())
        .send()
        .await
        .with_context(|| format!("{} {url}", request.method))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(k, _)| !is_hop_header(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = response.bytes().await.context("upstream body")?.to_vec();
    Ok((status, headers, body))
}

fn is_hop_header(name: &str) -> bool {
    [
        "host",
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "proxy-connection",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

async fn respond(
    socket: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body).await?;
    socket.flush().await
}

/// Read one request; `None` at a clean end of the connection. Bytes past
/// the request stay in `buffer` for the next one.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<Option<Request>> {
    let head_end = loop {
        if let Some(i) = find(buffer, b"\r\n\r\n") {
            break i;
        }
        if buffer.len() > MAX_HEAD {
            bail!("request head over {MAX_HEAD} bytes");
        }
        let mut chunk = [0u8; 8192];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            if buffer.is_empty() {
                return Ok(None);
            }
            bail!("connection closed inside a request head");
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        bail!("bad request line {first:?}");
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        bail!("chunked request bodies are not supported by the chaos proxy");
    }
    let length: usize = match request.header("content-length") {
        Some(v) => v.parse().context("content-length")?,
        None => 0,
    };
    buffer.drain(..head_end + 4);
    while buffer.len() < length {
        let mut chunk = vec![0u8; (length - buffer.len()).min(64 * 1024)];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed inside a request body");
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    request.body = buffer.drain(..length).collect();
    Ok(Some(request))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
