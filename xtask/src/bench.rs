//! `cargo xtask bench`: performance figures against their targets, in
//! parts that `--only` selects.
//!
//! - `agent`: the agent's release binary runs as it would on Lambda,
//!   against the local stand-ins of `runtime_api` (Lambda Runtime API and
//!   EventBridge), so no AWS account is needed. Figures: init time (start
//!   to the first `GET .../invocation/next`, over several starts), time per
//!   event (the event handed out to its answer posted back) and throughput
//!   over a run of fixture events, the peak RSS of that run (`VmHWM`), and
//!   the binary size.
//! - `correlation` and `dynamodb` (together `aggregator`): correlation
//!   throughput of a release build, and the aggregator's DynamoDB requests
//!   per event on moto; see `bench_aggregator.rs`.
//!
//! New figures are more entries in the [`Figure`] list.

#[path = "bench_aggregator.rs"]
mod aggregator;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use glasswatch_core::input::for_each_document;
use glasswatch_core::{Config, Record, WatchList, classify};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};

use crate::python::{target_dir, workspace_root};
use crate::run_command;
use crate::runtime_api::{EventBridgeStub, Invocation, Report, RuntimeApi};

/// Median init time must stay below this (ms).
const INIT_TARGET_MS: f64 = 25.0;
/// Peak RSS over the event run must stay below this (MB, as Lambda counts
/// memory: MiB).
const RSS_TARGET_MB: f64 = 24.0;
/// How long a start may take to reach its first `next`.
const FIRST_NEXT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one event may take; longer than the agent's default relay
/// budget (20 s), so a relay that gives up is reported as its own error.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait checks whether the agent has exited.
const POLL: Duration = Duration::from_millis(50);
/// Lines of the agent's output shown when it fails.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many times to start the agent to time its init.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    init_runs: u32,
    /// How many events to send through one agent process.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    events: u32,
    /// How many generated events to time correlation over.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    correlation_events: u32,
    /// Measure only these parts (comma-separated or repeated); all of them
    /// by default.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    only: Vec<Part>,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Report missed targets, but exit 0 anyway.
    #[arg(long)]
    no_fail: bool,
    /// Internal: time correlation and print the report as JSON (what the
    /// release build of xtask is run for).
    #[arg(long, hide = true)]
    internal_correlation: bool,
}

/// A part of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// The agent's init time, time per event, peak RSS and binary size.
    Agent,
    /// `correlation` and `dynamodb`.
    Aggregator,
    /// Correlation throughput (`Ledger::ingest`, release build).
    Correlation,
    /// The aggregator's DynamoDB requests per event, on moto.
    Dynamodb,
}

/// Which parts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    agent: bool,
    correlation: bool,
    dynamodb: bool,
}

impl Parts {
    /// Everything when `only` is empty, else what it names.
    fn of(only: &[Part]) -> Self {
        if only.is_empty() {
            return Self {
                agent: true,
                correlation: true,
                dynamodb: true,
            };
        }
        let named = |part| only.contains(&part);
        Self {
            agent: named(Part::Agent),
            correlation: named(Part::Correlation) || named(Part::Aggregator),
            dynamodb: named(Part::Dynamodb) || named(Part::Aggregator),
        }
    }
}

/// A bound a figure must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Strictly less than.
    Below(f64),
    /// Less than or equal to.
    AtMost(f64),
    /// Greater than or equal to.
    AtLeast(f64),
}

impl Target {
    fn met_by(self, value: f64) -> bool {
        match self {
            Self::Below(limit) => value < limit,
            Self::AtMost(limit) => value <= limit,
            Self::AtLeast(limit) => value >= limit,
        }
    }

    fn describe(self, unit: &str) -> String {
        let (sign, limit) = match self {
            Self::Below(limit) => ("<", limit),
            Self::AtMost(limit) => ("≤", limit),
            Self::AtLeast(limit) => ("≥", limit),
        };
        format!("{sign} {} {unit}", format_value(limit))
    }
}

