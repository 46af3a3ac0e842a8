//! `cargo xtask audit` as an auditor runs it: the real binary, against
//! moto through a recording proxy (so every AWS request it makes is seen),
//! over stores the aggregator's own handler wrote: 213 sessions over 90
//! days in 5 accounts (one with hostile strings, three still open) and
//! heartbeats; and, in a second table, one session whose items pass 1 MB.
//! The test runs its own moto ([`PrivateMoto`]): moto deep-copies a table
//! for every item of every transaction, so this many writes would strain
//! a shared one, and the big items live apart from the many small writes.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use glasswatch_aggregator::config::AggregatorConfig;
use glasswatch_aggregator::handler::Aggregator;
use glasswatch_aggregator::slack::SlackClient;
use glasswatch_aggregator::store::create_table;
use glasswatch_core::audit::{Manifest, SESSION_COLUMNS};
use glasswatch_core::config::SlackMode;
use glasswatch_core::correlate::Ledger;
use glasswatch_core::session::SessionEvent;
use glasswatch_core::{DetectionKind, Record, Severity, classify};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use test_support::moto::PrivateMoto;
use test_support::proxy::RecordingProxy;
use test_support::{
    heartbeat_envelope, sdk_config, sdk_config_at, signal_envelope, sqs_batch, unique, watch_list,
    workspace_root,
};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// `session.quiet_minutes` of the repository's glasswatch.toml, which the
/// binary reads (it runs in the workspace root).
const QUIET: i64 = 3_600;
const DAY: i64 = 86_400;
const SESSIONS: usize = 210;
const HOSTILE_INDEX: usize = 101;
/// The big session's index, events, and a user agent long enough that
/// its items pass 1 MB.
const BIG_INDEX: usize = 900;
const BIG_EVENTS: usize = 20;
const BIG_AGENT_BYTES: usize = 60_000;
const NAMES: [&str; 5] = ["prod", "staging", "shared-services", "security", "sandbox"];
const HOSTILE_PRINCIPAL: &str = "=HYPERLINK(\"http://evil.example/\",\"x\"),\"q\"\nline2\u{1b}[31m:assumed-role/BreakGlassRole/s";

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn event_id(session: usize, n: usize) -> String {
    format!("{session:08x}-0000-4000-8000-{n:012x}")
}

fn record(account: &str, time: i64, id: &str, identity: Value, source: &str, name: &str) -> Value {
    json!({
        "eventVersion": "1.10",
        "userIdentity": identity,
        "eventTime": rfc3339(time),
        "eventSource": source,
        "eventName": name,
        "awsRegion": if id.ends_with('1') { "eu-west-1" } else { "us-east-1" },
        "sourceIPAddress": "198.51.100.140",
        "userAgent": "aws-cli/2.31.18",
        "eventID": id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
    })
}

fn user(account: &str) -> Value {
    json!({"type": "IAMUser", "principalId": "AIDAQ7XK3BREAKGLASS01",
        "arn": format!("arn:aws:iam::{account}:user/break-glass-1"),
        "accountId": account, "accessKeyId": "AKIAQ7XK3BREAKGLASS1", "userName": "break-glass-1"})
}

fn role_session(account: &str, name: &str, key: &str) -> Value {
    json!({"type": "AssumedRole", "principalId": format!("AROAQ7XK3BGLASSROLE7:{name}"),
        "arn": format!("arn:aws:sts::{account}:assumed-role/BreakGlassRole/{name}"),
        "accountId": account, "accessKeyId": key,
        "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAQ7XK3BGLASSROLE7",
            "arn": format!("arn:aws:iam::{account}:role/BreakGlassRole"),
            "accountId": account, "userName": "BreakGlassRole"}}})
}

fn console_login(account: &str, time: i64, id: &str, identity: Value, ok: bool) -> Value {
    let mut r = record(
        account,
        time,
        id,
        identity,
        "signin.amazonaws.com",
        "ConsoleLogin",
    );
    r["eventType"] = json!("AwsConsoleSignIn");
    r["responseElements"] = json!({"ConsoleLogin": if ok { "Success" } else { "Failure" }});
    r["additionalEventData"] = json!({"MFAUsed": "Yes"});
    if !ok {
        r["errorMessage"] = json!("Failed authentication");
    }
    r
}

