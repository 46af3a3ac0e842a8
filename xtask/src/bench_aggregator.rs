//! The aggregator's figures for `cargo xtask bench`:
//!
//! - **correlation throughput**: [`Ledger::ingest`] over a generated
//!   workload, single-threaded and in memory. Measured by a release build
//!   of xtask (`xtask bench --internal-correlation`, see
//!   [`correlation_internal`]), whose JSON this process reads, so the
//!   figure is of optimized code whatever profile runs `cargo xtask`.
//! - **DynamoDB requests per event**: the real
//!   [`Aggregator::handle_batch`] on moto, fed SQS batches of signal
//!   envelopes, with every DynamoDB request counted by an SDK interceptor
//!   ([`CountRequests`]) on the store's client; in [`DYNAMODB_ROUNDS`]
//!   rounds, each on a fresh moto.
//!
//! Both run on one deterministic workload ([`Spec`], [`generate`]): many
//! break-glass sessions at once, each a chain of CloudTrail records over
//! 3–5 accounts and several regions, linked the way real sessions are
//! (a console session's `ASIA…` key, `AssumeRole` hops that issue the next
//! key, Identity Center `GetRoleCredentials` and the `AWSReservedSSO_…`
//! activity it explains, a `sourceIdentity` across accounts), delivered
//! slightly out of order and about 5% of them twice.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::config::Credentials;
use glasswatch_aggregator::accounts::Accounts;
use glasswatch_aggregator::config::AggregatorConfig;
use glasswatch_aggregator::handler::Aggregator;
use glasswatch_aggregator::slack::SlackClient;
use glasswatch_aggregator::store::{GSI_BY_TIME, Store, create_table};
use glasswatch_core::correlate::Ledger;
use glasswatch_core::session::SessionEvent;
use glasswatch_core::signal::{build_signal, bus_envelope, detail_type_for};
use glasswatch_core::{Detection, Record, WatchList, classify};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use test_support::sqs_event;

use super::{Better, Figure, Target, load_watch_list, median, progress};
use crate::python::{self, target_dir, workspace_root};
use crate::run_command;
use crate::runtime_api::{HttpServer, Response};

/// Correlation must keep up with at least this many events per second on
/// one thread.
pub const CORRELATION_TARGET: f64 = 50_000.0;
/// The aggregator may make at most this many DynamoDB write requests per
/// event, on average.
pub const WRITES_TARGET: f64 = 2.5;
/// The session quiet period the figures are measured with (the default).
const QUIET_SECS: i64 = 3600;
/// Timed passes over the correlation workload; the median counts.
const CORRELATION_RUNS: usize = 3;
/// SQS delivers at most this many messages to one invocation.
const SQS_BATCH: usize = 10;
/// Member accounts created in moto's organization for the scenario.
const MOTO_ACCOUNTS: usize = 5;
/// Events in the DynamoDB scenario, all rounds together.
pub const DYNAMODB_EVENTS: usize = 1000;
/// The DynamoDB scenario runs in rounds, each on a fresh moto: moto 5.2.5
/// deep-copies the whole table for every item of every `TransactWriteItems`
/// and its instance tracker keeps each copy, so one table's memory and time
/// grow with the square of its events (one 1,000-event table took moto past
/// 24 GB).
pub const DYNAMODB_ROUNDS: usize = 4;
/// The deadline given to each batch, as Lambda would.
const BATCH_DEADLINE: Duration = Duration::from_secs(60);
/// A round that takes longer than this (about a minute is usual) has hung.
const ROUND_TIMEOUT: Duration = Duration::from_secs(600);

// ----------------------------------------------------------------------
// The workload
// ----------------------------------------------------------------------

const REGIONS: [&str; 5] = [
    "us-east-1",
    "eu-west-1",
    "us-west-2",
    "eu-central-1",
    "ap-southeast-2",
];
/// Where Identity Center records `GetRoleCredentials`.
const IDENTITY_CENTER_REGION: &str = "eu-west-1";
/// IAM and the STS global endpoint record in us-east-1.
const GLOBAL_REGION: &str = "us-east-1";
const BREAK_GLASS_USER: &str = "break-glass-1";
const BREAK_GLASS_ROLE: &str = "BreakGlassRole";
const SSO_PERMISSION_SET: &str = "BreakGlassAdmin";
const SSO_ROLE: &str = "AWSReservedSSO_BreakGlassAdmin_0123456789abcdef";
const SSO_ROLE_PATH: &str = "aws-reserved/sso.amazonaws.com/eu-west-1/";

/// An API call a break-glass session makes: (event source, name, read
/// only, recorded in us-east-1 whatever the caller's region).
const CALLS: [(&str, &str, bool, bool); 12] = [
    ("ec2.amazonaws.com", "DescribeInstances", true, false),
    ("s3.amazonaws.com", "ListBuckets", true, false),
    ("iam.amazonaws.com", "ListUsers", true, true),
    ("iam.amazonaws.com", "ListRoles", true, true),
    ("sts.amazonaws.com", "GetCallerIdentity", true, false),
    ("cloudtrail.amazonaws.com", "LookupEvents", true, false),
    ("ec2.amazonaws.com", "DescribeSecurityGroups", true, false),
    ("rds.amazonaws.com", "DescribeDBInstances", true, false),
    ("logs.amazonaws.com", "FilterLogEvents", true, false),
    ("kms.amazonaws.com", "Decrypt", true, false),
    (
        "ec2.amazonaws.com",
        "AuthorizeSecurityGroupIngress",
        false,
        false,
    ),
    ("ec2.amazonaws.com", "TerminateInstances", false, false),
];

