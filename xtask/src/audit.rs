//! `cargo xtask audit`: questions about break-glass use, answered from the
//! audit store without writing DynamoDB queries. A thin shell: the rows,
//! filters, times, CSV and manifest are `glasswatch_core::audit`; the reads
//! are `glasswatch_aggregator::query`; this module finds the table, names
//! the accounts, prints, and writes the evidence pack.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use clap::builder::PossibleValuesParser;
use glasswatch_aggregator::accounts::Accounts;
use glasswatch_aggregator::query::Reader;
use glasswatch_aggregator::store::SessionItem;
use glasswatch_core::audit::{
    DETECTION_COLUMNS, DetectionRow, EVENT_COLUMNS, EventRow, Manifest, ManifestFile, Range,
    SESSION_COLUMNS, SessionFilter, SessionKey, SessionRow, SlackThread, TIME_HINT, Table,
    coverage_rows, coverage_table, csv_record, months, parse_kind, parse_severity, session_file,
    session_heading,
};
use glasswatch_core::{Config, DetectionKind};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::replay::{finish_write, load_config};

const AFTER_HELP: &str = "\
Every read is a DynamoDB Query on a key (or a read by key), paged; never a Scan.
Which index serves which filter:
  sessions                  by-time       MONTH#<yyyy-mm>, one partition per month of the range
  sessions --principal P    by-principal  PRINCIPAL#<arn>
  sessions --account ID     by-account    ACCOUNT#<id> index items, then BatchGetItem of the sessions
  sessions --severity S     by-severity   SEVERITY#<level>, each level at or above S
  With several filters the first of --principal, --account, --severity is the key and
  the others are checked on the results, as is --open. --since/--until are a range on
  every index's sort key (`<start time>#<id>`).
  session ID                table         SESSION#<id> events, and those of the sessions it absorbed
  events                    by-kind       KIND#<kind>#<yyyy-mm> per kind and month; --account filters
  export                    by-time as sessions; per session its events, then BatchGetItem of
                            the EVENT#<eventID> items for the original CloudTrail records
  coverage                  table         the COVERAGE partition

Times: 7d, 12h, 30m, 2w (before now), 2026-10-01 (midnight UTC) or RFC 3339
(2026-10-01T12:00:00Z). --since is inclusive, --until exclusive; a session belongs to
the range its first event is in.

