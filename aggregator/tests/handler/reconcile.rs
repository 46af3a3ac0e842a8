//! The reconciler on moto (S3, DynamoDB, Organizations) with the recording
//! Slack: the trail's log files held against what the fast path
//! delivered.

use glasswatch_aggregator::reconcile::{FileOutcome, Reconciler};
use glasswatch_aggregator::store::trail::LogFileItem;
use glasswatch_core::trail::TrailConfig;
use test_support::chaos::{ChaosProxy, Fault, Profile, Scripted};
use test_support::trail::{gzip_log_file, log_file_key, put, sns_notification, trail_bucket};

use super::*;

/// The trail reads ten minutes after the incident.
const LATER: i64 = NOW + 900;
const BROKEN: &str = r#"{"eventID":"broken","userIdentity":{"userName":"break-glass-1"}}"#;

struct Trail {
    /// Its aggregator is the fast path's too, as on AWS: one table.
    reconciler: Reconciler,
    slack: MockServer,
    member: String,
    other_member: String,
    bucket: String,
    s3: aws_sdk_s3::Client,
}

fn config(bucket: &str) -> TrailConfig {
    serde_json::from_value(json!({
        "bucket": bucket,
        "bucket_account": "123456789012",
        "notification": "sns",
        "topic_arn": "arn:aws:sns:us-east-1:123456789012:org-trail",
    }))
    .unwrap()
}

/// A bed with an empty trail bucket, whose reconciler reads S3 at
/// `s3_endpoint` (a proxy in front of moto), else moto itself.
async fn trail_at(s3_endpoint: Option<&str>) -> Trail {
    let bed = bed(200).await;
    let bucket = unique("gw-trail");
    let s3 = glasswatch_aggregator::s3::client(&sdk_config("us-east-1").await);
    trail_bucket(&s3, &bucket, &[]).await.unwrap();
    let reader = match s3_endpoint {
        Some(endpoint) => glasswatch_aggregator::s3::client(
            &test_support::sdk_config_at(endpoint, "us-east-1").await,
        ),
        None => s3.clone(),
    };
    Trail {
        reconciler: Reconciler::new(bed.aggregator, reader, config(&bucket)),
        slack: bed.slack,
        member: bed.member,
        other_member: bed.other_member,
        bucket,
        s3,
    }
}

async fn trail() -> Trail {
    trail_at(None).await
}

impl Trail {
    /// A log file delivered to the bucket.
    async fn deliver(&self, key: &str, records: &[Value]) {
        put(&self.s3, &self.bucket, key, &gzip_log_file(records))
            .await
            .unwrap();
    }

    fn notification(&self, key: &str) -> String {
        sns_notification(&self.bucket, &[key])
    }

    /// The notification of one log file, processed at `now`: the file read.
    async fn reconcile(&self, key: &str, now: i64) -> LogFileItem {
        let outcomes = self
            .reconciler
            .message(&self.notification(key), now, deadline())
            .await
            .unwrap();
        match outcomes.as_slice() {
            [FileOutcome::Read(file)] => (**file).clone(),
            other => panic!("expected one log file read, got {other:?}"),
        }
    }
}

fn key(account: &str, unique: &str) -> String {
    log_file_key(account, "us-east-1", "20261014T1510Z", unique)
}

fn roots(posts: &[Value]) -> Vec<String> {
    posts
        .iter()
        .filter(|p| p.get("thread_ts").is_none())
        .map(Value::to_string)
        .collect()
}

