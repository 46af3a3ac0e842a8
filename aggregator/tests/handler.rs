//! The aggregator's handler end to end on moto (DynamoDB, Organizations)
//! and a recording Slack (wiremock): envelope checks, one root message per
//! session under redelivery, coalesced follow-ups, bad messages not
//! blocking good ones, Slack failures kept pending, coverage alerts.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use glasswatch_aggregator::config::AggregatorConfig;
use glasswatch_aggregator::handler::Aggregator;
use glasswatch_aggregator::slack::SlackClient;
use glasswatch_aggregator::store::create_table;
use serde_json::{Value, json};
use test_support::{
    heartbeat_envelope, sdk_config, signal_envelope, sqs_batch, unique, watch_list, workspace_root,
};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NOW: i64 = 1_791_990_000; // 2026-10-14T15:00:00Z
const FIXTURE_ACCOUNT: &str = "444455556666";

struct Bed {
    aggregator: Aggregator,
    slack: MockServer,
    member: String,
    other_member: String,
}

async fn bed(slack_status: u16) -> Bed {
    bed_in(slack_status, "C0GLASS").await
}

/// A bed whose configured Slack channel is `channel` (a name or an id).
async fn bed_in(slack_status: u16, channel: &str) -> Bed {
    let aws = sdk_config("eu-west-1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = unique("gw-agg");
    create_table(&dynamodb, &table).await.unwrap();
    let orgs = aws_sdk_organizations::Client::new(&aws);
    // One organization per moto account; tests share it.
    let _ = orgs
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await;
    let mut ids = Vec::new();
    for name in ["member", "other"] {
        let created = orgs
            .create_account()
            .account_name(unique(name))
            .email(format!("{}@example.com", unique(name)))
            .send()
            .await
            .unwrap();
        ids.push(created.create_account_status.unwrap().account_id.unwrap());
    }
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(slack_status).set_body_json(
                json!({"ok": true, "ts": "1791990000.000100", "channel": "C0GLASS"}),
            ),
        )
        .mount(&slack)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/chat.getPermalink"))
        .and(query_param("channel", "C0GLASS"))
        .and(query_param("message_ts", "1791990000.000100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channel": "C0GLASS",
            "permalink": "https://glasswatch.slack.com/archives/C0GLASS/p1791990000000100"
        })))
        .mount(&slack)
        .await;
    // As Slack: chat.update needs the channel id the post answered with.
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .and(wiremock::matchers::body_partial_json(
            json!({"channel": "C0GLASS"}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "ts": "1791990000.000100"})),
        )
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "channel_not_found"})),
        )
        .mount(&slack)
        .await;
    let watch = test_support::watch_json();
    let config = AggregatorConfig::from_lookup(|name| {
        Some(
            match name {
                "GLASSWATCH_TABLE" => table.as_str(),
                "GLASSWATCH_WATCH" => watch.as_str(),
                "GLASSWATCH_SLACK_MODE" => "bot",
                "GLASSWATCH_SLACK_CHANNEL" => channel,
                "GLASSWATCH_SLACK_SECRET_ARN" => {
                    "arn:aws:secretsmanager:eu-west-1:310987654321:secret:slack"
                }
                "GLASSWATCH_HEARTBEAT_MINUTES" => "5",
                _ => return None,
            }
            .to_owned(),
        )
    })
    .unwrap();
    let client = SlackClient::bot_with_api_base("xoxb-test", &format!("{}/api/", slack.uri()))
        .unwrap()
        .with_max_attempts(1);
    Bed {
        aggregator: Aggregator::new(config, &aws, client),
        slack,
        member: ids[0].clone(),
        other_member: ids[1].clone(),
    }
}

fn record(name: &str, account: &str) -> Value {
    let text =
        std::fs::read_to_string(workspace_root().join("core/tests/fixtures").join(name)).unwrap();
    let mut doc: Value = serde_json::from_str(&text.replace(FIXTURE_ACCOUNT, account)).unwrap();
    let mut record = doc.get("detail").cloned().unwrap_or_else(|| doc.take());
    record.as_object_mut().unwrap().remove("_fixture");
    record
}