/// One measured figure; `ok` is whether it meets its target (always true
/// without one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<Target>,
    pub ok: bool,
}

impl Figure {
    /// A figure reported for information, with no target.
    fn info(name: &str, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            value,
            unit,
            target: None,
            ok: true,
        }
    }

    fn with_target(name: &str, value: f64, unit: &'static str, target: Target) -> Self {
        Self {
            name: name.to_owned(),
            value,
            unit,
            target: Some(target),
            ok: target.met_by(value),
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.internal_correlation {
        return aggregator::correlation_internal(args.correlation_events as usize);
    }
    let parts = Parts::of(&args.only);
    let mut figures = Vec::new();
    let mut report = serde_json::Map::new();
    if parts.agent {
        let (agent, binary) = agent_figures(args)?;
        figures.extend(agent);
        report.insert("agent_binary".into(), json!(binary));
        report.insert("init_runs".into(), json!(args.init_runs));
        report.insert("events".into(), json!(args.events));
    }
    if parts.correlation {
        let (correlation, measured) = aggregator::correlation_figures(args.correlation_events)?;
        figures.extend(correlation);
        report.insert("correlation".into(), json!(measured));
    }
    if parts.dynamodb {
        let (dynamodb, measured) = aggregator::dynamodb_figures()?;
        figures.extend(dynamodb);
        report.insert("aggregator".into(), json!(measured));
    }

    println!("{}", render_table(&figures));
    if let Some(path) = &args.json {
        report.insert("figures".into(), json!(figures));
        let text = serde_json::to_string_pretty(&Value::Object(report))
            .context("cannot encode the figures")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("==> figures written to {}", path.display());
    }
    let missed: Vec<&str> = figures
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.name.as_str())
        .collect();
    if !missed.is_empty() {
        let message = format!("missed targets: {}", missed.join(", "));
        if !args.no_fail {
            bail!(message);
        }
        eprintln!("==> {message} (--no-fail: exiting 0)");
    }
    Ok(())
}

/// `glasswatch.toml` at the workspace root, and its watch list.
fn load_watch_list() -> Result<(Config, WatchList)> {
    let config_path = workspace_root().join("glasswatch.toml");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let config =
        Config::parse(&text, &config_path.display().to_string()).map_err(anyhow::Error::msg)?;
    let watch = config
        .watch_list()
        .map_err(|e| anyhow!("{}: invalid watch list: {e:?}", config_path.display()))?;
    Ok((config, watch))
}

/// The agent's figures, and the binary they are of.
fn agent_figures(args: &Args) -> Result<(Vec<Figure>, PathBuf)> {
    let binary = build_agent()?;
    let root = workspace_root();
    let (config, watch) = load_watch_list()?;
    let events = fixture_events(&root.join("core/tests/fixtures"), &watch)?;
    let logs = target_dir().join("bench");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    // An empty file for the SDK's shared config and credentials: nothing
    // from `~/.aws` is read, and nothing is logged about a missing file.
    let empty = logs.join("empty-aws-config");
    File::create(&empty).with_context(|| format!("cannot create {}", empty.display()))?;
    let stub = EventBridgeStub::start()?;
    let launcher = Launcher {
        binary: binary.clone(),
        env: agent_env(
            &config.watch.to_env_json(&config.deploy.name_prefix),
            &stub.endpoint(),
            &empty,
        ),
        logs,
    };

    let mut figures = Vec::new();
    let size = std::fs::metadata(&binary)
        .with_context(|| format!("cannot read {}", binary.display()))?
        .len();
    figures.push(Figure::info("agent binary size", size as f64 / MIB, "MB"));
    figures.extend(init_figures(&launcher, args.init_runs)?);
    figures.extend(event_figures(&launcher, &stub, &events, args.events)?);
    Ok((figures, binary))
}