const USER_AGENTS: [&str; 3] = [
    "aws-cli/2.31.18 md/awscrt#0.27.6 ua/2.1 os/linux#6.8.0 md/arch#x86_64 lang/python#3.13.7",
    "AWS Internal",
    "Boto3/1.40.55 md/Botocore#1.40.55 ua/2.1 os/linux#5.10.240 md/arch#x86_64 lang/python#3.12.11",
];

/// The shape of a generated workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub seed: u64,
    /// Distinct CloudTrail events (redeliveries come on top).
    pub events: usize,
    /// Sessions the events are shared out to, as evenly as they go.
    pub sessions: usize,
    /// The accounts sessions hop through, 3–5 of them each; the first also
    /// hosts Identity Center.
    pub accounts: Vec<String>,
    /// Time of the first session's start (seconds since the epoch).
    pub start: i64,
    /// Session `n` starts in `[start + n·stride, start + (n+1)·stride)`.
    pub start_stride: i64,
    /// Gaps between consecutive events of a session are `1..=max_gap` s.
    pub max_gap: i64,
    /// Chance, in percent, that an event is delivered a second time.
    pub redelivery_percent: u32,
}

/// 2026-10-14T15:00:00Z.
const START: i64 = 1_791_990_000;

impl Spec {
    /// The correlation workload: sessions of 50 events (about 50 minutes
    /// each), a new one every 30 s, so about a hundred are under way at
    /// any time, over twelve accounts.
    pub fn correlation(events: usize) -> Self {
        Self {
            seed: 0x6c61_7373_7761_7463,
            events,
            sessions: events.div_ceil(50),
            accounts: (1..=12)
                .map(|n| format!("{:012}", 100_000_000_000u64 + n * 1_111_111))
                .collect(),
            start: START,
            start_stride: 30,
            max_gap: 120,
            redelivery_percent: 5,
        }
    }

    /// One round of the DynamoDB scenario ([`DYNAMODB_ROUNDS`] of them):
    /// 20 sessions of 12–13 events over the organization's `accounts`, all
    /// started within two minutes, so all 20 are under way together, each
    /// making about one call a minute.
    pub fn dynamodb(accounts: Vec<String>, round: usize) -> Self {
        Self {
            seed: 0x6177_7333_6462_6221 + round as u64,
            events: DYNAMODB_EVENTS / DYNAMODB_ROUNDS,
            sessions: 20,
            accounts,
            start: START,
            start_stride: 6,
            max_gap: 120,
            redelivery_percent: 5,
        }
    }

    /// How many events session `n` has.
    fn session_size(&self, n: usize) -> usize {
        let sessions = self.sessions.max(1);
        self.events / sessions + usize::from(n < self.events % sessions)
    }
}

/// Who makes a call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Actor {
    /// The watched IAM user's console session in `account`, signed in at
    /// `since`.
    ConsoleUser {
        account: String,
        key: String,
        since: i64,
    },
    /// A session of `role` (the watched role, or Identity Center's role for
    /// the watched permission set) named `name`.
    Role {
        account: String,
        role: &'static str,
        name: String,
        key: String,
        since: i64,
        source_identity: Option<String>,
    },
}

impl Actor {
    fn account(&self) -> &str {
        match self {
            Self::ConsoleUser { account, .. } | Self::Role { account, .. } => account,
        }
    }

    fn arn(&self) -> String {
        match self {
            Self::ConsoleUser { account, .. } => {
                format!("arn:aws:iam::{account}:user/{BREAK_GLASS_USER}")
            }
            Self::Role {
                account,
                role,
                name,
                ..
            } => format!("arn:aws:sts::{account}:assumed-role/{role}/{name}"),
        }
    }

    /// The record's `userIdentity`.
    fn identity(&self) -> Value {
        match self {
            Self::ConsoleUser {
                account,
                key,
                since,
            } => json!({
                "type": "IAMUser",
                "principalId": "AIDAQ7XK3BREAKGLASS01",
                "arn": self.arn(),
                "accountId": account,
                "accessKeyId": key,
                "userName": BREAK_GLASS_USER,
                "sessionContext": {"attributes": {
                    "creationDate": rfc3339(*since), "mfaAuthenticated": "true"
                }}
            }),
            Self::Role {
                account,
                role,
                name,
                key,
                since,
                source_identity,
            } => {
                let path = if *role == SSO_ROLE { SSO_ROLE_PATH } else { "" };
                let mut context = json!({
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": "AROAQ7XK3BGLASSROLE7",
                        "arn": format!("arn:aws:iam::{account}:role/{path}{role}"),
                        "accountId": account,
                        "userName": role,
                    },
                    "attributes": {"creationDate": rfc3339(*since), "mfaAuthenticated": "false"}
                });
                if let Some(source_identity) = source_identity {
                    context["sourceIdentity"] = json!(source_identity);
                }
                json!({
                    "type": "AssumedRole",
                    "principalId": format!("AROAQ7XK3BGLASSROLE7:{name}"),
                    "arn": self.arn(),
                    "accountId": account,
                    "accessKeyId": key,
                    "sessionContext": context,
                })
            }
        }
    }
}

/// What one event is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// An API call by `actor`.
    Call {
        actor: Actor,
        region: &'static str,
        call: usize,
    },
    /// `caller` assumes the watched role into the session `issued`. Both
    /// accounts record it: the caller's copy (its identity and key) and,
    /// with `owner_copy`, the role owner's (`AWSAccount` identity).
    AssumeRole {
        caller: Actor,
        issued: Actor,
        owner_copy: bool,
    },
    /// Identity Center hands `user` credentials for the watched permission
    /// set in `account`.
    GetRoleCredentials {
        identity_center: String,
        user: String,
        account: String,
    },
}

