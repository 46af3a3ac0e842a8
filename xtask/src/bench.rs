//! `cargo xtask bench`: performance figures against their targets, in
//! parts that `--only` selects, printed as one table (figure, value,
//! target, ok/FAIL); `--json` writes the details, `--check` compares with
//! the baseline recorded in `BENCHMARKS.md` (`bench_check.rs`).
//!
//! - `agent`: the agent's Lambda build (`cargo lambda build --release
//!   --x86-64`, the zip deploy ships) runs as it would on Lambda, against
//!   the local stand-ins of `runtime_api` (Lambda Runtime API and
//!   EventBridge), so no AWS account is needed. Figures: init time (spawn
//!   to the first `GET .../invocation/next`) and first event answered
//!   (spawn to the first response) over several starts; time per event
//!   and throughput over a run of fixture events, the peak RSS of that run
//!   (`VmHWM`); the zip size.
//! - `aggregator-lambda`: the aggregator's Lambda build under the same
//!   Runtime API stand-in, on moto and a Slack stand-in: peak RSS over
//!   1,000 invocations, time per invocation, zip size
//!   (`bench_lambda.rs`).
//! - `correlation` and `dynamodb`: correlation throughput of a release
//!   build, and the aggregator's DynamoDB requests per event on moto
//!   (`bench_aggregator.rs`). `aggregator` means these two, `hot-key` and
//!   `aggregator-lambda`.
//! - `hot-key`: a busy session's cost per event at its 1st and 100,000th
//!   event, and the alert latency of an unrelated account while it runs
//!   at 20 events a second (`bench_hot.rs`); part of `aggregator`.
//! - `detector`: the criterion bench `core/benches/detect.rs`
//!   (`bench_detector.rs`).
//! - `replay`: `xtask replay` end to end over a generated 1 GB CloudTrail
//!   log set (`bench_replay.rs`).
//! - the monthly cost model (`bench_cost.rs`), from the measured figures,
//!   when the agent, aggregator-lambda and dynamodb parts ran.
//!
//! New figures are more entries in the [`Figure`] list.

#[path = "bench_aggregator.rs"]
mod aggregator;
#[path = "bench_check.rs"]
mod check;
#[path = "bench_cost.rs"]
mod cost;
#[path = "bench_detector.rs"]
mod detector;
#[path = "bench_hot.rs"]
mod hot;
#[path = "bench_lambda.rs"]
mod lambda;
#[path = "bench_replay.rs"]
mod replay_set;

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

use crate::python::{self, target_dir, workspace_root};
use crate::runtime_api::{EventBridgeStub, Invocation, Report, RuntimeApi};

/// Median init time must stay below this (ms).
const INIT_TARGET_MS: f64 = 25.0;
/// The first event must be answered within this long of the spawn (ms).
const FIRST_EVENT_TARGET_MS: f64 = 40.0;
/// Peak RSS over the event run must stay below this (MB, as Lambda counts
/// memory: MiB).
const RSS_TARGET_MB: f64 = 24.0;
/// Each Lambda's zip must stay below this (MiB).
const ZIP_TARGET_MB: f64 = 6.0;
/// How long a start may take to reach its first `next`.
const FIRST_NEXT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one event may take; longer than the agent's default relay
/// budget (20 s), so a relay that gives up is reported as its own error.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait checks whether the process has exited.
const POLL: Duration = Duration::from_millis(50);
/// Lines of a process's output shown when it fails.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A quick look: fewer starts, events and invocations, a 64 MB replay
    /// set, one DynamoDB round, short criterion runs. Not for recording.
    #[arg(long)]
    quick: bool,
    /// Compare with the baseline in BENCHMARKS.md and fail on a regression
    /// of more than 20% in any tracked figure.
    #[arg(long)]
    check: bool,
    /// How many times to start the agent to time its init (20; 5 with
    /// --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    init_runs: Option<u32>,
    /// How many events to send through one agent process (1,000; 200 with
    /// --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    events: Option<u32>,
    /// How many invocations to send through one aggregator process
    /// (1,000; 100 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    invocations: Option<u32>,
    /// How many generated events to time correlation over (100,000; 20,000
    /// with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    correlation_events: Option<u32>,
    /// Measure only these parts (comma-separated or repeated); all of them
    /// by default.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    only: Vec<Part>,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Report missed targets, but exit 0 anyway (regressions found by
    /// --check still fail).
    #[arg(long)]
    no_fail: bool,
    /// Internal: time correlation and print the report as JSON (what the
    /// release build of xtask is run for).
    #[arg(long, hide = true)]
    internal_correlation: bool,
    /// Internal: generate the replay log set into this directory (what the
    /// release build of xtask is run for).
    #[arg(long, hide = true, value_name = "DIR")]
    internal_replay_set: Option<PathBuf>,
    /// Internal: decompress these files with the replay's inflater and
    /// nothing else, and print the bytes they held.
    #[arg(long, hide = true, value_name = "FILE", num_args = 1..)]
    internal_inflate: Vec<PathBuf>,
    /// Internal: the uncompressed size of that set, in bytes.
    #[arg(long, hide = true, default_value_t = replay_set::FULL_BYTES)]
    internal_replay_bytes: u64,
}