#[tokio::test]
async fn a_break_glass_event_the_fast_path_dropped_is_recovered_once_from_the_trail() {
    let t = trail().await;
    let member = &t.member;
    let assume = record("11-assume-break-glass-role-by-break-glass-1.json", member);
    let noise = record("08-negative-alice-console-login.json", member);
    let file = key(member, "a1");
    t.deliver(&file, &[noise, assume.clone(), activity(member, 80)])
        .await;
    let body = t.notification(&file);
    let done = t.reconcile(&file, LATER).await;
    assert_eq!(done.records, 3);
    assert_eq!(done.detections, 2);
    assert_eq!(done.recovered.len(), 2, "{done:?}");

    // Stored, from the trail, in one session with its root message.
    let store = &t.reconciler.aggregator.store;
    let assume_id = assume["eventID"].as_str().unwrap();
    assert_eq!(store.event_from_trail(assume_id).await.unwrap(), Some(true));
    let session = store.session_of_event(assume_id).await.unwrap().unwrap();
    let item = store.session(&session).await.unwrap().unwrap();
    assert_eq!(item.session.event_count, 2);
    assert_eq!(item.session.recovered, 2);
    let sent = requests(&t.slack, "/api/chat.postMessage").await;
    let roots = roots(&sent);
    assert_eq!(
        roots.len(),
        2,
        "a root and the missed-path alert: {roots:#?}"
    );
    assert!(
        roots
            .iter()
            .any(|p| p.contains("break-glass-1") && p.contains("recovered from the trail")),
        "{roots:#?}"
    );
    let missed = roots
        .iter()
        .find(|p| p.contains("Missed by the fast path"))
        .unwrap();
    assert!(
        missed.contains(member.as_str())
            && missed.contains("us-east-1")
            && missed.contains(assume_id),
        "{missed}"
    );

    // The same notification twice more (SQS redelivery, SNS retry): the
    // file is done, nothing read, nothing posted.
    let again = t
        .reconciler
        .handle_batch(
            &batch(&[body.clone(), body.clone()]),
            LATER + 60,
            deadline(),
        )
        .await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!(
        t.reconciler
            .message(&body, LATER + 60, deadline())
            .await
            .unwrap(),
        [FileOutcome::Done]
    );
    assert_eq!(
        requests(&t.slack, "/api/chat.postMessage").await.len(),
        sent.len()
    );
    let item = store.session(&session).await.unwrap().unwrap();
    assert_eq!(item.session.event_count, 2, "stored exactly once");
    let progress = store.trail_progress().await.unwrap();
    let mine = progress.iter().find(|p| &p.account == member).unwrap();
    assert_eq!(mine.last_key, file);
    assert_eq!(mine.lag_secs(), LATER - 1_791_990_600);
}

#[tokio::test]
async fn an_event_on_both_paths_is_stored_once_and_only_the_missed_one_is_alerted() {
    let t = trail().await;
    let member = &t.member;
    let file = key(member, "b1");
    t.deliver(&file, &[activity(member, 81), activity(member, 82)])
        .await;
    // The fast path delivers 81 first.
    let aggregator = &t.reconciler.aggregator;
    let fast = aggregator
        .handle_batch(
            &batch(&[envelope(&activity(member, 81), Some(member))]),
            NOW,
            deadline(),
        )
        .await;
    assert!(fast.batch_item_failures.is_empty());
    let before = requests(&t.slack, "/api/chat.postMessage").await.len();
    let done = t.reconcile(&file, LATER).await;
    assert_eq!(done.detections, 2);
    assert_eq!(done.recovered, ["00000000-0000-4000-8000-000000000082"]);
    let store = &aggregator.store;
    assert_eq!(
        store
            .event_from_trail("00000000-0000-4000-8000-000000000081")
            .await
            .unwrap(),
        Some(false),
        "the fast path's copy stays as it was"
    );
    let session = store
        .session_of_event("00000000-0000-4000-8000-000000000081")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .session(&session)
            .await
            .unwrap()
            .unwrap()
            .session
            .event_count,
        2
    );
    let sent = requests(&t.slack, "/api/chat.postMessage").await;
    let missed: Vec<String> = sent[before..]
        .iter()
        .map(Value::to_string)
        .filter(|p| p.contains("Missed by the fast path"))
        .collect();
    assert_eq!(missed.len(), 1, "{sent:#?}");
    assert!(missed[0].contains("000000000082") && !missed[0].contains("000000000081"));
    // The session's thread lists the recovered event as such.
    assert!(
        sent[before..]
            .iter()
            .map(Value::to_string)
            .any(|p| p.contains("thread_ts") && p.contains("recovered from the trail")),
        "{sent:#?}"
    );
}

