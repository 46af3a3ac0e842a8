//! The Slack client: sends the [`SlackRequest`]s that
//! `glasswatch_core::slack` renders, with a bot token (Web API) or to an
//! incoming webhook. DESIGN.md §5.
//!
//! - Bot mode POSTs JSON with `Authorization: Bearer <token>` to
//!   `{api_base}chat.postMessage` or `{api_base}chat.update` and returns
//!   the message `ts`, which threads follow-ups and updates the root.
//!   Slack reports API errors as HTTP 200 with `{"ok":false,"error":…}`;
//!   those become [`SlackError::Api`] (not retryable, e.g.
//!   `channel_not_found`) or a retryable error (`ratelimited`,
//!   `internal_error`, …).
//! - Webhook mode POSTs the body to the webhook URL; success is HTTP 200
//!   with the body `ok`, and there is no `ts`.
//!
//! HTTP 429 is honoured: when `Retry-After` fits before the caller's
//! deadline the client waits and tries again, otherwise it returns
//! [`SlackError::RateLimited`] so the caller keeps the message pending.
//! 5xx answers and transport failures are retried with backoff while the
//! deadline allows, a bounded number of times, and then returned: nothing
//! is swallowed. [`SlackError::is_retryable`] tells the caller whether
//! keeping the message for later can help.
//!
//! The token and the webhook URL are secrets: they are never logged, never
//! in `Debug` output, and transport errors are stripped of the URL they
//! were sending to.

use std::fmt;
use std::time::{Duration, Instant};

use glasswatch_core::slack::{SlackMode, SlackRequest};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

/// The Slack Web API.
pub const DEFAULT_API_BASE: &str = "https://slack.com/api/";

/// Attempts per [`SlackClient::send`], first included, unless configured.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;

/// Longest one HTTP attempt may take, unless configured.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait assumed when Slack rate-limits without a usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// An attempt always gets at least this long, even past the deadline, so
/// the first attempt is never cut short to nothing.
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(4);
/// Longest error code or response excerpt kept in an error.
const MAX_DETAIL: usize = 120;

/// Slack API error codes that say "try again later".
const TRANSIENT_CODES: [&str; 5] = [
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "timeout",
];

/// Why a message was not sent. Retryable and non-retryable failures are
/// different variants; [`is_retryable`](Self::is_retryable) sorts them.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    // Retryable: keep the message pending and send it again later.
    /// HTTP 429 (or the API's `ratelimited`) with a wait that did not fit
    /// before the deadline.
    #[error("Slack is rate limiting this channel: retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// Slack answered with a 5xx status.
    #[error("Slack is unavailable: HTTP {status}")]
    Unavailable { status: u16 },
    /// The API answered `ok: false` with an error that is temporary.
    #[error("Slack API error `{code}` (temporary)")]
    ApiTransient { code: String },
    /// The request did not complete: connection, TLS, timeout or body.
    #[error("could not reach Slack ({kind}): {source}")]
    Transport {
        kind: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The credential could not be read from Secrets Manager (yet).
    #[error("Slack credential: {0}")]
    Credential(String),
    /// A success status with a body that is not Slack's answer (a proxy
    /// page, a cut-off body). Whether the message went out is unknown.
    #[error("Slack answered HTTP {status} with an unexpected body: {detail}")]
    InvalidResponse { status: u16, detail: String },

    // Not retryable: sending the same message again cannot help.
    /// Slack refused the message: `channel_not_found`, `not_in_channel`,
    /// `invalid_auth`, `invalid_blocks`, a webhook's `no_service`, … An
    /// HTTP status without a code reads as `http_<status>`.
    #[error("Slack refused the message: `{code}`")]
    Api { code: String },
    /// A bot request given to a webhook client, or the other way round.
    #[error("a {request} request cannot be sent by a {client} client")]
    ModeMismatch {
        client: &'static str,
        request: &'static str,
    },
    /// The message body could not be encoded.
    #[error("the Slack message does not encode as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The client's configuration is unusable. Never holds the secret.
    #[error("Slack client configuration: {0}")]
    Config(String),
}

impl SlackError {
    /// Whether sending the same message later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Unavailable { .. }
            | Self::ApiTransient { .. }
            | Self::Transport { .. }
            | Self::Credential(_)
            | Self::InvalidResponse { .. } => true,
            Self::Api { .. } | Self::ModeMismatch { .. } | Self::Encode(_) | Self::Config(_) => {
                false
            }
        }
    }

    /// How long Slack asked to wait, for a rate limit.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    fn transport(error: reqwest::Error) -> Self {
        let kind = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect"
        } else if error.is_body() || error.is_decode() {
            "body"
        } else {
            "request"
        };
        // The URL of a webhook is its secret.
        Self::Transport {
            kind,
            source: error.without_url(),
        }
    }
}

