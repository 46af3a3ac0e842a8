//! A local Slack stand-in (wiremock) for bot mode: `chat.postMessage`
//! answers a fresh `ts` for every post (to the channel by name or by id,
//! answering with the id, as Slack does), `chat.update` answers the `ts`
//! it updated and, like Slack, refuses a channel name (`channel_not_found`:
//! it needs the id the post answered with), and every call is recorded in
//! arrival order with the `ts` it got, so tests (and the demo) can rebuild
//! the channel: root messages, their threads, and what each root shows
//! after its last update.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The channel id the stand-in answers with.
pub const CHANNEL_ID: &str = "C0GLASSWATCH";
/// The channel's name, as `glasswatch.example.toml` writes it.
pub const CHANNEL_NAME: &str = "#break-glass";

/// One Web API call Slack accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackCall {
    /// `chat.postMessage` or `chat.update`.
    pub method: String,
    pub body: Value,
    /// The message's `ts`: assigned to a post, or the one updated.
    pub ts: String,
}

impl SlackCall {
    /// The thread this is a reply in, if it is one.
    pub fn thread_ts(&self) -> Option<&str> {
        self.body.get("thread_ts").and_then(Value::as_str)
    }

    /// A new top-level message (a session's root, a spoofing or coverage
    /// alert).
    pub fn is_root_post(&self) -> bool {
        self.method == "chat.postMessage" && self.thread_ts().is_none()
    }

    /// The whole body as text, for searching.
    pub fn text(&self) -> String {
        self.body.to_string()
    }
}

struct Recorder {
    calls: Arc<Mutex<Vec<SlackCall>>>,
    next: AtomicU64,
    observer: Option<UnboundedSender<SlackCall>>,
}

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let method = request
            .url
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "invalid_json"}));
        };
        let ts = match method.as_str() {
            "chat.postMessage"
                if !matches!(
                    body.get("channel").and_then(Value::as_str),
                    Some(CHANNEL_ID | CHANNEL_NAME)
                ) =>
            {
                return ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": false, "error": "channel_not_found"}));
            }
            "chat.update" if body.get("channel").and_then(Value::as_str) != Some(CHANNEL_ID) => {
                return ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": false, "error": "channel_not_found"}));
            }
            "chat.postMessage" => {
                let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
                format!("1800000000.{n:06}")
            }
            "chat.update" => match body.get("ts").and_then(Value::as_str) {
                Some(ts) => ts.to_owned(),
                None => {
                    return ResponseTemplate::new(200)
                        .set_body_json(json!({"ok": false, "error": "message_not_found"}));
                }
            },
            _ => {
                return ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": false, "error": "unknown_method"}));
            }
        };
        let call = SlackCall {
            method,
            body,
            ts: ts.clone(),
        };
        if let Some(observer) = &self.observer {
            let _ = observer.send(call.clone());
        }
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
        ResponseTemplate::new(200)
            .set_body_json(json!({"ok": true, "ts": ts, "channel": CHANNEL_ID}))
    }
}

/// The running stand-in.
#[derive(Debug)]
pub struct SlackStandIn {
    server: MockServer,
    calls: Arc<Mutex<Vec<SlackCall>>>,
}

impl SlackStandIn {
    /// Start it; `observer`, when given, receives every accepted call as it
    /// arrives (the demo prints them).
    pub async fn start(observer: Option<UnboundedSender<SlackCall>>) -> Self {
        let server = MockServer::start().await;
        let calls = Arc::new(Mutex::new(Vec::new()));
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(Recorder {
                calls: calls.clone(),
                next: AtomicU64::new(0),
                observer,
            })
            .mount(&server)
            .await;
        Self { server, calls }
    }

    /// The base URL (`http://127.0.0.1:PORT`); the Web API is under `/api/`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Every accepted call so far, in order.
    pub fn calls(&self) -> Vec<SlackCall> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Top-level posts.
    pub fn roots(&self) -> Vec<SlackCall> {
        self.calls()
            .into_iter()
            .filter(SlackCall::is_root_post)
            .collect()
    }

    /// Replies in the thread of `ts`.
    pub fn thread(&self, ts: &str) -> Vec<SlackCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.thread_ts() == Some(ts))
            .collect()
    }

    /// What each top-level message shows now: its post, or its last
    /// update. Keyed by `ts`.
    pub fn displayed(&self) -> BTreeMap<String, SlackCall> {
        let mut shown = BTreeMap::new();
        for call in self.calls() {
            if call.is_root_post() || call.method == "chat.update" {
                shown.insert(call.ts.clone(), call);
            }
        }
        shown
    }
}
