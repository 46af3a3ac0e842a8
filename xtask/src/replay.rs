//! `cargo xtask replay`: recorded events through the same detector the
//! agent runs, for testing a watch list and for forensics.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};

use glasswatch_core::audit::{Table, terminal_safe};
use glasswatch_core::correlate::Ledger;
use glasswatch_core::input::{InputError, Position, for_each_candidate, for_each_record};
use glasswatch_core::notify;
use glasswatch_core::prefilter::Prefilter;
use glasswatch_core::session::SessionEvent;
use glasswatch_core::slack::{RenderContext, format_time};
use glasswatch_core::trail::{ObjectKey, check_digests};
use glasswatch_core::{Config, Detection, Record, RecordError, WatchList, classify};
use indicatif::{ProgressBar, ProgressStyle};

use crate::replay_s3::{Location, Object, S3, Window};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The watch list to classify against.
    #[arg(long, default_value = "glasswatch.toml")]
    config: PathBuf,
    /// `json`: one line per detection. `table`: aligned columns.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Print one JSON line per correlated session instead of detections:
    /// `{"session_id","principal","severity","accounts","regions",
    /// "event_ids","first_seen","last_seen"}`.
    #[arg(long, conflicts_with = "slack")]
    sessions: bool,
    /// Print one JSON line per Slack API request the aggregator would send
    /// for these events (`slack.mode` of the config decides bot or
    /// webhook).
    #[arg(long)]
    slack: bool,
    /// Read this many inputs at once, one per thread (default: the
    /// machine's cores). Output keeps the order of the inputs.
    #[arg(long, short = 'j', default_value_t = default_jobs(), value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// Parse every record of a log file, also those no watched name or
    /// event name appears in (which cannot be flagged), to report the
    /// malformed ones. Slower.
    #[arg(long)]
    parse_all: bool,
    /// With `s3://` inputs: only log files delivered on or after this day
    /// (`YYYY-MM-DD`) or time (RFC 3339), by the date in their keys.
    #[arg(long)]
    since: Option<String>,
    /// With `s3://` inputs: only log files delivered on or before this day
    /// or time.
    #[arg(long)]
    until: Option<String>,
    /// With `s3://` inputs and both `--since` and `--until`: hold the log
    /// files read against CloudTrail's digest files (log file validation):
    /// report a file a digest lists that was not read, a file read that no
    /// digest lists, and time no digest covers. Exit 1 on any.
    #[arg(long, requires_all = ["since", "until"])]
    digests: bool,
    /// Files: a JSON record or envelope, JSON Lines, or a CloudTrail log
    /// file, any of them gzipped. `-` reads standard input.
    /// `s3://BUCKET/PREFIX/` reads the objects under the prefix (with the
    /// credentials, region and endpoint of the environment), in key order.
    #[arg(required = true)]
    paths: Vec<String>,
}

fn default_jobs() -> u16 {
    std::thread::available_parallelism()
        .map_or(1, |n| u16::try_from(n.get()).unwrap_or(u16::MAX))
        .clamp(1, 256)
}

pub fn load_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    Config::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg)
}

fn watch_of(config: &Config, path: &Path) -> Result<WatchList> {
    config
        .watch_list()
        .map_err(|e| anyhow::anyhow!("{}: invalid watch list: {e:?}", path.display()))
}

#[derive(serde::Serialize)]
struct SessionLine<'a> {
    session_id: &'a str,
    principal: &'a str,
    severity: &'a str,
    accounts: &'a BTreeSet<String>,
    regions: &'a BTreeSet<String>,
    event_ids: &'a BTreeSet<String>,
    first_seen: String,
    last_seen: String,
}

/// The `ts` shown for the root message in `--slack` output.
const REPLAY_ROOT_TS: &str = "ROOT_TS";

fn write_sessions(
    out: &mut impl Write,
    config: &Config,
    events: &[SessionEvent],
    slack: bool,
) -> io::Result<()> {
    let mut ledger = Ledger::new(i64::from(config.session.quiet_minutes) * 60);
    for e in events {
        ledger.ingest(e);
    }
    let ctx = RenderContext::new(config.slack.mode, config.slack.channel.clone());
    for record in ledger.sessions() {
        let s = &record.session;
        if slack {
            let mine: Vec<SessionEvent> = record
                .event_ids
                .iter()
                .filter_map(|id| ledger.event(id).cloned())
                .collect();
            for request in notify::replay(&ctx, s, &mine, REPLAY_ROOT_TS) {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&request).map_err(io::Error::other)?
                )?;
            }
        } else {
            let line = SessionLine {
                session_id: &s.session_id,
                principal: &s.principal,
                severity: s.severity.as_str(),
                accounts: &s.accounts,
                regions: &s.regions,
                event_ids: &record.event_ids,
                first_seen: format_time(s.first_seen),
                last_seen: format_time(s.last_seen),
            };
            writeln!(
                out,
                "{}",
                serde_json::to_string(&line).map_err(io::Error::other)?
            )?;
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    event_id: &'a str,
    kind: &'a str,
    severity: &'a str,
    account: &'a str,
    region: &'a str,
    principal: &'a str,
    event_name: &'a str,
    event_time: &'a str,
}