fn assume_role(caller: &str, owner: &str, time: i64, id: &str, name: &str, key: &str) -> Value {
    let mut r = record(
        caller,
        time,
        id,
        user(caller),
        "sts.amazonaws.com",
        "AssumeRole",
    );
    r["requestParameters"] = json!({
        "roleArn": format!("arn:aws:iam::{owner}:role/BreakGlassRole"), "roleSessionName": name});
    r["responseElements"] = json!({
        "credentials": {"accessKeyId": key, "expiration": "Oct 14, 2026, 4:05:12 PM"},
        "assumedRoleUser": {"assumedRoleId": format!("AROAQ7XK3BGLASSROLE7:{name}"),
            "arn": format!("arn:aws:sts::{owner}:assumed-role/BreakGlassRole/{name}")}});
    r
}

/// A call by the break-glass role session `name` (key `key`) in `account`.
fn call(account: &str, time: i64, id: &str, name: &str, key: &str, api: (&str, &str)) -> Value {
    record(
        account,
        time,
        id,
        role_session(account, name, key),
        api.0,
        api.1,
    )
}

/// Session `i` of the scenario starts about `90 d - i·10 h` before `now`;
/// its shape is `i % 6`: a console sign-in, a failed sign-in, an
/// AssumeRole across two accounts with its calls (sometimes one denied),
/// a root sign-in, monitoring tampering by a role session, role activity
/// alone. Few events each: moto's transactions cost the table's size.
/// Session 101 has hostile strings; three more are still open.
fn scenario(accounts: &[String], now: i64) -> Vec<Value> {
    let mut records = Vec::new();
    let spacing = 90 * DAY / SESSIONS as i64;
    let seven_days_ago = now - 7 * DAY;
    for i in 0..SESSIONS {
        let mut start = now - 90 * DAY + i as i64 * spacing + (i as i64 * 7_919) % 3_000;
        // `--since 7d` is checked minutes after seeding: keep starts away.
        if (start - seven_days_ago).abs() < 900 {
            start += 1_800;
        }
        let a = &accounts[i % 5];
        let b = &accounts[(i + 1 + i / 5) % 5];
        let b = if b == a { &accounts[(i + 2) % 5] } else { b };
        let id = |n| event_id(i, n);
        let key = format!("ASIAGW{i:014}");
        let name = format!("bg-{i}");
        match i {
            HOSTILE_INDEX => {
                let mut r = call(
                    a,
                    start,
                    &id(0),
                    &name,
                    &key,
                    ("iam.amazonaws.com", "ListUsers"),
                );
                r["userIdentity"] = json!({"type": "AssumedRole", "arn": HOSTILE_PRINCIPAL,
                    "accountId": a, "accessKeyId": key});
                r["sourceIPAddress"] = json!("=1+1,\"x\"\r\n@evil");
                records.push(r);
            }
            _ => match i % 6 {
                0 => records.push(console_login(a, start, &id(0), user(a), true)),
                1 => records.push(console_login(a, start, &id(0), user(a), false)),
                2 => {
                    records.push(assume_role(a, b, start, &id(0), &name, &key));
                    let calls = if i % 12 == 8 { 2 } else { 1 };
                    for n in 1..=calls {
                        let mut r = call(
                            b,
                            start + 60 * n as i64,
                            &id(n),
                            &name,
                            &key,
                            ("ec2.amazonaws.com", "TerminateInstances"),
                        );
                        if n == 2 {
                            r["errorCode"] = json!("Client.UnauthorizedOperation");
                            r["errorMessage"] = json!("You are not authorized");
                        }
                        records.push(r);
                    }
                }
                3 => {
                    let root = json!({"type": "Root", "principalId": a,
                        "arn": format!("arn:aws:iam::{a}:root"), "accountId": a});
                    records.push(console_login(a, start, &id(0), root, true));
                }
                4 => {
                    let mut r = call(
                        a,
                        start,
                        &id(0),
                        &name,
                        &key,
                        ("cloudtrail.amazonaws.com", "StopLogging"),
                    );
                    r["requestParameters"] = json!({"name": "org-trail"});
                    records.push(r);
                }
                _ => records.push(call(
                    a,
                    start,
                    &id(0),
                    &name,
                    &key,
                    ("s3.amazonaws.com", "ListBuckets"),
                )),
            },
        }
    }
    // Still open at `now`: their last event is within the quiet period.
    for (j, minutes) in [12i64, 8, 4].into_iter().enumerate() {
        let i = SESSIONS + j;
        let a = &accounts[j];
        records.push(call(
            a,
            now - minutes * 60,
            &event_id(i, 0),
            &format!("bg-{i}"),
            &format!("ASIAGW{i:014}"),
            ("s3.amazonaws.com", "ListBuckets"),
        ));
    }
    records.sort_by_key(|r| r["eventTime"].as_str().unwrap().to_owned());
    records
}

