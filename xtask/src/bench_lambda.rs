//! The aggregator Lambda's figures for `cargo xtask bench`: its Lambda
//! build (`cargo lambda build`, the zip deploy ships) runs as it would on
//! Lambda, under the Runtime API stand-in of `runtime_api`, with moto for
//! DynamoDB, Organizations and Secrets Manager (the Slack token is fetched
//! at init, as in production) and a Slack stand-in on 127.0.0.1.
//!
//! One process gets `--invocations` invocations (1,000), planned by
//! [`plan`]: SQS batches of 1–10 heartbeats from the organization's 5
//! member accounts × 17 regions (most of a real fleet's traffic), the
//! fixture mix's signals in batches of 10, each batch delivered twice (the
//! second time a redelivery), and every 100th invocation the scheduled
//! tick. Fixture records are moved into the organization's accounts, so
//! the envelope check verifies them and they go the whole way (store,
//! correlation, Slack); a record that is flagged only in its own account
//! (an ARN pinned to it) is left out. Figures: peak RSS after the last
//! invocation (`VmHWM`), init time, time per invocation (moto's speed
//! more than the aggregator's), and the zip size.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use glasswatch_core::signal::{HEARTBEAT_DETAIL_TYPE, Heartbeat, TrailStatus, bus_envelope};
use glasswatch_core::{Record, WatchList, classify};
use serde::Serialize;
use serde_json::{Value, json};
use test_support::sqs_event;

use super::aggregator::{moto_config, moto_organization, rfc3339, signal_envelope, slack_stub};
use super::{
    Better, Figure, LambdaProcess, Launcher, MIB, RSS_TARGET_MB, Stats, Target, bench_logs,
    build_lambda, flagged_fixtures, lambda_env, load_watch_list, millis, progress,
};
use crate::python::{self, workspace_root};
use crate::runtime_api::{Invocation, RuntimeApi};

/// The aggregator's binary target.
const AGGREGATOR_BIN: &str = "glasswatch-aggregator";
/// Every this many invocations, one is the scheduled tick.
const TICK_EVERY: usize = 100;
/// SQS hands at most this many messages to one invocation.
const BATCH: usize = 10;
/// The 17 regions a member account's agents run in (heartbeats here, log
/// files in the replay set).
pub const REGIONS: [&str; 17] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
];
/// The first heartbeat's `sent_at` (2026-11-21T00:00:00Z); each round of
/// every account × region is a minute later.
const HEARTBEAT_START: i64 = 1_795_219_200;
const TABLE: &str = "glasswatch-bench";
const SECRET: &str = "glasswatch/slack";
/// How long one invocation may take on moto.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(120);

/// What one invocation carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// The scheduled tick (coverage check, pending Slack messages).
    Tick,
    /// This many heartbeats, the next ones in turn.
    Heartbeats(usize),
    /// The signals with these indices (a first delivery or a redelivery).
    Signals(Range<usize>),
}

/// The invocations: every [`TICK_EVERY`]th a tick; the signals in batches
/// of [`BATCH`], every batch once and then every batch again, spread
/// evenly over the run; heartbeat batches of 1 to 10 in between.
pub fn plan(invocations: usize, signals: usize) -> Vec<Planned> {
    let mut planned: Vec<Option<Planned>> = (0..invocations)
        .map(|i| ((i + 1) % TICK_EVERY == 0).then_some(Planned::Tick))
        .collect();
    let batches: Vec<Range<usize>> = (0..signals.div_ceil(BATCH))
        .map(|b| b * BATCH..((b + 1) * BATCH).min(signals))
        .collect();
    let deliveries = 2 * batches.len();
    for (j, batch) in batches.iter().cycle().take(deliveries).enumerate() {
        // The next free slot at or after the even spread's position.
        let at = (j + 1) * invocations / (deliveries + 1);
        if let Some(slot) = planned.iter_mut().skip(at).find(|slot| slot.is_none()) {
            *slot = Some(Planned::Signals(batch.clone()));
        }
    }
    planned
        .into_iter()
        .enumerate()
        .map(|(i, slot)| slot.unwrap_or(Planned::Heartbeats(1 + i % BATCH)))
        .collect()
}

