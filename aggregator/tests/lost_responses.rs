//! Writes that DynamoDB made but whose answer was lost (the SDK resends
//! them) or that failed just after Slack accepted a message: the
//! aggregator must neither drop the alert nor post it twice. Faults come
//! from the test support's proxy, scripted per operation.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use glasswatch_aggregator::store::{Evidence, Store, create_table};
use glasswatch_core::verify::Verdict;
use test_support::chaos::{ChaosProxy, Fault, Profile, Scripted};
use test_support::pipeline::{Options, Pipeline};
use test_support::scenario::{INCIDENT_START, Scenario};
use test_support::{account_credentials, config_with, moto_endpoint, unique};

const UPDATE: &str = "DynamoDB_20120810.UpdateItem";
const PUT: &str = "DynamoDB_20120810.PutItem";

/// A store whose requests go through a fault proxy.
async fn proxied_store() -> (Store, ChaosProxy) {
    let proxy = ChaosProxy::start(&moto_endpoint(), Profile::Aws, 7)
        .await
        .unwrap();
    let credentials = account_credentials("310987654321", "eu-west-1")
        .await
        .unwrap();
    let direct = config_with(&credentials, "eu-west-1", &moto_endpoint()).await;
    let table = unique("gw-lost");
    create_table(&aws_sdk_dynamodb::Client::new(&direct), &table)
        .await
        .unwrap();
    let proxied = config_with(&credentials, "eu-west-1", &proxy.url()).await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&proxied), table, 3600, 30);
    (store, proxy)
}

fn lose(operation: &str) -> Scripted {
    Scripted {
        contains: operation.to_owned(),
        after: 0,
        fault: Fault::LoseResponse,
        count: 1,
    }
}

#[tokio::test]
async fn a_root_claim_whose_answer_was_lost_is_still_the_claimants() {
    let (store, proxy) = proxied_store().await;
    let event: glasswatch_core::session::SessionEvent = serde_json::from_value(serde_json::json!({
        "event_id": "e-claim", "time": 1_795_165_200, "event_time": "2026-11-20T09:00:00Z",
        "event_source": "iam.amazonaws.com", "event_name": "ListUsers", "account": "111122223333",
        "region": "us-east-1", "principal": "p", "severity": "critical", "kinds": ["session_activity"],
        "keys": ["key:ASIALOSTCLAIM"], "summary": "s", "source_ip": null, "user_agent": null,
        "mfa": "unknown", "error_code": null
    }))
    .unwrap();
    let evidence = Evidence {
        verdict: &Verdict::Verified,
        sender: Some("111122223333"),
        signal_json: "{}",
    };
    let id = store
        .ingest(&event, &evidence)
        .await
        .unwrap()
        .session_id()
        .to_owned();
    proxy.script(lose(UPDATE));
    assert!(
        store.claim_root(&id, "me", 100, 0).await.unwrap(),
        "{}",
        proxy.report()
    );
    assert_eq!(proxy.faults(), 1, "the claim's first answer was lost");
    assert!(!store.claim_root(&id, "someone else", 100, 0).await.unwrap());
}

#[tokio::test]
async fn an_untrusted_signal_whose_write_answer_was_lost_is_still_new() {
    let (store, proxy) = proxied_store().await;
    let verdict = Verdict::Spoofed {
        sender: "a".into(),
        claimed: "b".into(),
    };
    let evidence = Evidence {
        verdict: &verdict,
        sender: Some("a"),
        signal_json: "{}",
    };
    proxy.script(lose(PUT));
    assert!(
        store
            .record_untrusted("e-spoof", &evidence, 100)
            .await
            .unwrap(),
        "{}",
        proxy.report()
    );
    assert_eq!(proxy.faults(), 1);
    assert!(
        !store
            .record_untrusted("e-spoof", &evidence, 101)
            .await
            .unwrap(),
        "alerted once"
    );
}

#[tokio::test]
async fn a_root_message_is_recorded_even_when_dynamodb_fails_right_after_slack_took_it() {
    let org = test_support::org::Org::create().await.unwrap();
    let scenario = Scenario::incident(&org, INCIDENT_START, "lost").unwrap();
    let pipeline = Pipeline::start(org, Options::default()).await.unwrap();
    // The root's claim passes; the write of its ts fails three times,
    // which is all the SDK's own retries.
    pipeline.aws_proxy.script(Scripted {
        contains: UPDATE.to_owned(),
        after: 1,
        fault: Fault::ServerError,
        count: 3,
    });
    let root = scenario.event("root-login-prod");
    pipeline.deliver(&root.envelope).await.unwrap();
    let started = Instant::now();
    let report = pipeline.drain().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}\n{}", pipeline.fault_report());
    assert_eq!(pipeline.aws_proxy.faults(), 3);
    let sessions = pipeline.stored_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].item.root_ts.is_some(), "{:?}", sessions[0].item);
    assert_eq!(pipeline.slack.roots().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(30));
}