/// One generated CloudTrail event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub session: usize,
    pub event_id: String,
    pub time: i64,
    step: Step,
}

/// One delivery to the aggregator: an event, when it arrives, and whether
/// it is a second delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Index into [`Workload::events`].
    pub event: usize,
    pub arrival: i64,
    pub redelivery: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Session by session, each in time order.
    pub events: Vec<Planned>,
    /// In arrival order.
    pub deliveries: Vec<Delivery>,
}

impl Workload {
    pub fn redeliveries(&self) -> usize {
        self.deliveries.iter().filter(|d| d.redelivery).count()
    }
}

pub fn rfc3339(time: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(time)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A temporary access key id: `ASIA` and 16 characters, unique per seed,
/// session and hop.
fn access_key(seed: u64, session: usize, hop: usize) -> String {
    format!("ASIA{:08X}{session:05X}{hop:03X}", seed as u32)
}

/// Generate the workload `spec` describes. The same spec always gives the
/// same workload.
pub fn generate(spec: &Spec) -> Result<Workload> {
    ensure!(
        spec.accounts.len() >= 3,
        "a workload needs at least 3 accounts"
    );
    ensure!(
        (1..=spec.events).contains(&spec.sessions) && spec.start_stride >= 1 && spec.max_gap >= 1,
        "there must be 1 to `events` sessions, and the start stride and max gap must be positive"
    );
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mut events = Vec::with_capacity(spec.events);
    for session in 0..spec.sessions {
        let size = spec.session_size(session);
        let start = spec.start + session as i64 * spec.start_stride;
        let start = start + rng.i64(0..spec.start_stride);
        events.extend(plan_session(spec, &mut rng, session, size, start));
    }
    let mut deliveries = Vec::with_capacity(events.len() + events.len() / 10);
    for (index, event) in events.iter().enumerate() {
        // EventBridge and SQS take a few seconds; a redelivery comes
        // between half a minute and a quarter of an hour later.
        let arrival = event.time + rng.i64(1..=30);
        deliveries.push(Delivery {
            event: index,
            arrival,
            redelivery: false,
        });
        if rng.u32(0..100) < spec.redelivery_percent {
            deliveries.push(Delivery {
                event: index,
                arrival: arrival + rng.i64(30..=900),
                redelivery: true,
            });
        }
    }
    // Stable: equal arrivals keep the order they were made in.
    deliveries.sort_by_key(|d| d.arrival);
    Ok(Workload { events, deliveries })
}

/// One session of `size` events from `start`: a console session or an
/// Identity Center user, hopping through 3–5 accounts. A console session
/// starts at its first call: its `ConsoleLogin` record carries no
/// correlation key (the `creationDate` is only on the calls that follow),
/// so it would be a session of its own.
fn plan_session(
    spec: &Spec,
    rng: &mut fastrand::Rng,
    session: usize,
    size: usize,
    start: i64,
) -> Vec<Planned> {
    let hops = rng
        .usize(3..=5)
        .min(spec.accounts.len())
        .min((size / 2).max(1));
    let mut accounts = spec.accounts.clone();
    rng.shuffle(&mut accounts);
    accounts.truncate(hops);
    let console = rng.u8(0..10) < 6;
    let user = format!("responder-{session}");
    let source_identity = (!console).then(|| format!("{user}@example.com"));
    let per_hop = size / hops;
    let mut out: Vec<Planned> = Vec::with_capacity(size);
    let mut time = start;
    let mut actor: Option<Actor> = None;
    for (hop, account) in accounts.iter().enumerate() {
        let budget = if hop + 1 == hops {
            size - out.len()
        } else {
            per_hop
        };
        let regions = [
            REGIONS[rng.usize(..REGIONS.len())],
            REGIONS[rng.usize(..REGIONS.len())],
        ];
        let key = access_key(spec.seed, session, hop);
        // The hop's first event (the role assumed, the credentials handed
        // out) is when its session was created.
        if !out.is_empty() {
            time += rng.i64(1..=spec.max_gap);
        }
        let mut steps = Vec::new();
        let next = match (&actor, console) {
            (None, true) => Actor::ConsoleUser {
                account: account.clone(),
                key,
                since: time,
            },
            (previous, true) => {
                let issued = Actor::Role {
                    account: account.clone(),
                    role: BREAK_GLASS_ROLE,
                    name: format!("incident-{session}"),
                    key,
                    since: time,
                    source_identity: None,
                };
                if let Some(caller) = previous {
                    for owner_copy in [false, true] {
                        steps.push(Step::AssumeRole {
                            caller: caller.clone(),
                            issued: issued.clone(),
                            owner_copy,
                        });
                    }
                }
                issued
            }
            (_, false) => {
                steps.push(Step::GetRoleCredentials {
                    identity_center: spec.accounts[0].clone(),
                    user: user.clone(),
                    account: account.clone(),
                });
                Actor::Role {
                    account: account.clone(),
                    role: SSO_ROLE,
                    name: user.clone(),
                    key,
                    since: time,
                    source_identity: source_identity.clone(),
                }
            }
        };
        while steps.len() < budget {
            steps.push(Step::Call {
                actor: next.clone(),
                region: regions[rng.usize(..2)],
                call: rng.usize(..CALLS.len()),
            });
        }
        steps.truncate(budget);
        for (n, step) in steps.into_iter().enumerate() {
            if n > 0 {
                time += rng.i64(1..=spec.max_gap);
            }
            out.push(Planned {
                session,
                event_id: format!(
                    "{:08x}-{session:04x}-4000-8000-{:012x}",
                    spec.seed as u32,
                    out.len()
                ),
                time,
                step,
            });
        }
        actor = Some(next);
    }
    out
}

impl Planned {
    fn ip(&self) -> String {
        format!(
            "198.51.{}.{}",
            100 + self.session / 250 % 100,
            1 + self.session % 250
        )
    }

    fn user_agent(&self) -> &'static str {
        USER_AGENTS[self.session % USER_AGENTS.len()]
    }

    /// The CloudTrail record, as EventBridge's `detail` carries it.
    pub fn record(&self) -> Value {
        let base = |identity: Value,
                    source: &str,
                    name: &str,
                    region: &str,
                    account: &str,
                    read_only: bool| {
            json!({
                "eventVersion": "1.10",
                "userIdentity": identity,
                "eventTime": rfc3339(self.time),
                "eventSource": source,
                "eventName": name,
                "awsRegion": region,
                "sourceIPAddress": self.ip(),
                "userAgent": self.user_agent(),
                "requestParameters": null,
                "responseElements": null,
                "requestID": format!("req-{}", self.event_id),
                "eventID": self.event_id,
                "readOnly": read_only,
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": account,
                "eventCategory": "Management",
            })
        };
        match &self.step {
            Step::Call {
                actor,
                region,
                call,
            } => {
                let (source, name, read_only, global) = CALLS[*call % CALLS.len()];
                let region = if global { GLOBAL_REGION } else { region };
                base(
                    actor.identity(),
                    source,
                    name,
                    region,
                    actor.account(),
                    read_only,
                )
            }
            Step::AssumeRole {
                caller,
                issued,
                owner_copy,
            } => {
                let Actor::Role {
                    account: target,
                    name,
                    key,
                    ..
                } = issued
                else {
                    return Value::Null;
                };
                let (identity, recorded_in) = if *owner_copy {
                    let identity = json!({
                        "type": "AWSAccount",
                        "principalId": format!("AROAQ7XK3CALLER0001:{name}"),
                        "accountId": caller.account(),
                    });
                    (identity, target.as_str())
                } else {
                    (caller.identity(), caller.account())
                };
                let mut record = base(
                    identity,
                    "sts.amazonaws.com",
                    "AssumeRole",
                    GLOBAL_REGION,
                    recorded_in,
                    true,
                );
                record["requestParameters"] = json!({
                    "roleArn": format!("arn:aws:iam::{target}:role/{BREAK_GLASS_ROLE}"),
                    "roleSessionName": name,
                    "durationSeconds": 3600,
                });
                record["responseElements"] = json!({
                    "credentials": {
                        "accessKeyId": key,
                        "sessionToken": "IQoJb3JpZ2luX2VjEKr//////////wEaCWJlbmNobWFyaw==",
                        "expiration": rfc3339(self.time + 3600),
                    },
                    "assumedRoleUser": {
                        "assumedRoleId": format!("AROAQ7XK3BGLASSROLE7:{name}"),
                        "arn": issued.arn(),
                    }
                });
                record["sharedEventID"] = json!(format!("shared-{}", self.event_id));
                record
            }
            Step::GetRoleCredentials {
                identity_center,
                user,
                account,
            } => {
                let identity = json!({
                    "type": "IdentityCenterUser",
                    "accountId": identity_center,
                    "userName": user,
                    "onBehalfOf": {
                        "userId": format!("e4a8b1c2-70d1-7045-9f3e-{:012x}", self.session),
                        "identityStoreArn": format!("arn:aws:identitystore::{identity_center}:identitystore/d-9067a1b2c3"),
                    }
                });
                let mut record = base(
                    identity,
                    "sso.amazonaws.com",
                    "GetRoleCredentials",
                    IDENTITY_CENTER_REGION,
                    identity_center,
                    true,
                );
                record["requestParameters"] =
                    json!({"roleName": SSO_PERMISSION_SET, "accountId": account});
                record
            }
        }
    }
}