/// One session of role activity whose every event carries a very long
/// user agent, a day before `now`.
fn big_session(account: &str, now: i64) -> Vec<Value> {
    let agent = format!("aws-cli/2.31.18 {}", "x".repeat(BIG_AGENT_BYTES));
    (0..BIG_EVENTS)
        .map(|n| {
            let mut r = call(
                account,
                now - DAY + n as i64 * 10,
                &event_id(BIG_INDEX, n),
                "bg-big",
                "ASIAGWBIGSESSION0001",
                ("s3.amazonaws.com", "ListBuckets"),
            );
            r["userAgent"] = json!(agent);
            r
        })
        .collect()
}

/// Slack as the aggregator sees it: every message gets a new `ts`;
/// permalinks are built from the channel and `ts` as Slack builds them.
struct FakeSlack(std::sync::atomic::AtomicU64);

impl Respond for FakeSlack {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
        match request.url.path() {
            "/api/chat.getPermalink" => {
                let q: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
                ok(
                    json!({"ok": true, "channel": q["channel"], "permalink": format!(
                    "https://glasswatch-demo.slack.com/archives/{}/p{}",
                    q["channel"], q["message_ts"].replace('.', ""))}),
                )
            }
            _ => {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ok(json!({"ok": true, "channel": "C0GLASS", "ts": format!("1791990000.{n:06}")}))
            }
        }
    }
}

/// What the store should hold, from the reference correlation.
#[derive(Debug)]
struct Seeded {
    table: String,
    accounts: Vec<String>,
    names: BTreeMap<String, String>,
    now: i64,
    /// Every record sent, by eventID.
    records: BTreeMap<String, Value>,
    events: BTreeMap<String, SessionEvent>,
    /// Session id → (summary, event ids in time order).
    sessions: BTreeMap<String, (glasswatch_core::session::Session, Vec<String>)>,
    /// The scenario's session `i` → its session id.
    by_index: BTreeMap<usize, String>,
}

/// Five named accounts of the organization.
struct Org {
    accounts: Vec<String>,
    names: BTreeMap<String, String>,
}

async fn org(aws: &SdkConfig) -> Org {
    let orgs = aws_sdk_organizations::Client::new(aws);
    // One organization per moto account; tests share it.
    let _ = orgs
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await;
    let mut accounts = Vec::new();
    let mut names = BTreeMap::new();
    for name in NAMES {
        let created = orgs
            .create_account()
            .account_name(name)
            .email(format!("{}@example.com", unique(name)))
            .send()
            .await
            .unwrap();
        let id = created.create_account_status.unwrap().account_id.unwrap();
        names.insert(id.clone(), name.to_owned());
        accounts.push(id);
    }
    Org { accounts, names }
}