impl<'a> From<&'a Detection> for JsonLine<'a> {
    fn from(d: &'a Detection) -> Self {
        Self {
            event_id: &d.event_id,
            kind: d.kind.as_str(),
            severity: d.severity.as_str(),
            account: &d.account,
            region: &d.region,
            principal: &d.principal,
            event_name: &d.event_name,
            event_time: &d.event_time,
        }
    }
}

/// What one input gave: its output and its complaints, kept until the
/// inputs before it are printed, so the order is that of the arguments
/// whatever `--jobs` is.
#[derive(Default)]
struct FileResult {
    records: usize,
    bad: usize,
    /// Lines for standard error, in input order.
    errors: Vec<String>,
    /// `--format json` lines.
    json: String,
    detections: Vec<Detection>,
    events: Vec<SessionEvent>,
}

/// Standard output, and the first error writing it.
struct Output {
    out: BufWriter<io::Stdout>,
    error: Option<io::Error>,
}

impl Output {
    fn write(&mut self, bytes: &[u8]) {
        if self.error.is_none()
            && let Err(e) = self.out.write_all(bytes)
        {
            self.error = Some(e);
        }
    }
}

fn locked(output: &Mutex<Output>) -> std::sync::MutexGuard<'_, Output> {
    output
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How each input is read and classified: shared by every worker.
struct Replayer<'a> {
    watch: &'a WatchList,
    s3: Option<&'a S3>,
    /// With one input at a time, output goes straight out (memory stays
    /// flat however many detections); otherwise it waits in the input's
    /// [`FileResult`] for its turn.
    direct: Option<&'a Mutex<Output>>,
    prefilter: Option<Prefilter>,
    correlate: bool,
    format: Format,
    bar: &'a ProgressBar,
}