/// The detections of one generated record.
fn detections(watch: &WatchList, planned: &Planned) -> Result<(Value, Vec<Detection>)> {
    let record = planned.record();
    let parsed = Record::from_value(&record)
        .map_err(|e| anyhow!("generated record {} is invalid: {e}", planned.event_id))?;
    let found = classify(watch, &parsed);
    ensure!(
        !found.is_empty(),
        "generated record {} ({}) is not flagged by the watch list",
        planned.event_id,
        parsed.event_name
    );
    Ok((record, found))
}

/// Every event of `workload` as correlation sees it.
pub fn session_events(workload: &Workload, watch: &WatchList) -> Result<Vec<SessionEvent>> {
    workload
        .events
        .iter()
        .map(|planned| {
            let (_, found) = detections(watch, planned)?;
            SessionEvent::from_detections(&found)
                .with_context(|| format!("generated event {}", planned.event_id))
        })
        .collect()
}

/// How many sessions the events form, by the in-memory reference.
fn ledger_sessions(events: &[SessionEvent]) -> usize {
    let mut ledger = Ledger::new(QUIET_SECS);
    for event in events {
        ledger.ingest(event);
    }
    ledger.sessions().len()
}

// ----------------------------------------------------------------------
// Correlation throughput
// ----------------------------------------------------------------------

/// What the release build reports back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrelationReport {
    pub events: usize,
    pub deliveries: usize,
    pub sessions_planned: usize,
    pub sessions_found: usize,
    /// Seconds per timed pass over every delivery.
    pub seconds: Vec<f64>,
}

impl CorrelationReport {
    /// Deliveries (`Ledger::ingest` calls) per second, over the median
    /// pass.
    pub fn events_per_sec(&self) -> Option<f64> {
        let mut sorted = self.seconds.clone();
        sorted.sort_by(f64::total_cmp);
        median(&sorted)
            .filter(|s| *s > 0.0)
            .map(|s| self.deliveries as f64 / s)
    }
}

