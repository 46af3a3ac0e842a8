//! A recording HTTP proxy in front of moto: a process under test (the
//! real `xtask` binary) is pointed at it with `AWS_ENDPOINT_URL`, and the
//! test reads back which AWS operations it made (to prove, say, that
//! nothing was a DynamoDB `Scan`, or that a query paged).
//!
//! HTTP/1.1 with `Content-Length` bodies, keep-alive, as the AWS SDKs send;
//! each request is forwarded to moto and its answer relayed.

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `X-Amz-Target` (JSON protocols: `DynamoDB_20120810.Query`), if any.
    pub target: Option<String>,
    pub path: String,
    pub body: String,
}

impl Recorded {
    /// The operation: the part of `X-Amz-Target` after the dot, or the
    /// `Action` of a query-protocol form body (CloudFormation).
    pub fn operation(&self) -> String {
        if let Some(target) = &self.target {
            return target.rsplit('.').next().unwrap_or(target).to_owned();
        }
        self.body
            .split('&')
            .find_map(|pair| pair.strip_prefix("Action="))
            .unwrap_or("unknown")
            .to_owned()
    }
}

/// The proxy; it stops when dropped.
#[derive(Debug)]
pub struct RecordingProxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingProxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub async fn start(upstream: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("proxy: bind")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let log = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("proxy: HTTP client")?;
        let upstream = upstream.trim_end_matches('/').to_owned();
        let task = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (log, http, upstream) = (Arc::clone(&log), http.clone(), upstream.clone());
                    tokio::spawn(async move {
                        if let Err(e) = serve(stream, &log, &http, &upstream).await {
                            eprintln!("recording proxy: {e:#}");
                        }
                    });
                }
            })
        };
        Ok(Self {
            endpoint,
            log,
            task,
        })
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One connection: requests until the client closes it.
async fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<Recorded>>,
    http: &reqwest::Client,
    upstream: &str,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            bail!("bad request line {line:?}");
        };
        let (method, path) = (method.to_owned(), path.to_owned());
        let mut headers = Vec::new();
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut header = String::new();
            read.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                bail!("bad header {header:?}");
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            match name.as_str() {
                "content-length" => length = value.parse().context("content-length")?,
                "transfer-encoding" => bail!("chunked request bodies are not supported"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "host" => {}
                _ => headers.push((name, value)),
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await?;
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Recorded {
                target: headers
                    .iter()
                    .find(|(n, _)| n == "x-amz-target")
                    .map(|(_, v)| v.clone()),
                path: path.clone(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        let mut request = http.request(
            reqwest::Method::from_bytes(method.as_bytes()).context("method")?,
            format!("{upstream}{path}"),
        );
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.context("forward")?;
        let status = response.status();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        for (name, value) in response.headers() {
            if !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                head.push_str(&format!(
                    "{}: {}\r\n",
                    name,
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
        }
        let bytes = response.bytes().await.context("upstream body")?;
        head.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
        write.write_all(head.as_bytes()).await?;
        write.write_all(&bytes).await?;
        write.flush().await?;
        if close {
            return Ok(());
        }
    }
}