const MIB: f64 = 1024.0 * 1024.0;

/// The agent's binary target (`cargo lambda build` packages it as
/// `bootstrap`).
const AGENT_BIN: &str = "glasswatch-agent";

fn build_agent() -> Result<PathBuf> {
    eprintln!("==> cargo build --release -p glasswatch-agent --bin {AGENT_BIN}");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(workspace_root()).args([
        "build",
        "--release",
        "-p",
        "glasswatch-agent",
        "--bin",
        AGENT_BIN,
    ]);
    run_command(&mut cargo, "build the agent release binary")?;
    let binary = target_dir().join("release").join(AGENT_BIN);
    if !binary.is_file() {
        bail!("the build succeeded but {} is missing", binary.display());
    }
    Ok(binary)
}

/// The agent's environment, as Lambda and deploy would set it, pointing at
/// the stand-ins. Everything else is cleared, so nothing from the caller's
/// shell (an AWS profile, an endpoint override) changes the figures.
fn agent_env(
    watch_json: &str,
    events_endpoint: &str,
    aws_config_file: &Path,
) -> Vec<(String, String)> {
    let aws_config_file = aws_config_file.display().to_string();
    [
        (
            "GLASSWATCH_BUS_ARN",
            "arn:aws:events:eu-west-1:310987654321:event-bus/glasswatch",
        ),
        ("GLASSWATCH_WATCH", watch_json),
        ("GLASSWATCH_LOG", "warn"),
        ("AWS_ENDPOINT_URL", events_endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", &aws_config_file),
        ("AWS_SHARED_CREDENTIALS_FILE", &aws_config_file),
        ("AWS_LAMBDA_FUNCTION_NAME", "glasswatch-agent"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/glasswatch-agent"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Starts agent processes with the bench environment.
#[derive(Debug)]
struct Launcher {
    binary: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
}

impl Launcher {
    /// Start the agent against `api`; also returns the instant just before
    /// the process was spawned.
    fn spawn(&self, api: &RuntimeApi) -> Result<(AgentProcess, Instant)> {
        let stdout = self.logs.join("agent.stdout.log");
        let stderr = self.logs.join("agent.stderr.log");
        let create = |path: &Path| {
            File::create(path).with_context(|| format!("cannot create {}", path.display()))
        };
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", api.host_port())
            .stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?);
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        Ok((
            AgentProcess {
                child,
                stdout,
                stderr,
            },
            started,
        ))
    }
}

/// A running agent, killed when dropped, whatever happened.
#[derive(Debug)]
struct AgentProcess {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AgentProcess {
    /// What the agent has said so far, for an error message.
    fn output(&self) -> String {
        let mut out = String::new();
        for (name, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            if !tail.is_empty() {
                out += &format!(
                    "\nagent {name} ({}):\n  {}",
                    path.display(),
                    tail.join("\n  ")
                );
            }
        }
        out
    }

    /// The next report from `api`, within `timeout`; an error if the agent
    /// exits or stays silent.
    fn wait(&mut self, api: &RuntimeApi, timeout: Duration, what: &str) -> Result<Report> {
        let deadline = Instant::now() + timeout;
        loop {
            let slice = POLL.min(deadline.saturating_duration_since(Instant::now()));
            match api.reports.recv_timeout(slice) {
                Ok(report) => return Ok(report),
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("the Runtime API stand-in stopped while waiting for {what}")
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if let Some(status) = self.child.try_wait().context("cannot check on the agent")? {
                // Anything it said before exiting comes first.
                if let Ok(report) = api.reports.try_recv() {
                    return Ok(report);
                }
                bail!(
                    "the agent exited ({status}) while the bench waited for {what}{}",
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the agent did not get to {what} within {} s{}",
                    timeout.as_secs(),
                    self.output()
                );
            }
        }
    }

    /// An error for a report that means the agent failed.
    fn failure(&self, report: Report) -> anyhow::Error {
        let text = |body: &[u8]| String::from_utf8_lossy(body).into_owned();
        let message = match report {
            Report::InitError { body } => format!("the agent's init failed: {}", text(&body)),
            Report::InvocationError { request_id, body } => {
                format!("invocation {request_id} failed: {}", text(&body))
            }
            Report::Unexpected { method, path } => {
                format!(
                    "the agent called {method} {path}, which the Runtime API stand-in does not know"
                )
            }
            Report::Next { .. } => "the agent asked for an event out of turn".to_owned(),
            Report::Completed { request_id, .. } => {
                format!("the agent answered invocation {request_id}, which was not pending")
            }
        };
        anyhow!("{message}{}", self.output())
    }

    /// `VmHWM` (peak resident set size) in bytes, from `/proc`.
    fn peak_rss(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        vm_hwm_bytes(&status).with_context(|| format!("{path} has no readable VmHWM line"))
    }
}

/// The `VmHWM:   12345 kB` line of `/proc/PID/status`, in bytes.
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let mut parts = line.split_whitespace();
    let kb: u64 = parts.next()?.parse().ok()?;
    (parts.next()? == "kB").then_some(kb * 1024)
}

fn progress(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} ({per_sec}, {eta})")
            .expect("static template"),
    );
    bar.set_message(message);
    bar
}

/// Start the agent `runs` times; each time from just before the spawn to
/// its first `GET .../invocation/next`.
fn init_figures(launcher: &Launcher, runs: u32) -> Result<Vec<Figure>> {
    eprintln!("==> agent init time: {runs} starts");
    let bar = progress(u64::from(runs), "starts");
    let mut times = Vec::new();
    for _ in 0..runs {
        let api = RuntimeApi::start()?;
        let (mut agent, started) = launcher.spawn(&api)?;
        match agent.wait(
            &api,
            FIRST_NEXT_TIMEOUT,
            "its first GET .../invocation/next",
        )? {
            Report::Next { at } => times.push(millis(at.saturating_duration_since(started))),
            other => return Err(agent.failure(other)),
        }
        drop(agent);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let stats = Stats::of(&times).context("no init time measured")?;
    Ok(vec![
        Figure::with_target(
            "agent init time (median)",
            stats.median,
            "ms",
            Target::Below(INIT_TARGET_MS),
        ),
        Figure::info("agent init time (p90)", stats.p90, "ms"),
        Figure::info("agent init time (min)", stats.min, "ms"),
        Figure::info("agent init time (max)", stats.max, "ms"),
    ])
}

/// One agent process, `count` events one after the other.
fn event_figures(
    launcher: &Launcher,
    stub: &EventBridgeStub,
    events: &[BenchEvent],
    count: u32,
) -> Result<Vec<Figure>> {
    eprintln!(
        "==> agent per-event time and peak RSS: {count} events (cycling through {} fixture records)",
        events.len()
    );
    let api = RuntimeApi::start()?;
    let (mut agent, _) = launcher.spawn(&api)?;
    match agent.wait(
        &api,
        FIRST_NEXT_TIMEOUT,
        "its first GET .../invocation/next",
    )? {
        Report::Next { .. } => {}
        other => return Err(agent.failure(other)),
    }
    let entries_before = stub.entries();
    let bar = progress(u64::from(count), "events");
    let mut latencies = Vec::new();
    let started = Instant::now();
    for (i, event) in (0..count).zip(events.iter().cycle()) {
        let request_id = format!("bench-{i:06}");
        api.invoke(Invocation {
            request_id: request_id.clone(),
            event: Arc::clone(&event.body),
        })?;
        let what = format!("answer event {i} ({})", event.label);
        loop {
            match agent.wait(&api, EVENT_TIMEOUT, &what)? {
                // The runtime polls for the next event before or after
                // the answer is seen here; either is fine.
                Report::Next { .. } => {}
                Report::Completed {
                    request_id: id,
                    latency,
                    body,
                } if id == request_id => {
                    check_relayed(&body).with_context(|| {
                        format!(
                            "event {i} ({}) was not relayed{}",
                            event.label,
                            agent.output()
                        )
                    })?;
                    latencies.push(micros(latency));
                    break;
                }
                other => return Err(agent.failure(other)),
            }
        }
        bar.inc(1);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    // `VmHWM` is Linux's; elsewhere the figure is left out.
    let rss = if cfg!(target_os = "linux") {
        Some(agent.peak_rss()?)
    } else {
        eprintln!("==> peak RSS is read from Linux's /proc; not measured on this system");
        None
    };
    drop(agent);
    let relayed = stub.entries() - entries_before;
    if relayed < count as usize {
        bail!("the EventBridge stand-in received {relayed} entries for {count} events");
    }
    let stats = Stats::of(&latencies).context("no event time measured")?;
    let mut figures = vec![
        Figure::info("agent time per event (median)", stats.median, "µs"),
        Figure::info("agent time per event (p90)", stats.p90, "µs"),
        Figure::info("agent time per event (p99)", stats.p99, "µs"),
        Figure::info(
            "agent throughput",
            f64::from(count) / elapsed.as_secs_f64(),
            "events/s",
        ),
    ];
    figures.extend(rss.map(|bytes| {
        Figure::with_target(
            "agent peak RSS",
            bytes as f64 / MIB,
            "MB",
            Target::Below(RSS_TARGET_MB),
        )
    }));
    Ok(figures)
}

/// The agent answers with its `Outcome` in debug form, as a JSON string.
fn check_relayed(body: &[u8]) -> Result<()> {
    let outcome: String = serde_json::from_slice(body).with_context(|| {
        format!(
            "the agent's answer is not a JSON string: {}",
            String::from_utf8_lossy(body)
        )
    })?;
    if !outcome.starts_with("Relayed") {
        bail!("the agent answered {outcome:?}, expected a relayed signal");
    }
    Ok(())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One fixture record as the agent receives it.
#[derive(Debug, Clone)]
struct BenchEvent {
    /// `file:position`, for messages.
    label: String,
    body: Arc<[u8]>,
}

/// Every fixture record the watch list flags, in an EventBridge envelope
/// (as the agent gets them), without the fixture's `_fixture` notes.
fn fixture_events(dir: &Path, watch: &WatchList) -> Result<Vec<BenchEvent>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        .collect();
    files.sort();
    let mut events = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut bodies = Vec::new();
        for_each_document(file, |position, bytes| {
            let Some(Ok(mut doc)) = bytes.ok().map(serde_json::from_slice::<Value>) else {
                return;
            };
            if let Some(map) = doc.as_object_mut() {
                map.remove("_fixture");
            }
            let event = in_envelope(doc, events.len() + bodies.len());
            let flagged =
                Record::from_value(&event).is_ok_and(|record| !classify(watch, &record).is_empty());
            if flagged {
                bodies.push((format!("{name}:{position}"), event.to_string()));
            }
        })
        .with_context(|| format!("cannot read {}", path.display()))?;
        events.extend(bodies.into_iter().map(|(label, body)| BenchEvent {
            label,
            body: Arc::from(body.into_bytes()),
        }));
    }
    if events.is_empty() {
        bail!(
            "no record in {} gives a detection with glasswatch.toml; nothing to send the agent",
            dir.display()
        );
    }
    Ok(events)
}

/// `doc` as EventBridge delivers it: unchanged if it already is an
/// envelope, else wrapped in one built from the record's own fields.
fn in_envelope(doc: Value, n: usize) -> Value {
    if doc.get("detail-type").is_some() && doc.get("detail").is_some_and(Value::is_object) {
        return doc;
    }
    let field = |key: &str| doc.get(key).and_then(Value::as_str).unwrap_or_default();
    let event_source = field("eventSource");
    let service = event_source.split('.').next().unwrap_or_default();
    let detail_type = if event_source == "signin.amazonaws.com" {
        "AWS Console Sign In via CloudTrail"
    } else {
        "AWS API Call via CloudTrail"
    };
    let account = doc
        .get("recipientAccountId")
        .and_then(Value::as_str)
        .or_else(|| {
            doc.pointer("/userIdentity/accountId")
                .and_then(Value::as_str)
        })
        .unwrap_or_default();
    json!({
        "version": "0",
        "id": format!("00000000-0000-4000-8000-{n:012x}"),
        "detail-type": detail_type,
        "source": format!("aws.{service}"),
        "account": account,
        "time": field("eventTime"),
        "region": field("awsRegion"),
        "resources": [],
        "detail": doc,
    })
}

/// Summary statistics of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    median: f64,
    p90: f64,
    p99: f64,
    min: f64,
    max: f64,
}

impl Stats {
    /// `None` for an empty sample.
    fn of(sample: &[f64]) -> Option<Self> {
        let mut sorted = sample.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            median: median(&sorted)?,
            p90: percentile(&sorted, 90.0)?,
            p99: percentile(&sorted, 99.0)?,
            min: *sorted.first()?,
            max: *sorted.last()?,
        })
    }
}

