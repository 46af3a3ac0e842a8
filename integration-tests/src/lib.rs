//! # glasswatch-integration-tests
//!
//! End-to-end tests of Glasswatch against local AWS emulation, and the
//! support code they share (this library, `test_support`):
//! - [`moto_endpoint`]: the moto server `cargo xtask test` started;
//! - [`sdk_config`]: real `aws-sdk-*` configuration pointed at it;
//!   [`account_config`]: the same, acting as a chosen account;
//! - [`route_to_new_queue`], [`drain_queue`]: an EventBridge rule whose
//!   target is a fresh SQS queue, and reading back what it delivered;
//!   [`new_signal_bus`]: a central bus routing signals to a queue;
//! - [`fixtures`]: the fixture corpus as raw JSON documents;
//! - [`watch_list`], [`signal_envelope`], [`heartbeat_envelope`],
//!   [`sqs_batch`]: what agents put on the central bus, as the aggregator
//!   receives it;
//! - [`proxy`]: a recording HTTP proxy in front of moto, for checking
//!   which AWS operations another process made;
//! - [`moto`]: a moto server of a test's own, for heavy writers;
//!   [`sdk_config_at`]: SDK configuration for it;
//! - [`lambda`]: `cargo lambda watch` as the Runtime API for the real
//!   `bootstrap` binaries;
//! - [`unique`]: names that do not collide between tests sharing one moto;
//! - [`org`]: a fresh organization in moto: five accounts in an OU tree;
//! - [`chaos`]: a fault-injecting HTTP proxy;
//! - [`slack`]: a recording Slack stand-in (bot mode);
//! - [`usage`]: what a DynamoDB client did (requests, items written and
//!   read), counted by an SDK interceptor;
//! - [`pipeline`]: agents → central bus → SQS → aggregator, with the
//!   retries AWS makes, in process or with the real binaries;
//! - [`scenario`]: the scripted break-glass incident and what it must
//!   leave behind;
//! - [`trail`]: gzipped trail log files, their keys, a bucket holding
//!   them, and CloudTrail's notifications of them.

pub mod chaos;
pub mod lambda;
pub mod moto;
pub mod org;
pub mod pipeline;
pub mod proxy;
pub mod scenario;
pub mod slack;
pub mod trail;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_eventbridge::types::{RuleState, Target};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use glasswatch_core::input::for_each_document;
use glasswatch_core::signal::{HEARTBEAT_DETAIL_TYPE, build_signal, bus_envelope, detail_type_for};
use glasswatch_core::{Config, Record, WatchList, classify};
use serde_json::{Value, json};

/// The moto server started by `cargo xtask test`.
///
/// # Panics
/// When the tests are run without it: the message says how to run them.
pub fn moto_endpoint() -> String {
    std::env::var("GLASSWATCH_MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "GLASSWATCH_MOTO_ENDPOINT is not set: these tests need the local moto server. \
             Run them with `cargo xtask test` (it installs and starts moto), \
             or export GLASSWATCH_MOTO_ENDPOINT=http://127.0.0.1:PORT for a moto you started"
        )
    })
}

/// SDK configuration for moto: fixed test credentials, the given region,
/// and the endpoint override. No real AWS is ever reached.
pub async fn sdk_config(region: &str) -> SdkConfig {
    sdk_config_at(&moto_endpoint(), region).await
}

/// SDK configuration for the moto at `endpoint` (see [`sdk_config`]).
pub async fn sdk_config_at(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// Credentials and SDK configuration that moto attributes to `account`.
///
/// moto takes the account from credentials that its STS `AssumeRole`
/// returned for `arn:aws:iam::ACCOUNT:role/...`. Unlike the
/// `x-moto-account-id` header, these can be handed to another process (the
/// real `bootstrap` binary) through the usual `AWS_*` variables.
pub async fn account_config(
    account: &str,
    region: &str,
) -> anyhow::Result<(SdkConfig, Credentials)> {
    let credentials = account_credentials(account, region).await?;
    let config = config_with(&credentials, region, &moto_endpoint()).await;
    Ok((config, credentials))
}

/// Credentials from moto's STS that moto attributes to `account`.
pub async fn account_credentials(account: &str, region: &str) -> anyhow::Result<Credentials> {
    let base = sdk_config(region).await;
    let assumed = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/glasswatch-test"))
        .role_session_name("glasswatch-test")
        .send()
        .await
        .with_context(|| format!("moto STS AssumeRole into account {account}"))?;
    let c = assumed
        .credentials
        .context("moto AssumeRole returned no credentials")?;
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        None,
        "moto-assume-role",
    ))
}

/// SDK configuration with these credentials and region, reaching AWS at
/// `endpoint` (moto, or a proxy in front of it).
pub async fn config_with(credentials: &Credentials, region: &str, endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials.clone())
        .load()
        .await
}

/// A name no other test in this process, or an earlier run against the
/// same moto, has used.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new central bus whose rule delivers Glasswatch signals (source
/// `glasswatch.agent`) to a new queue, as the audit account's does.
/// Returns the bus ARN and the queue URL.
pub async fn new_signal_bus(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    prefix: &str,
) -> anyhow::Result<(String, String)> {
    signal_bus(events, sqs, &unique(prefix)).await
}