The table is --table, or the output `TableName` of the stack `<deploy.name_prefix>-audit`
in `organization.audit_region` (from --config). Credentials and endpoints come from the
usual AWS chain (--profile, AWS_PROFILE, AWS_ENDPOINT_URL, …). Account names come from
Organizations ListAccounts when the credentials allow it.";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: Audit,
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The DynamoDB table (default: the audit stack's `TableName` output).
    #[arg(long, global = true, value_name = "NAME")]
    table: Option<String>,
    /// The configuration: name prefix, audit region, quiet period,
    /// heartbeat interval, retention [default: glasswatch.toml, if present].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The AWS profile to use.
    #[arg(long, global = true)]
    profile: Option<String>,
    /// The table's region (default: `organization.audit_region`).
    #[arg(long, global = true)]
    region: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Aligned columns (the rows are held to align them).
    Table,
    /// One JSON object per line, streamed.
    Json,
    /// RFC 4180 CSV with a header, streamed; formulas defused.
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TimelineFormat {
    Table,
    /// `{"session": …, "events": [ … ]}`, streamed.
    Json,
}

#[derive(Debug, clap::Subcommand)]
enum Audit {
    /// Sessions, newest first: start, duration, principal, entry path,
    /// accounts, regions, events, highest severity, Slack permalink.
    Sessions(SessionsArgs),
    /// One session's timeline: every event in time order.
    Session(SessionArgs),
    /// Detections by kind, newest first (e.g. every monitoring_tamper).
    Events(EventsArgs),
    /// Write an evidence pack: sessions.csv, one JSONL file of original
    /// CloudTrail records per session, manifest.json and SHA256SUMS.
    Export(ExportArgs),
    /// Coverage of accounts and regions, from the agents' heartbeats.
    Coverage(CoverageArgs),
}

fn severity_names() -> PossibleValuesParser {
    PossibleValuesParser::new(["info", "medium", "high", "critical"])
}

fn kind_names() -> PossibleValuesParser {
    PossibleValuesParser::new(DetectionKind::ALL.map(DetectionKind::as_str))
}

#[derive(Debug, clap::Args)]
struct SessionsArgs {
    /// Sessions that started at or after this [default: the retention
    /// period].
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Sessions that started before this [default: now].
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Sessions that touched this account (index: by-account).
    #[arg(long, value_name = "ID")]
    account: Option<String>,
    /// Sessions of this principal: the exact ARN `sessions` shows
    /// (index: by-principal).
    #[arg(long, value_name = "ARN")]
    principal: Option<String>,
    /// Sessions whose highest severity is at least this (index:
    /// by-severity).
    #[arg(long, value_parser = severity_names())]
    severity: Option<String>,
    /// Only sessions still open (an event within the quiet period).
    #[arg(long)]
    open: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct SessionArgs {
    /// The session id (a merged-away id leads to the session it is now
    /// part of).
    id: String,
    #[arg(long, value_enum, default_value_t = TimelineFormat::Table)]
    format: TimelineFormat,
}

#[derive(Debug, clap::Args)]
struct EventsArgs {
    /// Detections at or after this.
    #[arg(long, value_name = "TIME")]
    since: String,
    /// Detections before this [default: now].
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this kind [default: every kind].
    #[arg(long, value_parser = kind_names())]
    kind: Option<String>,
    /// Only detections in this account.
    #[arg(long, value_name = "ID")]
    account: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// Sessions that started at or after this.
    #[arg(long, value_name = "TIME")]
    since: String,
    /// Sessions that started before this.
    #[arg(long, value_name = "TIME")]
    until: String,
    /// The pack's directory: new, or empty.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct CoverageArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// What the configuration says, or the defaults without one.
#[derive(Debug)]
struct Settings {
    name_prefix: String,
    audit_region: Option<String>,
    quiet_secs: i64,
    heartbeat_secs: i64,
    retention_days: u32,
    /// Where the settings came from, for messages.
    source: String,
}

impl Settings {
    fn load(target: &Target) -> Result<Self> {
        let default = Path::new("glasswatch.toml");
        let path = match &target.config {
            Some(path) => Some(path.as_path()),
            None => default.exists().then_some(default),
        };
        let Some(path) = path else {
            let config = glasswatch_core::config::DeployConfig::default();
            return Ok(Self {
                name_prefix: config.name_prefix,
                audit_region: None,
                quiet_secs: i64::from(
                    glasswatch_core::config::SessionConfig::default().quiet_minutes,
                ) * 60,
                heartbeat_secs: i64::from(config.heartbeat_minutes) * 60,
                retention_days: glasswatch_core::config::StoreConfig::default().retention_days,
                source: "defaults (no glasswatch.toml here; --config FILE names one)".to_owned(),
            });
        };
        let config: Config = load_config(path)?;
        Ok(Self {
            name_prefix: config.deploy.name_prefix,
            audit_region: Some(config.organization.audit_region),
            quiet_secs: i64::from(config.session.quiet_minutes) * 60,
            heartbeat_secs: i64::from(config.deploy.heartbeat_minutes) * 60,
            retention_days: config.store.retention_days,
            source: path.display().to_string(),
        })
    }
}

/// A time range from the command line, with the hint on error.
fn range(since: Option<&str>, until: Option<&str>, now: i64, default_since: i64) -> Result<Range> {
    Range::parse(since, until, now, default_since)
        .map_err(|e| anyhow!("{e}").context(format!("bad --since/--until ({TIME_HINT})")))
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    match runtime.block_on(dispatch(args)) {
        Ok(code) => Ok(code),
        // Standard output closed (`| head`) or failed.
        Err(e) => match e.downcast::<io::Error>() {
            Ok(io) => finish_write(io),
            Err(e) => Err(e),
        },
    }
}

async fn dispatch(args: &Args) -> Result<ExitCode> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let settings = Settings::load(&args.target)?;
    // Arguments are checked before anything reaches AWS.
    match &args.command {
        Audit::Sessions(a) => {
            let default_since = now - i64::from(settings.retention_days) * 86_400;
            let filter = SessionFilter {
                range: range(a.since.as_deref(), a.until.as_deref(), now, default_since)?,
                account: a.account.clone(),
                principal: a.principal.clone(),
                min_severity: a.severity.as_deref().and_then(parse_severity),
                open_at: a.open.then_some((now, settings.quiet_secs)),
            };
            let aws = Aws::connect(&args.target, &settings).await?;
            sessions(&aws, &settings, &filter, a.format, now).await
        }
        Audit::Session(a) => {
            let aws = Aws::connect(&args.target, &settings).await?;
            session(&aws, &settings, &a.id, a.format, now).await
        }
        Audit::Events(a) => {
            let range = range(Some(&a.since), a.until.as_deref(), now, now)?;
            let kinds = match a.kind.as_deref().and_then(parse_kind) {
                Some(kind) => vec![kind],
                None => DetectionKind::ALL.to_vec(),
            };
            let aws = Aws::connect(&args.target, &settings).await?;
            events(&aws, &kinds, &range, a.account.as_deref(), a.format).await
        }
        Audit::Export(a) => {
            let range = range(Some(&a.since), Some(&a.until), now, now)?;
            let aws = Aws::connect(&args.target, &settings).await?;
            export(&aws, &settings, &range, &a.out, now).await
        }
        Audit::Coverage(a) => {
            let aws = Aws::connect(&args.target, &settings).await?;
            coverage(&aws, &settings, a.format, now).await
        }
    }
}

/// The SDK configuration and the table's reader.
struct Aws {
    config: SdkConfig,
    reader: Reader,
}

impl Aws {
    async fn connect(target: &Target, settings: &Settings) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &target.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = target.region.as_ref().or(settings.audit_region.as_ref()) {
            loader = loader.region(Region::new(region.clone()));
        }
        let config = loader.load().await;
        let table = match &target.table {
            Some(table) => table.clone(),
            None => stack_table(&config, settings).await?,
        };
        Ok(Self {
            reader: Reader::new(aws_sdk_dynamodb::Client::new(&config), table),
            config,
        })
    }

    /// Account id → name from Organizations, or none (with a note) when
    /// these credentials cannot list the organization's accounts.
    async fn account_names(&self) -> BTreeMap<String, String> {
        let accounts = Accounts::new(
            aws_sdk_organizations::Client::new(&self.config),
            Duration::from_secs(300),
        );
        match accounts.names(&[]).await {
            Ok(names) => names,
            Err(e) => {
                eprintln!("note: accounts are shown by id: {e}");
                BTreeMap::new()
            }
        }
    }
}

/// The `TableName` output of the audit stack.
async fn stack_table(config: &SdkConfig, settings: &Settings) -> Result<String> {
    let stack = format!("{}-audit", settings.name_prefix);
    let region = config
        .region()
        .map_or_else(|| "the default region".to_owned(), ToString::to_string);
    let hint = || {
        format!(
            "cannot find the table from stack {stack} in {region} (settings from {}): \
             deploy it, pass --table NAME, or --region/--config for another deployment",
            settings.source
        )
    };
    let out = aws_sdk_cloudformation::Client::new(config)
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(e)))
        .with_context(hint)?;
    out.stacks()
        .iter()
        .flat_map(|s| s.outputs())
        .find(|o| o.output_key() == Some("TableName"))
        .and_then(|o| o.output_value())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("stack {stack} has no output TableName"))
        .with_context(hint)
}