#[tokio::test]
async fn a_broken_record_costs_itself_and_a_record_of_another_account_is_alerted_not_joined() {
    let t = trail().await;
    let (member, other) = (&t.member, &t.other_member);
    let file = key(member, "c1");
    let broken: Value = serde_json::from_str(BROKEN).unwrap();
    t.deliver(&file, &[broken, activity(member, 83), activity(other, 84)])
        .await;
    let done = t.reconcile(&file, LATER).await;
    assert_eq!(done.bad.len(), 1, "{done:?}");
    assert_eq!(done.recovered, ["00000000-0000-4000-8000-000000000083"]);
    assert_eq!(done.misplaced, ["00000000-0000-4000-8000-000000000084"]);
    let store = &t.reconciler.aggregator.store;
    assert!(
        store
            .session_of_event("00000000-0000-4000-8000-000000000084")
            .await
            .unwrap()
            .is_none(),
        "a misplaced record joins no session"
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config("eu-west-1").await);
    let kept = dynamodb
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(
                "SPOOFED#00000000-0000-4000-8000-000000000084".into(),
            ),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("SPOOFED".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(kept["verdict"].as_s().unwrap().contains("misplaced"));
    let sent: Vec<String> = requests(&t.slack, "/api/chat.postMessage")
        .await
        .iter()
        .map(Value::to_string)
        .collect();
    let alert = sent
        .iter()
        .find(|p| p.contains("Misplaced record in the trail"))
        .unwrap_or_else(|| panic!("{sent:#?}"));
    assert!(
        alert.contains(member.as_str()) && alert.contains(other.as_str()),
        "{alert}"
    );
}

#[tokio::test]
async fn s3_faults_fail_the_message_and_the_retry_reads_the_file_whole() {
    let proxy = ChaosProxy::start(&test_support::moto_endpoint(), Profile::Aws, 1)
        .await
        .unwrap();
    let t = trail_at(Some(&proxy.url())).await;
    let member = &t.member;
    let file = key(member, "d1");
    let missing = key(member, "d2");
    t.deliver(&file, &[activity(member, 85)]).await;
    // As many 500s and dropped connections as the SDK makes attempts.
    for (fault, count) in [(Fault::ServerError, 2), (Fault::DropBefore, 1)] {
        proxy.script(Scripted {
            contains: "_d1.json.gz".into(),
            after: 0,
            fault,
            count,
        });
    }
    let bodies = [
        t.notification(&file),
        t.notification(&missing),
        sns_notification("someone-elses-bucket", &[&file]),
    ];
    let first = t
        .reconciler
        .handle_batch(&batch(&bodies), LATER, deadline())
        .await;
    assert_eq!(failed(&first), ["m0", "m1", "m2"], "{}", proxy.report());
    let store = &t.reconciler.aggregator.store;
    assert!(store.log_file(&file).await.unwrap().is_none());
    assert!(
        store
            .session_of_event("00000000-0000-4000-8000-000000000085")
            .await
            .unwrap()
            .is_none()
    );

    // SQS delivers them again: S3 answers now, and the missing file has
    // arrived; the other bucket is still refused (its DLQ keeps it).
    t.deliver(&missing, &[activity(member, 86)]).await;
    let retry = t
        .reconciler
        .handle_batch(&batch(&bodies), LATER + 60, deadline())
        .await;
    assert_eq!(failed(&retry), ["m2"]);
    for n in [85, 86] {
        assert_eq!(
            store
                .event_from_trail(&format!("00000000-0000-4000-8000-{n:012}"))
                .await
                .unwrap(),
            Some(true)
        );
    }
    assert_eq!(proxy.faults(), 3, "{}", proxy.report());
}