/// `xtask bench --internal-correlation`: generate the workload, build the
/// events (untimed), then time `Ledger::ingest` over every delivery and
/// print a [`CorrelationReport`] as JSON on stdout.
pub fn correlation_internal(events: usize) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("==> warning: the correlation figure is being measured by an unoptimized build");
    }
    let (_, watch) = load_watch_list()?;
    let spec = Spec::correlation(events);
    let started = Instant::now();
    let workload = generate(&spec)?;
    let prepared = session_events(&workload, &watch)?;
    let order: Vec<&SessionEvent> = workload
        .deliveries
        .iter()
        .map(|d| &prepared[d.event])
        .collect();
    eprintln!(
        "==> {} events in {} sessions ({} deliveries, {} redelivered) generated in {:.1} s; timing {CORRELATION_RUNS} passes",
        prepared.len(),
        spec.sessions,
        order.len(),
        workload.redeliveries(),
        started.elapsed().as_secs_f64()
    );
    let mut seconds = Vec::new();
    let mut sessions_found = 0;
    for _ in 0..CORRELATION_RUNS {
        let mut ledger = Ledger::new(QUIET_SECS);
        let started = Instant::now();
        for event in &order {
            black_box(ledger.ingest(black_box(event)));
        }
        seconds.push(started.elapsed().as_secs_f64());
        sessions_found = ledger.sessions().len();
    }
    let report = CorrelationReport {
        events: prepared.len(),
        deliveries: order.len(),
        sessions_planned: spec.sessions,
        sessions_found,
        seconds,
    };
    println!(
        "{}",
        serde_json::to_string(&report).context("cannot encode the report")?
    );
    Ok(())
}

/// Build xtask with the release profile, for the correlation and replay
/// figures.
pub fn build_release_xtask() -> Result<PathBuf> {
    eprintln!(
        "==> cargo build --release -p xtask (the correlation and replay figures are of optimized code)"
    );
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(workspace_root())
        .args(["build", "--release", "-p", "xtask"]);
    run_command(&mut cargo, "build xtask with the release profile")?;
    let binary = target_dir()
        .join("release")
        .join(format!("xtask{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        bail!("the build succeeded but {} is missing", binary.display());
    }
    Ok(binary)
}

/// The correlation throughput, measured by the release build.
pub fn correlation_figures(binary: &Path, events: u32) -> Result<(Vec<Figure>, CorrelationReport)> {
    eprintln!("==> correlation throughput: Ledger::ingest over {events} generated events");
    let output = Command::new(binary)
        .current_dir(workspace_root())
        .args([
            "bench",
            "--internal-correlation",
            "--correlation-events",
            &events.to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "the correlation measurement failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    let report: CorrelationReport = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "the correlation measurement printed something else than its report: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        )
    })?;
    let rate = report
        .events_per_sec()
        .context("the correlation measurement timed nothing")?;
    if report.sessions_found != report.sessions_planned {
        eprintln!(
            "==> warning: the workload's {} sessions correlated into {}; the generator and core::correlate disagree",
            report.sessions_planned, report.sessions_found
        );
    }
    let figures = vec![
        Figure::with_target(
            "correlation throughput (Ledger::ingest, 1 thread)",
            rate,
            "events/s",
            Target::AtLeast(CORRELATION_TARGET),
        ),
        Figure::info("correlation time per event (median pass)", 1e6 / rate, "µs"),
    ];
    Ok((figures, report))
}

// ----------------------------------------------------------------------
// DynamoDB requests per event
// ----------------------------------------------------------------------

pub use test_support::usage::{CountRequests, Counts};

/// What the DynamoDB scenario measured, all rounds together.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DynamoReport {
    pub rounds: usize,
    pub events: usize,
    pub messages: usize,
    pub redeliveries: usize,
    pub batches: usize,
    pub sessions: usize,
    pub slack_requests: usize,
    pub dynamodb: Counts,
    /// Time spent in `handle_batch` (moto's speed, not the aggregator's).
    pub seconds: f64,
}

impl DynamoReport {
    fn add(&mut self, round: &Self) {
        self.rounds += round.rounds;
        self.events += round.events;
        self.messages += round.messages;
        self.redeliveries += round.redeliveries;
        self.batches += round.batches;
        self.sessions += round.sessions;
        self.slack_requests += round.slack_requests;
        for (op, n) in &round.dynamodb.requests {
            *self.dynamodb.requests.entry(op.clone()).or_default() += n;
        }
        self.dynamodb.items_written += round.dynamodb.items_written;
        self.seconds += round.seconds;
    }

    /// Per distinct event.
    fn per_event(&self, n: u64) -> f64 {
        n as f64 / self.events.max(1) as f64
    }
}