/// How much each part measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizes {
    quick: bool,
    init_runs: u32,
    events: u32,
    invocations: u32,
    correlation_events: u32,
    dynamodb_rounds: usize,
    replay_bytes: u64,
    replay_runs: usize,
}

impl Sizes {
    fn of(args: &Args) -> Self {
        let pick = |given: Option<u32>, full: u32, quick: u32| {
            given.unwrap_or(if args.quick { quick } else { full })
        };
        Self {
            quick: args.quick,
            init_runs: pick(args.init_runs, 20, 5),
            events: pick(args.events, 1000, 200),
            invocations: pick(args.invocations, 1000, 100),
            correlation_events: pick(args.correlation_events, 100_000, 20_000),
            dynamodb_rounds: if args.quick {
                1
            } else {
                aggregator::DYNAMODB_ROUNDS
            },
            replay_bytes: if args.quick {
                replay_set::QUICK_BYTES
            } else {
                replay_set::FULL_BYTES
            },
            replay_runs: if args.quick { 1 } else { 3 },
        }
    }
}

/// A part of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// The agent's init time, first event, time per event, peak RSS and
    /// zip size.
    Agent,
    /// `aggregator-lambda`, `correlation` and `dynamodb`.
    Aggregator,
    /// The aggregator Lambda's peak RSS over 1,000 invocations, time per
    /// invocation and zip size.
    AggregatorLambda,
    /// Correlation throughput (`Ledger::ingest`, release build).
    Correlation,
    /// The aggregator's DynamoDB requests per event, on moto.
    Dynamodb,
    /// A busy session: reads of its 1st and 100,000th event, and the
    /// alert latency of an unrelated account meanwhile.
    HotKey,
    /// Detector throughput (criterion, `core/benches/detect.rs`).
    Detector,
    /// `xtask replay` over a generated 1 GB CloudTrail log set.
    Replay,
}

/// Which parts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    agent: bool,
    lambda: bool,
    correlation: bool,
    dynamodb: bool,
    hot: bool,
    detector: bool,
    replay: bool,
}

impl Parts {
    /// Everything when `only` is empty, else what it names.
    fn of(only: &[Part]) -> Self {
        let named = |part| only.is_empty() || only.contains(&part);
        let aggregator = named(Part::Aggregator);
        Self {
            agent: named(Part::Agent),
            lambda: aggregator || named(Part::AggregatorLambda),
            correlation: aggregator || named(Part::Correlation),
            dynamodb: aggregator || named(Part::Dynamodb),
            hot: aggregator || named(Part::HotKey),
            detector: named(Part::Detector),
            replay: named(Part::Replay),
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

    fn better(self) -> Better {
        match self {
            Self::Below(_) | Self::AtMost(_) => Better::Lower,
            Self::AtLeast(_) => Better::Higher,
        }
    }
}

/// Which way a figure improves; `--check` compares the figures that have
/// one (medians, rates, sizes), not spreads such as p99 or max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
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
    /// Tracked by `--check`, in this direction.
    pub better: Option<Better>,
}

impl Figure {
    /// A figure reported for information, with no target, not tracked.
    fn info(name: &str, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            value,
            unit,
            target: None,
            ok: true,
            better: None,
        }
    }

    /// A figure with no target that `--check` tracks.
    fn tracked(name: &str, value: f64, unit: &'static str, better: Better) -> Self {
        Self {
            better: Some(better),
            ..Self::info(name, value, unit)
        }
    }

