//! SDK faults injected with `aws-smithy-mocks`: partial `PutEvents`
//! failures, throttling, persistent failure, and heartbeats.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudtrail::operation::describe_trails::DescribeTrailsOutput;
use aws_sdk_cloudtrail::operation::get_trail_status::GetTrailStatusOutput;
use aws_sdk_cloudtrail::types::Trail;
use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
use aws_sdk_eventbridge::types::PutEventsResultEntry;
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use glasswatch_agent::relay::RelayError;
use glasswatch_agent::{Agent, AgentConfig, AgentError, Outcome};
use glasswatch_core::signal::{Heartbeat, Signal, TrailStatus, signal_id};
use serde_json::{Value, json};

const BUS: &str = "arn:aws:events:eu-west-1:310987654321:event-bus/glasswatch-central";
const FIXTURE: &str =
    include_str!("../../core/tests/fixtures/11-assume-break-glass-role-by-break-glass-1.json");

fn config(budget_ms: &str) -> AgentConfig {
    let watch = r#"{"iam_users":["break-glass-1"],"roles":["BreakGlassRole"],"sso_permission_sets":["BreakGlassAdmin"],"root_sign_in":true}"#;
    AgentConfig::from_lookup(|name| match name {
        "GLASSWATCH_BUS_ARN" => Some(BUS.to_owned()),
        "GLASSWATCH_WATCH" => Some(watch.to_owned()),
        "GLASSWATCH_RELAY_BUDGET_MS" => Some(budget_ms.to_owned()),
        _ => None,
    })
    .unwrap()
}

fn ok_entry(n: usize) -> PutEventsResultEntry {
    PutEventsResultEntry::builder()
        .event_id(format!("id-{n}"))
        .build()
}

fn failed_entry(code: &str) -> PutEventsResultEntry {
    PutEventsResultEntry::builder()
        .error_code(code)
        .error_message("injected")
        .build()
}

fn agent(mode: RuleMode, events: &[&Rule], cloudtrail: &[&Rule], budget_ms: &str) -> Agent {
    Agent {
        config: config(budget_ms),
        events: mock_client!(aws_sdk_eventbridge, mode, events),
        cloudtrail: mock_client!(aws_sdk_cloudtrail, RuleMode::MatchAny, cloudtrail),
        sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &[]),
        local_events: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, &[]),
    }
}

/// Every detail the mocked bus received, per call.
type Seen = Arc<Mutex<Vec<Vec<String>>>>;

fn recording_put_events(
    seen: &Seen,
    respond: impl Fn(usize, usize) -> PutEventsResultEntry + Send + Sync + 'static,
) -> Rule {
    let seen = Arc::clone(seen);
    mock!(aws_sdk_eventbridge::Client::put_events).then_compute_output(move |input| {
        let mut seen = seen.lock().unwrap();
        let call = seen.len();
        let details: Vec<String> = input
            .entries()
            .iter()
            .map(|e| e.detail().unwrap_or_default().to_owned())
            .collect();
        let results: Vec<PutEventsResultEntry> =
            (0..details.len()).map(|i| respond(call, i)).collect();
        seen.push(details);
        let failed = results.iter().filter(|r| r.error_code().is_some()).count() as i32;
        PutEventsOutput::builder()
            .set_entries(Some(results))
            .failed_entry_count(failed)
            .build()
    })
}

#[tokio::test]
async fn partial_failure_resends_only_the_failed_entries() {
    use glasswatch_agent::relay::{Outgoing, relay};
    let seen: Seen = Arc::default();
    // Call 0: entry 1 fails; later calls: all succeed.
    let rule = recording_put_events(&seen, |call, i| {
        if call == 0 && i == 1 {
            failed_entry("InternalFailure")
        } else {
            ok_entry(i)
        }
    });
    let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&rule]);
    let items: Vec<Outgoing> = (0..3)
        .map(|i| Outgoing {
            detail_type: "Glasswatch Signal",
            detail: format!("{{\"n\":{i}}}"),
        })
        .collect();
    let report = relay(&client, BUS, &items, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.relayed, 3);
    assert_eq!(report.retried, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
    assert_eq!(seen[1], ["{\"n\":1}"], "only the failed entry is re-sent");
}

