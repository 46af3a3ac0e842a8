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

/// The ids of the messages a batch response reports failed.
fn failed(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
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
    assert_eq!(failed(&response), ["m0", "m2"]);
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

/// Posts Slack received whose text contains `needle`.
async fn posts_with(slack: &MockServer, needle: &str) -> Vec<Value> {
    requests(slack, "/api/chat.postMessage")
        .await
        .into_iter()
        .filter(|b| b.to_string().contains(needle))
        .collect()
}

/// The documented example configures a channel by name. `chat.update`
/// needs the id the root post answered with: sent with the name, it
/// fails, and the digest before it must not be posted again and again.
#[tokio::test]
async fn a_channel_given_by_name_gets_one_digest_and_updates_by_id() {
    let bed = bed_in(200, "#break-glass").await;
    let member = bed.member.clone();
    let agg = &bed.aggregator;
    let first = envelope(&activity(&member, 300), Some(&member));
    agg.handle_batch(&batch(&[first]), NOW, deadline()).await;
    let later = envelope(&activity(&member, 301), Some(&member));
    agg.handle_batch(&batch(&[later]), NOW + 120, deadline())
        .await;
    for minute in 3..6 {
        agg.tick(NOW + minute * 60, deadline()).await.unwrap();
    }
    let digests: Vec<Value> = requests(&bed.slack, "/api/chat.postMessage")
        .await
        .into_iter()
        .filter(|b| b.get("thread_ts").is_some())
        .collect();
    assert_eq!(
        digests.len(),
        1,
        "one digest, never re-posted: {digests:#?}"
    );
    let updates = requests(&bed.slack, "/api/chat.update").await;
    assert!(!updates.is_empty());
    assert!(
        updates.iter().all(|u| u["channel"] == "C0GLASS"),
        "{updates:#?}"
    );
    assert!(agg.store.pending().await.unwrap().is_empty());
}

/// A session far busier than the digest interval: what waits for the
/// next digest stays a bounded list, and the digest still counts all.
#[tokio::test]
async fn the_pending_digest_list_is_capped_and_the_digest_counts_everything() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let agg = &bed.aggregator;
    agg.handle_batch(
        &batch(&[envelope(&activity(&member, 1000), Some(&member))]),
        NOW,
        deadline(),
    )
    .await;
    let bodies: Vec<String> = (1001..1151)
        .map(|n| envelope(&activity(&member, n), Some(&member)))
        .collect();
    for chunk in bodies.chunks(10) {
        let response = agg.handle_batch(&batch(chunk), NOW + 5, deadline()).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let aws = sdk_config("eu-west-1").await;
    let pending = aws_sdk_dynamodb::Client::new(&aws)
        .query()
        .table_name(agg.store.table())
        .key_condition_expression("pk = :p")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S("PENDING".into()),
        )
        .send()
        .await
        .unwrap();
    let listed = pending.items()[0]["events"].as_ss().unwrap().len();
    assert!(
        listed <= glasswatch_aggregator::store::slack_state::MAX_DEFERRED + 10,
        "{listed} ids kept"
    );
    agg.tick(NOW + 10, deadline()).await.unwrap();
    let digest = posts_with(&bed.slack, "150 new events").await;
    assert_eq!(digest.len(), 1);
}

/// One failing Slack post must not starve the rest of the tick.
#[tokio::test]
async fn a_failing_item_does_not_stop_the_tick() {
    let bed = bed(200).await;
    let (a, b) = if bed.member < bed.other_member {
        (bed.member.clone(), bed.other_member.clone())
    } else {
        (bed.other_member.clone(), bed.member.clone())
    };
    let agg = &bed.aggregator;
    // Two silent agents; Slack refuses the alert for the first.
    let beats = [
        heartbeat_envelope(&a, "ap-south-1", "2026-10-14T15:00:00Z", "logging"),
        heartbeat_envelope(&b, "ap-south-1", "2026-10-14T15:00:00Z", "logging"),
    ];
    agg.handle_batch(&batch(&beats), NOW, deadline()).await;
    // And a session whose root message is still to be posted.
    let pending_body = envelope(&activity(&b, 500), Some(&b));
    bed.slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&bed.slack)
        .await;
    agg.handle_batch(&batch(&[pending_body]), NOW, deadline())
        .await;
    bed.slack.reset().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_string_contains(a.as_str()))
        .respond_with(ResponseTemplate::new(500))
        .mount(&bed.slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"ok": true, "ts": "1791990003.000100", "channel": "C0GLASS"}),
            ),
        )
        .mount(&bed.slack)
        .await;
    let result = agg.tick(NOW + 16 * 60, deadline()).await;
    assert!(result.is_err(), "a failed item is reported: {result:?}");
    let silent_b = posts_with(&bed.slack, &b).await;
    assert!(
        silent_b
            .iter()
            .any(|p| p.to_string().contains("ap-south-1")),
        "the other agent's silence is alerted"
    );
    assert!(
        silent_b.iter().any(
            |p| p.to_string().contains("ListUsers") || p.to_string().contains("BreakGlassRole")
        ),
        "the pending session is posted"
    );
}