/// A message Slack accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The message's `ts` (bot mode): the thread for replies and the
    /// handle for `chat.update`. `None` for webhooks.
    pub ts: Option<String>,
    /// The channel id Slack posted to (bot mode). `chat.update` needs the
    /// id, not a channel name.
    pub channel: Option<String>,
    /// HTTP attempts made, this one included.
    pub attempts: u32,
}

enum Target {
    Bot { api_base: Url, auth: HeaderValue },
    Webhook { url: Url },
}

/// One HTTP client for the process's lifetime, in bot or webhook mode.
pub struct SlackClient {
    http: reqwest::Client,
    target: Target,
    max_attempts: u32,
    request_timeout: Duration,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SlackClient");
        match &self.target {
            Target::Bot { api_base, .. } => d
                .field("mode", &"bot")
                .field("api_base", &api_base.as_str())
                .field("token", &"<redacted>"),
            Target::Webhook { .. } => d
                .field("mode", &"webhook")
                .field("webhook_url", &"<redacted>"),
        };
        d.field("max_attempts", &self.max_attempts)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

fn http_client() -> Result<reqwest::Client, SlackError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // A redirect could carry the body (and the token) elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("glasswatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SlackError::Config(format!("cannot build the HTTP client: {e}")))
}

fn http_url(text: &str, what: &str) -> Result<Url, SlackError> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => Ok(url),
        _ => Err(SlackError::Config(format!(
            "the {what} is not an http(s) URL"
        ))),
    }
}

impl SlackClient {
    /// A bot-token client for the Slack Web API at [`DEFAULT_API_BASE`].
    pub fn bot(token: &str) -> Result<Self, SlackError> {
        Self::bot_with_api_base(token, DEFAULT_API_BASE)
    }