/// Bus `bus` (in the clients' account and region) with a rule that
/// delivers Glasswatch signals to a new queue of the same name. Returns
/// the bus ARN and the queue URL.
pub async fn signal_bus(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
) -> anyhow::Result<(String, String)> {
    let bus_arn = events
        .create_event_bus()
        .name(bus)
        .send()
        .await
        .with_context(|| format!("create event bus {bus}"))?
        .event_bus_arn
        .context("event bus arn")?;
    let pattern = format!(
        r#"{{"source":["{}"]}}"#,
        glasswatch_core::signal::SIGNAL_SOURCE
    );
    let queue_url = route_to_new_queue(events, sqs, bus, "signals", &pattern, bus).await?;
    Ok((bus_arn, queue_url))
}

/// Create queue `queue_name` and a rule `rule` on `bus` (in the rule state
/// Glasswatch uses) that delivers events matching `pattern` to it. Returns
/// the queue URL.
pub async fn route_to_new_queue(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
    rule: &str,
    pattern: &str,
    queue_name: &str,
) -> anyhow::Result<String> {
    let queue_url = sqs
        .create_queue()
        .queue_name(queue_name)
        .send()
        .await
        .with_context(|| format!("create queue {queue_name}"))?
        .queue_url
        .context("queue url")?;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("queue arn")?;
    events
        .put_rule()
        .name(rule)
        .event_bus_name(bus)
        .event_pattern(pattern)
        .state(RuleState::EnabledWithAllCloudtrailManagementEvents)
        .send()
        .await
        .with_context(|| format!("put rule {rule}"))?;
    events
        .put_targets()
        .rule(rule)
        .event_bus_name(bus)
        .targets(Target::builder().id("queue").arn(queue_arn).build()?)
        .send()
        .await
        .with_context(|| format!("put targets on {rule}"))?;
    Ok(queue_url)
}

/// Every message body waiting in a queue, parsed as JSON; each is deleted
/// once read.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<Vec<Value>> {
    let mut bodies = Vec::new();
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return Ok(bodies);
        }
        for message in messages {
            bodies.push(
                serde_json::from_str(message.body().unwrap_or_default()).context("message body")?,
            );
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await?;
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests lives inside the workspace")
        .to_path_buf()
}

/// A fixture document: `file:position` and its JSON.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub label: String,
    pub document: Value,
}

/// Every document of the fixture corpus in `core/tests/fixtures`.
///
/// # Panics
/// On an unreadable or invalid fixture: the corpus is part of the repo.
pub fn fixtures() -> Vec<Fixture> {
    let dir = workspace_root().join("core/tests/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reader = std::fs::File::open(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        for_each_document(reader, |position, bytes| {
            let label = format!("{name}:{position}");
            let bytes = bytes.unwrap_or_else(|e| panic!("{label}: {e}"));
            let document = serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
            out.push(Fixture { label, document });
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    out
}

/// The watch list of the repository's `glasswatch.toml`.
///
/// # Panics
/// When that file is unreadable or invalid: it is part of the repo.
pub fn watch_list() -> WatchList {
    repo_config()
        .watch_list()
        .unwrap_or_else(|e| panic!("glasswatch.toml: {e:?}"))
}

/// The repository's watch list as the Lambdas get it (`GLASSWATCH_WATCH`).
///
/// # Panics
/// As [`watch_list`].
pub fn watch_json() -> String {
    let config = repo_config();
    config.watch_env_json()
}

fn repo_config() -> Config {
    let path = workspace_root().join("glasswatch.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Config::parse(&text, "glasswatch.toml").unwrap_or_else(|e| panic!("glasswatch.toml: {e}"))
}

/// The envelope an agent puts on the central bus for a CloudTrail
/// `record` the watch list flags, sent by account `sender` (an envelope
/// without one when `None`).
pub fn signal_envelope(
    watch: &WatchList,
    record: &Value,
    sender: Option<&str>,
) -> anyhow::Result<String> {
    let parsed = Record::from_value(record).context("the record does not parse")?;
    let detections = classify(watch, &parsed);
    anyhow::ensure!(
        !detections.is_empty(),
        "the watch list flags nothing in {record}"
    );
    let (signal, _) = build_signal(record, detections, "test", &parsed.account, &parsed.region)
        .context("the signal does not build")?;
    let detail_type = detail_type_for(&signal.detections);
    let detail = serde_json::to_value(&signal).context("the signal does not serialise")?;
    Ok(bus_envelope(
        detail_type,
        detail,
        &unique("env"),
        sender,
        &parsed.event_time,
        "eu-west-1",
    )
    .to_string())
}

/// A heartbeat envelope from the agent in `account` and `region`.
pub fn heartbeat_envelope(account: &str, region: &str, sent_at: &str, trail: &str) -> String {
    let detail = json!({"schema_version": 1, "account": account, "region": region,
        "agent_version": "0.1.0", "sent_at": sent_at, "trail": trail, "trails": ["org"]});
    bus_envelope(
        HEARTBEAT_DETAIL_TYPE,
        detail,
        &unique("hb"),
        Some(account),
        sent_at,
        region,
    )
    .to_string()
}

/// An SQS batch of these message bodies, as Lambda hands it over; the
/// message ids are `m0`, `m1`, ...
pub fn sqs_batch(bodies: &[String]) -> SqsEvent {
    sqs_event(
        bodies
            .iter()
            .enumerate()
            .map(|(i, body)| (format!("m{i}"), body.clone())),
    )
}

/// An SQS batch of (message id, body) pairs, as Lambda hands it over.
pub fn sqs_event(messages: impl IntoIterator<Item = (String, String)>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .into_iter()
        .map(|(id, body)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(id);
            message.body = Some(body);
            message.event_source = Some("aws:sqs".to_owned());
            message
        })
        .collect();
    event
}