/// Seed a new table with `records` through the aggregator's handler
/// (signals from organization members, Slack answering), and heartbeats
/// of every account in two regions when asked.
async fn seed(
    aws: &SdkConfig,
    org: &Org,
    records: Vec<Value>,
    now: i64,
    heartbeats: bool,
) -> Seeded {
    let table = unique("gw-audit");
    create_table(&aws_sdk_dynamodb::Client::new(aws), &table)
        .await
        .unwrap();
    let slack = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(FakeSlack(std::sync::atomic::AtomicU64::new(100)))
        .mount(&slack)
        .await;
    let config = AggregatorConfig {
        table: table.clone(),
        slack_mode: SlackMode::Bot,
        slack_secret_arn: "arn:aws:secretsmanager:eu-west-1:310987654321:secret:slack".into(),
        slack_channel: "C0GLASS".into(),
        slack_api_url: format!("{}/api/", slack.uri()),
        quiet_secs: QUIET,
        retention_days: 2555,
        heartbeat_secs: 900,
        accounts_ttl: Duration::from_secs(300),
        watch: watch_list(),
        regions: Vec::new(),
    };
    let client = SlackClient::bot_with_api_base("xoxb-test", &format!("{}/api/", slack.uri()))
        .unwrap()
        .with_max_attempts(1);
    let aggregator = Aggregator::new(config, aws, client);

    let watch = watch_list();
    let mut ledger = Ledger::new(QUIET);
    let mut events = BTreeMap::new();
    let mut bodies = Vec::new();
    for r in &records {
        let parsed = Record::from_value(r).unwrap();
        let event = SessionEvent::from_detections(&classify(&watch, &parsed)).unwrap();
        ledger.ingest(&event);
        events.insert(event.event_id.clone(), event);
        bodies.push(signal_envelope(&watch, r, Some(&parsed.account)).unwrap());
    }
    let deadline = || Instant::now() + Duration::from_secs(60);
    for chunk in bodies.chunks(10) {
        let response = aggregator
            .handle_batch(&sqs_batch(chunk), now, deadline())
            .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    if heartbeats {
        let mut bodies = Vec::new();
        for (n, account) in org.accounts.iter().enumerate() {
            for region in ["eu-west-1", "us-east-1"] {
                let silent = n == 4 && region == "eu-west-1";
                let trail = if n == 3 && region == "us-east-1" {
                    "not_logging"
                } else {
                    "logging"
                };
                let at = if silent { now - 2 * 3_600 } else { now - 60 };
                bodies.push(heartbeat_envelope(account, region, &rfc3339(at), trail));
            }
        }
        let response = aggregator
            .handle_batch(&sqs_batch(&bodies), now, deadline())
            .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }

    let mut sessions = BTreeMap::new();
    let mut by_index = BTreeMap::new();
    for s in ledger.sessions() {
        let mut ids: Vec<String> = s.event_ids.iter().cloned().collect();
        ids.sort_by_key(|id| (events[id].time, id.clone()));
        let index = usize::from_str_radix(&ids[0][..8], 16).unwrap();
        by_index.insert(index, s.session.session_id.clone());
        sessions.insert(s.session.session_id.clone(), (s.session, ids));
    }
    Seeded {
        table,
        accounts: org.accounts.clone(),
        names: org.names.clone(),
        now,
        records: records
            .into_iter()
            .map(|r| (r["eventID"].as_str().unwrap().to_owned(), r))
            .collect(),
        events,
        sessions,
        by_index,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The binary under test, reached through a recording proxy.
struct Cli {
    proxy: RecordingProxy,
    /// A hard link to the xtask binary: engineers share one target
    /// directory, and another checkout's build may replace the binary
    /// while this test runs.
    bin: PathBuf,
}

impl Cli {
    async fn start(upstream: &str) -> Self {
        let built = Path::new(env!("CARGO_BIN_EXE_xtask"));
        let bin = built.with_file_name(unique("xtask-under-test"));
        std::fs::hard_link(built, &bin).unwrap();
        Self {
            proxy: RecordingProxy::start(upstream).await.unwrap(),
            bin,
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.bin);
    }
}

/// Run `xtask audit ARGS` in the workspace root through the proxy.
async fn audit(cli: &Cli, args: &[&str]) -> Output {
    tokio::process::Command::new(&cli.bin)
        .current_dir(workspace_root())
        .arg("audit")
        .args(args)
        .env("AWS_ENDPOINT_URL", &cli.proxy.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .await
        .unwrap()
}

/// Standard output of a run that must succeed.
async fn ok(cli: &Cli, args: &[&str]) -> String {
    let out = audit(cli, args).await;
    assert!(
        out.status.success(),
        "audit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Session ids of `sessions --format json` output, in order.
async fn session_ids(cli: &Cli, table: &str, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["sessions", "--table", table, "--format", "json"];
    args.extend(filters);
    json_lines(&ok(cli, &args).await)
        .iter()
        .map(|v| v["session_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The seeded sessions `keep` selects, newest first (by start, then id,
/// as the indexes sort).
fn expected(
    seed: &Seeded,
    keep: impl Fn(&glasswatch_core::session::Session) -> bool,
) -> Vec<String> {
    let mut out: Vec<&glasswatch_core::session::Session> = seed
        .sessions
        .values()
        .map(|(s, _)| s)
        .filter(|s| keep(s))
        .collect();
    out.sort_by(|a, b| (b.first_seen, &b.session_id).cmp(&(a.first_seen, &a.session_id)));
    out.into_iter().map(|s| s.session_id.clone()).collect()
}

/// RFC 4180 records (quoted fields may hold commas, quotes, line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (_, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "CSV ends mid-record");
    rows
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_queries_over_a_seeded_store() {
    let moto = PrivateMoto::start().unwrap();
    let aws = sdk_config_at(&moto.endpoint, "eu-west-1").await;
    let org = org(&aws).await;
    let now = now();
    let started = Instant::now();
    let seeded = seed(&aws, &org, scenario(&org.accounts, now), now, true).await;
    assert_eq!(
        seeded.sessions.len(),
        SESSIONS + 3,
        "each scenario session is one"
    );
    let big = seed(&aws, &org, big_session(&org.accounts[0], now), now, false).await;
    assert_eq!(big.sessions.len(), 1);
    eprintln!("seeded in {:.0} s", started.elapsed().as_secs_f64());
    let cli = Cli::start(&moto.endpoint).await;
    let table = seeded.table.as_str();
    let t = |i: usize| seeded.sessions[&seeded.by_index[&i]].0.first_seen;

    filters_return_exactly_the_expected_sessions(&seeded, &cli, table, t).await;
    timelines_and_detections_page_past_one_megabyte(&big, &cli).await;
    every_tampering_in_a_period_and_an_account(&seeded, &cli, table).await;
    csv_and_tables_are_safe_with_hostile_strings(&seeded, &cli, table).await;
    the_evidence_pack_verifies(&seeded, &cli, table, t).await;
    coverage_shows_health_per_account_and_region(&seeded, &cli, table).await;
    the_table_is_found_from_the_audit_stack(&seeded, &cli, table, &aws).await;

    let operations: BTreeSet<String> = cli.proxy.requests().iter().map(|r| r.operation()).collect();
    let allowed = BTreeSet::from(
        [
            "Query",
            "GetItem",
            "BatchGetItem",
            "DescribeStacks",
            "ListAccounts",
        ]
        .map(String::from),
    );
    assert!(
        operations.is_subset(&allowed),
        "only key reads, never a Scan: {operations:?}"
    );
    assert!(operations.contains("Query") && operations.contains("BatchGetItem"));
}

async fn filters_return_exactly_the_expected_sessions(
    seed: &Seeded,
    cli: &Cli,
    table: &str,
    t: impl Fn(usize) -> i64,
) {
    let all = expected(seed, |_| true);
    assert_eq!(session_ids(cli, table, &[]).await, all, "everything");

    // Boundaries: --since is inclusive, --until exclusive, to the second.
    let (since, until) = (rfc3339(t(40)), rfc3339(t(60)));
    let range =
        |s: &glasswatch_core::session::Session| t(40) <= s.first_seen && s.first_seen < t(60);
    let got = session_ids(cli, table, &["--since", &since, "--until", &until]).await;
    assert_eq!(got, expected(seed, range));
    assert_eq!(got.last(), Some(&seed.by_index[&40]), "since is inclusive");
    assert!(!got.contains(&seed.by_index[&60]), "until is exclusive");
    let just_after = rfc3339(t(40) + 1);
    let got = session_ids(cli, table, &["--since", &just_after, "--until", &until]).await;
    assert!(!got.contains(&seed.by_index[&40]));
    assert_eq!(got.len(), expected(seed, range).len() - 1);

    let week = seed.now - 7 * DAY;
    assert_eq!(
        session_ids(cli, table, &["--since", "7d"]).await,
        expected(seed, |s| s.first_seen >= week),
        "relative times"
    );

    let account = &seed.accounts[2];
    assert_eq!(
        session_ids(cli, table, &["--account", account]).await,
        expected(seed, |s| s.accounts.contains(account)),
        "by account"
    );
    let principal = format!("arn:aws:iam::{}:user/break-glass-1", seed.accounts[0]);
    let by_principal = session_ids(cli, table, &["--principal", &principal]).await;
    assert!(by_principal.len() > 10);
    assert_eq!(
        by_principal,
        expected(seed, |s| s.principal == principal),
        "by principal"
    );
    assert_eq!(
        session_ids(cli, table, &["--severity", "high"]).await,
        expected(seed, |s| s.severity >= Severity::High),
        "at least high"
    );
    let (account, since) = (&seed.accounts[1], rfc3339(t(100)));
    assert_eq!(
        session_ids(
            cli,
            table,
            &[
                "--severity",
                "critical",
                "--account",
                account,
                "--since",
                &since
            ]
        )
        .await,
        expected(seed, |s| s.severity == Severity::Critical
            && s.accounts.contains(account)
            && s.first_seen >= t(100)),
        "filters combine"
    );
    let open = session_ids(cli, table, &["--open"]).await;
    assert_eq!(open.len(), 3);
    assert_eq!(open, expected(seed, |s| seed.now - s.last_seen < QUIET));

    // A row has everything the table shows.
    let rows = json_lines(&ok(cli, &["sessions", "--table", table, "--format", "json"]).await);
    let id = &seed.by_index[&2];
    let row = rows
        .iter()
        .find(|r| r["session_id"] == id.as_str())
        .unwrap();
    let (session, ids) = &seed.sessions[id];
    assert_eq!(row["entry_path"], "sts:AssumeRole");
    assert_eq!(row["event_count"], ids.len());
    assert_eq!(row["severity"], "critical");
    assert_eq!(row["duration_secs"], session.last_seen - session.first_seen);
    assert_eq!(row["accounts"].as_array().unwrap().len(), 2);
    assert_eq!(
        row["accounts"][0]["name"],
        seed.names[session.accounts.first().unwrap()].as_str()
    );
    let link = row["slack_permalink"].as_str().unwrap();
    assert!(
        link.starts_with("https://glasswatch-demo.slack.com/archives/C0GLASS/p1791990000"),
        "{link}"
    );
}

async fn timelines_and_detections_page_past_one_megabyte(seed: &Seeded, cli: &Cli) {
    let table = seed.table.as_str();
    let big = &seed.by_index[&BIG_INDEX];
    let (session, ids) = &seed.sessions[big];
    let mark = cli.proxy.requests().len();
    let text = ok(cli, &["session", big, "--table", table, "--format", "json"]).await;
    let timeline: Value = serde_json::from_str(&text).unwrap();
    let got: Vec<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, *ids, "every event, in time order");
    assert_eq!(timeline["session"]["event_count"], BIG_EVENTS);
    let paged = cli.proxy.requests()[mark..]
        .iter()
        .filter(|r| r.operation() == "Query" && r.body.contains(&format!("SESSION#{big}")))
        .filter(|r| r.body.contains("ExclusiveStartKey"))
        .count();
    assert!(paged >= 1, "the timeline's items pass 1 MB, so it pages");

    // Detections: every session_activity of the big session's hour.
    let (since, until) = (rfc3339(session.first_seen), rfc3339(session.last_seen + 1));
    let mark = cli.proxy.requests().len();
    let lines = json_lines(
        &ok(
            cli,
            &[
                "events",
                "--table",
                table,
                "--since",
                &since,
                "--until",
                &until,
                "--kind",
                "session_activity",
                "--format",
                "json",
            ],
        )
        .await,
    );
    let mut want: Vec<&SessionEvent> = seed
        .events
        .values()
        .filter(|e| e.kinds.contains(&DetectionKind::SessionActivity))
        .filter(|e| session.first_seen <= e.time && e.time <= session.last_seen)
        .collect();
    want.sort_by(|a, b| (b.time, &b.event_id).cmp(&(a.time, &a.event_id)));
    let got: Vec<&str> = lines
        .iter()
        .map(|l| l["event_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = want.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(got, want, "newest first, across pages");
    assert!(lines.iter().all(|l| l["session_id"] == big.as_str()));
    assert!(
        cli.proxy.requests()[mark..]
            .iter()
            .any(|r| r.body.contains("\"by-kind\"") && r.body.contains("ExclusiveStartKey")),
        "the by-kind partition passes 1 MB, so it pages"
    );
}

async fn every_tampering_in_a_period_and_an_account(seed: &Seeded, cli: &Cli, table: &str) {
    let tamper = |account: Option<&str>| {
        let mut v: Vec<&SessionEvent> = seed
            .events
            .values()
            .filter(|e| e.kinds.contains(&DetectionKind::MonitoringTamper))
            .filter(|e| account.is_none_or(|a| e.account == a))
            .collect();
        v.sort_by(|a, b| (b.time, &b.event_id).cmp(&(a.time, &a.event_id)));
        v.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>()
    };
    let got = |text: String| -> Vec<String> {
        json_lines(&text)
            .iter()
            .map(|l| l["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    fn args<'a>(table: &'a str, account: Option<&'a str>) -> Vec<&'a str> {
        let mut args = vec!["events", "--table", table, "--since", "91d"];
        args.extend(["--kind", "monitoring_tamper", "--format", "json"]);
        args.extend(account.into_iter().flat_map(|a| ["--account", a]));
        args
    }
    let all = got(ok(cli, &args(table, None)).await);
    assert_eq!(all, tamper(None));
    assert!(all.len() > 30);
    let account = seed.accounts[3].as_str();
    let mine = got(ok(cli, &args(table, Some(account))).await);
    assert_eq!(mine, tamper(Some(account)));
    assert!(!mine.is_empty() && mine.len() < all.len());
}

async fn csv_and_tables_are_safe_with_hostile_strings(seed: &Seeded, cli: &Cli, table: &str) {
    let hostile = &seed.by_index[&HOSTILE_INDEX];
    let csv = ok(cli, &["sessions", "--table", table, "--format", "csv"]).await;
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], SESSION_COLUMNS);
    assert_eq!(
        rows.len(),
        seed.sessions.len() + 1,
        "one record per session"
    );
    assert!(rows.iter().all(|r| r.len() == SESSION_COLUMNS.len()));
    let row = rows.iter().find(|r| &r[0] == hostile).unwrap();
    // The principal comes back whole, defused by a leading quote.
    assert_eq!(row[3], format!("'{HOSTILE_PRINCIPAL}"));
    assert!(
        rows.iter()
            .skip(1)
            .all(|r| !r.iter().any(|f| f.starts_with(['=', '+', '-', '@'])))
    );

    // Tables keep escapes and line breaks off the terminal.
    let text = ok(cli, &["session", hostile, "--table", table]).await;
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
    assert!(
        text.contains("=HYPERLINK(\"http://evil.example/\",\"x\"),\"q\"\u{fffd}line2\u{fffd}[31m")
    );
    assert!(
        text.contains("=1+1,\"x\"\u{fffd}\u{fffd}@evil"),
        "source IP: {text}"
    );
    assert!(text.trim_end().ends_with("1 events"), "{text}");
    let text = ok(
        cli,
        &["sessions", "--table", table, "--account", &seed.accounts[2]],
    )
    .await;
    let count = expected(seed, |s| s.accounts.contains(&seed.accounts[2])).len();
    assert_eq!(text.lines().count(), count + 2, "header, rows, count");
    assert!(text.lines().next().unwrap().starts_with("SESSION  "));
    assert!(text.contains(&format!("{} (shared-services)", seed.accounts[2])));
    assert!(text.trim_end().ends_with(&format!("{count} sessions")));

    // A session's timeline as a table, with the failed call's error code.
    let assume = &seed.by_index[&8];
    let text = ok(cli, &["session", assume, "--table", table]).await;
    assert!(text.contains("principal:"), "{text}");
    assert!(text.contains("TerminateInstances") && text.contains("Client.UnauthorizedOperation"));
    let count = seed.sessions[assume].1.len();
    assert_eq!(count, 3);
    assert!(
        text.trim_end().ends_with(&format!("{count} events")),
        "{text}"
    );
}

async fn the_evidence_pack_verifies(
    seed: &Seeded,
    cli: &Cli,
    table: &str,
    t: impl Fn(usize) -> i64,
) {
    let out = std::env::temp_dir().join(unique("gw-evidence"));
    let (since, until) = (rfc3339(t(95)), rfc3339(t(106)));
    let export = [
        "export",
        "--table",
        table,
        "--since",
        &since,
        "--until",
        &until,
        "--out",
        out.to_str().unwrap(),
    ];
    ok(cli, &export).await;
    let ids = expected(seed, |s| t(95) <= s.first_seen && s.first_seen < t(106));
    assert_eq!(ids.len(), 11);
    assert!(ids.contains(&seed.by_index[&HOSTILE_INDEX]));

    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.sessions, 11);
    let events: usize = ids.iter().map(|id| seed.sessions[id].1.len()).sum();
    assert_eq!(manifest.events, events as u64);
    assert_eq!(manifest.table, table);
    assert!(manifest.pruned_records.is_empty());
    // Every hash verifies, and the manifest lists every file there is.
    for file in &manifest.files {
        let bytes = std::fs::read(out.join(&file.path)).unwrap();
        assert_eq!(bytes.len() as u64, file.bytes, "{}", file.path);
        assert_eq!(sha256_hex(&bytes), file.sha256, "{}", file.path);
    }
    let mut on_disk = BTreeSet::new();
    for entry in walk(&out) {
        on_disk.insert(
            entry
                .strip_prefix(&out)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut listed: BTreeSet<String> = manifest.files.iter().map(|f| f.path.clone()).collect();
    listed.extend(["manifest.json".to_owned(), "SHA256SUMS".to_owned()]);
    assert_eq!(on_disk, listed);
    assert_eq!(
        std::fs::read_to_string(out.join("SHA256SUMS")).unwrap(),
        manifest.sha256sums()
    );
    // One JSONL per session: the original records, in time order.
    for id in &ids {
        let text = std::fs::read_to_string(out.join(format!("sessions/{id}.jsonl"))).unwrap();
        let lines: Vec<Value> = json_lines(&text);
        let want: Vec<&Value> = seed.sessions[id]
            .1
            .iter()
            .map(|e| &seed.records[e])
            .collect();
        assert_eq!(lines.iter().collect::<Vec<_>>(), want, "session {id}");
    }
    let csv = parse_csv(&std::fs::read_to_string(out.join("sessions.csv")).unwrap());
    assert_eq!(csv[0], SESSION_COLUMNS);
    let got: Vec<&str> = csv[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(got, ids);
    let hostile = csv
        .iter()
        .find(|r| r[0] == seed.by_index[&HOSTILE_INDEX])
        .unwrap();
    assert_eq!(hostile[3], format!("'{HOSTILE_PRINCIPAL}"));

    // A pack never overwrites one.
    let again = audit(cli, &export).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    std::fs::remove_dir_all(&out).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn coverage_shows_health_per_account_and_region(seed: &Seeded, cli: &Cli, table: &str) {
    let rows = json_lines(&ok(cli, &["coverage", "--table", table, "--format", "json"]).await);
    assert_eq!(rows.len(), 10);
    let health: BTreeMap<(String, String), String> = rows
        .iter()
        .map(|r| {
            (
                (
                    r["account"]["id"].as_str().unwrap().to_owned(),
                    r["region"].as_str().unwrap().to_owned(),
                ),
                r["health"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (n, account) in seed.accounts.iter().enumerate() {
        for region in ["eu-west-1", "us-east-1"] {
            let want = match (n, region) {
                (4, "eu-west-1") => "silent",
                (3, "us-east-1") => "trail_not_logging",
                _ => "healthy",
            };
            assert_eq!(health[&(account.clone(), region.to_owned())], want);
        }
    }
    assert!(rows.iter().all(|r| r["account"]["name"].is_string()));
    let text = ok(cli, &["coverage", "--table", table]).await;
    assert!(text.starts_with("ACCOUNT"), "{text}");
    assert!(text.trim_end().ends_with("10 account×regions"), "{text}");
}

async fn the_table_is_found_from_the_audit_stack(
    seed: &Seeded,
    cli: &Cli,
    table: &str,
    aws: &SdkConfig,
) {
    let prefix = unique("gwa").replace('-', "");
    let prefix = &prefix[..prefix.len().min(20)];
    let text = std::fs::read_to_string(workspace_root().join("glasswatch.toml")).unwrap();
    let config = std::env::temp_dir().join(format!("{prefix}.toml"));
    std::fs::write(
        &config,
        text.replace(
            "name_prefix = \"glasswatch\"",
            &format!("name_prefix = \"{prefix}\""),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // No stack yet: the error says what to do.
    let out = audit(cli, &["sessions", "--config", config]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{prefix}-audit")) && stderr.contains("--table"),
        "{stderr}"
    );

    let template = json!({
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"TableName": {"Value": table}}
    });
    aws_sdk_cloudformation::Client::new(aws)
        .create_stack()
        .stack_name(format!("{prefix}-audit"))
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();
    let lines = json_lines(&ok(cli, &["sessions", "--config", config, "--format", "json"]).await);
    assert_eq!(lines.len(), seed.sessions.len());
    std::fs::remove_file(config).unwrap();
}

/// Bad arguments fail before any AWS request, with a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dates_and_flags_fail_with_a_hint() {
    // Nothing listens here: a request would fail differently.
    let cli = Cli::start("http://127.0.0.1:9").await;
    for (args, hint) in [
        (vec!["sessions", "--since", "7x"], "such as 7d"),
        (vec!["sessions", "--until", "2026-13-01"], "such as 7d"),
        (
            vec!["sessions", "--since", "1d", "--until", "2d"],
            "is not before",
        ),
        (vec!["events", "--since", "yesterday"], "RFC 3339"),
        (
            vec!["export", "--since", "7d", "--until", "later", "--out", "x"],
            "such as 7d",
        ),
        (vec!["events"], "--since <TIME>"),
        (
            vec!["sessions", "--severity", "urgent"],
            "possible values: info, medium, high, critical",
        ),
        (
            vec!["events", "--since", "7d", "--kind", "tamper"],
            "monitoring_tamper",
        ),
        (
            vec!["sessions", "--acount", "1"],
            "tip: a similar argument exists: '--account'",
        ),
    ] {
        let mut args = args;
        args.extend(["--table", "t"]);
        let out = audit(&cli, &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(hint), "{args:?}: {stderr}");
    }
    assert!(
        cli.proxy.requests().is_empty(),
        "{:?}",
        cli.proxy.requests()
    );
}

/// Seed a table in the moto at `GLASSWATCH_MOTO_ENDPOINT` and keep it, for
/// trying the commands by hand (the README's examples come from one):
/// `cargo test -p xtask --test audit -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds a table and leaves it, for demonstrations"]
async fn seed_a_demo_table() {
    let aws = sdk_config("eu-west-1").await;
    let org = org(&aws).await;
    let now = now();
    let seeded = seed(&aws, &org, scenario(&org.accounts, now), now, true).await;
    println!("table: {}", seeded.table);
    for (label, i) in [
        ("assume-role", 8),
        ("tamper", 16),
        ("hostile", HOSTILE_INDEX),
    ] {
        println!("{label} session: {}", seeded.by_index[&i]);
    }
}