/// Organizations down: events are still stored. A container that never
/// read the account list relies on the bus policy; one that did (or the
/// list kept in the table) still refuses accounts outside it.
#[tokio::test]
async fn events_are_stored_whatever_organizations_does() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let aws = sdk_config("eu-west-1").await;
    let dead = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "t", "t", None, None, "t",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let down = |agg: &Aggregator| Aggregator {
        config: agg.config.clone(),
        store: agg.store.clone(),
        slack: SlackClient::bot_with_api_base("xoxb-test", &format!("{}/api/", bed.slack.uri()))
            .unwrap()
            .with_max_attempts(1)
            .into(),
        accounts: glasswatch_aggregator::accounts::Accounts::new(
            aws_sdk_organizations::Client::new(&dead),
            Duration::from_secs(300),
        ),
    };
    // Never a list: stored all the same.
    let cold = down(&bed.aggregator);
    let body = envelope(&activity(&member, 600), Some(&member));
    let response = cold.handle_batch(&batch(&[body]), NOW, deadline()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(
        cold.store
            .session_of_event("00000000-0000-4000-8000-000000000600")
            .await
            .unwrap()
            .is_some()
    );
    // A list was read once (and kept in the table): a new container with
    // Organizations down uses it.
    bed.aggregator
        .handle_batch(
            &batch(&[envelope(&activity(&member, 601), Some(&member))]),
            NOW,
            deadline(),
        )
        .await;
    let warm = down(&bed.aggregator);
    let stranger = envelope(&activity("999988887777", 602), Some("999988887777"));
    let known = envelope(&activity(&member, 603), Some(&member));
    let response = warm
        .handle_batch(&batch(&[stranger, known]), NOW, deadline())
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(
        warm.store
            .session_of_event("00000000-0000-4000-8000-000000000603")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        warm.store
            .session_of_event("00000000-0000-4000-8000-000000000602")
            .await
            .unwrap()
            .is_none(),
        "an account outside the kept list is still refused"
    );
    let _ = aws;
}

/// The Slack credential is read when the first message needs it: a
/// missing secret at start stops nothing from being stored, and a token
/// Slack refuses is read again.
#[tokio::test]
async fn the_slack_secret_is_read_when_needed_and_again_after_invalid_auth() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let aws = sdk_config("eu-west-1").await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let name = unique("glasswatch/slack-lazy");
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::header(
            "authorization",
            "Bearer xoxb-new",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"ok": true, "ts": "1791990009.000100", "channel": "C0GLASS"}),
            ),
        )
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "invalid_auth"})),
        )
        .mount(&slack)
        .await;
    let mut config = bed.aggregator.config.clone();
    config.slack_secret_arn = name.clone();
    config.slack_api_url = format!("{}/api/", slack.uri());
    let agg = Aggregator::new(
        config.clone(),
        &aws,
        glasswatch_aggregator::notifier::Slack::from_secret(&config, secrets.clone()),
    );
    // No secret yet: the event is stored, the message pending.
    let body = envelope(&activity(&member, 700), Some(&member));
    let response = agg.handle_batch(&batch(&[body]), NOW, deadline()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let session = agg
        .store
        .session_of_event("00000000-0000-4000-8000-000000000700")
        .await
        .unwrap()
        .unwrap();
    assert!(agg.store.pending().await.unwrap().contains(&session));
    // The secret appears with a token Slack no longer takes, then is
    // rotated: the refusal makes the sender read it again.
    secrets
        .create_secret()
        .name(&name)
        .secret_string("xoxb-old")
        .send()
        .await
        .unwrap();
    let _ = agg.tick(NOW + 60, deadline()).await;
    secrets
        .put_secret_value()
        .secret_id(&name)
        .secret_string("xoxb-new")
        .send()
        .await
        .unwrap();
    agg.tick(NOW + 120, deadline()).await.unwrap();
    let item = agg.store.session(&session).await.unwrap().unwrap();
    assert_eq!(item.root_ts.as_deref(), Some("1791990009.000100"));
}