/// A Slack Web API stand-in: every call succeeds with a message `ts`.
pub fn slack_stub(requests: Arc<AtomicUsize>) -> Result<HttpServer> {
    HttpServer::start(
        "Slack",
        Arc::new(move |_request| {
            requests.fetch_add(1, Ordering::SeqCst);
            Some(
                Response::new(200)
                    .header("Content-Type", "application/json")
                    .body(r#"{"ok":true,"ts":"1.1","channel":"C0GLASS"}"#),
            )
        }),
    )
}

/// The DynamoDB figures: the scenario's rounds through `handle_batch`,
/// each on a fresh moto.
pub fn dynamodb_figures(rounds: usize) -> Result<(Vec<Figure>, DynamoReport)> {
    let (_, watch) = load_watch_list()?;
    let venv = python::ensure()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    eprintln!(
        "==> aggregator on moto: {} events in {rounds} rounds of 20 sessions, SQS batches of {SQS_BATCH}",
        rounds * DYNAMODB_EVENTS / DYNAMODB_ROUNDS
    );
    let mut report = DynamoReport::default();
    for round in 0..rounds {
        let moto = test_support::moto::PrivateMoto::start_with(&venv.bin("python"))?;
        let measured = runtime
            .block_on(async {
                tokio::time::timeout(ROUND_TIMEOUT, dynamodb_round(&moto.endpoint, &watch, round))
                    .await
                    .map_err(|_| {
                        anyhow!(
                            "did not finish within {} s; moto's log is {}",
                            ROUND_TIMEOUT.as_secs(),
                            target_dir().join("moto.log").display()
                        )
                    })?
            })
            .with_context(|| format!("DynamoDB scenario, round {}", round + 1))?;
        drop(moto);
        report.add(&measured);
    }
    eprintln!(
        "==> {} events ({} messages, {} redelivered) in {} batches, {:.1} s in handle_batch; DynamoDB requests: {}",
        report.events,
        report.messages,
        report.redeliveries,
        report.batches,
        report.seconds,
        report
            .dynamodb
            .requests
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let figures = vec![
        Figure::with_target(
            "aggregator DynamoDB write requests",
            report.per_event(report.dynamodb.writes()),
            "writes/event",
            Target::AtMost(WRITES_TARGET),
        ),
        Figure::tracked(
            "aggregator DynamoDB read requests",
            report.per_event(report.dynamodb.reads()),
            "reads/event",
            Better::Lower,
        ),
        Figure::tracked(
            "aggregator DynamoDB items written",
            report.per_event(report.dynamodb.items_written),
            "items/event",
            Better::Lower,
        ),
        Figure::tracked(
            "aggregator Slack requests",
            report.per_event(report.slack_requests as u64),
            "requests/event",
            Better::Lower,
        ),
    ];
    Ok((figures, report))
}

/// The aggregator in process on `aws` (moto), with `table`, Slack at
/// `slack_api`, and a DynamoDB client that counts what the store does.
pub fn in_process_aggregator(
    aws: &aws_config::SdkConfig,
    table: &str,
    slack_api: &str,
    channel: &str,
) -> Result<(Aggregator, CountRequests)> {
    let watch_json = super::watch_env_json()?;
    let config = AggregatorConfig::from_lookup(|name| {
        let value = match name {
            "GLASSWATCH_WATCH" => watch_json.as_str(),
            "GLASSWATCH_TABLE" => table,
            "GLASSWATCH_SLACK_MODE" => "bot",
            "GLASSWATCH_SLACK_CHANNEL" => channel,
            "GLASSWATCH_SLACK_SECRET_ARN" => {
                "arn:aws:secretsmanager:eu-west-1:310987654321:secret:glasswatch/slack"
            }
            _ => return None,
        };
        Some(value.to_owned())
    })
    .map_err(|e| anyhow!("aggregator configuration: {e}"))?;
    let counter = CountRequests::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(aws)
            .interceptor(counter.clone())
            .build(),
    );
    let slack_client =
        SlackClient::bot_with_api_base("xoxb-bench", slack_api).context("Slack client")?;
    let aggregator = Aggregator {
        store: Store::new(
            dynamodb,
            config.table.clone(),
            config.quiet_secs,
            config.retention_days,
        ),
        accounts: Accounts::new(aws_sdk_organizations::Client::new(aws), config.accounts_ttl),
        slack: slack_client.into(),
        config,
    };
    Ok((aggregator, counter))
}

/// SDK configuration for the moto at `endpoint`, in the audit region.
pub async fn moto_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await
}

/// On a fresh moto: an organization with [`MOTO_ACCOUNTS`] member
/// accounts (their ids are returned) and the aggregator's `table`.
pub async fn moto_organization(aws: &aws_config::SdkConfig, table: &str) -> Result<Vec<String>> {
    let orgs = aws_sdk_organizations::Client::new(aws);
    orgs.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .context("moto Organizations: CreateOrganization")?;
    let mut accounts = Vec::new();
    for n in 0..MOTO_ACCOUNTS {
        let created = orgs
            .create_account()
            .account_name(format!("bench-member-{n}"))
            .email(format!("bench-member-{n}@example.com"))
            .send()
            .await
            .context("moto Organizations: CreateAccount")?;
        let id = created
            .create_account_status
            .and_then(|s| s.account_id)
            .context("moto Organizations: CreateAccount returned no account id")?;
        accounts.push(id);
    }
    create_table(&aws_sdk_dynamodb::Client::new(aws), table)
        .await
        .context("cannot create the table in moto")?;
    Ok(accounts)
}