/// Activity with the credentials the AssumeRole fixture issued.
fn activity(account: &str, n: u32) -> Value {
    activity_as(account, n, "break-glass-1-inc-4711", "ASIAW2LM9BGRSESSN8C4")
}

/// Activity by the role session `session` with temporary key `key`.
fn activity_as(account: &str, n: u32, session: &str, key: &str) -> Value {
    json!({
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": format!("arn:aws:sts::{account}:assumed-role/BreakGlassRole/{session}"),
            "accountId": account,
            "accessKeyId": key,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{account}:role/BreakGlassRole"), "userName": "BreakGlassRole"}}
        },
        "eventTime": format!("2026-10-14T15:{:02}:00Z", 6 + n % 50),
        "eventSource": "iam.amazonaws.com",
        "eventName": "ListUsers",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.140",
        "userAgent": "aws-cli/2.31.18",
        "eventID": format!("00000000-0000-4000-8000-{n:012}"),
        "readOnly": true,
        "eventType": "AwsApiCall",
        "recipientAccountId": account
    })
}

fn envelope(record: &Value, sender: Option<&str>) -> String {
    signal_envelope(&watch_list(), record, sender).unwrap()
}

fn batch(bodies: &[String]) -> SqsEvent {
    sqs_batch(bodies)
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

async fn requests(slack: &MockServer, method_path: &str) -> Vec<Value> {
    slack
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == method_path)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_session_gets_one_root_message_however_often_it_is_delivered() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let assume = envelope(
        &record("11-assume-break-glass-role-by-break-glass-1.json", &member),
        Some(&member),
    );
    let acts: Vec<String> = (0..3)
        .map(|n| envelope(&activity(&member, n), Some(&member)))
        .collect();
    // The activity arrives before the AssumeRole that explains it, and the
    // whole batch is delivered twice.
    let mut bodies = acts.clone();
    bodies.push(assume);
    let agg = &bed.aggregator;
    let first = agg.handle_batch(&batch(&bodies), NOW, deadline()).await;
    assert!(first.batch_item_failures.is_empty(), "{first:?}");
    let again = agg.handle_batch(&batch(&bodies), NOW + 5, deadline()).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");

    let roots: Vec<Value> = requests(&bed.slack, "/api/chat.postMessage")
        .await
        .into_iter()
        .filter(|b| b.get("thread_ts").is_none())
        .collect();
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let text = roots[0].to_string();
    assert!(text.contains("break-glass-1"), "{text}");
    assert!(text.contains(&member), "{text}");

    let month = glasswatch_aggregator::store::Store::month_partition(NOW);
    let sessions = agg
        .store
        .sessions_in(glasswatch_aggregator::store::GSI_BY_TIME, &month)
        .await
        .unwrap();
    let mine: Vec<_> = sessions
        .iter()
        .filter(|s| s.session.accounts.contains(&member))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].session.event_count, 4);
    assert_eq!(mine[0].root_ts.as_deref(), Some("1791990000.000100"));
    // Where the thread is, for `audit sessions`.
    assert_eq!(mine[0].root_channel.as_deref(), Some("C0GLASS"));
    assert_eq!(
        mine[0].slack_permalink.as_deref(),
        Some("https://glasswatch.slack.com/archives/C0GLASS/p1791990000000100")
    );
}