/// Rows to standard output in a format: JSON lines and CSV as they come,
/// a table once all are in.
struct Rows {
    format: Format,
    out: BufWriter<io::StdoutLock<'static>>,
    table: Table,
    count: usize,
}

impl Rows {
    fn new(format: Format, header: &[&str]) -> io::Result<Self> {
        let mut out = BufWriter::new(io::stdout().lock());
        if format == Format::Csv {
            out.write_all(csv_record(header).as_bytes())?;
        }
        Ok(Self {
            format,
            out,
            table: Table::new(header),
            count: 0,
        })
    }

    fn push(
        &mut self,
        row: &impl Serialize,
        cells: Vec<String>,
        table_cells: Vec<String>,
    ) -> io::Result<()> {
        self.count += 1;
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, row)?;
                self.out.write_all(b"\n")
            }
            Format::Csv => self.out.write_all(csv_record(&cells).as_bytes()),
            Format::Table => {
                self.table.push(table_cells);
                Ok(())
            }
        }
    }

    fn finish(mut self, noun: &str) -> io::Result<()> {
        if self.format == Format::Table {
            self.out.write_all(self.table.render().as_bytes())?;
            writeln!(self.out, "{} {noun}", self.count)?;
        }
        self.out.flush()
    }
}

/// A stored session as a row.
fn session_row(
    item: &SessionItem,
    names: &BTreeMap<String, String>,
    now: i64,
    settings: &Settings,
) -> SessionRow {
    let slack = SlackThread {
        root_ts: item.root_ts.as_deref(),
        channel: item.root_channel.as_deref(),
        permalink: item.slack_permalink.as_deref(),
    };
    SessionRow::new(&item.session, &slack, names, now, settings.quiet_secs)
}

