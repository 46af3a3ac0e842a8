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

/// An agent on moto relaying to `bus_arn`, with `watch` and `more` of its
/// environment.
fn agent_on(
    aws: &aws_config::SdkConfig,
    bus_arn: &str,
    watch: &str,
    more: &[(&str, String)],
) -> Agent {
    let config = AgentConfig::from_lookup(|name| match name {
        "GLASSWATCH_BUS_ARN" => Some(bus_arn.to_owned()),
        "GLASSWATCH_WATCH" => Some(watch.to_owned()),
        _ => more
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone()),
    })
    .unwrap();
    let events = aws_sdk_eventbridge::Client::new(aws);
    Agent {
        config,
        events: events.clone(),
        cloudtrail: aws_sdk_cloudtrail::Client::new(aws),
        sqs: aws_sdk_sqs::Client::new(aws),
        local_events: events,
    }
}

#[tokio::test]
async fn signal_round_trips_through_a_moto_bus() {
    let aws = sdk_config("eu-west-1").await;
    let events = aws_sdk_eventbridge::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let (bus_arn, queue_url) = new_signal_bus(&events, &sqs, "gw-central").await.unwrap();

    let watch = r#"{"iam_users":["break-glass-1"],"roles":["BreakGlassRole"],"sso_permission_sets":[],"root_sign_in":true}"#;
    let agent = agent_on(&aws, &bus_arn, watch, &[]);
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

/// A follow instruction installs a rule for the key on this region's
/// default bus, aimed at the agent; the event it delivers relays as the
/// session's activity; a wrapper naming another key is refused; an
/// instruction for another account is refused; the heartbeat after the
/// credentials' end removes the rule.
#[tokio::test]
async fn a_follow_instruction_installs_a_rule_that_the_heartbeat_removes_once_expired() {
    let aws = sdk_config("eu-west-1").await;
    let events = aws_sdk_eventbridge::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let (bus_arn, queue_url) = new_signal_bus(&events, &sqs, "gw-follow").await.unwrap();
    let prefix = format!("gwf{}", fastrand::u32(..1_000_000));
    let watch = format!(
        r#"{{"iam_users":["break-glass-1"],"roles":["BreakGlassRole"],"sso_permission_sets":[],"root_sign_in":true,"name_prefix":"{prefix}"}}"#
    );
    let function_arn = format!("arn:aws:lambda:eu-west-1:123456789012:function:{prefix}-agent");
    let agent = agent_on(
        &aws,
        &bus_arn,
        &watch,
        &[
            ("GLASSWATCH_FUNCTION_ARN", function_arn.clone()),
            (
                "GLASSWATCH_DLQ_ARN",
                "arn:aws:sqs:eu-west-1:123456789012:agent-dlq".to_owned(),
            ),
        ],
    );
    let key = format!("ASIAFOLLOW{:010}", fastrand::u64(..10_000_000_000));
    let until = 1_795_000_000;
    let sns = |account: &str| {
        serde_json::json!({"Records": [{"EventSource": "aws:sns", "Sns": {
            "Message": serde_json::json!({
                "account": account, "access_key": key, "until": until,
                "issued_by_event": "11111111-2222-3333-4444-555555555555"
            }).to_string()
        }}]})
    };
    let rule = format!("{prefix}-follow-{key}");
    assert_eq!(
        agent.handle(&sns("123456789012"), None).await.unwrap(),
        Outcome::Following {
            rules: vec![rule.clone()]
        }
    );
    let described = events.describe_rule().name(&rule).send().await.unwrap();
    let pattern: Value = serde_json::from_str(described.event_pattern().unwrap()).unwrap();
    assert_eq!(
        pattern["detail"]["userIdentity"]["accessKeyId"][0],
        key.as_str()
    );
    let targets = events
        .list_targets_by_rule()
        .rule(&rule)
        .send()
        .await
        .unwrap();
    let target = &targets.targets()[0];
    assert_eq!(target.arn(), function_arn);
    let template = target.input_transformer().unwrap().input_template();
    assert!(template.contains("<aws.events.event.json>"), "{template}");

    // Another account's follow is not this agent's to install.
    let err = agent.handle(&sns("210987654321"), None).await.unwrap_err();
    assert!(err.to_string().contains("210987654321"), "{err}");
    assert!(!err.is_retryable());

    // What the rule delivers: an unwatched role's call with the key.
    let mut record: Value = serde_json::from_str(include_str!(
        "../../core/tests/fixtures/12-assume-break-glass-role-cross-account.json"
    ))
    .unwrap();
    record["detail"]["eventName"] = "ListUsers".into();
    record["detail"]["eventSource"] = "iam.amazonaws.com".into();
    record["detail"]["userIdentity"]["accessKeyId"] = key.as_str().into();
    record["detail"]["userIdentity"]["arn"] =
        "arn:aws:sts::123456789012:assumed-role/Unwatched/hop".into();
    record["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] =
        "arn:aws:iam::123456789012:role/Unwatched".into();
    record["detail"]["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] =
        "Unwatched".into();
    record["detail"]["responseElements"] = Value::Null;
    let bare = agent.handle(&record, None).await.unwrap();
    assert_eq!(bare, Outcome::Dropped, "unwatched without the follow");
    let filled = template
        .replace("<aws.events.event.json>", &record.to_string())
        .replace("<aws.events.rule-name>", &rule);
    let wrapped: Value = serde_json::from_str(&filled).unwrap();
    let outcome = agent.handle(&wrapped, None).await.unwrap();
    assert!(matches!(outcome, Outcome::Relayed { .. }), "{outcome:?}");
    let bodies = drain_queue(&sqs, &queue_url).await.unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        bodies[0]["detail"]["detections"][0]["kind"],
        "session_activity"
    );

    // A wrapper claiming a key the record does not carry.
    let mut forged = wrapped.clone();
    forged["glasswatch_follow"]["access_key"] = "ASIAOTHERKEY00000000".into();
    let err = agent.handle(&forged, None).await.unwrap_err();
    assert!(err.to_string().contains("ASIAOTHERKEY00000000"), "{err}");

    // The heartbeat before the end keeps the rule; after it, removes it.
    let heartbeat = |time: &str| {
        serde_json::json!({
            "version": "0", "id": "hb", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": time,
            "region": "eu-west-1", "resources": [], "detail": {}
        })
    };
    agent
        .handle(&heartbeat("2026-11-16T00:00:00Z"), None)
        .await
        .unwrap();
    assert!(events.describe_rule().name(&rule).send().await.is_ok());
    agent
        .handle(&heartbeat("2026-11-20T00:00:00Z"), None)
        .await
        .unwrap();
    assert!(events.describe_rule().name(&rule).send().await.is_err());
}