    /// A bot-token client for the Web API at `api_base` (tests point it at
    /// a mock server). Methods are joined to the base, so it ends in `/`;
    /// one is added if missing.
    pub fn bot_with_api_base(token: &str, api_base: &str) -> Result<Self, SlackError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .ok()
            .filter(|_| !token.trim().is_empty())
            .ok_or_else(|| {
                SlackError::Config("the bot token is empty or not a valid header value".into())
            })?;
        auth.set_sensitive(true);
        let mut base = api_base.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Self {
            http: http_client()?,
            target: Target::Bot {
                api_base: http_url(&base, "Slack API base")?,
                auth,
            },
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// An incoming-webhook client. The URL is the secret.
    pub fn webhook(url: &str) -> Result<Self, SlackError> {
        Ok(Self {
            http: http_client()?,
            target: Target::Webhook {
                url: http_url(url.trim(), "webhook URL")?,
            },
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// At most `attempts` HTTP attempts per [`send`](Self::send) (at
    /// least one).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The longest one HTTP attempt may take.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn mode(&self) -> SlackMode {
        match self.target {
            Target::Bot { .. } => SlackMode::Bot,
            Target::Webhook { .. } => SlackMode::Webhook,
        }
    }

    /// Send one message. Waits for a rate limit or retries a 5xx or
    /// transport failure only while the wait ends before `deadline`, and at
    /// most the configured number of attempts; otherwise returns the
    /// error, which [`SlackError::is_retryable`] classifies. The first
    /// attempt is always made.
    ///
    /// A retry after a timeout or 5xx can post a message twice if Slack did
    /// take the first one; a duplicate alert is the price of never losing
    /// one.
    pub async fn send(
        &self,
        request: &SlackRequest,
        deadline: Instant,
    ) -> Result<Sent, SlackError> {
        let (url, auth, label) = match (&self.target, request) {
            (Target::Bot { api_base, auth }, SlackRequest::Bot { method, .. }) => {
                let url = api_base.join(method.as_str()).map_err(|_| {
                    SlackError::Config(format!("cannot join `{}` to the API base", method.as_str()))
                })?;
                (url, Some(auth), method.as_str())
            }
            (Target::Webhook { url }, SlackRequest::Webhook { .. }) => {
                (url.clone(), None, "webhook")
            }
            (Target::Bot { .. }, SlackRequest::Webhook { .. }) => {
                return Err(SlackError::ModeMismatch {
                    client: "bot",
                    request: "webhook",
                });
            }
            (Target::Webhook { .. }, SlackRequest::Bot { .. }) => {
                return Err(SlackError::ModeMismatch {
                    client: "webhook",
                    request: "bot",
                });
            }
        };
        let body = serde_json::to_vec(request.body())?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.attempt(&url, auth, &body, deadline).await {
                Ok(mut sent) => {
                    sent.attempts = attempt;
                    tracing::debug!(method = label, attempt, "Slack message sent");
                    return Ok(sent);
                }
                Err(error) => error,
            };
            let wait = match &error {
                _ if !error.is_retryable() => None,
                _ if attempt >= self.max_attempts => None,
                SlackError::RateLimited { retry_after } => Some(*retry_after),
                _ => Some(backoff(attempt)),
            };
            let fits = wait.filter(|w| {
                Instant::now()
                    .checked_add(*w)
                    .is_some_and(|t| t <= deadline)
            });
            let Some(wait) = fits else {
                tracing::warn!(
                    method = label,
                    attempt,
                    retryable = error.is_retryable(),
                    error = %error,
                    "Slack message not sent"
                );
                return Err(error);
            };
            tracing::info!(
                method = label,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "Slack message not sent yet; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        url: &Url,
        auth: Option<&HeaderValue>,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Sent, SlackError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = self.request_timeout.min(left.max(MIN_ATTEMPT_TIMEOUT));
        let mut request = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .timeout(timeout)
            .body(body.to_vec());
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let (status, retry_after, bytes) = answer(request).await?;
        match self.target {
            Target::Bot { .. } => bot_answer(status, retry_after, &bytes),
            Target::Webhook { .. } => webhook_answer(status, &bytes),
        }
    }

    /// A message's permalink (`chat.getPermalink`; bot mode). One attempt:
    /// the message is already posted, the link only makes it easier to
    /// find (`cargo xtask audit sessions` shows it).
    pub async fn permalink(
        &self,
        channel: &str,
        ts: &str,
        deadline: Instant,
    ) -> Result<String, SlackError> {
        let Target::Bot { api_base, auth } = &self.target else {
            return Err(SlackError::ModeMismatch {
                client: "webhook",
                request: "chat.getPermalink",
            });
        };
        let mut url = api_base.join("chat.getPermalink").map_err(|_| {
            SlackError::Config("cannot join `chat.getPermalink` to the API base".into())
        })?;
        url.query_pairs_mut()
            .append_pair("channel", channel)
            .append_pair("message_ts", ts);
        let left = deadline.saturating_duration_since(Instant::now());
        let request = self
            .http
            .get(url)
            .header(AUTHORIZATION, auth.clone())
            .timeout(self.request_timeout.min(left.max(MIN_ATTEMPT_TIMEOUT)));
        let (status, retry_after, bytes) = answer(request).await?;
        #[derive(Deserialize)]
        struct Link {
            ok: bool,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            permalink: Option<String>,
        }
        let invalid = || SlackError::InvalidResponse {
            status: status.as_u16(),
            detail: excerpt(&String::from_utf8_lossy(&bytes)),
        };
        let link: Link = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if !(link.ok && status.is_success()) {
            return Err(refused(link.error.as_deref(), status, retry_after));
        }
        // Shown in terminals and spreadsheets: an https URL of printable
        // ASCII only.
        link.permalink
            .filter(|l| l.starts_with("https://") && l.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(invalid)
    }
}

/// Send a request and read its answer: status, `Retry-After` and body.
/// HTTP 429 and 5xx are errors here, whatever the body says.
async fn answer(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, Option<Duration>, Vec<u8>), SlackError> {
    let response = request.send().await.map_err(SlackError::transport)?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let bytes = response
        .bytes()
        .await
        .map_err(SlackError::transport)?
        .to_vec();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(SlackError::RateLimited {
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        });
    }
    if status.is_server_error() {
        return Err(SlackError::Unavailable {
            status: status.as_u16(),
        });
    }
    Ok((status, retry_after, bytes))
}

/// `Retry-After` in seconds (Slack sends seconds, not an HTTP date).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Exponential backoff with jitter: between half and all of
/// `BACKOFF_BASE * 2^(attempt-1)`, capped.
fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let half = u64::try_from(exp.as_millis() / 2).unwrap_or(0);
    Duration::from_millis(half + fastrand::u64(0..=half))
}

/// An error code or excerpt from a response, safe for logs: printable
/// ASCII only, bounded.
fn excerpt(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_DETAIL)
        .collect()
}

#[derive(Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    warning: Option<String>,
}

fn bot_answer(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Sent, SlackError> {
    let answer: ApiAnswer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(_) if status.is_success() => {
            return Err(SlackError::InvalidResponse {
                status: status.as_u16(),
                detail: excerpt(&String::from_utf8_lossy(body)),
            });
        }
        Err(_) => {
            return Err(SlackError::Api {
                code: format!("http_{}", status.as_u16()),
            });
        }
    };
    if let Some(warning) = &answer.warning {
        tracing::debug!(warning = %excerpt(warning), "Slack API warning");
    }
    if answer.ok && status.is_success() {
        return Ok(Sent {
            ts: answer.ts,
            channel: answer.channel,
            attempts: 0,
        });
    }
    Err(refused(answer.error.as_deref(), status, retry_after))
}

/// The error of an answer that was not `ok`: its `error` code, else the
/// HTTP status.
fn refused(error: Option<&str>, status: StatusCode, retry_after: Option<Duration>) -> SlackError {
    let code = error
        .map(excerpt)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
    api_error(code, retry_after)
}

fn api_error(code: String, retry_after: Option<Duration>) -> SlackError {
    match code.as_str() {
        "ratelimited" | "rate_limited" => SlackError::RateLimited {
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        c if TRANSIENT_CODES.contains(&c) => SlackError::ApiTransient { code },
        _ => SlackError::Api { code },
    }
}

fn webhook_answer(status: StatusCode, body: &[u8]) -> Result<Sent, SlackError> {
    let text = String::from_utf8_lossy(body);
    if status.is_success() {
        if text.trim() == "ok" {
            return Ok(Sent {
                ts: None,
                channel: None,
                attempts: 0,
            });
        }
        return Err(SlackError::InvalidResponse {
            status: status.as_u16(),
            detail: excerpt(&text),
        });
    }
    // Webhooks answer errors as a bare code: `no_service`,
    // `channel_not_found`, `invalid_payload`, …
    let code = excerpt(&text);
    let code = if !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        code
    } else {
        format!("http_{}", status.as_u16())
    };
    Err(api_error(code, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for _ in 0..50 {
            let first = backoff(1);
            assert!(
                first >= BACKOFF_BASE / 2 && first <= BACKOFF_BASE,
                "{first:?}"
            );
            let third = backoff(3);
            assert!(
                third >= BACKOFF_BASE * 2 && third <= BACKOFF_BASE * 4,
                "{third:?}"
            );
            assert!(backoff(30) <= BACKOFF_CAP);
        }
    }

    #[test]
    fn api_codes_are_sorted_into_retryable_and_not() {
        assert!(api_error("ratelimited".into(), None).is_retryable());
        assert_eq!(
            api_error("ratelimited".into(), None).retry_after(),
            Some(DEFAULT_RETRY_AFTER)
        );
        assert!(api_error("internal_error".into(), None).is_retryable());
        for code in [
            "invalid_auth",
            "channel_not_found",
            "not_in_channel",
            "invalid_blocks",
        ] {
            let e = api_error(code.into(), None);
            assert!(!e.is_retryable(), "{code}");
            assert!(e.to_string().contains(code));
        }
    }

    #[test]
    fn bot_answers() {
        let ok = bot_answer(
            StatusCode::OK,
            None,
            br#"{"ok":true,"ts":"1.2","channel":"C1"}"#,
        )
        .unwrap();
        assert_eq!(ok.ts.as_deref(), Some("1.2"));
        assert_eq!(ok.channel.as_deref(), Some("C1"));
        let proxy = bot_answer(StatusCode::OK, None, b"<html>captive portal</html>").unwrap_err();
        assert!(matches!(
            proxy,
            SlackError::InvalidResponse { status: 200, .. }
        ));
        assert!(proxy.is_retryable());
        let bad = bot_answer(StatusCode::BAD_REQUEST, None, b"nope").unwrap_err();
        assert!(matches!(&bad, SlackError::Api { code } if code == "http_400"));
    }

    #[test]
    fn webhook_answers() {
        assert!(webhook_answer(StatusCode::OK, b"ok").unwrap().ts.is_none());
        let gone = webhook_answer(StatusCode::NOT_FOUND, b"no_service").unwrap_err();
        assert!(matches!(&gone, SlackError::Api { code } if code == "no_service"));
        assert!(!gone.is_retryable());
        let odd = webhook_answer(StatusCode::FORBIDDEN, b"<html>\nforbidden").unwrap_err();
        assert!(matches!(&odd, SlackError::Api { code } if code == "http_403"));
    }

    #[test]
    fn excerpts_are_printable_and_bounded() {
        assert_eq!(excerpt(" a\nb\u{1b}[31m "), "a?b?[31m");
        assert_eq!(excerpt(&"x".repeat(1000)).len(), MAX_DETAIL);
    }

    #[test]
    fn bad_configuration_never_echoes_the_secret() {
        let e = SlackClient::bot("xoxb-secret\nInjected: 1").unwrap_err();
        assert!(!e.to_string().contains("xoxb-secret"));
        assert!(!e.is_retryable());
        assert!(SlackClient::bot("  ").is_err());
        let e = SlackClient::webhook("hooks.slack.com/services/T/B/secret").unwrap_err();
        assert!(!e.to_string().contains("secret"));
        assert!(SlackClient::webhook("ftp://hooks.slack.com/x").is_err());
    }
}
