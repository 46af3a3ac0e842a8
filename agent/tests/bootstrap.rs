//! The real `bootstrap` binary under `cargo lambda watch`'s Runtime API
//! emulator: proves `main.rs` wiring and configuration from the
//! environment.
//!
//! moto cannot `PutEvents` to another account's bus by ARN, so the binary
//! gets credentials for the audit account itself (from moto's STS
//! `AssumeRole`, passed as `AWS_ACCESS_KEY_ID`…). The bus, rule and queue
//! live in that account. On AWS the agent keeps its own account and the
//! org-only bus policy admits it.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::Duration;

use glasswatch_core::signal::{Signal, signal_id};
use serde_json::Value;
use test_support::lambda::LambdaWatch;
use test_support::{account_config, drain_queue, moto_endpoint, new_signal_bus, unique};

const AUDIT_ACCOUNT: &str = "310987654321";
const WATCH: &str = r#"{"iam_users":["break-glass-1"],"roles":["BreakGlassRole"],"sso_permission_sets":["BreakGlassAdmin"],"root_sign_in":true}"#;

fn bootstrap() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_glasswatch-agent"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn bootstrap_relays_a_fixture_invoked_through_the_runtime_api() {
    let (aws, credentials) = account_config(AUDIT_ACCOUNT, "eu-west-1").await.unwrap();
    let events = aws_sdk_eventbridge::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let (bus_arn, queue_url) = new_signal_bus(&events, &sqs, "gw-bootstrap").await.unwrap();
    assert!(bus_arn.contains(AUDIT_ACCOUNT), "{bus_arn}");

    let watch = LambdaWatch::start("agent").unwrap();
    let log = std::env::temp_dir().join(format!("{}.log", unique("agent-bootstrap")));
    let out = std::fs::File::create(&log).unwrap();
    let secret = credentials.secret_access_key().to_owned();
    let mut child = bootstrap()
        .envs(watch.function_env())
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ENDPOINT_URL", moto_endpoint())
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .env("AWS_SESSION_TOKEN", credentials.session_token().unwrap())
        .env("GLASSWATCH_BUS_ARN", &bus_arn)
        .env("GLASSWATCH_WATCH", WATCH)
        .env("GLASSWATCH_LOG", "debug")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();

    let fixture: Value = serde_json::from_str(include_str!(
        "../../core/tests/fixtures/12-assume-break-glass-role-cross-account.json"
    ))
    .unwrap();
    let event_id = fixture["detail"]["eventID"].as_str().unwrap().to_owned();
    let invoked = tokio::time::timeout(Duration::from_secs(60), watch.invoke(&fixture)).await;
    let dropped = serde_json::json!({"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.s3","account":"111122223333","time":"2026-11-21T10:00:00Z","region":"eu-west-1","resources":[],"detail":{"eventVersion":"1.08","eventID":"00000000-0000-4000-8000-000000000001","eventTime":"2026-11-21T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1","recipientAccountId":"111122223333","userIdentity":{"type":"IAMUser","userName":"alice","arn":"arn:aws:iam::111122223333:user/alice"}}});
    let ignored = watch.invoke(&dropped).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let output = std::fs::read_to_string(&log).unwrap();

    let (status, body) = invoked
        .unwrap_or_else(|_| panic!("no answer within 60 s; agent output:\n{output}"))
        .unwrap();
    assert_eq!(status, 200, "{body}\nagent output:\n{output}");
    let body = body.as_str().unwrap();
    assert!(body.contains("Relayed"), "{body}");
    assert!(body.contains(&signal_id(&event_id).to_string()), "{body}");
    let (status, body) = ignored.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "Dropped");

    let bodies = drain_queue(&sqs, &queue_url).await.unwrap();
    assert_eq!(bodies.len(), 1, "only the watched event is relayed");
    let signal: Signal = serde_json::from_value(bodies[0]["detail"].clone()).unwrap();
    assert_eq!(signal.signal_id, signal_id(&event_id));
    assert_eq!(signal.record, fixture["detail"]);

    // Logs are JSON lines with EMF metrics, and never carry the secret.
    assert!(output.contains("\"_aws\""), "no EMF metrics in:\n{output}");
    assert!(!output.contains(&secret), "the secret key was logged");
}

#[test]
fn bootstrap_stops_at_init_naming_the_missing_variable() {
    let output = bootstrap()
        .env("AWS_REGION", "eu-west-1")
        .env(
            "GLASSWATCH_BUS_ARN",
            "arn:aws:events:eu-west-1:310987654321:event-bus/glasswatch",
        )
        .env("AWS_LAMBDA_RUNTIME_API", "http://127.0.0.1:9/.rt")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("GLASSWATCH_WATCH"), "{text}");
}

#[test]
fn bootstrap_rejects_a_malformed_watch_list_at_init() {
    let output = bootstrap()
        .env("AWS_REGION", "eu-west-1")
        .env(
            "GLASSWATCH_BUS_ARN",
            "arn:aws:events:eu-west-1:310987654321:event-bus/glasswatch",
        )
        .env("GLASSWATCH_WATCH", r#"{"iam_user":["x"]}"#)
        .env("AWS_LAMBDA_RUNTIME_API", "http://127.0.0.1:9/.rt")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("GLASSWATCH_WATCH"), "{text}");
    assert!(text.contains("iam_user"), "{text}");
}