#[tokio::test]
async fn a_spoofed_signal_is_stored_and_alerted_and_never_joins_a_session() {
    let bed = bed(200).await;
    let claimed = bed.member.clone();
    let sender = bed.other_member.clone();
    let body = envelope(&activity(&claimed, 40), Some(&sender));
    let agg = &bed.aggregator;
    let response = agg
        .handle_batch(&batch(&[body.clone(), body]), NOW, deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let posts = requests(&bed.slack, "/api/chat.postMessage").await;
    assert_eq!(posts.len(), 1, "alerted once: {posts:#?}");
    let text = posts[0].to_string();
    assert!(text.contains(&sender) && text.contains(&claimed), "{text}");
    assert!(
        agg.store
            .session_of_event("00000000-0000-4000-8000-000000000040")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn signals_without_an_envelope_account_are_untrusted_and_strangers_are_rejected() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let unverified = envelope(&activity(&member, 50), None);
    let stranger = envelope(&activity("999988887777", 51), Some("999988887777"));
    let response = bed
        .aggregator
        .handle_batch(&batch(&[unverified, stranger]), NOW, deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let aws = sdk_config("eu-west-1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let item = |pk: &str, sk: &str| {
        dynamodb
            .get_item()
            .table_name(bed.aggregator.store.table())
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(sk.into()))
            .send()
    };
    // EventBridge always names the sender: a message without one did not
    // come as an agent sent it. Kept as evidence, alerted, never a session.
    let kept = item("SPOOFED#00000000-0000-4000-8000-000000000050", "SPOOFED")
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(kept["verdict"].as_s().unwrap().contains("unverified"));
    assert!(!kept.contains_key("sender"));
    for id in ["000000000050", "000000000051"] {
        assert!(
            bed.aggregator
                .store
                .session_of_event(&format!("00000000-0000-4000-8000-{id}"))
                .await
                .unwrap()
                .is_none(),
            "an unverified or outside signal never joins a session"
        );
    }
    let alerts: Vec<String> = bed
        .slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("unverified Glasswatch signal")),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn one_bad_message_fails_alone() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let good = envelope(&activity(&member, 60), Some(&member));
    let response = bed
        .aggregator
        .handle_batch(
            &batch(&["not json".to_owned(), good, r#"{"source":"x"}"#.to_owned()]),
            NOW,
            deadline(),
        )
        .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec!["m0", "m2"]);
    assert!(
        bed.aggregator
            .store
            .session_of_event("00000000-0000-4000-8000-000000000060")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_slack_outage_leaves_the_message_pending_until_the_tick_sends_it() {
    let bed = bed(500).await;
    let member = bed.member.clone();
    let body = envelope(&activity(&member, 70), Some(&member));
    let agg = &bed.aggregator;
    let response = agg.handle_batch(&batch(&[body]), NOW, deadline()).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "the event is stored"
    );
    let session = agg
        .store
        .session_of_event("00000000-0000-4000-8000-000000000070")
        .await
        .unwrap()
        .unwrap();
    assert!(agg.store.pending().await.unwrap().contains(&session));
    assert!(
        agg.store
            .session(&session)
            .await
            .unwrap()
            .unwrap()
            .root_ts
            .is_none()
    );

    // Slack recovers; the tick posts it.
    bed.slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "ts": "1791990001.000200"})),
        )
        .mount(&bed.slack)
        .await;
    agg.tick(NOW + 60, deadline()).await.unwrap();
    let item = agg.store.session(&session).await.unwrap().unwrap();
    assert_eq!(item.root_ts.as_deref(), Some("1791990001.000200"));
    assert!(!agg.store.pending().await.unwrap().contains(&session));
}

#[tokio::test]
async fn coverage_alerts_once_when_heartbeats_stop_and_once_when_they_resume() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let heartbeat = |sent_at: &str| heartbeat_envelope(&member, "ap-south-1", sent_at, "logging");
    let agg = &bed.aggregator;
    agg.handle_batch(
        &batch(&[heartbeat("2026-10-14T15:00:00Z")]),
        NOW,
        deadline(),
    )
    .await;
    let coverage_posts = || async {
        requests(&bed.slack, "/api/chat.postMessage")
            .await
            .into_iter()
            .filter(|b| b.to_string().contains("ap-south-1"))
            .count()
    };
    agg.tick(NOW + 14 * 60, deadline()).await.unwrap();
    assert_eq!(
        coverage_posts().await,
        0,
        "two missed heartbeats are not yet silence"
    );
    agg.tick(NOW + 15 * 60, deadline()).await.unwrap();
    agg.tick(NOW + 20 * 60, deadline()).await.unwrap();
    assert_eq!(coverage_posts().await, 1, "alerted once");
    agg.handle_batch(
        &batch(&[heartbeat("2026-10-14T15:21:00Z")]),
        NOW + 21 * 60,
        deadline(),
    )
    .await;
    agg.tick(NOW + 22 * 60, deadline()).await.unwrap();
    assert_eq!(coverage_posts().await, 2, "and once on recovery");
}