    fn with_target(name: &str, value: f64, unit: &'static str, target: Target) -> Self {
        Self {
            name: name.to_owned(),
            value,
            unit,
            target: Some(target),
            ok: target.met_by(value),
            better: Some(target.better()),
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.internal_correlation {
        let sizes = Sizes::of(args);
        return aggregator::correlation_internal(sizes.correlation_events as usize);
    }
    if !args.internal_inflate.is_empty() {
        return replay_set::inflate_internal(&args.internal_inflate);
    }
    if let Some(dir) = &args.internal_replay_set {
        return replay_set::generate_internal(dir, args.internal_replay_bytes);
    }
    let sizes = Sizes::of(args);
    let parts = Parts::of(&args.only);
    // Read the baseline first: a broken one fails before the long run.
    let baseline = if args.check {
        Some(check::load(&workspace_root().join(check::BASELINE_FILE))?)
    } else {
        None
    };
    let mut figures = Vec::new();
    let mut report = serde_json::Map::new();
    let mut costed = cost::Measured::default();
    if parts.agent {
        let agent = agent_figures(&sizes)?;
        costed.agent = Some(agent.costed);
        figures.extend(agent.figures);
        report.insert("agent_binary".into(), json!(agent.binary));
        report.insert("init_runs".into(), json!(sizes.init_runs));
        report.insert("events".into(), json!(sizes.events));
    }
    if parts.lambda {
        let (lambda, measured) = lambda::figures(sizes.invocations)?;
        figures.extend(lambda);
        costed.aggregator = Some(measured.costed());
        report.insert("aggregator_lambda".into(), json!(measured));
    }
    // One release build of xtask serves the correlation and replay figures.
    let release_xtask = if parts.correlation || parts.replay {
        Some(aggregator::build_release_xtask()?)
    } else {
        None
    };
    if parts.correlation
        && let Some(xtask) = &release_xtask
    {
        let (correlation, measured) =
            aggregator::correlation_figures(xtask, sizes.correlation_events)?;
        figures.extend(correlation);
        report.insert("correlation".into(), json!(measured));
    }
    if parts.dynamodb {
        let (dynamodb, measured) = aggregator::dynamodb_figures(sizes.dynamodb_rounds)?;
        figures.extend(dynamodb);
        costed.dynamodb = Some(cost::DynamoPerEvent::of(&measured));
        report.insert("aggregator".into(), json!(measured));
    }
    if parts.hot {
        let (hot, measured) = hot::figures(if sizes.quick { 20 } else { 60 })?;
        figures.extend(hot);
        report.insert("hot_key".into(), json!(measured));
    }
    if parts.detector {
        let (detector, measured) = detector::figures(sizes.quick)?;
        figures.extend(detector);
        report.insert("detector".into(), json!(measured));
    }
    if parts.replay
        && let Some(xtask) = &release_xtask
    {
        let (replay, measured) = replay_set::figures(xtask, sizes.replay_bytes, sizes.replay_runs)?;
        figures.extend(replay);
        report.insert("replay".into(), json!(measured));
    }
    match costed.complete() {
        Some(inputs) => {
            let model = cost::monthly(&cost::Fleet::ISSUE, &inputs, &cost::PRICES);
            println!("{}\n", model.render());
            figures.push(Figure::tracked(
                "monthly cost, 100 accounts × 17 regions",
                model.total(),
                "USD",
                Better::Lower,
            ));
            report.insert("cost".into(), json!(model));
        }
        None => eprintln!(
            "==> cost model skipped: it needs the agent, aggregator-lambda and dynamodb parts"
        ),
    }

    println!("{}", render_table(&figures));
    let regressions = baseline
        .as_ref()
        .map(|b| check::regressions(&figures, b))
        .unwrap_or_default();
    if let Some(baseline) = &baseline {
        println!("\n{}", check::render(&regressions, baseline));
    }
    if let Some(path) = &args.json {
        report.insert("figures".into(), json!(figures));
        report.insert(
            "baseline".into(),
            json!(check::Baseline::of(&figures, &machine())),
        );
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
    let mut failures = Vec::new();
    if !missed.is_empty() {
        let message = format!("missed targets: {}", missed.join(", "));
        if args.no_fail {
            eprintln!("==> {message} (--no-fail: exiting 0)");
        } else {
            failures.push(message);
        }
    }
    if !regressions.is_empty() {
        failures.push(format!(
            "regressions of more than 20% against {}: {}",
            check::BASELINE_FILE,
            regressions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !failures.is_empty() {
        bail!(failures.join("; "));
    }
    Ok(())
}

/// The CPU model and core count, for the record.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{model}, {cores} cores, {}", std::env::consts::OS)
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

/// The repository's watch list as the Lambdas get it (`GLASSWATCH_WATCH`).
fn watch_env_json() -> Result<String> {
    let (config, _) = load_watch_list()?;
    Ok(config.watch_env_json())
}

/// What the agent part measured.
struct AgentPart {
    figures: Vec<Figure>,
    binary: PathBuf,
    costed: cost::AgentMeasured,
}

/// The agent's figures, and the binary they are of.
fn agent_figures(sizes: &Sizes) -> Result<AgentPart> {
    let built = build_lambda(AGENT_BIN)?;
    let root = workspace_root();
    let (config, watch) = load_watch_list()?;
    let events = fixture_events(&root.join("core/tests/fixtures"), &watch)?;
    let logs = bench_logs()?;
    let stub = EventBridgeStub::start()?;
    let launcher = Launcher {
        name: "agent",
        binary: built.binary.clone(),
        env: lambda_env(
            "glasswatch-agent",
            "us-east-1",
            &stub.endpoint(),
            &logs,
            &[
                (
                    "GLASSWATCH_BUS_ARN",
                    "arn:aws:events:eu-west-1:310987654321:event-bus/glasswatch",
                ),
                ("GLASSWATCH_WATCH", &config.watch_env_json()),
            ],
        ),
        logs,
    };

    let mut figures = vec![built.zip_figure("agent zip size")?];
    let (init, first_event) = init_figures(&launcher, &stub, &events, sizes.init_runs)?;
    figures.extend(init);
    let (run, per_event, rss) = event_figures(&launcher, &stub, &events, sizes.events)?;
    figures.extend(run);
    Ok(AgentPart {
        figures,
        binary: built.binary,
        costed: cost::AgentMeasured {
            first_event_ms: first_event.median,
            event_ms: per_event.median / 1e3,
            peak_rss_mb: rss.unwrap_or(0.0),
        },
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// The agent's binary target (`cargo lambda build` packages it as
/// `bootstrap`).
const AGENT_BIN: &str = "glasswatch-agent";

/// A Lambda as deploy ships it: the binary and its zip.
#[derive(Debug, Clone)]
struct Built {
    binary: PathBuf,
    zip: PathBuf,
}

impl Built {
    fn zip_figure(&self, name: &str) -> Result<Figure> {
        let size = std::fs::metadata(&self.zip)
            .with_context(|| format!("cannot read {}", self.zip.display()))?
            .len();
        Ok(Figure::with_target(
            name,
            size as f64 / MIB,
            "MB",
            Target::Below(ZIP_TARGET_MB),
        ))
    }
}

/// Build one Lambda with `cargo lambda build --release --x86-64` (zig from
/// the virtualenv), once: its zip is what deploy uploads, and its binary is
/// what the bench runs.
fn build_lambda(function: &str) -> Result<Built> {
    let venv = python::ensure()?;
    let artifact = crate::lambda::build_functions(
        &venv,
        glasswatch_core::config::LambdaArchitecture::X86_64,
        &[function],
    )?
    .into_iter()
    .next()
    .with_context(|| format!("cargo lambda built no {function}"))?;
    Ok(Built {
        binary: artifact.binary,
        zip: artifact.zip,
    })
}

/// `target/bench`, for the processes' logs, with an empty file for the
/// SDK's shared config and credentials (nothing from `~/.aws` is read,
/// and nothing is logged about a missing file).
fn bench_logs() -> Result<PathBuf> {
    let logs = target_dir().join("bench");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let empty = logs.join("empty-aws-config");
    File::create(&empty).with_context(|| format!("cannot create {}", empty.display()))?;
    Ok(logs)
}

/// A Lambda's environment, as Lambda and deploy would set it, pointing at
/// `endpoint` for every AWS service, plus the function's own `settings`.
/// Everything else is cleared, so nothing from the caller's shell (an AWS
/// profile, an endpoint override) changes the figures.
fn lambda_env(
    function: &str,
    region: &str,
    endpoint: &str,
    logs: &Path,
    settings: &[(&str, &str)],
) -> Vec<(String, String)> {
    let aws_config_file = logs.join("empty-aws-config").display().to_string();
    let log_group = format!("/aws/lambda/{function}");
    [
        ("GLASSWATCH_LOG", "warn"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", region),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", &aws_config_file),
        ("AWS_SHARED_CREDENTIALS_FILE", &aws_config_file),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", &log_group),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench"),
    ]
    .into_iter()
    .chain(settings.iter().copied())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Starts a Lambda's processes with the bench environment.
#[derive(Debug)]
struct Launcher {
    /// `agent` or `aggregator`: for messages and log file names.
    name: &'static str,
    binary: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
}

impl Launcher {
    /// Start the Lambda against `api`; also returns the instant just
    /// before the process was spawned.
    fn spawn(&self, api: &RuntimeApi) -> Result<(LambdaProcess, Instant)> {
        let stdout = self.logs.join(format!("{}.stdout.log", self.name));
        let stderr = self.logs.join(format!("{}.stderr.log", self.name));
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
            LambdaProcess {
                name: self.name,
                child,
                stdout,
                stderr,
            },
            started,
        ))
    }
}

/// A running Lambda process, killed when dropped, whatever happened.
#[derive(Debug)]
struct LambdaProcess {
    name: &'static str,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LambdaProcess {
    /// What the process has said so far, for an error message.
    fn output(&self) -> String {
        let mut out = String::new();
        for (name, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            if !tail.is_empty() {
                out += &format!(
                    "\n{} {name} ({}):\n  {}",
                    self.name,
                    path.display(),
                    tail.join("\n  ")
                );
            }
        }
        out
    }

    /// The next report from `api`, within `timeout`; an error if the
    /// process exits or stays silent.
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
            if let Some(status) = self
                .child
                .try_wait()
                .with_context(|| format!("cannot check on the {}", self.name))?
            {
                // Anything it said before exiting comes first.
                if let Ok(report) = api.reports.try_recv() {
                    return Ok(report);
                }
                bail!(
                    "the {} exited ({status}) while the bench waited for {what}{}",
                    self.name,
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the {} did not get to {what} within {} s{}",
                    self.name,
                    timeout.as_secs(),
                    self.output()
                );
            }
        }
    }

    /// An error for a report that means the process failed.
    fn failure(&self, report: Report) -> anyhow::Error {
        let text = |body: &[u8]| String::from_utf8_lossy(body).into_owned();
        let message = match report {
            Report::InitError { body } => {
                format!("the {}'s init failed: {}", self.name, text(&body))
            }
            Report::InvocationError { request_id, body } => {
                format!("invocation {request_id} failed: {}", text(&body))
            }
            Report::Unexpected { method, path } => {
                format!(
                    "the {} called {method} {path}, which the Runtime API stand-in does not know",
                    self.name
                )
            }
            Report::Next { .. } => format!("the {} asked for an event out of turn", self.name),
            Report::Completed { request_id, .. } => {
                format!(
                    "the {} answered invocation {request_id}, which was not pending",
                    self.name
                )
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

    /// Wait for the runtime's first `GET .../invocation/next`; returns when
    /// it came.
    fn first_next(&mut self, api: &RuntimeApi) -> Result<Instant> {
        match self.wait(api, FIRST_NEXT_TIMEOUT, "its first GET .../invocation/next")? {
            Report::Next { at } => Ok(at),
            other => Err(self.failure(other)),
        }
    }

    /// Hand `invocation` out and wait for its answer: (handed out to
    /// answered, when answered, the answer). A `next` on the way is fine:
    /// the runtime polls for the next event before or after its answer is
    /// seen here.
    fn invoke(
        &mut self,
        api: &RuntimeApi,
        invocation: Invocation,
        timeout: Duration,
        what: &str,
    ) -> Result<(Duration, Instant, Vec<u8>)> {
        let request_id = invocation.request_id.clone();
        api.invoke(invocation)?;
        loop {
            match self.wait(api, timeout, what)? {
                Report::Next { .. } => {}
                Report::Completed {
                    request_id: id,
                    latency,
                    at,
                    body,
                } if id == request_id => return Ok((latency, at, body)),
                other => return Err(self.failure(other)),
            }
        }
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

/// Start the agent `runs` times; each time time from just before the
/// spawn to its first `GET .../invocation/next` (init), and to its answer
/// to a first event (relayed to the EventBridge stand-in). Returns the
/// figures and the first-event statistics.
fn init_figures(
    launcher: &Launcher,
    stub: &EventBridgeStub,
    events: &[BenchEvent],
    runs: u32,
) -> Result<(Vec<Figure>, Stats)> {
    eprintln!("==> agent init time and first event: {runs} starts");
    let bar = progress(u64::from(runs), "starts");
    let mut inits = Vec::new();
    let mut firsts = Vec::new();
    for (run, event) in (0..runs).zip(events.iter().cycle()) {
        let api = RuntimeApi::start()?;
        let (mut agent, started) = launcher.spawn(&api)?;
        let next = agent.first_next(&api)?;
        inits.push(millis(next.saturating_duration_since(started)));
        let (_, answered, body) = agent.invoke(
            &api,
            Invocation {
                request_id: format!("cold-{run:03}"),
                event: Arc::clone(&event.body),
            },
            EVENT_TIMEOUT,
            &format!("answer its first event ({})", event.label),
        )?;
        check_relayed(&body).with_context(|| {
            format!(
                "first event {} was not relayed{}",
                event.label,
                agent.output()
            )
        })?;
        firsts.push(millis(answered.saturating_duration_since(started)));
        drop(agent);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if stub.entries() < runs as usize {
        bail!(
            "the EventBridge stand-in received {} entries for {runs} first events",
            stub.entries()
        );
    }
    let init = Stats::of(&inits).context("no init time measured")?;
    let first = Stats::of(&firsts).context("no first event measured")?;
    let figures = vec![
        Figure::with_target(
            "agent init time (median)",
            init.median,
            "ms",
            Target::Below(INIT_TARGET_MS),
        ),
        Figure::info("agent init time (p90)", init.p90, "ms"),
        Figure::info("agent init time (min)", init.min, "ms"),
        Figure::info("agent init time (max)", init.max, "ms"),
        Figure::with_target(
            "agent first event answered after spawn (median)",
            first.median,
            "ms",
            Target::Below(FIRST_EVENT_TARGET_MS),
        ),
        Figure::info("agent first event answered (min)", first.min, "ms"),
        Figure::info("agent first event answered (max)", first.max, "ms"),
    ];
    Ok((figures, first))
}

/// One agent process, `count` events one after the other. Returns the
/// figures, the per-event statistics (µs) and the peak RSS (MiB).
fn event_figures(
    launcher: &Launcher,
    stub: &EventBridgeStub,
    events: &[BenchEvent],
    count: u32,
) -> Result<(Vec<Figure>, Stats, Option<f64>)> {
    eprintln!(
        "==> agent per-event time and peak RSS: {count} events (cycling through {} fixture records)",
        events.len()
    );
    let api = RuntimeApi::start()?;
    let (mut agent, _) = launcher.spawn(&api)?;
    agent.first_next(&api)?;
    let entries_before = stub.entries();
    let bar = progress(u64::from(count), "events");
    let mut latencies = Vec::new();
    let started = Instant::now();
    for (i, event) in (0..count).zip(events.iter().cycle()) {
        let (latency, _, body) = agent.invoke(
            &api,
            Invocation {
                request_id: format!("bench-{i:06}"),
                event: Arc::clone(&event.body),
            },
            EVENT_TIMEOUT,
            &format!("answer event {i} ({})", event.label),
        )?;
        check_relayed(&body).with_context(|| {
            format!(
                "event {i} ({}) was not relayed{}",
                event.label,
                agent.output()
            )
        })?;
        latencies.push(micros(latency));
        bar.inc(1);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    // `VmHWM` is Linux's; elsewhere the figure is left out.
    let rss = if cfg!(target_os = "linux") {
        Some(agent.peak_rss()? as f64 / MIB)
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
        Figure::tracked(
            "agent time per event (median)",
            stats.median,
            "µs",
            Better::Lower,
        ),
        Figure::info("agent time per event (p90)", stats.p90, "µs"),
        Figure::info("agent time per event (p99)", stats.p99, "µs"),
        Figure::tracked(
            "agent throughput",
            f64::from(count) / elapsed.as_secs_f64(),
            "events/s",
            Better::Higher,
        ),
    ];
    figures.extend(
        rss.map(|mb| Figure::with_target("agent peak RSS", mb, "MB", Target::Below(RSS_TARGET_MB))),
    );
    Ok((figures, stats, rss))
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
/// (as the agent gets them).
fn fixture_events(dir: &Path, watch: &WatchList) -> Result<Vec<BenchEvent>> {
    Ok(flagged_fixtures(dir, watch)?
        .into_iter()
        .map(|(label, event)| BenchEvent {
            label,
            body: Arc::from(event.to_string().into_bytes()),
        })
        .collect())
}

/// Every fixture record the watch list flags, `file:position` and the
/// record in an EventBridge envelope, without the fixture's `_fixture`
/// notes: the fixture mix both Lambdas' figures run on.
fn flagged_fixtures(dir: &Path, watch: &WatchList) -> Result<Vec<(String, Value)>> {
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
        let mut found = Vec::new();
        for_each_document(file, |position, bytes| {
            let Some(Ok(mut doc)) = bytes.ok().map(serde_json::from_slice::<Value>) else {
                return;
            };
            if let Some(map) = doc.as_object_mut() {
                map.remove("_fixture");
            }
            let event = in_envelope(doc, events.len() + found.len());
            let flagged =
                Record::from_value(&event).is_ok_and(|record| !classify(watch, &record).is_empty());
            if flagged {
                found.push((format!("{name}:{position}"), event));
            }
        })
        .with_context(|| format!("cannot read {}", path.display()))?;
        events.extend(found);
    }
    if events.is_empty() {
        bail!(
            "no record in {} gives a detection with glasswatch.toml; nothing to send the Lambdas",
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
        assert_eq!(under.better, Some(Better::Lower));
        assert_eq!(
            Figure::with_target("c", 1.0, "x", Target::AtLeast(0.5)).better,
            Some(Better::Higher)
        );
        assert_eq!(Figure::info("p99", 1.0, "ms").better, None);
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
    fn only_selects_parts_and_aggregator_means_its_three() {
        let all = Parts::of(&[]);
        assert!(all.agent && all.lambda && all.correlation && all.dynamodb);
        assert!(all.detector && all.replay);
        let agent = Parts::of(&[Part::Agent]);
        assert!(agent.agent && !agent.lambda && !agent.correlation && !agent.dynamodb);
        assert!(!agent.detector && !agent.replay);
        let aggregator = Parts::of(&[Part::Aggregator]);
        assert!(!aggregator.agent && aggregator.correlation && aggregator.dynamodb);
        assert!(aggregator.lambda && !aggregator.replay && !aggregator.detector);
        let one = Parts::of(&[Part::Dynamodb]);
        assert!(!one.agent && !one.lambda && !one.correlation && one.dynamodb);
        let two = Parts::of(&[Part::Replay, Part::Detector]);
        assert!(two.replay && two.detector && !two.agent && !two.lambda);
    }

    fn parse(args: &[&str]) -> Args {
        <Args as clap::FromArgMatches>::from_arg_matches(
            &<Args as clap::Args>::augment_args(clap::Command::new("bench"))
                .try_get_matches_from(std::iter::once("bench").chain(args.iter().copied()))
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn quick_shrinks_every_default_but_not_what_is_given() {
        let args = parse(&["--only", "agent,correlation", "--no-fail"]);
        assert_eq!(args.only, vec![Part::Agent, Part::Correlation]);
        assert!(args.no_fail && !args.internal_correlation && !args.quick && !args.check);
        let full = Sizes::of(&args);
        assert_eq!(
            (
                full.init_runs,
                full.events,
                full.invocations,
                full.correlation_events
            ),
            (20, 1000, 1000, 100_000)
        );
        assert_eq!(full.replay_bytes, replay_set::FULL_BYTES);
        assert_eq!(full.dynamodb_rounds, aggregator::DYNAMODB_ROUNDS);
        let quick = Sizes::of(&parse(&["--quick", "--init-runs", "7", "--check"]));
        assert!(quick.quick);
        assert_eq!(quick.init_runs, 7);
        assert!(quick.events < full.events && quick.invocations < full.invocations);
        assert!(quick.replay_bytes < full.replay_bytes && quick.dynamodb_rounds == 1);
        assert!(parse(&["--check"]).check);
        assert!(
            <Args as clap::Args>::augment_args(clap::Command::new("bench"))
                .try_get_matches_from(["bench", "--only", "nothing"])
                .is_err()
        );
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
            name: "agent",
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