/// What the aggregator run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LambdaReport {
    pub binary: String,
    pub zip_mb: f64,
    pub invocations: usize,
    pub ticks: usize,
    pub messages: usize,
    pub heartbeats: usize,
    /// Signal messages sent, redeliveries included.
    pub signals: usize,
    /// Fixture records left out because they are flagged only in their own
    /// account.
    pub fixtures_left_out: usize,
    /// Mean size of a signal envelope (bytes).
    pub signal_bytes: f64,
    pub slack_requests: usize,
    pub init_ms: f64,
    /// Time per invocation, handed out to answered (ms).
    pub invocation_ms_median: f64,
    pub invocation_ms_p90: f64,
    pub invocation_ms_p99: f64,
    pub peak_rss_mb: Option<f64>,
}

impl LambdaReport {
    /// What the cost model takes from it.
    pub fn costed(&self) -> super::cost::AggregatorMeasured {
        super::cost::AggregatorMeasured {
            invocation_ms: self.invocation_ms_median,
            peak_rss_mb: self.peak_rss_mb.unwrap_or(0.0),
            signal_bytes: self.signal_bytes,
        }
    }
}

/// One invocation's payload.
struct Payload {
    label: String,
    kind: Planned,
    messages: usize,
    body: Arc<[u8]>,
}

