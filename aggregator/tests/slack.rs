//! The Slack client against a mock Slack (wiremock): threading by `ts`,
//! updates, rate limits within and beyond the budget, 5xx and API errors,
//! webhooks, secrets kept out of `Debug` and errors, and escaping end to
//! end.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use glasswatch_aggregator::slack::{SlackClient, SlackError};
use glasswatch_core::session::{Session, SessionEvent};
use glasswatch_core::slack::{
    RenderContext, SlackMode, session_digest, session_root, session_update,
};
use glasswatch_core::{DetectionKind, Mfa};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "xoxb-0000-test-token-SECRET";
const WEBHOOK_PATH: &str = "/services/T0000/B0000/webhookSECRET";
const ROOT_TS: &str = "1791468152.000100";

fn event(id: &str, time: i64, principal: &str, user_agent: &str) -> SessionEvent {
    SessionEvent {
        event_id: id.to_owned(),
        time,
        event_time: String::new(),
        event_source: "sts.amazonaws.com".to_owned(),
        event_name: "AssumeRole".to_owned(),
        account: "111122223333".to_owned(),
        region: "us-east-1".to_owned(),
        principal: principal.to_owned(),
        severity: DetectionKind::BreakGlassRoleAssumed.default_severity(),
        kinds: BTreeSet::from([DetectionKind::BreakGlassRoleAssumed]),
        keys: BTreeSet::new(),
        summary: format!("{principal} assumed BreakGlassRole"),
        source_ip: Some("203.0.113.7".to_owned()),
        user_agent: Some(user_agent.to_owned()),
        mfa: Mfa::Yes,
        error_code: None,
        recovered: None,
    }
}

fn anchor() -> SessionEvent {
    event(
        "6f1c2d3e-0a1b-4c5d-8e9f-001122334455",
        1_791_468_151,
        "arn:aws:iam::111122223333:user/alice",
        "aws-cli/2.15.0",
    )
}

fn bot_ctx() -> RenderContext {
    RenderContext::new(SlackMode::Bot, "C0SECURITY")
}

fn soon(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

async fn bot(server: &MockServer) -> SlackClient {
    SlackClient::bot_with_api_base(TOKEN, &format!("{}/api/", server.uri())).unwrap()
}

fn ok_ts(ts: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": true, "channel": "C0SECURITY", "ts": ts}))
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

#[tokio::test]
async fn root_post_returns_ts_and_the_digest_threads_under_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ok_ts(ROOT_TS))
        .expect(2)
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let session = Session::of(&anchor());

    let root = session_root(&bot_ctx(), &session, "us-east-1");
    let sent = client.send(&root, soon(5)).await.unwrap();
    assert_eq!(sent.ts.as_deref(), Some(ROOT_TS));
    assert_eq!(sent.channel.as_deref(), Some("C0SECURITY"));
    assert_eq!(sent.attempts, 1);

    let follow = event(
        "b0000000-0000-4000-8000-000000000001",
        1_791_468_211,
        "arn:aws:sts::111122223333:assumed-role/BreakGlassRole/alice",
        "aws-cli/2.15.0",
    );
    let digest = session_digest(&bot_ctx(), &session, sent.ts.as_deref(), &[follow]).unwrap();
    client.send(&digest, soon(5)).await.unwrap();

    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    let first = body(&requests[0]);
    let second = body(&requests[1]);
    assert_eq!(first["channel"], "C0SECURITY");
    assert!(first.get("thread_ts").is_none());
    assert_eq!(second["thread_ts"], ROOT_TS);
    assert_eq!(second["channel"], "C0SECURITY");
    // Exactly the rendered body goes over the wire.
    assert_eq!(first, serde_json::to_value(root.body()).unwrap());
    assert_eq!(
        requests[0].headers.get("content-type").unwrap(),
        "application/json; charset=utf-8"
    );
}

#[tokio::test]
async fn update_goes_to_chat_update_with_the_root_ts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(ok_ts(ROOT_TS))
        .expect(1)
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let update = session_update(&bot_ctx(), &Session::of(&anchor()), "us-east-1", ROOT_TS);
    let sent = client.send(&update, soon(5)).await.unwrap();
    assert_eq!(sent.ts.as_deref(), Some(ROOT_TS));
    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), "/api/chat.update");
    let sent_body = body(&requests[0]);
    assert_eq!(sent_body["ts"], ROOT_TS);
    assert_eq!(sent_body["channel"], "C0SECURITY");
    assert!(
        sent_body["blocks"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    );
}