/// The median of a sorted sample: the middle value, or the mean of the
/// two middle values.
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The `p`th percentile of a sorted sample by the nearest-rank method: the
/// smallest value with at least `p`% of the sample at or below it.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Three significant-ish digits: `12.3`, `1.23`, `123`.
fn format_value(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{value:.decimals$}")
}

fn render_table(figures: &[Figure]) -> String {
    let mut rows = vec![[
        "figure".to_owned(),
        "measured".to_owned(),
        "target".to_owned(),
        "ok".to_owned(),
    ]];
    for f in figures {
        rows.push([
            f.name.clone(),
            format!("{} {}", format_value(f.value), f.unit),
            f.target
                .map_or_else(|| "-".to_owned(), |t| t.describe(f.unit)),
            match (f.target, f.ok) {
                (None, _) => "-".to_owned(),
                (Some(_), true) => "ok".to_owned(),
                (Some(_), false) => "FAIL".to_owned(),
            },
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out += cells.join(" | ").trim_end();
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            out += &rule.join("-|-");
            out.push('\n');
        }
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_nearest_rank_percentiles() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 3.0, 5.0]), Some(3.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 90.0), Some(90.0));
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
        assert_eq!(percentile(&hundred, 100.0), Some(100.0));
        assert_eq!(percentile(&hundred, 0.0), Some(1.0));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10.0));
        assert_eq!(percentile(&ten, 90.0), Some(9.0));
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        // Stats sorts its input first.
        let stats = Stats::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((stats.median, stats.min, stats.max), (3.0, 1.0, 5.0));
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn figures_meet_targets_strictly_and_render_in_a_table() {
        let under = Figure::with_target("init", 24.9, "ms", Target::Below(25.0));
        let at = Figure::with_target("init", 25.0, "ms", Target::Below(25.0));
        assert!(under.ok);
        assert!(!at.ok);
        let table = render_table(&[under, at, Figure::info("size", 7.25, "MB")]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("figure | measured"));
        assert!(lines[2].contains("24.9 ms") && lines[2].ends_with("< 25.0 ms | ok"));
        assert!(lines[3].ends_with("FAIL"));
        assert!(lines[4].contains("7.25 MB") && lines[4].ends_with("| -"));
    }

    #[test]
    fn at_most_and_at_least_include_the_limit() {
        assert!(Figure::with_target("w", 2.5, "writes/event", Target::AtMost(2.5)).ok);
        assert!(!Figure::with_target("w", 2.51, "writes/event", Target::AtMost(2.5)).ok);
        assert!(Figure::with_target("c", 5e4, "events/s", Target::AtLeast(5e4)).ok);
        assert!(!Figure::with_target("c", 49_999.0, "events/s", Target::AtLeast(5e4)).ok);
        assert_eq!(
            Target::AtMost(2.5).describe("writes/event"),
            "≤ 2.50 writes/event"
        );
        assert_eq!(
            Target::AtLeast(5e4).describe("events/s"),
            "≥ 50000 events/s"
        );
        assert_eq!(
            serde_json::to_value(Target::AtLeast(5e4)).unwrap(),
            json!({"at_least": 50000.0})
        );
    }

    #[test]
    fn only_selects_parts_and_aggregator_means_both_of_its_own() {
        let all = Parts::of(&[]);
        assert!(all.agent && all.correlation && all.dynamodb);
        let agent = Parts::of(&[Part::Agent]);
        assert!(agent.agent && !agent.correlation && !agent.dynamodb);
        let aggregator = Parts::of(&[Part::Aggregator]);
        assert!(!aggregator.agent && aggregator.correlation && aggregator.dynamodb);
        let one = Parts::of(&[Part::Dynamodb]);
        assert!(!one.agent && !one.correlation && one.dynamodb);
        let args = <Args as clap::FromArgMatches>::from_arg_matches(
            &<Args as clap::Args>::augment_args(clap::Command::new("bench"))
                .try_get_matches_from(["bench", "--only", "agent,correlation", "--no-fail"])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(args.only, vec![Part::Agent, Part::Correlation]);
        assert!(args.no_fail && !args.internal_correlation);
        assert_eq!(args.correlation_events, 100_000);
    }

    #[test]
    fn reads_peak_rss_from_proc_status() {
        let status =
            "Name:\tbootstrap\nVmPeak:\t  30000 kB\nVmHWM:\t   12288 kB\nVmRSS:\t 9000 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(12288 * 1024));
        assert_eq!(vm_hwm_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn bare_records_are_wrapped_and_envelopes_kept() {
        let bare = json!({
            "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey",
            "eventTime": "2026-10-08T14:02:31Z", "awsRegion": "us-east-1",
            "recipientAccountId": "111122223333", "eventID": "e1",
        });
        let wrapped = in_envelope(bare.clone(), 3);
        assert_eq!(wrapped["source"], "aws.iam");
        assert_eq!(wrapped["detail-type"], "AWS API Call via CloudTrail");
        assert_eq!(wrapped["account"], "111122223333");
        assert_eq!(wrapped["region"], "us-east-1");
        assert_eq!(wrapped["detail"], bare);
        assert_eq!(in_envelope(wrapped.clone(), 4), wrapped);
    }

    /// A shell script standing in for a broken agent binary.
    #[cfg(unix)]
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn an_agent_that_exits_or_hangs_is_a_clear_error_not_a_hang() {
        let dir = std::env::temp_dir().join(format!("glasswatch-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let launcher = |binary| Launcher {
            binary,
            env: Vec::new(),
            logs: dir.clone(),
        };
        let api = RuntimeApi::start().unwrap();

        let exits = launcher(script(
            &dir,
            "exits",
            "echo 'GLASSWATCH_WATCH is invalid' >&2\nexit 3",
        ));
        let (mut agent, _) = exits.spawn(&api).unwrap();
        let err = agent
            .wait(&api, Duration::from_secs(10), "its first next")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited (exit status: 3)"), "{err}");
        assert!(err.contains("GLASSWATCH_WATCH is invalid"), "{err}");
        drop(agent);

        let hangs = launcher(script(&dir, "hangs", "exec /bin/sleep 30"));
        let (mut agent, started) = hangs.spawn(&api).unwrap();
        let err = agent
            .wait(&api, Duration::from_millis(300), "its first next")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not get to its first next"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid = agent.child.id();
        drop(agent);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the agent process was not killed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