#[tokio::test]
async fn a_late_link_announces_the_merge_in_the_absorbed_thread_even_after_a_slack_failure() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let agg = &bed.aggregator;
    // Two sessions, each announced on its own.
    let a = envelope(
        &activity_as(&member, 80, "a", "ASIAAAAAAAAAAAAAAAA1"),
        Some(&member),
    );
    let b = envelope(
        &activity_as(&member, 81, "b", "ASIABBBBBBBBBBBBBBB2"),
        Some(&member),
    );
    agg.handle_batch(&batch(&[a]), NOW, deadline()).await;
    agg.handle_batch(&batch(&[b]), NOW, deadline()).await;
    let a_id = agg
        .store
        .session_of_event("00000000-0000-4000-8000-000000000080")
        .await
        .unwrap()
        .unwrap();
    let b_id = agg
        .store
        .session_of_event("00000000-0000-4000-8000-000000000081")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(a_id, b_id);

    // Slack fails just when the link arrives.
    bed.slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&bed.slack)
        .await;
    let link = envelope(
        &activity_as(&member, 82, "a", "ASIABBBBBBBBBBBBBBB2"),
        Some(&member),
    );
    let response = agg.handle_batch(&batch(&[link]), NOW, deadline()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        agg.store
            .session_of_event("00000000-0000-4000-8000-000000000081")
            .await
            .unwrap(),
        Some(a_id.clone()),
        "b merged into a, the earlier"
    );
    assert!(
        agg.store.pending().await.unwrap().contains(&b_id),
        "the notice is owed"
    );

    // Slack recovers: the tick sends the notice into b's thread, once.
    bed.slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "ts": "1791990002.000300"})),
        )
        .mount(&bed.slack)
        .await;
    agg.tick(NOW + 60, deadline()).await.unwrap();
    agg.tick(NOW + 120, deadline()).await.unwrap();
    let notices: Vec<Value> = requests(&bed.slack, "/api/chat.postMessage")
        .await
        .into_iter()
        .filter(|b| b.to_string().contains(&a_id) && b.to_string().contains(&b_id))
        .collect();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(notices[0]["thread_ts"], "1791990000.000100");
    assert!(!agg.store.pending().await.unwrap().contains(&b_id));
}

#[tokio::test]
async fn follow_ups_deferred_by_the_digest_interval_are_listed_in_the_thread_by_the_tick() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let agg = &bed.aggregator;
    let first = envelope(&activity(&member, 90), Some(&member));
    agg.handle_batch(&batch(&[first]), NOW, deadline()).await;
    // Two more events within the digest interval: deferred, not lost.
    for n in [91, 92] {
        let body = envelope(&activity(&member, n), Some(&member));
        let response = agg.handle_batch(&batch(&[body]), NOW + 5, deadline()).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let replies = || async {
        requests(&bed.slack, "/api/chat.postMessage")
            .await
            .into_iter()
            .filter(|b| b.get("thread_ts").is_some())
            .collect::<Vec<Value>>()
    };
    assert!(replies().await.is_empty(), "deferred within the interval");

    agg.tick(NOW + 10, deadline()).await.unwrap();
    let replies = replies().await;
    assert_eq!(replies.len(), 1, "{replies:#?}");
    let text = replies[0].to_string();
    assert!(text.contains("2 new events"), "{text}");
    assert!(agg.store.pending().await.unwrap().is_empty());
}