impl Replayer<'_> {
    fn complain(
        &self,
        result: &mut FileResult,
        path: &str,
        position: &impl std::fmt::Display,
        e: &impl std::fmt::Display,
    ) {
        result.bad += 1;
        let line = report_line(path, position, e);
        match self.direct {
            Some(_) => self.bar.suspend(|| eprintln!("{line}")),
            None => result.errors.push(line),
        }
    }

    fn file(&self, input: &Input) -> FileResult {
        let mut result = FileResult::default();
        let name = input.name();
        let path = name.as_str();
        let opened = match (input, self.s3) {
            (Input::Local(path), _) => open(path, self.bar),
            (Input::S3(object), Some(s3)) => Ok(s3.open(object, self.bar)),
            (Input::S3(_), None) => Err(anyhow::anyhow!("{path}: S3 is not connected")),
        };
        let reader = match opened {
            Ok(reader) => reader,
            Err(e) => {
                result.bad += 1;
                result
                    .errors
                    .push(terminal_safe(&format!("{e:#}")).into_owned());
                return result;
            }
        };
        let each =
            |result: &mut FileResult, position: Position, parsed: Result<Record, RecordError>| {
                let record = match parsed {
                    Ok(record) => record,
                    Err(e) => return self.complain(result, path, &position, &e),
                };
                let detections = classify(self.watch, &record);
                if detections.is_empty() {
                    return;
                }
                if self.correlate {
                    match SessionEvent::from_detections(&detections) {
                        Ok(e) => result.events.push(e),
                        Err(e) => self.complain(result, path, &position, &e),
                    }
                } else if self.format == Format::Json {
                    for d in &detections {
                        let line = serde_json::to_string(&JsonLine::from(d))
                            .expect("plain strings always serialize");
                        match self.direct {
                            Some(output) => {
                                let mut output = locked(output);
                                output.write(line.as_bytes());
                                output.write(b"\n");
                            }
                            None => {
                                result.json.push_str(&line);
                                result.json.push('\n');
                            }
                        }
                    }
                } else {
                    result.detections.extend(detections);
                }
            };
        let outcome = match &self.prefilter {
            Some(prefilter) => for_each_candidate(reader, prefilter, |position, parsed| {
                result.records += 1;
                if let Some(parsed) = parsed {
                    each(&mut result, position, parsed);
                }
            }),
            None => for_each_record(reader, |(position, parsed)| {
                result.records += 1;
                each(&mut result, position, parsed);
            }),
        };
        match outcome {
            Ok(()) => {}
            Err(InputError::Broken { position, message }) => {
                self.complain(&mut result, path, &position, &message);
            }
            Err(e) => {
                result.bad += 1;
                result.errors.push(format!(
                    "{}: {}",
                    terminal_safe(path),
                    terminal_safe(&e.to_string())
                ));
            }
        }
        result
    }
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let config = load_config(&args.config)?;
    let watch = watch_of(&config, &args.config)?;
    let correlate = args.sessions || args.slack;
    let window = Window::parse(args.since.as_deref(), args.until.as_deref())?;
    let locations: Vec<Option<Location>> = args
        .paths
        .iter()
        .map(|p| Location::parse(p).transpose())
        .collect::<Result<_>>()?;
    let s3 = if locations.iter().any(Option::is_some) {
        Some(S3::connect()?)
    } else {
        if args.since.is_some() || args.until.is_some() {
            anyhow::bail!("--since and --until choose objects of s3:// inputs; there are none");
        }
        None
    };
    let mut inputs = Vec::new();
    for (path, location) in args.paths.iter().zip(&locations) {
        match (location, &s3) {
            (Some(location), Some(s3)) => {
                let (objects, left_out) = s3.list(location, window)?;
                eprintln!(
                    "==> {path}: {} objects ({} MiB){}",
                    objects.len(),
                    objects.iter().map(|o| o.size).sum::<u64>() >> 20,
                    if left_out > 0 {
                        format!(", {left_out} others left out (digests, other days, not log files)")
                    } else {
                        String::new()
                    }
                );
                inputs.extend(objects.into_iter().map(Input::S3));
            }
            _ => inputs.push(Input::Local(path.clone())),
        }
    }
    let bar = progress(&inputs);
    let jobs = usize::from(args.jobs).clamp(1, inputs.len().max(1));
    let output = Mutex::new(Output {
        out: BufWriter::new(io::stdout()),
        error: None,
    });
    let replayer = Replayer {
        watch: &watch,
        s3: s3.as_ref(),
        direct: (jobs == 1).then_some(&output),
        prefilter: (!args.parse_all).then(|| Prefilter::new(&watch)),
        correlate,
        format: args.format,
        bar: &bar,
    };
    let mut events: Vec<SessionEvent> = Vec::new();
    let mut table = Vec::new();
    let mut bad = 0usize;
    let mut records = 0usize;
    in_order(
        &inputs,
        jobs,
        Input::size,
        |input| replayer.file(input),
        |result| {
            records += result.records;
            bad += result.bad;
            bar.suspend(|| {
                for line in &result.errors {
                    eprintln!("{line}");
                }
            });
            locked(&output).write(result.json.as_bytes());
            events.extend(result.events);
            table.extend(result.detections);
        },
    );
    bar.finish_and_clear();
    let Output { mut out, error } = output
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(e) = error {
        return finish_write(e);
    }
    if correlate {
        if let Err(e) = write_sessions(&mut out, &config, &events, args.slack) {
            return finish_write(e);
        }
    } else if args.format == Format::Table
        && let Err(e) = write_table(&mut out, &table)
    {
        return finish_write(e);
    }
    if let Err(e) = out.flush() {
        return finish_write(e);
    }
    let mut failed = bad > 0;
    if bad > 0 {
        eprintln!("{bad} of {records} records could not be read");
    }
    if args.digests {
        failed |= !check_digests_of(&locations, s3.as_ref(), window, &inputs)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--digests`: the log files read against the digests of the same
/// window and places; prints what is wrong. Whether all was well.
fn check_digests_of(
    locations: &[Option<Location>],
    s3: Option<&S3>,
    window: Window,
    inputs: &[Input],
) -> Result<bool> {
    let s3 = s3.context("--digests checks s3:// inputs; there are none")?;
    let (Some(since), Some(until)) = (window.since, window.until) else {
        anyhow::bail!("--digests needs both --since and --until");
    };
    // CloudTrail may still be delivering the last 75 minutes.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let until = until.min(now - 75 * 60);
    let read: Vec<ObjectKey> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::S3(object) => ObjectKey::parse(&object.key).ok(),
            Input::Local(_) => None,
        })
        .collect();
    let mut digests = Vec::new();
    for location in locations.iter().flatten() {
        digests.extend(s3.digests(location, window)?);
    }
    let report = check_digests(&digests, &read, since, until, 5 * 60);
    for (key, digest) in &report.not_read {
        eprintln!(
            "not read: {} (listed in the digest {})",
            terminal_safe(key),
            terminal_safe(digest)
        );
    }
    for key in &report.in_no_digest {
        eprintln!(
            "in no digest: {} (CloudTrail lists every file it delivers)",
            terminal_safe(key)
        );
    }
    for (account, region, from, to) in &report.gaps {
        eprintln!(
            "no digest for {account} {region} from {} to {}",
            format_time(*from),
            format_time(*to)
        );
    }
    eprintln!(
        "==> {} digests checked against {} log files: {}",
        digests.len(),
        read.len(),
        if report.is_clean() {
            "every listed file read, every file listed, no gap"
        } else {
            "see above"
        }
    );
    Ok(report.is_clean())
}

/// `work` on every item with `jobs` threads, each result handed to
/// `done` in the items' order (a result waits for those before it). The
/// threads take the costliest items first, so none is left with a big
/// one at the end.
fn in_order<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    cost: impl Fn(&T) -> u64,
    work: impl Fn(&T) -> R + Sync,
    mut done: impl FnMut(R),
) {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        items.iter().for_each(|item| done(work(item)));
        return;
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&items[i])));
    let order = &order;
    let next = AtomicUsize::new(0);
    let (send, receive) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let send = send.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if send.send((i, work(&items[i]))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(send);
        let mut waiting = BTreeMap::new();
        let mut due = 0;
        for (i, result) in receive {
            waiting.insert(i, result);
            while let Some(result) = waiting.remove(&due) {
                done(result);
                due += 1;
            }
        }
    });
}

/// Say what was wrong with one record. Its text can hold whatever the
/// record held (`eventTime`, `detail-type`), so control characters are
/// stripped before the terminal, as in tables.
fn report_line(
    path: &str,
    position: &impl std::fmt::Display,
    error: &impl std::fmt::Display,
) -> String {
    format!(
        "{}:{position}: {}",
        terminal_safe(path),
        terminal_safe(&error.to_string())
    )
}

/// A closed pipe (`| head`) ends output quietly; anything else is an error.
pub(crate) fn finish_write(e: io::Error) -> Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Ok(ExitCode::SUCCESS);
    }
    Err(e).context("cannot write to standard output")
}

fn open(path: &str, bar: &ProgressBar) -> Result<Box<dyn Read + Send>> {
    if path == "-" {
        return Ok(Box::new(io::stdin()));
    }
    let file = File::open(path).with_context(|| format!("cannot open {path}"))?;
    Ok(Box::new(bar.wrap_read(file)))
}

/// One bar over every input, shown when they hold more than 64 MiB (it
/// draws only when standard error is a terminal).
fn progress(inputs: &[Input]) -> ProgressBar {
    let total: u64 = inputs.iter().map(Input::size).sum();
    if total <= 64 * 1024 * 1024 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "replay {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("static template"),
    );
    bar
}

/// One thing to read: a local file (or `-`), or an S3 object.
enum Input {
    Local(String),
    S3(Object),
}

impl Input {
    fn name(&self) -> String {
        match self {
            Self::Local(path) => path.clone(),
            Self::S3(object) => object.name(),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Self::Local(path) if path != "-" => std::fs::metadata(path).map_or(0, |m| m.len()),
            Self::Local(_) => 0,
            Self::S3(object) => object.size,
        }
    }
}

fn write_table(out: &mut impl Write, detections: &[Detection]) -> io::Result<()> {
    // Record fields are attacker-controlled: `Table::render` keeps control
    // characters (terminal escape sequences) off the terminal.
    let mut table = Table::new(&[
        "TIME",
        "SEVERITY",
        "KIND",
        "ACCOUNT",
        "REGION",
        "EVENT",
        "PRINCIPAL",
    ]);
    for d in detections {
        table.push(vec![
            d.event_time.clone(),
            d.severity.as_str().to_owned(),
            d.kind.as_str().to_owned(),
            d.account.clone(),
            d.region.clone(),
            d.event_name.clone(),
            d.principal.clone(),
        ]);
    }
    out.write_all(table.render().as_bytes())?;
    writeln!(out, "{} detections", detections.len())
}

#[cfg(test)]
mod tests {
    use super::in_order;

    #[test]
    fn results_come_in_the_items_order_whatever_the_threads_take_first() {
        let items: Vec<u64> = (0..40).map(|i| (i * 7919) % 13).collect();
        for jobs in [1, 2, 3, 8] {
            let mut got = Vec::new();
            in_order(
                &items,
                jobs,
                |&cost| cost,
                |&cost| {
                    // The costliest take longest, and are started first.
                    std::thread::sleep(std::time::Duration::from_millis(cost));
                    cost * 10
                },
                |result| got.push(result),
            );
            let want: Vec<u64> = items.iter().map(|c| c * 10).collect();
            assert_eq!(got, want, "{jobs} jobs");
        }
    }
}
