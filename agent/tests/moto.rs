//! The agent against moto: a signal put onto a bus whose rule routes to
//! SQS is read back and checked field by field.
//!
//! Locally the agent's EventBridge client has the same (moto default)
//! account as the bus: moto cannot `PutEvents` to another account's bus by
//! ARN. On AWS the bus policy admits the organization instead.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use glasswatch_agent::{Agent, AgentConfig, Outcome};
use glasswatch_core::signal::{SIGNAL_DETAIL_TYPE, SIGNAL_SOURCE, Signal, signal_id};
use serde_json::Value;
use test_support::{drain_queue, new_signal_bus, sdk_config};

#[tokio::test]
async fn signal_round_trips_through_a_moto_bus() {
    let aws = sdk_config("eu-west-1").await;
    let events = aws_sdk_eventbridge::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let (bus_arn, queue_url) = new_signal_bus(&events, &sqs, "gw-central").await.unwrap();

    let watch = r#"{"iam_users":["break-glass-1"],"roles":["BreakGlassRole"],"sso_permission_sets":[],"root_sign_in":true}"#;
    let config = AgentConfig::from_lookup(|name| match name {
        "GLASSWATCH_BUS_ARN" => Some(bus_arn.clone()),
        "GLASSWATCH_WATCH" => Some(watch.to_owned()),
        _ => None,
    })
    .unwrap();
    let agent = Agent {
        config,
        events: events.clone(),
        cloudtrail: aws_sdk_cloudtrail::Client::new(&aws),
        sqs: aws_sdk_sqs::Client::new(&aws),
    };
    let fixture: Value = serde_json::from_str(include_str!(
        "../../core/tests/fixtures/12-assume-break-glass-role-cross-account.json"
    ))
    .unwrap();
    let outcome = agent.handle(&fixture, None).await.unwrap();
    let record = &fixture["detail"];
    let event_id = record["eventID"].as_str().unwrap();
    assert_eq!(
        outcome,
        Outcome::Relayed {
            signal_id: signal_id(event_id),
            detections: 1
        }
    );

    let bodies = drain_queue(&sqs, &queue_url).await.unwrap();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["source"], SIGNAL_SOURCE);
    assert_eq!(body["detail-type"], SIGNAL_DETAIL_TYPE);
    let signal: Signal = serde_json::from_value(body["detail"].clone()).unwrap();
    assert_eq!(signal.signal_id, signal_id(event_id));
    assert_eq!(signal.schema_version, 1);
    assert_eq!(signal.agent_version, glasswatch_agent::AGENT_VERSION);
    assert_eq!(
        signal.received_account,
        fixture["account"].as_str().unwrap()
    );
    assert_eq!(signal.received_region, fixture["region"].as_str().unwrap());
    assert_eq!(&signal.record, record);
    assert!(signal.dropped_fields.is_empty());
    let d = &signal.detections[0];
    assert_eq!(d.kind.as_str(), "break_glass_role_assumed");
    assert_eq!(d.event_id, event_id);
    assert_eq!(d.account, record["recipientAccountId"].as_str().unwrap());
    assert!(d.target.as_deref().unwrap().ends_with("BreakGlassRole"));
    assert!(!d.keys.is_empty());
}
