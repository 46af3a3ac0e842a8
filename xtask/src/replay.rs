//! `cargo xtask replay`: recorded events through the same detector the
//! agent runs, for testing a watch list and for forensics.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use std::collections::BTreeSet;

use glasswatch_core::audit::{Table, terminal_safe};
use glasswatch_core::correlate::Ledger;
use glasswatch_core::input::{InputError, for_each_record};
use glasswatch_core::notify;
use glasswatch_core::session::SessionEvent;
use glasswatch_core::slack::{RenderContext, format_time};
use glasswatch_core::{Config, Detection, WatchList, classify};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// Files: a JSON record or envelope, JSON Lines, or a CloudTrail log
    /// file, any of them gzipped. `-` reads standard input.
    #[arg(required = true)]
    paths: Vec<String>,
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

pub fn run(args: &Args) -> Result<ExitCode> {
    let config = load_config(&args.config)?;
    let watch = watch_of(&config, &args.config)?;
    let correlate = args.sessions || args.slack;
    let mut events: Vec<SessionEvent> = Vec::new();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut table = Vec::new();
    let mut bad = 0usize;
    let mut records = 0usize;
    for path in &args.paths {
        let (reader, bar) = open(path)?;
        let mut write_error = None;
        let result = for_each_record(reader, |(position, parsed)| {
            records += 1;
            match parsed {
                Err(e) => {
                    bad += 1;
                    bar.suspend(|| report(path, &position, &e));
                }
                Ok(record) if correlate => {
                    let detections = classify(&watch, &record);
                    if !detections.is_empty() {
                        match SessionEvent::from_detections(&detections) {
                            Ok(e) => events.push(e),
                            Err(e) => {
                                bad += 1;
                                bar.suspend(|| report(path, &position, &e));
                            }
                        }
                    }
                }
                Ok(record) => {
                    for detection in classify(&watch, &record) {
                        match args.format {
                            Format::Json => {
                                if write_error.is_none() {
                                    let line = serde_json::to_string(&JsonLine::from(&detection))
                                        .expect("plain strings always serialize");
                                    if let Err(e) = writeln!(out, "{line}") {
                                        write_error = Some(e);
                                    }
                                }
                            }
                            Format::Table => table.push(detection),
                        }
                    }
                }
            }
        });
        bar.finish_and_clear();
        if let Some(e) = write_error {
            return finish_write(e);
        }
        match result {
            Ok(()) => {}
            Err(InputError::Broken { position, message }) => {
                bad += 1;
                report(path, &position, &message);
            }
            Err(e) => {
                bad += 1;
                eprintln!("{}: {}", terminal_safe(path), terminal_safe(&e.to_string()));
            }
        }
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
    if bad > 0 {
        eprintln!("{bad} of {records} records could not be read");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Say what was wrong with one record. Its text can hold whatever the
/// record held (`eventTime`, `detail-type`), so control characters are
/// stripped before the terminal, as in tables.
fn report(path: &str, position: &impl std::fmt::Display, error: &impl std::fmt::Display) {
    eprintln!(
        "{}:{position}: {}",
        terminal_safe(path),
        terminal_safe(&error.to_string())
    );
}

/// A closed pipe (`| head`) ends output quietly; anything else is an error.
pub(crate) fn finish_write(e: io::Error) -> Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Ok(ExitCode::SUCCESS);
    }
    Err(e).context("cannot write to standard output")
}

fn open(path: &str) -> Result<(Box<dyn Read>, ProgressBar)> {
    if path == "-" {
        return Ok((Box::new(io::stdin().lock()), ProgressBar::hidden()));
    }
    let file = File::open(path).with_context(|| format!("cannot open {path}"))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Only large files get a bar; it draws only when stderr is a terminal.
    let bar = if len > 64 * 1024 * 1024 {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .expect("static template"),
        );
        bar.set_message(path.to_owned());
        bar
    } else {
        ProgressBar::hidden()
    };
    Ok((Box::new(bar.wrap_read(file)), bar))
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