/// One round on a fresh moto at `endpoint`: an organization with member
/// accounts, the table, an aggregator whose DynamoDB client counts its
/// requests, and the round's messages in SQS batches.
async fn dynamodb_round(endpoint: &str, watch: &WatchList, round: usize) -> Result<DynamoReport> {
    let aws = moto_config(endpoint).await;
    let table = "glasswatch-bench";
    let accounts = moto_organization(&aws, table).await?;

    let spec = Spec::dynamodb(accounts, round);
    let workload = generate(&spec)?;
    let envelopes = workload
        .events
        .iter()
        .map(|planned| envelope(watch, planned))
        .collect::<Result<Vec<String>>>()?;
    let expected_sessions = ledger_sessions(&session_events(&workload, watch)?);

    let slack_requests = Arc::new(AtomicUsize::new(0));
    let slack = slack_stub(Arc::clone(&slack_requests))?;
    let (aggregator, counter) = in_process_aggregator(
        &aws,
        table,
        &format!("http://{}/api/", slack.addr),
        "C0GLASS",
    )?;

    let bar = progress(workload.deliveries.len() as u64, "messages");
    bar.set_message(format!("round {}/{DYNAMODB_ROUNDS}: messages", round + 1));
    let before = counter.snapshot();
    let started = Instant::now();
    let mut batches = 0;
    for (n, chunk) in workload.deliveries.chunks(SQS_BATCH).enumerate() {
        let now = chunk.iter().map(|d| d.arrival).max().unwrap_or(spec.start);
        let batch = sqs_batch(n, chunk, &envelopes);
        let response = aggregator
            .handle_batch(&batch, now, Instant::now() + BATCH_DEADLINE)
            .await;
        if let Some(failed) = response.batch_item_failures.first() {
            bar.abandon();
            let body = batch
                .records
                .iter()
                .find(|m| m.message_id.as_deref() == Some(failed.item_identifier.as_str()))
                .and_then(|m| m.body.clone())
                .unwrap_or_default();
            let again = aggregator
                .process(&body, now, Instant::now() + BATCH_DEADLINE)
                .await;
            bail!(
                "batch {n}: {} of {} messages failed, e.g. {} (processed again alone: {:?})",
                response.batch_item_failures.len(),
                chunk.len(),
                failed.item_identifier,
                again.map(|_| "ok").map_err(|e| e.to_string())
            );
        }
        batches += 1;
        bar.inc(chunk.len() as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    let counts = counter.snapshot().since(&before);
    bar.finish_and_clear();

    let months: BTreeSet<String> = workload
        .events
        .iter()
        .map(|e| Store::month_partition(e.time))
        .collect();
    let mut sessions = 0;
    for month in &months {
        sessions += aggregator
            .store
            .sessions_in(GSI_BY_TIME, month)
            .await
            .context("cannot list the stored sessions")?
            .len();
    }
    if sessions != expected_sessions {
        bail!(
            "the store holds {sessions} sessions where the in-memory Ledger finds {expected_sessions}: \
             the aggregator did not store the scenario as planned"
        );
    }
    Ok(DynamoReport {
        rounds: 1,
        events: workload.events.len(),
        messages: workload.deliveries.len(),
        redeliveries: workload.redeliveries(),
        batches,
        sessions,
        slack_requests: slack_requests.load(Ordering::SeqCst),
        dynamodb: counts,
        seconds,
    })
}

/// The envelope the agent in the record's account would relay.
fn envelope(watch: &WatchList, planned: &Planned) -> Result<String> {
    let (record, found) = detections(watch, planned)?;
    signal_envelope(
        &record,
        found,
        &format!("env-{}", planned.event_id),
        &rfc3339(planned.time),
    )
}

/// What the central bus delivers for the signal of `record` (bare, as in
/// an envelope's `detail`) with its `detections`: sent by the agent in the
/// record's own account and region, so the envelope check verifies it.
pub fn signal_envelope(
    record: &Value,
    detections: Vec<Detection>,
    id: &str,
    time: &str,
) -> Result<String> {
    let first = detections
        .first()
        .with_context(|| format!("envelope {id}: no detections"))?;
    let (account, region) = (first.account.clone(), first.region.clone());
    let detail_type = detail_type_for(&detections);
    let (signal, _) = build_signal(record, detections, "bench", &account, &region)
        .map_err(|e| anyhow!("cannot build the signal of envelope {id}: {e}"))?;
    let detail = serde_json::to_value(&signal).context("cannot encode a signal")?;
    Ok(bus_envelope(detail_type, detail, id, Some(&account), time, "eu-west-1").to_string())
}

fn sqs_batch(n: usize, deliveries: &[Delivery], envelopes: &[String]) -> SqsEvent {
    sqs_event(deliveries.iter().enumerate().map(|(i, d)| {
        (
            format!("batch-{n}-message-{i}"),
            envelopes.get(d.event).cloned().unwrap_or_default(),
        )
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aws_sdk_dynamodb::config::Credentials;
    use test_support::usage::{Access, access};

    use super::*;

    fn small(seed: u64) -> Spec {
        Spec {
            seed,
            events: 2_000,
            ..Spec::correlation(2_000)
        }
    }

    #[test]
    fn the_workload_is_deterministic_and_shaped_as_specified() {
        let spec = small(7);
        let a = generate(&spec).unwrap();
        assert_eq!(a, generate(&spec).unwrap(), "same spec, same workload");
        assert_ne!(a, generate(&small(8)).unwrap(), "another seed differs");

        assert_eq!(a.events.len(), 2_000);
        let ids: BTreeSet<&str> = a.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), a.events.len(), "event ids are unique");
        // Every event is delivered once, some twice (about 5%).
        let first: usize = a.deliveries.iter().filter(|d| !d.redelivery).count();
        assert_eq!(first, a.events.len());
        let redelivered = a.redeliveries();
        assert!((40..=160).contains(&redelivered), "{redelivered}");
        assert!(
            a.deliveries
                .windows(2)
                .all(|w| w[0].arrival <= w[1].arrival)
        );
        // Delivery order is not event order.
        assert!(
            a.deliveries
                .windows(2)
                .any(|w| a.events[w[0].event].time > a.events[w[1].event].time)
        );
        // Sessions overlap: many are under way at the midpoint.
        let mid = a.events[a.events.len() / 2].time;
        let mut spans: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
        for e in &a.events {
            let span = spans.entry(e.session).or_insert((e.time, e.time));
            span.0 = span.0.min(e.time);
            span.1 = span.1.max(e.time);
        }
        assert_eq!(spans.len(), 40);
        let live = spans
            .values()
            .filter(|(s, e)| (*s..=*e).contains(&mid))
            .count();
        assert!(live >= 10, "{live} sessions under way at once");
    }

    #[test]
    fn every_event_is_flagged_and_each_session_correlates_as_one_across_accounts() {
        let (_, watch) = load_watch_list().unwrap();
        let spec = small(3);
        let workload = generate(&spec).unwrap();
        let events = session_events(&workload, &watch).unwrap();
        assert_eq!(ledger_sessions(&events), spec.sessions);
        // Each session spans 3–5 accounts and uses access keys.
        let mut accounts: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
        for (planned, event) in workload.events.iter().zip(&events) {
            accounts
                .entry(planned.session)
                .or_default()
                .insert(event.account.as_str());
        }
        assert!(accounts.values().all(|a| (3..=6).contains(&a.len())));
        for kind in ["key:ASIA", "console:", "sso:", "source-identity:"] {
            assert!(
                events
                    .iter()
                    .any(|e| e.keys.iter().any(|k| k.starts_with(kind))),
                "no {kind} key"
            );
        }
        // Redelivering in arrival order gives the same sessions.
        let mut ledger = Ledger::new(QUIET_SECS);
        for d in &workload.deliveries {
            ledger.ingest(&events[d.event]);
        }
        assert_eq!(ledger.sessions().len(), spec.sessions);
    }

    #[test]
    fn uneven_and_tiny_sessions_still_hold_and_rounds_differ() {
        let (_, watch) = load_watch_list().unwrap();
        let accounts = vec![
            "111111111111".to_owned(),
            "222222222222".to_owned(),
            "333333333333".to_owned(),
        ];
        let spec = Spec {
            events: 23,
            sessions: 5,
            ..Spec::dynamodb(accounts.clone(), 0)
        };
        let workload = generate(&spec).unwrap();
        assert_eq!(workload.events.len(), 23);
        let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
        for e in &workload.events {
            *sizes.entry(e.session).or_default() += 1;
        }
        assert_eq!(sizes.values().copied().collect::<Vec<_>>(), [5, 5, 5, 4, 4]);
        let events = session_events(&workload, &watch).unwrap();
        assert_eq!(ledger_sessions(&events), 5);
        assert!(
            generate(&Spec {
                accounts: vec!["1".into()],
                ..spec.clone()
            })
            .is_err()
        );
        assert!(
            generate(&Spec {
                sessions: 0,
                ..spec
            })
            .is_err()
        );

        let round = Spec::dynamodb(accounts.clone(), 1);
        assert_eq!(round.events * DYNAMODB_ROUNDS, DYNAMODB_EVENTS);
        let (a, b) = (
            generate(&round).unwrap(),
            generate(&Spec::dynamodb(accounts, 2)).unwrap(),
        );
        assert_ne!(a, b, "each round has its own seed");
        assert_eq!(ledger_sessions(&session_events(&a, &watch).unwrap()), 20);
    }

    #[test]
    fn counts_writes_reads_and_items() {
        assert_eq!(access("TransactWriteItems"), Access::Write);
        assert_eq!(access("BatchWriteItem"), Access::Write);
        assert_eq!(access("Query"), Access::Read);
        assert_eq!(access("CreateTable"), Access::Other);
        let mut counts = Counts::default();
        counts.record("GetItem", 1);
        let before = counts.clone();
        counts.record("TransactWriteItems", 7);
        counts.record("UpdateItem", 1);
        counts.record("GetItem", 1);
        counts.record("Query", 1);
        counts.record("CreateTable", 1);
        assert_eq!((counts.writes(), counts.reads()), (2, 3));
        assert_eq!(counts.items_written, 8);
        let delta = counts.since(&before);
        assert_eq!((delta.writes(), delta.reads()), (2, 2));
        assert_eq!(delta.requests.get("GetItem"), Some(&1));
        assert_eq!(delta.items_written, 8);
    }

    #[test]
    fn the_interceptor_counts_requests_by_operation() {
        // DynamoDB answered by a stand-in that says `{}` to everything.
        let server = HttpServer::start(
            "DynamoDB",
            Arc::new(|_| {
                Some(
                    Response::new(200)
                        .header("Content-Type", "application/x-amz-json-1.0")
                        .body("{}"),
                )
            }),
        )
        .unwrap();
        let counter = CountRequests::default();
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
            .endpoint_url(format!("http://{}", server.addr))
            .credentials_provider(Credentials::new("t", "t", None, None, "test"))
            .interceptor(counter.clone())
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(config);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
            let key = || AttributeValue::S("k".into());
            client
                .put_item()
                .table_name("t")
                .item("pk", key())
                .send()
                .await
                .unwrap();
            client
                .get_item()
                .table_name("t")
                .key("pk", key())
                .send()
                .await
                .unwrap();
            let put = || {
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name("t")
                            .item("pk", key())
                            .build()
                            .unwrap(),
                    )
                    .build()
            };
            client
                .transact_write_items()
                .transact_items(put())
                .transact_items(put())
                .transact_items(put())
                .send()
                .await
                .unwrap();
        });
        let counts = counter.snapshot();
        assert_eq!(counts.requests.get("PutItem"), Some(&1));
        assert_eq!(counts.requests.get("GetItem"), Some(&1));
        assert_eq!(counts.requests.get("TransactWriteItems"), Some(&1));
        assert_eq!((counts.writes(), counts.reads()), (2, 1));
        assert_eq!(counts.items_written, 4);
    }

    #[test]
    fn the_correlation_rate_is_deliveries_over_the_median_pass() {
        let report = CorrelationReport {
            events: 100,
            deliveries: 105,
            sessions_planned: 2,
            sessions_found: 2,
            seconds: vec![0.5, 0.001, 0.002],
        };
        assert_eq!(report.events_per_sec(), Some(105.0 / 0.002));
        let none = CorrelationReport {
            seconds: Vec::new(),
            ..report
        };
        assert_eq!(none.events_per_sec(), None);
    }
}