/// Build, start, run and measure the aggregator; see the module header.
pub fn figures(invocations: u32) -> Result<(Vec<Figure>, LambdaReport)> {
    let built = build_lambda(AGGREGATOR_BIN)?;
    let (_, watch) = load_watch_list()?;
    let watch_json = super::watch_env_json()?;
    let venv = python::ensure()?;
    let moto = test_support::moto::PrivateMoto::start_with(&venv.bin("python"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    let (accounts, secret_arn) = runtime
        .block_on(async {
            let aws = moto_config(&moto.endpoint).await;
            let accounts = moto_organization(&aws, TABLE).await?;
            let secret = aws_sdk_secretsmanager::Client::new(&aws)
                .create_secret()
                .name(SECRET)
                .secret_string("xoxb-bench")
                .send()
                .await
                .context("moto Secrets Manager: CreateSecret")?;
            let arn = secret
                .arn
                .context("moto Secrets Manager: CreateSecret returned no ARN")?;
            anyhow::Ok((accounts, arn))
        })
        .context("cannot set up moto for the aggregator")?;
    let (signals, left_out) = signals(&watch, &accounts)?;
    let planned = plan(invocations as usize, signals.len());
    let payloads = payloads(&planned, &signals, &accounts)?;

    let slack_requests = Arc::new(AtomicUsize::new(0));
    let slack = slack_stub(Arc::clone(&slack_requests))?;
    let logs = bench_logs()?;
    let slack_api = format!("http://{}/api/", slack.addr);
    let launcher = Launcher {
        name: "aggregator",
        binary: built.binary.clone(),
        env: lambda_env(
            "glasswatch-aggregator",
            "eu-west-1",
            &moto.endpoint,
            &logs,
            &[
                ("GLASSWATCH_TABLE", TABLE),
                ("GLASSWATCH_WATCH", &watch_json),
                ("GLASSWATCH_SLACK_MODE", "bot"),
                ("GLASSWATCH_SLACK_SECRET_ARN", &secret_arn),
                ("GLASSWATCH_SLACK_CHANNEL", "C0GLASS"),
                ("GLASSWATCH_SLACK_API_URL", &slack_api),
            ],
        ),
        logs,
    };
    let messages: usize = payloads.iter().map(|p| p.messages).sum();
    eprintln!(
        "==> aggregator Lambda: {} invocations ({messages} messages: {} signal deliveries of {} fixture signals, the rest heartbeats; a tick every {TICK_EVERY}) on moto",
        payloads.len(),
        count(&planned, |p| match p {
            Planned::Signals(r) => r.len(),
            _ => 0,
        }),
        signals.len(),
    );
    let api = RuntimeApi::start()?;
    let (mut aggregator, started) = launcher.spawn(&api)?;
    let init_ms = millis(
        aggregator
            .first_next(&api)?
            .saturating_duration_since(started),
    );
    let bar = progress(payloads.len() as u64, "invocations");
    let mut times = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let (latency, _, body) = aggregator.invoke(
            &api,
            Invocation {
                request_id: format!("agg-{i:05}"),
                event: Arc::clone(&payload.body),
            },
            INVOCATION_TIMEOUT,
            &format!("answer invocation {i} ({})", payload.label),
        )?;
        check_answer(&payload.kind, &body).with_context(|| {
            format!("invocation {i} ({}){}", payload.label, aggregator.output())
        })?;
        times.push(millis(latency));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let rss = peak_rss_mb(&aggregator)?;
    drop(aggregator);
    drop(moto);
    let stats = Stats::of(&times).context("no invocation timed")?;
    let signal_bytes =
        signals.iter().map(String::len).sum::<usize>() as f64 / signals.len().max(1) as f64;
    let report = LambdaReport {
        binary: built.binary.display().to_string(),
        zip_mb: std::fs::metadata(&built.zip)
            .with_context(|| format!("cannot read {}", built.zip.display()))?
            .len() as f64
            / MIB,
        invocations: payloads.len(),
        ticks: count(&planned, |p| usize::from(*p == Planned::Tick)),
        messages,
        heartbeats: count(&planned, |p| match p {
            Planned::Heartbeats(n) => *n,
            _ => 0,
        }),
        signals: count(&planned, |p| match p {
            Planned::Signals(r) => r.len(),
            _ => 0,
        }),
        fixtures_left_out: left_out,
        signal_bytes,
        slack_requests: slack_requests.load(Ordering::SeqCst),
        init_ms,
        invocation_ms_median: stats.median,
        invocation_ms_p90: stats.p90,
        invocation_ms_p99: stats.p99,
        peak_rss_mb: rss,
    };
    let mut figures = vec![built.zip_figure("aggregator zip size")?];
    figures.extend(rss.map(|mb| {
        Figure::with_target(
            &format!("aggregator peak RSS ({} invocations)", payloads.len()),
            mb,
            "MB",
            Target::Below(RSS_TARGET_MB),
        )
    }));
    figures.extend([
        Figure::info("aggregator init time (on moto)", init_ms, "ms"),
        Figure::tracked(
            "aggregator time per invocation (median, on moto)",
            stats.median,
            "ms",
            Better::Lower,
        ),
        Figure::info(
            "aggregator time per invocation (p99, on moto)",
            stats.p99,
            "ms",
        ),
    ]);
    Ok((figures, report))
}

fn count(planned: &[Planned], f: impl Fn(&Planned) -> usize) -> usize {
    planned.iter().map(f).sum()
}

/// `VmHWM` in MiB where Linux's `/proc` has it.
fn peak_rss_mb(process: &LambdaProcess) -> Result<Option<f64>> {
    if !cfg!(target_os = "linux") {
        eprintln!("==> peak RSS is read from Linux's /proc; not measured on this system");
        return Ok(None);
    }
    Ok(Some(process.peak_rss()? as f64 / MIB))
}

/// Every SQS message processed (no `batchItemFailures`); a tick answers
/// with its report.
fn check_answer(kind: &Planned, body: &[u8]) -> Result<()> {
    let answer: Value = serde_json::from_slice(body).with_context(|| {
        format!(
            "the aggregator's answer is not JSON: {}",
            String::from_utf8_lossy(body)
        )
    })?;
    match kind {
        Planned::Tick => {
            if answer.get("coverage_alerts").is_none() {
                bail!("the tick answered {answer}, not its report");
            }
        }
        Planned::Heartbeats(_) | Planned::Signals(_) => {
            let failures = answer
                .get("batchItemFailures")
                .and_then(Value::as_array)
                .with_context(|| format!("the batch answer {answer} has no batchItemFailures"))?;
            if !failures.is_empty() {
                bail!("messages failed: {answer}");
            }
        }
    }
    Ok(())
}

/// The fixture mix's signal envelopes, moved into the organization's
/// `accounts`, and how many fixtures had to be left out.
fn signals(watch: &WatchList, accounts: &[String]) -> Result<(Vec<String>, usize)> {
    let fixtures = flagged_fixtures(&workspace_root().join("core/tests/fixtures"), watch)?;
    let mut moved: BTreeMap<String, String> = BTreeMap::new();
    let mut envelopes = Vec::new();
    let mut left_out = 0;
    for (n, (label, event)) in fixtures.into_iter().enumerate() {
        let record = event.get("detail").cloned().unwrap_or(Value::Null);
        let mut text = record.to_string();
        for pointer in ["/recipientAccountId", "/userIdentity/accountId"] {
            let Some(account) = record.pointer(pointer).and_then(Value::as_str) else {
                continue;
            };
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let next = accounts[moved.len() % accounts.len()].clone();
            let to = moved.entry(account.to_owned()).or_insert(next).clone();
            text = text.replace(account, &to);
        }
        let record: Value = serde_json::from_str(&text)
            .with_context(|| format!("{label}: moved into the organization, not JSON"))?;
        let parsed = Record::from_value(&record)
            .map_err(|e| anyhow!("{label}: moved into the organization: {e}"))?;
        let found = classify(watch, &parsed);
        if found.is_empty() {
            left_out += 1;
            continue;
        }
        envelopes.push(signal_envelope(
            &record,
            found,
            &format!("bench-signal-{n:03}"),
            &parsed.event_time,
        )?);
    }
    if envelopes.is_empty() {
        bail!("no fixture record is flagged once moved into the organization");
    }
    Ok((envelopes, left_out))
}

/// The `n`th heartbeat: account × region in turn, a minute later each
/// round.
fn heartbeat(n: usize, accounts: &[String]) -> Result<String> {
    let account = &accounts[n / REGIONS.len() % accounts.len()];
    let region = REGIONS[n % REGIONS.len()];
    let round = n / (REGIONS.len() * accounts.len());
    let sent_at = rfc3339(HEARTBEAT_START + 60 * round as i64);
    let detail = serde_json::to_value(Heartbeat {
        schema_version: 1,
        account: account.clone(),
        region: region.to_owned(),
        agent_version: "bench".to_owned(),
        sent_at: sent_at.clone(),
        trail: TrailStatus::Logging,
        trails: vec!["organization-trail".to_owned()],
        dead_letters: Some(0),
    })
    .context("cannot encode a heartbeat")?;
    Ok(bus_envelope(
        HEARTBEAT_DETAIL_TYPE,
        detail,
        &format!("bench-heartbeat-{n:06}"),
        Some(account),
        &sent_at,
        region,
    )
    .to_string())
}

/// Every invocation's payload, as the Runtime API hands it out.
fn payloads(planned: &[Planned], signals: &[String], accounts: &[String]) -> Result<Vec<Payload>> {
    let mut heartbeats = 0;
    let mut out = Vec::with_capacity(planned.len());
    for (i, kind) in planned.iter().enumerate() {
        let (label, bodies) = match kind {
            Planned::Tick => {
                let tick = json!({
                    "version": "0", "id": format!("bench-tick-{i}"),
                    "detail-type": "Scheduled Event", "source": "aws.events",
                    "account": "310987654321", "time": rfc3339(HEARTBEAT_START + i as i64),
                    "region": "eu-west-1",
                    "resources": ["arn:aws:events:eu-west-1:310987654321:rule/glasswatch-tick"],
                    "detail": {}
                });
                out.push(Payload {
                    label: "tick".to_owned(),
                    kind: kind.clone(),
                    messages: 0,
                    body: Arc::from(tick.to_string().into_bytes()),
                });
                continue;
            }
            Planned::Heartbeats(n) => {
                let bodies = (heartbeats..heartbeats + n)
                    .map(|h| heartbeat(h, accounts))
                    .collect::<Result<Vec<String>>>()?;
                heartbeats += n;
                (format!("{n} heartbeats"), bodies)
            }
            Planned::Signals(range) => (
                format!("signals {}..{}", range.start, range.end),
                signals[range.clone()].to_vec(),
            ),
        };
        let messages = bodies.len();
        let event = sqs_event(
            bodies
                .into_iter()
                .enumerate()
                .map(|(j, body)| (format!("bench-{i:05}-{j}"), body)),
        );
        let body = serde_json::to_vec(&event).context("cannot encode an SQS event")?;
        out.push(Payload {
            label,
            kind: kind.clone(),
            messages,
            body: Arc::from(body),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_ticks_every_hundredth_and_delivers_every_signal_batch_twice() {
        let planned = plan(1000, 57);
        assert_eq!(planned.len(), 1000);
        assert_eq!(planned[99], Planned::Tick);
        assert_eq!(count(&planned, |p| usize::from(*p == Planned::Tick)), 10);
        let batches: Vec<&Range<usize>> = planned
            .iter()
            .filter_map(|p| match p {
                Planned::Signals(r) => Some(r),
                _ => None,
            })
            .collect();
        // 6 batches (the last of 7), each twice, in the same order.
        assert_eq!(batches.len(), 12);
        assert_eq!(batches[..6], batches[6..]);
        assert_eq!(*batches[5], 50..57);
        assert_eq!(batches.iter().map(|r| r.len()).sum::<usize>(), 114);
        // Heartbeat batches of 1 to 10 everywhere else.
        assert!(planned.iter().all(|p| match p {
            Planned::Heartbeats(n) => (1..=BATCH).contains(n),
            _ => true,
        }));
        assert_eq!(plan(1000, 57), planned, "deterministic");
        // Too few invocations for every delivery: what fits, no panic.
        let small = plan(5, 57);
        assert_eq!(small.len(), 5);
    }

    #[test]
    fn heartbeats_go_round_accounts_and_regions_a_minute_apart() {
        let accounts = vec!["111111111111".to_owned(), "222222222222".to_owned()];
        let first: Value = serde_json::from_str(&heartbeat(0, &accounts).unwrap()).unwrap();
        assert_eq!(first["account"], "111111111111");
        assert_eq!(first["detail"]["region"], "us-east-1");
        assert_eq!(first["detail"]["sent_at"], "2026-11-21T00:00:00Z");
        let second_account: Value =
            serde_json::from_str(&heartbeat(17, &accounts).unwrap()).unwrap();
        assert_eq!(second_account["detail"]["account"], "222222222222");
        let next_round: Value = serde_json::from_str(&heartbeat(34, &accounts).unwrap()).unwrap();
        assert_eq!(next_round["detail"]["account"], "111111111111");
        assert_eq!(next_round["detail"]["sent_at"], "2026-11-21T00:01:00Z");
    }

    #[test]
    fn answers_with_failed_messages_are_errors() {
        let batch = Planned::Heartbeats(1);
        assert!(check_answer(&batch, br#"{"batchItemFailures":[]}"#).is_ok());
        let failed = br#"{"batchItemFailures":[{"itemIdentifier":"m1"}]}"#;
        assert!(check_answer(&batch, failed).is_err());
        assert!(check_answer(&batch, b"{}").is_err());
        assert!(check_answer(&Planned::Tick, br#"{"coverage_alerts":0}"#).is_ok());
        assert!(check_answer(&Planned::Tick, b"null").is_err());
    }
}