#[tokio::test]
async fn throttling_then_success_relays_the_signal() {
    let throttled = mock!(aws_sdk_eventbridge::Client::put_events)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned()),
        )
        .times(2)
        .output(|| {
            PutEventsOutput::builder()
                .entries(ok_entry(0))
                .failed_entry_count(0)
                .build()
        })
        .build();
    let agent = agent(RuleMode::Sequential, &[&throttled], &[], "5000");
    let event: Value = serde_json::from_str(FIXTURE).unwrap();
    let outcome = agent.handle(&event, None).await.unwrap();
    let Outcome::Relayed {
        signal_id: id,
        detections,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(id, signal_id(event["eventID"].as_str().unwrap()));
    assert_eq!(detections, 1);
    assert_eq!(throttled.num_calls(), 3);
}

#[tokio::test]
async fn persistent_failure_is_an_error_and_nothing_is_reported_sent() {
    let seen: Seen = Arc::default();
    let rule = recording_put_events(&seen, |_, _| failed_entry("InternalFailure"));
    let agent = agent(RuleMode::MatchAny, &[&rule], &[], "400");
    let event: Value = serde_json::from_str(FIXTURE).unwrap();
    let err = agent.handle(&event, None).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    match err {
        AgentError::Relay(RelayError::Exhausted { failed, total, .. }) => {
            assert_eq!((failed, total), (1, 1))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        seen.lock().unwrap().len() >= 2,
        "it retried before giving up"
    );
}

#[tokio::test]
async fn access_denied_is_refused_without_retrying() {
    let seen: Seen = Arc::default();
    let rule = recording_put_events(&seen, |_, _| failed_entry("AccessDeniedException"));
    let agent = agent(RuleMode::MatchAny, &[&rule], &[], "5000");
    let event: Value = serde_json::from_str(FIXTURE).unwrap();
    let err = agent.handle(&event, None).await.unwrap_err();
    assert!(
        matches!(err, AgentError::Relay(RelayError::Refused(_))),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn signals_carry_record_detections_and_ids() {
    let seen: Seen = Arc::default();
    let rule = recording_put_events(&seen, |_, i| ok_entry(i));
    let agent = agent(RuleMode::MatchAny, &[&rule], &[], "5000");
    let event: Value = serde_json::from_str(FIXTURE).unwrap();
    agent.handle(&event, None).await.unwrap();
    let detail = seen.lock().unwrap()[0][0].clone();
    let signal: Signal = serde_json::from_str(&detail).unwrap();
    let bare = event.get("detail").unwrap_or(&event);
    assert_eq!(&signal.record, bare);
    assert_eq!(
        signal.detections[0].kind.as_str(),
        "break_glass_role_assumed"
    );
    assert_eq!(signal.agent_version, glasswatch_agent::AGENT_VERSION);
    assert_eq!(
        signal.received_account,
        bare["recipientAccountId"].as_str().unwrap()
    );
}

#[tokio::test]
async fn unflagged_records_are_dropped_and_bad_events_are_errors() {
    let agent = agent(RuleMode::MatchAny, &[], &[], "5000");
    let noise = include_str!("../../core/tests/fixtures/61-negative-alice-describe-instances.json");
    let outcome = agent
        .handle(&serde_json::from_str(noise).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Dropped);
    let err = agent
        .handle(&json!({"hello": "world"}), None)
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::BadEvent(_)), "{err}");
    assert!(!err.is_retryable());
}

fn scheduled() -> Value {
    json!({"version":"0","id":"hb-1","detail-type":"Scheduled Event","source":"aws.events",
        "account":"111122223333","time":"2026-11-02T10:15:00Z","region":"eu-west-1",
        "resources":["arn:aws:events:eu-west-1:111122223333:rule/glasswatch-heartbeat"],"detail":{}})
}

async fn heartbeat_with(status: Option<bool>) -> (Heartbeat, Outcome) {
    let seen: Seen = Arc::default();
    let put = recording_put_events(&seen, |_, i| ok_entry(i));
    let describe = mock!(aws_sdk_cloudtrail::Client::describe_trails).then_output(|| {
        DescribeTrailsOutput::builder()
            .trail_list(
                Trail::builder()
                    .name("org-trail")
                    .trail_arn("arn:aws:cloudtrail:us-east-1:210987654321:trail/org-trail")
                    .is_organization_trail(true)
                    .build(),
            )
            .build()
    });
    let get_status = match status {
        Some(logging) => mock!(aws_sdk_cloudtrail::Client::get_trail_status)
            .then_output(move || GetTrailStatusOutput::builder().is_logging(logging).build()),
        None => mock!(aws_sdk_cloudtrail::Client::get_trail_status).then_compute_response(|_| {
            MockResponse::Error(
                aws_sdk_cloudtrail::operation::get_trail_status::GetTrailStatusError::unhandled(
                    "AccessDenied",
                ),
            )
        }),
    };
    let agent = agent(
        RuleMode::MatchAny,
        &[&put],
        &[&describe, &get_status],
        "5000",
    );
    let outcome = agent.handle(&scheduled(), None).await.unwrap();
    let detail = seen.lock().unwrap()[0][0].clone();
    (serde_json::from_str(&detail).unwrap(), outcome)
}

#[tokio::test]
async fn heartbeat_reports_trail_status_honestly() {
    let (beat, outcome) = heartbeat_with(Some(true)).await;
    assert_eq!(
        outcome,
        Outcome::Heartbeat {
            trail: TrailStatus::Logging
        }
    );
    assert_eq!(beat.trail, TrailStatus::Logging);
    assert_eq!(
        (beat.account.as_str(), beat.region.as_str()),
        ("111122223333", "eu-west-1")
    );
    assert_eq!(beat.trails, ["org-trail"]);
    assert_eq!(beat.sent_at, "2026-11-02T10:15:00Z");

    let (beat, _) = heartbeat_with(Some(false)).await;
    assert_eq!(beat.trail, TrailStatus::NotLogging);

    let (beat, _) = heartbeat_with(None).await;
    assert_eq!(
        beat.trail,
        TrailStatus::Unknown,
        "an unreadable status is unknown, not logging"
    );
}

/// Each heartbeat reports how many events wait in the agent's own
/// dead-letter queue, which the aggregator alerts on; a queue it cannot
/// read leaves the figure out rather than reporting zero.
#[tokio::test]
async fn heartbeat_reports_its_dead_letter_queue_depth() {
    const DLQ: &str = "https://sqs.eu-west-1.amazonaws.com/111122223333/glasswatch-agent-dlq";
    for (answer, expected) in [(Some("7"), Some(7)), (None, None)] {
        let seen: Seen = Arc::default();
        let put = recording_put_events(&seen, |_, i| ok_entry(i));
        let describe = mock!(aws_sdk_cloudtrail::Client::describe_trails)
            .then_output(|| DescribeTrailsOutput::builder().build());
        let depth = match answer {
            Some(n) => mock!(aws_sdk_sqs::Client::get_queue_attributes)
                .match_requests(|r| r.queue_url() == Some(DLQ))
                .then_output(move || {
                    aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput::builder()
                        .attributes(
                            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                            n,
                        )
                        .build()
                }),
            None => mock!(aws_sdk_sqs::Client::get_queue_attributes).then_compute_response(|_| {
                MockResponse::Error(
                    aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError::unhandled(
                        "AccessDenied",
                    ),
                )
            }),
        };
        let mut agent = agent(RuleMode::MatchAny, &[&put], &[&describe], "5000");
        agent.config.dlq_url = Some(DLQ.to_owned());
        agent.sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &[&depth]);
        agent.handle(&scheduled(), None).await.unwrap();
        let detail = seen.lock().unwrap()[0][0].clone();
        let beat: Heartbeat = serde_json::from_str(&detail).unwrap();
        assert_eq!(beat.dead_letters, expected);
    }
}