#[tokio::test]
async fn rate_limit_within_the_budget_waits_then_sends() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ok_ts(ROOT_TS))
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let root = session_root(&bot_ctx(), &Session::of(&anchor()), "us-east-1");
    let started = Instant::now();
    let sent = client.send(&root, soon(10)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sent.ts.as_deref(), Some(ROOT_TS));
    assert_eq!(sent.attempts, 2);
    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn rate_limit_beyond_the_budget_is_returned_as_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let root = session_root(&bot_ctx(), &Session::of(&anchor()), "us-east-1");
    let started = Instant::now();
    let error = client.send(&root, soon(2)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(error, SlackError::RateLimited { retry_after } if retry_after == Duration::from_secs(30)),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn server_error_is_returned_as_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let root = session_root(&bot_ctx(), &Session::of(&anchor()), "us-east-1");
    // No budget: one attempt, and the error comes back.
    let error = client.send(&root, Instant::now()).await.unwrap_err();
    assert!(
        matches!(error, SlackError::Unavailable { status: 500 }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn server_error_retries_are_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let client = bot(&server).await.with_max_attempts(3);
    let root = session_root(&bot_ctx(), &Session::of(&anchor()), "us-east-1");
    let error = client.send(&root, soon(60)).await.unwrap_err();
    assert!(
        matches!(error, SlackError::Unavailable { status: 503 }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(received(&server).await.len(), 3);
}

#[tokio::test]
async fn a_passing_server_error_is_retried_within_the_budget() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok_ts(ROOT_TS))
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let root = session_root(&bot_ctx(), &Session::of(&anchor()), "us-east-1");
    let sent = client.send(&root, soon(10)).await.unwrap();
    assert_eq!(sent.attempts, 2);
    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn api_errors_are_not_retried_and_name_the_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "channel_not_found"})),
        )
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let root = session_root(&bot_ctx(), &Session::of(&anchor()), "us-east-1");
    let error = client.send(&root, soon(10)).await.unwrap_err();
    assert!(
        matches!(&error, SlackError::Api { code } if code == "channel_not_found"),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("channel_not_found"));
    // Plenty of budget, yet one request: retrying cannot help.
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn ratelimited_api_error_is_a_rate_limit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "ratelimited"})),
        )
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let root = session_root(&bot_ctx(), &Session::of(&anchor()), "us-east-1");
    let error = client.send(&root, Instant::now()).await.unwrap_err();
    assert!(matches!(error, SlackError::RateLimited { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn webhook_posts_to_its_url_and_returns_no_ts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(WEBHOOK_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let client = SlackClient::webhook(&format!("{}{WEBHOOK_PATH}", server.uri())).unwrap();
    assert_eq!(client.mode(), SlackMode::Webhook);
    let ctx = RenderContext::new(SlackMode::Webhook, "unused");
    let root = session_root(&ctx, &Session::of(&anchor()), "us-east-1");
    let sent = client.send(&root, soon(5)).await.unwrap();
    assert_eq!(sent.ts, None);
    assert_eq!(sent.channel, None);
    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), WEBHOOK_PATH);
    assert!(requests[0].headers.get("authorization").is_none());
    let sent_body = body(&requests[0]);
    assert!(sent_body.get("channel").is_none());
    assert!(sent_body.get("thread_ts").is_none());
    assert!(sent_body["blocks"].is_array());
}

#[tokio::test]
async fn webhook_errors_name_slacks_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .mount(&server)
        .await;
    let client = SlackClient::webhook(&format!("{}{WEBHOOK_PATH}", server.uri())).unwrap();
    let ctx = RenderContext::new(SlackMode::Webhook, "unused");
    let root = session_root(&ctx, &Session::of(&anchor()), "us-east-1");
    let error = client.send(&root, soon(5)).await.unwrap_err();
    assert!(
        matches!(&error, SlackError::Api { code } if code == "no_service"),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(!error.to_string().contains("SECRET"));
}

#[tokio::test]
async fn a_request_of_the_other_mode_is_refused_unsent() {
    let server = MockServer::start().await;
    let client = bot(&server).await;
    let ctx = RenderContext::new(SlackMode::Webhook, "unused");
    let hook = session_root(&ctx, &Session::of(&anchor()), "us-east-1");
    let error = client.send(&hook, soon(5)).await.unwrap_err();
    assert!(
        matches!(error, SlackError::ModeMismatch { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(received(&server).await.is_empty());
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output_and_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_ts(ROOT_TS))
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let debug = format!("{client:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!debug.contains("SECRET"), "{debug}");
    assert!(debug.contains("<redacted>"));
    // …while the header does carry it.
    let root = session_root(&bot_ctx(), &Session::of(&anchor()), "us-east-1");
    client.send(&root, soon(5)).await.unwrap();
    let requests = received(&server).await;
    assert_eq!(
        requests[0].headers.get("authorization").unwrap(),
        format!("Bearer {TOKEN}").as_str()
    );

    let hook = SlackClient::webhook(&format!("{}{WEBHOOK_PATH}", server.uri())).unwrap();
    let debug = format!("{hook:?}");
    assert!(!debug.contains("SECRET"), "{debug}");
    assert!(!debug.contains("services"), "{debug}");

    // A connection failure is retryable and does not name the webhook URL.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let hook = SlackClient::webhook(&format!("http://{closed}{WEBHOOK_PATH}")).unwrap();
    let ctx = RenderContext::new(SlackMode::Webhook, "unused");
    let message = session_root(&ctx, &Session::of(&anchor()), "us-east-1");
    let error = hook.send(&message, Instant::now()).await.unwrap_err();
    assert!(matches!(error, SlackError::Transport { .. }), "{error:?}");
    assert!(error.is_retryable());
    let mut chain = format!("{error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains("SECRET"), "{chain}");
    assert!(!chain.contains("/services/"), "{chain}");
}

#[tokio::test]
async fn attacker_strings_arrive_escaped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_ts(ROOT_TS))
        .mount(&server)
        .await;
    let client = bot(&server).await;
    let evil = event(
        "c0000000-0000-4000-8000-000000000001",
        1_791_468_151,
        "arn:aws:sts::111122223333:assumed-role/BreakGlassRole/<!channel>",
        "Mozilla/5.0 <https://evil|click> <!channel>",
    );
    let session = Session::of(&evil);
    let root = session_root(&bot_ctx(), &session, "us-east-1");
    let sent = client.send(&root, soon(5)).await.unwrap();
    let digest = session_digest(&bot_ctx(), &session, sent.ts.as_deref(), &[evil]).unwrap();
    client.send(&digest, soon(5)).await.unwrap();

    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    for request in &requests {
        let raw = String::from_utf8(request.body.clone()).unwrap();
        assert!(!raw.contains("<!channel>"), "{raw}");
        assert!(!raw.contains("<https://evil"), "{raw}");
        assert!(raw.contains("&lt;!channel&gt;"), "{raw}");
    }
    let root_raw = String::from_utf8(requests[0].body.clone()).unwrap();
    assert!(root_raw.contains("&lt;https://evil|click&gt;"));
}

#[tokio::test]
async fn permalinks_come_from_get_permalink_and_are_checked() {
    let server = MockServer::start().await;
    let link = |value: Value| ResponseTemplate::new(200).set_body_json(value);
    Mock::given(method("GET"))
        .and(path("/api/chat.getPermalink"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(wiremock::matchers::query_param("message_ts", ROOT_TS))
        .respond_with(link(json!({
            "ok": true, "channel": "C0SECURITY",
            "permalink": "https://example.slack.com/archives/C0SECURITY/p1791468152000100"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/chat.getPermalink"))
        .and(wiremock::matchers::query_param("message_ts", "1.1"))
        .respond_with(link(json!({"ok": false, "error": "message_not_found"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/chat.getPermalink"))
        .and(wiremock::matchers::query_param("message_ts", "2.2"))
        .respond_with(link(
            json!({"ok": true, "permalink": "javascript:alert(1)\u{1b}[2J"}),
        ))
        .mount(&server)
        .await;
    let client = bot(&server).await;
    assert_eq!(
        client
            .permalink("C0SECURITY", ROOT_TS, soon(5))
            .await
            .unwrap(),
        "https://example.slack.com/archives/C0SECURITY/p1791468152000100"
    );
    let e = client
        .permalink("C0SECURITY", "1.1", soon(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SlackError::Api { code } if code == "message_not_found"),
        "{e}"
    );
    let e = client
        .permalink("C0SECURITY", "2.2", soon(5))
        .await
        .unwrap_err();
    assert!(matches!(e, SlackError::InvalidResponse { .. }), "{e}");
    let webhook = SlackClient::webhook(&format!("{}{WEBHOOK_PATH}", server.uri())).unwrap();
    let e = webhook
        .permalink("C0SECURITY", ROOT_TS, soon(5))
        .await
        .unwrap_err();
    assert!(matches!(e, SlackError::ModeMismatch { .. }), "{e}");
}