/// Forgery: heartbeats only from their own account and for targeted
/// regions; one spoofing alert per sender per window, with a count of
/// those held back; correlation keys from the record, not the message.
#[tokio::test]
async fn forged_heartbeats_are_refused_and_spoof_alerts_are_rate_limited() {
    let bed = bed(200).await;
    let (member, other) = (bed.member.clone(), bed.other_member.clone());
    let mut config = bed.aggregator.config.clone();
    config.regions = vec!["us-east-1".into(), "eu-west-1".into()];
    let aws = sdk_config("eu-west-1").await;
    let client = SlackClient::bot_with_api_base("xoxb-test", &format!("{}/api/", bed.slack.uri()))
        .unwrap()
        .with_max_attempts(1);
    let agg = Aggregator::new(config, &aws, client);
    let beat = |account: &str, region: &str| {
        heartbeat_envelope(account, region, "2026-10-14T15:00:00Z", "logging")
    };
    let mut unsent: Value = serde_json::from_str(&beat(&member, "eu-west-1")).unwrap();
    unsent.as_object_mut().unwrap().remove("account");
    let response = agg
        .handle_batch(
            &batch(&[
                beat(&member, "ap-south-1"),
                unsent.to_string(),
                beat(&member, "eu-west-1"),
            ]),
            NOW,
            deadline(),
        )
        .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["m0", "m1"],
        "an untargeted region and a heartbeat with no sender are refused"
    );

    // Forged signals by the dozen: one alert now, one a window later that
    // says how many were held back. All are kept as evidence.
    let forged: Vec<String> = (800..812)
        .map(|n| envelope(&activity(&member, n), Some(&other)))
        .collect();
    agg.handle_batch(&batch(&forged[..6]), NOW, deadline())
        .await;
    agg.handle_batch(&batch(&forged[6..]), NOW + 60, deadline())
        .await;
    assert_eq!(posts_with(&bed.slack, "Spoofed signal").await.len(), 1);
    let later = envelope(&activity(&member, 812), Some(&other));
    agg.handle_batch(&batch(&[later]), NOW + 700, deadline())
        .await;
    let alerts = posts_with(&bed.slack, "Spoofed signal").await;
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts[1].to_string().contains("11 more from this sender"),
        "{}",
        alerts[1]
    );
}

/// A signal whose detections carry another session's keys cannot join
/// that session: the keys come from the record.
#[tokio::test]
async fn correlation_keys_come_from_the_record_not_the_message() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let agg = &bed.aggregator;
    agg.handle_batch(
        &batch(&[envelope(&activity(&member, 900), Some(&member))]),
        NOW,
        deadline(),
    )
    .await;
    let victim = agg
        .store
        .session_of_event("00000000-0000-4000-8000-000000000900")
        .await
        .unwrap()
        .unwrap();
    // Another session's event, its detections claiming the first's key.
    let record = activity_as(&member, 901, "someone-else", "ASIAOTHERSESSION0001");
    let mut signal: Value = serde_json::from_str(&envelope(&record, Some(&member))).unwrap();
    for d in signal["detail"]["detections"].as_array_mut().unwrap() {
        d["keys"] = json!([{"kind": "access_key", "value": "ASIAW2LM9BGRSESSN8C4"}]);
    }
    agg.handle_batch(&batch(&[signal.to_string()]), NOW, deadline())
        .await;
    let joined = agg
        .store
        .session_of_event("00000000-0000-4000-8000-000000000901")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(joined, victim);
}