async fn sessions(
    aws: &Aws,
    settings: &Settings,
    filter: &SessionFilter,
    format: Format,
    now: i64,
) -> Result<ExitCode> {
    let names = aws.account_names().await;
    let mut stream = aws.reader.sessions(&filter.key(), &filter.range);
    let mut rows = Rows::new(format, &SESSION_COLUMNS)?;
    while let Some(item) = stream.next().await.context("reading sessions")? {
        if !filter.matches(&item.session) {
            continue;
        }
        let row = session_row(&item, &names, now, settings);
        rows.push(&row, row.cells(), row.table_cells())?;
    }
    rows.finish("sessions")?;
    Ok(ExitCode::SUCCESS)
}

async fn session(
    aws: &Aws,
    settings: &Settings,
    id: &str,
    format: TimelineFormat,
    now: i64,
) -> Result<ExitCode> {
    let item = aws
        .reader
        .session(id)
        .await
        .context("reading the session")?
        .with_context(|| {
            format!(
                "no session {id} in table {}; `cargo xtask audit sessions` lists them",
                aws.reader.table()
            )
        })?;
    if item.session.session_id != id {
        eprintln!(
            "note: session {id} was merged into session {}",
            item.session.session_id
        );
    }
    let names = aws.account_names().await;
    let row = session_row(&item, &names, now, settings);
    let mut events = aws.reader.timeline(&item);
    let mut out = BufWriter::new(io::stdout().lock());
    let mut count = 0usize;
    match format {
        TimelineFormat::Table => {
            out.write_all(session_heading(&row).render().as_bytes())?;
            out.write_all(b"\n")?;
            let mut table = Table::new(&EVENT_COLUMNS);
            while let Some(event) = events.next().await.context("reading the timeline")? {
                table.push(EventRow::new(&event, &names).table_cells());
                count += 1;
            }
            out.write_all(table.render().as_bytes())?;
            writeln!(out, "{count} events")?;
        }
        TimelineFormat::Json => {
            out.write_all(b"{\"session\":")?;
            serde_json::to_writer(&mut out, &row)?;
            out.write_all(b",\"events\":[")?;
            while let Some(event) = events.next().await.context("reading the timeline")? {
                if count > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut out, &EventRow::new(&event, &names))?;
                count += 1;
            }
            out.write_all(b"]}\n")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn events(
    aws: &Aws,
    kinds: &[DetectionKind],
    range: &Range,
    account: Option<&str>,
    format: Format,
) -> Result<ExitCode> {
    let names = aws.account_names().await;
    let mut stream = aws.reader.detections(kinds, &months(range), range, account);
    let mut rows = Rows::new(format, &DETECTION_COLUMNS)?;
    while let Some(d) = stream.next().await.context("reading detections")? {
        let row = DetectionRow::new(d.kind, &d.event, &d.session_id, &names);
        rows.push(&row, row.cells(), row.table_cells())?;
    }
    rows.finish("detections")?;
    Ok(ExitCode::SUCCESS)
}

async fn coverage(aws: &Aws, settings: &Settings, format: Format, now: i64) -> Result<ExitCode> {
    let items = aws.reader.coverage().await.context("reading coverage")?;
    let names = aws.account_names().await;
    let table = coverage_table(&items, None, &names, now, settings.heartbeat_secs);
    let header: Vec<&str> = table.header.iter().map(String::as_str).collect();
    let mut rows = Rows::new(format, &header)?;
    let json = coverage_rows(&items, None, &names, now, settings.heartbeat_secs);
    for (row, cells) in json.iter().zip(&table.rows) {
        rows.push(row, cells.clone(), cells.clone())?;
    }
    rows.finish("account×regions")?;
    Ok(ExitCode::SUCCESS)
}

/// A file of the pack, hashed as it is written.
struct PackFile {
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl PackFile {
    fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let file =
            File::create_new(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            name: name.to_owned(),
            path,
            out: BufWriter::new(file),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write_all(data)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<ManifestFile> {
        self.out
            .flush()
            .and_then(|()| self.out.get_ref().sync_all())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(ManifestFile {
            path: self.name,
            bytes: self.bytes,
            sha256: hex(&self.hasher.finalize()),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Records are fetched this many at a time.
const RECORD_BATCH: usize = 100;

/// The evidence pack: `sessions.csv`, `sessions/<id>.jsonl` (the original
/// CloudTrail records, one per line, in time order), `manifest.json` and
/// `SHA256SUMS`.
async fn export(
    aws: &Aws,
    settings: &Settings,
    range: &Range,
    out: &Path,
    now: i64,
) -> Result<ExitCode> {
    if out.exists() {
        let mut entries =
            fs::read_dir(out).with_context(|| format!("{} is not a directory", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: an evidence pack goes into a new or empty directory",
                out.display()
            );
        }
    }
    fs::create_dir_all(out.join("sessions"))
        .with_context(|| format!("cannot create {}", out.join("sessions").display()))?;
    let names = aws.account_names().await;
    let mut manifest = Manifest::new(aws.reader.table(), range, now);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} events ({per_sec}, {eta})")
            .expect("static template"),
    );
    let mut csv = PackFile::create(out, "sessions.csv")?;
    csv.write(csv_record(&SESSION_COLUMNS).as_bytes())?;
    let mut short = Vec::new();
    let mut stream = aws.reader.sessions(&SessionKey::Time(months(range)), range);
    while let Some(item) = stream.next().await.context("reading sessions")? {
        let session = &item.session;
        let row = session_row(&item, &names, now, settings);
        csv.write(csv_record(&row.cells()).as_bytes())?;
        let name = session_file(&session.session_id)
            .with_context(|| format!("session id {:?} cannot name a file", session.session_id))?;
        bar.set_message(format!("{} sessions", manifest.sessions + 1));
        bar.inc_length(session.event_count);
        let mut file = PackFile::create(out, &name)?;
        let mut timeline = aws.reader.timeline(&item);
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        let mut written = 0u64;
        loop {
            let next = timeline.next().await.context("reading a timeline")?;
            if let Some(event) = &next {
                batch.push(event.event_id.clone());
            }
            if batch.len() == RECORD_BATCH || (next.is_none() && !batch.is_empty()) {
                for record in aws.reader.records(&batch).await.with_context(|| {
                    format!("reading the records of session {}", session.session_id)
                })? {
                    file.write(record.record.as_bytes())?;
                    file.write(b"\n")?;
                    if !record.pruned.is_empty() {
                        manifest
                            .pruned_records
                            .insert(record.event_id, record.pruned);
                    }
                }
                written += batch.len() as u64;
                bar.inc(batch.len() as u64);
                batch.clear();
            }
            if next.is_none() {
                break;
            }
        }
        if written != session.event_count {
            short.push(format!(
                "session {}: {written} events stored, {} counted",
                session.session_id, session.event_count
            ));
        }
        manifest.files.push(file.finish()?);
        manifest.sessions += 1;
        manifest.events += written;
    }
    manifest.files.insert(0, csv.finish()?);
    bar.finish_and_clear();
    let manifest_path = out.join("manifest.json");
    let json = serde_json::to_string_pretty(&manifest).context("encoding the manifest")?;
    fs::write(&manifest_path, json + "\n")
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;
    let sums_path = out.join("SHA256SUMS");
    fs::write(&sums_path, manifest.sha256sums())
        .with_context(|| format!("cannot write {}", sums_path.display()))?;
    eprintln!(
        "wrote {} sessions and {} records to {}; check it with `sha256sum -c SHA256SUMS` there",
        manifest.sessions,
        manifest.events,
        out.display()
    );
    if !short.is_empty() {
        // Older events expire (TTL) before their session's summary does.
        for s in &short {
            eprintln!("warning: {s}");
        }
        eprintln!(
            "warning: the pack is incomplete for {} sessions",
            short.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