/// Tamper rules send CloudTrail events to the central bus directly, so
/// an agent that was stopped (concurrency 0) or rewritten cannot hide its
/// own tampering: the aggregator classifies them itself.
#[tokio::test]
async fn tamper_events_that_reach_the_bus_without_an_agent_are_classified_and_alerted() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let event = json!({
        "version": "0", "id": "6a7e1d2c-0000-4000-8000-000000000001",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.lambda",
        "account": member, "time": "2026-10-14T15:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{member}:assumed-role/Admin/mallory"), "accountId": member,
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{member}:role/Admin"), "userName": "Admin"}}},
            "eventTime": "2026-10-14T15:00:00Z", "eventSource": "lambda.amazonaws.com",
            "eventName": "PutFunctionConcurrency20171031", "awsRegion": "eu-west-1",
            "sourceIPAddress": "203.0.113.99", "userAgent": "aws-cli/2.31.18",
            "requestParameters": {"functionName": "glasswatch-agent", "reservedConcurrentExecutions": 0},
            "responseElements": {"reservedConcurrentExecutions": 0},
            "eventID": "00000000-0000-4000-8000-000000000950", "readOnly": false,
            "eventType": "AwsApiCall", "recipientAccountId": member
        }
    });
    let noise = json!({
        "version": "0", "id": "6a7e1d2c-0000-4000-8000-000000000002",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.lambda",
        "account": member, "time": "2026-10-14T15:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": {
            "eventVersion": "1.09", "userIdentity": {"type": "AssumedRole", "accountId": member},
            "eventTime": "2026-10-14T15:00:00Z", "eventSource": "lambda.amazonaws.com",
            "eventName": "PutFunctionConcurrency20171031", "awsRegion": "eu-west-1",
            "requestParameters": {"functionName": "payments-api"},
            "eventID": "00000000-0000-4000-8000-000000000951", "eventType": "AwsApiCall",
            "recipientAccountId": member
        }
    });
    let agg = &bed.aggregator;
    let response = agg
        .handle_batch(
            &batch(&[event.to_string(), noise.to_string()]),
            NOW,
            deadline(),
        )
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(
        agg.store
            .session_of_event("00000000-0000-4000-8000-000000000950")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        agg.store
            .session_of_event("00000000-0000-4000-8000-000000000951")
            .await
            .unwrap()
            .is_none()
    );
    let roots = posts_with(&bed.slack, "PutFunctionConcurrency").await;
    assert_eq!(roots.len(), 1, "{roots:#?}");
}

/// Glasswatch's own alarms reach Slack through the queue (SNS), once per
/// notification however often it is delivered.
#[tokio::test]
async fn alarm_notifications_are_posted_once() {
    let bed = bed(200).await;
    let alarm = json!({
        "AlarmName": "glasswatch-signals-dead-lettered",
        "AlarmDescription": "Signals reached the dead-letter queue; they were not stored.",
        "AWSAccountId": "310987654321", "Region": "EU (Ireland)",
        "NewStateValue": "ALARM", "NewStateReason": "Threshold Crossed: 1 datapoint [3.0] was greater than the threshold (0.0).",
        "StateChangeTime": "2026-10-14T15:00:00.000+0000"
    });
    let notification = json!({
        "Type": "Notification", "MessageId": unique("sns"),
        "TopicArn": "arn:aws:sns:eu-west-1:310987654321:glasswatch-alarms",
        "Subject": "ALARM", "Message": alarm.to_string(), "Timestamp": "2026-10-14T15:00:01.000Z"
    })
    .to_string();
    let agg = &bed.aggregator;
    let response = agg
        .handle_batch(
            &batch(&[notification.clone(), notification]),
            NOW,
            deadline(),
        )
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let posted = posts_with(&bed.slack, "glasswatch-signals-dead-lettered").await;
    assert_eq!(posted.len(), 1, "{posted:#?}");
}

/// Every account × region deploy targeted is expected to report, so an
/// agent that never came up alerts as well as one that went silent.
#[tokio::test]
async fn targeted_cells_that_never_report_are_alerted() {
    let bed = bed(200).await;
    let member = bed.member.clone();
    let agg = &bed.aggregator;
    agg.store
        .save_targets(
            &glasswatch_aggregator::store::coverage::Targets {
                accounts: vec![member.clone()],
                regions: vec!["us-east-1".into(), "ap-south-1".into()],
                whole_organization: false,
            },
            NOW,
        )
        .await
        .unwrap();
    agg.handle_batch(
        &batch(&[heartbeat_envelope(
            &member,
            "ap-south-1",
            "2026-10-14T15:00:00Z",
            "logging",
        )]),
        NOW,
        deadline(),
    )
    .await;
    agg.tick(NOW, deadline()).await.unwrap();
    for minute in [5, 10, 14] {
        let beat = heartbeat_envelope(
            &member,
            "ap-south-1",
            &format!("2026-10-14T15:{minute:02}:00Z"),
            "logging",
        );
        agg.handle_batch(&batch(&[beat]), NOW + minute * 60, deadline())
            .await;
    }
    agg.tick(NOW + 15 * 60, deadline()).await.unwrap();
    let never = posts_with(&bed.slack, "never").await;
    assert_eq!(never.len(), 1, "{never:#?}");
    assert!(never[0].to_string().contains("us-east-1"));
}

mod reconcile;
