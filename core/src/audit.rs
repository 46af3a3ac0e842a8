//! Audit queries, the pure part of `cargo xtask audit`: time arguments
//! (`7d`, `12h`, `2026-10-01`, RFC 3339) against a given `now`, which
//! filter a query keys on, the rows each command prints, aligned tables
//! for a terminal, CSV with a spreadsheet formula guard, and the evidence
//! pack's manifest. The store reads live in the aggregator's `query`
//! module; the shell that prints lives in xtask.
//!
//! Every string in a row may be attacker-controlled (principals, summaries,
//! source IPs come from CloudTrail records): [`Table::render`] strips
//! control and bidirectional-override characters, and [`csv_field`]
//! quotes and defuses formulas.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::coverage::{Coverage, health};
use crate::detect::{DetectionKind, Severity};
use crate::notify::WEBHOOK_ROOT;
use crate::session::{Session, SessionEvent};
use crate::signal::TrailStatus;
pub use crate::slack::format_duration;
use crate::slack::format_time;

/// Every severity, least severe first.
pub const SEVERITIES: [Severity; 4] = [
    Severity::Info,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

/// What a time argument may be, for error messages and help.
pub const TIME_HINT: &str = "give an age before now such as 7d, 12h, 30m or 2w, \
     a date such as 2026-10-01 (midnight UTC), or an RFC 3339 time such as 2026-10-01T12:00:00Z";

/// Longest a principal or summary may be in a table cell (CSV and JSON
/// keep them whole).
pub const MAX_TABLE_TEXT: usize = 100;

/// A time argument that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeArgError {
    #[error("`{0}` is not a time: {TIME_HINT}")]
    Invalid(String),
    #[error("`{0}` is too far from now to be a time")]
    OutOfRange(String),
    #[error("the time range is empty: {since} is not before {until}")]
    Empty { since: String, until: String },
}

fn unit_secs(unit: char) -> Option<i64> {
    match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3_600),
        'd' => Some(86_400),
        'w' => Some(7 * 86_400),
        _ => None,
    }
}

/// Parse a time argument: an age before `now` (`90s`, `30m`, `12h`, `7d`,
/// `2w`), `now`, a date (`2026-10-01`, midnight UTC) or an RFC 3339 time.
/// Seconds since the epoch.
pub fn parse_time_arg(text: &str, now: i64) -> Result<i64, TimeArgError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(unit) = t.chars().last()
        && let Some(secs) = unit_secs(unit)
    {
        let digits = &t[..t.len() - unit.len_utf8()];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(secs))
                .and_then(|age| now.checked_sub(age))
                .filter(|t| OffsetDateTime::from_unix_timestamp(*t).is_ok())
                .ok_or_else(|| TimeArgError::OutOfRange(text.to_owned()));
        }
    }
    if let Ok(time) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(time.unix_timestamp());
    }
    if let Ok(date) = Date::parse(t, format_description!("[year]-[month]-[day]")) {
        return Ok(date.midnight().assume_utc().unix_timestamp());
    }
    Err(TimeArgError::Invalid(text.to_owned()))
}

/// A half-open time range `[since, until)` in seconds since the epoch:
/// consecutive ranges never count a session twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Range {
    pub since: i64,
    pub until: i64,
}

impl Range {
    pub fn new(since: i64, until: i64) -> Result<Self, TimeArgError> {
        if since >= until {
            return Err(TimeArgError::Empty {
                since: format_time(since),
                until: format_time(until),
            });
        }
        Ok(Self { since, until })
    }

    /// `--since` and `--until` as given; a missing one is `default_since`
    /// or `now`. `--until` is exclusive.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        now: i64,
        default_since: i64,
    ) -> Result<Self, TimeArgError> {
        let since = since.map_or(Ok(default_since), |s| parse_time_arg(s, now))?;
        // Up to and including `now` when not given.
        let until = until.map_or(Ok(now.saturating_add(1)), |u| parse_time_arg(u, now))?;
        Self::new(since, until)
    }

    pub fn contains(&self, time: i64) -> bool {
        self.since <= time && time < self.until
    }

    /// The last second in the range.
    pub fn last(&self) -> i64 {
        self.until - 1
    }
}

/// The month (`2026-10`, UTC) a time falls in: the by-time partitions.
pub fn month(time: i64) -> String {
    OffsetDateTime::from_unix_timestamp(time)
        .map(|t| format!("{:04}-{:02}", t.year(), u8::from(t.month())))
        .unwrap_or_else(|_| "invalid".to_owned())
}

/// Every month the range touches, newest first.
pub fn months(range: &Range) -> Vec<String> {
    let ym = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(|t| (t.year(), i32::from(u8::from(t.month()))))
            .unwrap_or((1970, 1))
    };
    let (first_year, first_month) = ym(range.since);
    let (mut year, mut month) = ym(range.last());
    let mut out = Vec::new();
    while (year, month) >= (first_year, first_month) {
        out.push(format!("{year:04}-{month:02}"));
        month -= 1;
        if month == 0 {
            month = 12;
            year -= 1;
        }
    }
    out
}

/// Parse a severity name (`info`, `medium`, `high`, `critical`).
pub fn parse_severity(text: &str) -> Option<Severity> {
    SEVERITIES.into_iter().find(|s| s.as_str() == text)
}

/// Parse a detection kind name (`monitoring_tamper`, …).
pub fn parse_kind(text: &str) -> Option<DetectionKind> {
    DetectionKind::ALL.into_iter().find(|k| k.as_str() == text)
}

// ---------------------------------------------------------------------------
// Session filters

/// What `audit sessions` keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFilter {
    /// Sessions that started in this range.
    pub range: Range,
    /// Sessions that touched this account.
    pub account: Option<String>,
    /// Sessions of this principal (the anchor event's, exact).
    pub principal: Option<String>,
    /// Sessions whose highest severity is at least this.
    pub min_severity: Option<Severity>,
    /// Only sessions still open at `now`: `(now, quiet_secs)`.
    pub open_at: Option<(i64, i64)>,
}

/// The filter a query keys on; the others are checked on each result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKey {
    /// `by-principal`: one partition.
    Principal(String),
    /// `by-account`: one partition of index items.
    Account(String),
    /// `by-severity`: one partition per level, most severe first.
    Severity(Vec<Severity>),
    /// `by-time`: the range's months, newest first.
    Time(Vec<String>),
}

impl SessionFilter {
    /// The most selective filter given: principal, then account, then
    /// severity, else time. Every index is sorted by start time, so the
    /// range is part of every key condition.
    pub fn key(&self) -> SessionKey {
        if let Some(p) = &self.principal {
            SessionKey::Principal(p.clone())
        } else if let Some(a) = &self.account {
            SessionKey::Account(a.clone())
        } else if let Some(min) = self.min_severity {
            SessionKey::Severity(SEVERITIES.into_iter().rev().filter(|s| *s >= min).collect())
        } else {
            SessionKey::Time(months(&self.range))
        }
    }

    pub fn matches(&self, session: &Session) -> bool {
        self.range.contains(session.first_seen)
            && self
                .account
                .as_ref()
                .is_none_or(|a| session.accounts.contains(a))
            && self
                .principal
                .as_ref()
                .is_none_or(|p| &session.principal == p)
            && self.min_severity.is_none_or(|min| session.severity >= min)
            && self
                .open_at
                .is_none_or(|(now, quiet)| !session.closed_at(now, quiet))
    }
}

// ---------------------------------------------------------------------------
// Rows

/// An account id with its name, when Organizations gave one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl AccountRef {
    pub fn new(id: &str, names: &BTreeMap<String, String>) -> Self {
        Self {
            id: id.to_owned(),
            name: names.get(id).filter(|n| !n.is_empty()).cloned(),
        }
    }

    /// `111122223333 (prod)`, or the id alone.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.id),
            None => self.id.clone(),
        }
    }
}

/// How a session began: `sts:AssumeRole`, `signin:ConsoleLogin`,
/// `sso:GetRoleCredentials`; empty when the store predates it.
pub fn entry_path(session: &Session) -> String {
    if session.anchor_event_name.is_empty() {
        return String::new();
    }
    let service = session
        .anchor_event_source
        .split('.')
        .next()
        .unwrap_or_default();
    format!("{service}:{}", session.anchor_event_name)
}

/// Where a session's Slack thread is, as the store knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlackThread<'a> {
    pub root_ts: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub permalink: Option<&'a str>,
}

impl SlackThread<'_> {
    /// The permalink, or what there is instead.
    pub fn describe(&self) -> String {
        match (self.permalink, self.root_ts, self.channel) {
            (Some(link), _, _) => link.to_owned(),
            (None, Some(WEBHOOK_ROOT), _) => "webhook (no link)".to_owned(),
            (None, Some(ts), Some(channel)) => format!("channel {channel} ts {ts}"),
            (None, Some(_), None) => "posted (no link)".to_owned(),
            (None, None, _) => "not posted".to_owned(),
        }
    }
}

/// One line of `audit sessions` (and of the evidence pack's
/// `sessions.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    pub session_id: String,
    pub start: String,
    pub end: String,
    pub duration_secs: i64,
    pub open: bool,
    pub principal: String,
    pub entry_path: String,
    pub accounts: Vec<AccountRef>,
    pub regions: Vec<String>,
    pub event_count: u64,
    pub severity: Severity,
    pub kinds: Vec<DetectionKind>,
    pub slack: String,
    pub slack_permalink: Option<String>,
}

/// The columns of [`SessionRow::cells`].
pub const SESSION_COLUMNS: [&str; 11] = [
    "SESSION",
    "START",
    "DURATION",
    "PRINCIPAL",
    "ENTRY",
    "ACCOUNTS",
    "REGIONS",
    "EVENTS",
    "SEVERITY",
    "KINDS",
    "SLACK",
];

impl SessionRow {
    pub fn new(
        session: &Session,
        slack: &SlackThread<'_>,
        names: &BTreeMap<String, String>,
        now: i64,
        quiet_secs: i64,
    ) -> Self {
        Self {
            session_id: session.session_id.clone(),
            start: format_time(session.first_seen),
            end: format_time(session.last_seen),
            duration_secs: session.last_seen - session.first_seen,
            open: !session.closed_at(now, quiet_secs),
            principal: session.principal.clone(),
            entry_path: entry_path(session),
            accounts: session
                .accounts
                .iter()
                .map(|a| AccountRef::new(a, names))
                .collect(),
            regions: session.regions.iter().cloned().collect(),
            event_count: session.event_count,
            severity: session.severity,
            kinds: session.kinds.iter().copied().collect(),
            slack: slack.describe(),
            slack_permalink: slack.permalink.map(str::to_owned),
        }
    }

    /// The cells under [`SESSION_COLUMNS`], whole (clip them for a table).
    pub fn cells(&self) -> Vec<String> {
        let mut duration = format_duration(self.duration_secs);
        if self.open {
            duration.push_str(" (open)");
        }
        vec![
            self.session_id.clone(),
            self.start.clone(),
            duration,
            self.principal.clone(),
            self.entry_path.clone(),
            join(self.accounts.iter().map(AccountRef::label)),
            self.regions.join(", "),
            self.event_count.to_string(),
            self.severity.as_str().to_owned(),
            join(self.kinds.iter().map(|k| k.as_str().to_owned())),
            self.slack.clone(),
        ]
    }

    /// Cells for a terminal table: long attacker-chosen text clipped.
    pub fn table_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        cells[3] = clip(&cells[3], MAX_TABLE_TEXT);
        cells
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// One event of a session's timeline (`audit session ID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    pub time: String,
    pub event_id: String,
    pub account: AccountRef,
    pub region: String,
    pub event_source: String,
    pub event_name: String,
    pub principal: String,
    pub summary: String,
    pub source_ip: Option<String>,
    pub error_code: Option<String>,
    pub severity: Severity,
    pub kinds: Vec<DetectionKind>,
    /// Set when the fast path missed the event and the trail's log files
    /// delivered it: the log file, and how late.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<crate::session::Recovered>,
}

pub const EVENT_COLUMNS: [&str; 7] = [
    "TIME",
    "ACCOUNT",
    "REGION",
    "EVENT",
    "SUMMARY",
    "SOURCE IP",
    "ERROR",
];

impl EventRow {
    pub fn new(event: &SessionEvent, names: &BTreeMap<String, String>) -> Self {
        Self {
            time: format_time(event.time),
            event_id: event.event_id.clone(),
            account: AccountRef::new(&event.account, names),
            region: event.region.clone(),
            event_source: event.event_source.clone(),
            event_name: event.event_name.clone(),
            principal: event.principal.clone(),
            summary: event.summary.clone(),
            source_ip: event.source_ip.clone(),
            error_code: event.error_code.clone(),
            severity: event.severity,
            kinds: event.kinds.iter().copied().collect(),
            recovered: event.recovered.clone(),
        }
    }

    pub fn table_cells(&self) -> Vec<String> {
        let summary = match &self.recovered {
            Some(r) => format!(
                "[recovered from the trail, {} late] {}",
                format_duration(r.late_secs),
                self.summary
            ),
            None => self.summary.clone(),
        };
        vec![
            self.time.clone(),
            self.account.label(),
            self.region.clone(),
            self.event_name.clone(),
            clip(&summary, MAX_TABLE_TEXT),
            self.source_ip.clone().unwrap_or_default(),
            self.error_code.clone().unwrap_or_default(),
        ]
    }
}

/// A session's heading above its timeline: one `name: value` line per
/// column, and the end after the start.
pub fn session_heading(row: &SessionRow) -> Table {
    let mut table = Table::default();
    for (name, value) in SESSION_COLUMNS.iter().zip(row.cells()) {
        table.push(vec![format!("{}:", name.to_lowercase()), value]);
        if *name == "START" {
            table.push(vec!["end:".to_owned(), row.end.clone()]);
        }
    }
    table
}

/// One detection of `audit events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectionRow {
    pub time: String,
    pub kind: DetectionKind,
    /// The event's severity (its most severe detection).
    pub severity: Severity,
    pub account: AccountRef,
    pub region: String,
    pub event_name: String,
    pub principal: String,
    pub summary: String,
    pub session_id: String,
    pub event_id: String,
}

pub const DETECTION_COLUMNS: [&str; 9] = [
    "TIME",
    "KIND",
    "SEVERITY",
    "ACCOUNT",
    "REGION",
    "EVENT",
    "PRINCIPAL",
    "SUMMARY",
    "SESSION",
];

impl DetectionRow {
    pub fn new(
        kind: DetectionKind,
        event: &SessionEvent,
        session_id: &str,
        names: &BTreeMap<String, String>,
    ) -> Self {
        Self {
            time: format_time(event.time),
            kind,
            severity: event.severity,
            account: AccountRef::new(&event.account, names),
            region: event.region.clone(),
            event_name: event.event_name.clone(),
            principal: event.principal.clone(),
            summary: event.summary.clone(),
            session_id: session_id.to_owned(),
            event_id: event.event_id.clone(),
        }
    }

    pub fn cells(&self) -> Vec<String> {
        vec![
            self.time.clone(),
            self.kind.as_str().to_owned(),
            self.severity.as_str().to_owned(),
            self.account.label(),
            self.region.clone(),
            self.event_name.clone(),
            self.principal.clone(),
            self.summary.clone(),
            self.session_id.clone(),
        ]
    }

    pub fn table_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        for i in [6, 7] {
            cells[i] = clip(&cells[i], MAX_TABLE_TEXT);
        }
        cells
    }
}

// ---------------------------------------------------------------------------
// Coverage

/// One account×region of `audit coverage` (and `status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageRow {
    pub account: AccountRef,
    pub region: String,
    /// `healthy`, `silent`, `trail_not_logging`, or `no_heartbeat` for a
    /// stack instance that never sent one.
    pub health: String,
    pub last_heartbeat: Option<String>,
    pub heartbeat_age_secs: Option<i64>,
    pub trail: Option<TrailStatus>,
    pub agent_version: Option<String>,
    /// The stack instance's status, when the caller knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_instance: Option<String>,
}

/// Stack instance status per `(account, region)`.
pub type StackStatuses = BTreeMap<(String, String), String>;

/// The rows for coverage items at `now`, sorted by account and region.
/// With `stacks`, every stack instance gets a row, with or without a
/// heartbeat.
pub fn coverage_rows(
    items: &[Coverage],
    stacks: Option<&StackStatuses>,
    names: &BTreeMap<String, String>,
    now: i64,
    interval_secs: i64,
) -> Vec<CoverageRow> {
    let mut rows: BTreeMap<(String, String), CoverageRow> = BTreeMap::new();
    for c in items {
        let key = (c.account.clone(), c.region.clone());
        rows.insert(
            key.clone(),
            CoverageRow {
                account: AccountRef::new(&c.account, names),
                region: c.region.clone(),
                health: health(c, now, interval_secs).as_str().to_owned(),
                last_heartbeat: Some(format_time(c.last_heartbeat)),
                heartbeat_age_secs: Some(now - c.last_heartbeat),
                trail: Some(c.trail),
                agent_version: Some(c.agent_version.clone()),
                stack_instance: stacks.and_then(|s| s.get(&key).cloned()),
            },
        );
    }
    for ((account, region), status) in stacks.into_iter().flatten() {
        rows.entry((account.clone(), region.clone()))
            .or_insert_with(|| CoverageRow {
                account: AccountRef::new(account, names),
                region: region.clone(),
                health: "no_heartbeat".to_owned(),
                last_heartbeat: None,
                heartbeat_age_secs: None,
                trail: None,
                agent_version: None,
                stack_instance: Some(status.clone()),
            });
    }
    rows.into_values().collect()
}

/// The coverage table: `audit coverage` shows it without stack
/// instances, `status` with their statuses.
pub fn coverage_table(
    items: &[Coverage],
    stacks: Option<&StackStatuses>,
    names: &BTreeMap<String, String>,
    now: i64,
    interval_secs: i64,
) -> Table {
    let mut header = vec![
        "ACCOUNT",
        "REGION",
        "HEALTH",
        "LAST HEARTBEAT",
        "AGE",
        "TRAIL",
        "AGENT",
    ];
    if stacks.is_some() {
        header.push("STACK INSTANCE");
    }
    let mut table = Table::new(&header);
    for row in coverage_rows(items, stacks, names, now, interval_secs) {
        let mut cells = row.cells();
        if stacks.is_none() {
            cells.pop();
        }
        table.push(cells);
    }
    table
}

impl CoverageRow {
    /// Cells: account, region, health, last heartbeat, age, trail, agent,
    /// stack instance.
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.account.label(),
            self.region.clone(),
            self.health.clone(),
            self.last_heartbeat.clone().unwrap_or_default(),
            self.heartbeat_age_secs
                .map(|a| format!("{} ago", format_duration(a)))
                .unwrap_or_default(),
            self.trail
                .map(TrailStatus::as_str)
                .unwrap_or_default()
                .to_owned(),
            self.agent_version.clone().unwrap_or_default(),
            self.stack_instance.clone().unwrap_or_default(),
        ]
    }
}

// ---------------------------------------------------------------------------
// Output

/// Make text safe for a terminal: control characters (escape sequences)
/// and bidirectional overrides (which reorder what a reader sees) become
/// U+FFFD.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(bad) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if bad(c) { '\u{fffd}' } else { c })
            .collect(),
    )
}

/// At most `max` characters, `…` marking a cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Rows under a header, aligned for a terminal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Columns separated by two spaces, padded to the widest cell, trailing
    /// spaces trimmed, one `\n` per line. Cells are made
    /// [`terminal_safe`]; an empty cell shows as `-`.
    pub fn render(&self) -> String {
        let clean = |cell: &String| -> String {
            if cell.is_empty() {
                "-".to_owned()
            } else {
                terminal_safe(cell).into_owned()
            }
        };
        let header: Vec<String> = self.header.clone();
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(clean).collect())
            .collect();
        let columns = rows
            .iter()
            .map(Vec::len)
            .chain([header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let lines = (!header.is_empty())
            .then_some(&header)
            .into_iter()
            .chain(&rows);
        for row in lines {
            let mut line = String::new();
            for (cell, w) in row.iter().zip(&widths) {
                let pad = w.saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// One CSV field (RFC 4180), defused for spreadsheets: a value starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
/// Excel and LibreOffice, so it gets a leading `'`; a value with a comma,
/// quote, line break or the guard is quoted, quotes doubled.
pub fn csv_field(value: &str) -> Cow<'_, str> {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let special = value.contains([',', '"', '\n', '\r']);
    if !formula && !special {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    out.push('"');
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    Cow::Owned(out)
}

/// One CSV record, CRLF-terminated.
pub fn csv_record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

// ---------------------------------------------------------------------------
// Evidence pack

/// The evidence pack's format, written into its manifest.
pub const EVIDENCE_FORMAT: &str = "glasswatch-evidence-pack/1";

/// One file of the pack with its size and SHA-256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json`: what the pack holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub generated_at: String,
    pub table: String,
    /// Sessions that started in `[since, until)`.
    pub since: String,
    pub until: String,
    pub sessions: u64,
    pub events: u64,
    /// Events whose record the agent shrank to fit EventBridge's entry
    /// size, with the fields it pruned: the rest is as CloudTrail wrote it.
    pub pruned_records: BTreeMap<String, Vec<String>>,
    /// Every other file of the pack.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    pub fn new(table: &str, range: &Range, generated_at: i64) -> Self {
        Self {
            format: EVIDENCE_FORMAT.to_owned(),
            generated_at: format_time(generated_at),
            table: table.to_owned(),
            since: format_time(range.since),
            until: format_time(range.until),
            sessions: 0,
            events: 0,
            pruned_records: BTreeMap::new(),
            files: Vec::new(),
        }
    }

    /// The files in `sha256sum` format (`HASH  PATH`), so
    /// `sha256sum -c SHA256SUMS` checks the pack.
    pub fn sha256sums(&self) -> String {
        self.files
            .iter()
            .map(|f| format!("{}  {}\n", f.sha256, f.path))
            .collect()
    }
}

/// The pack's file for a session's records, `sessions/<id>.jsonl`; `None`
/// for an id that could not be a file name (ids are UUIDs).
pub fn session_file(session_id: &str) -> Option<String> {
    let safe = !session_id.is_empty()
        && session_id.len() <= 64
        && session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    safe.then(|| format!("sessions/{session_id}.jsonl"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;
    use crate::coverage::Health;
    use crate::detect::Mfa;

    const NOW: i64 = 1_791_990_000; // 2026-10-14T15:00:00Z

    #[test]
    fn relative_absolute_and_bad_times() {
        assert_eq!(parse_time_arg("7d", NOW), Ok(NOW - 7 * 86_400));
        assert_eq!(parse_time_arg("12h", NOW), Ok(NOW - 12 * 3_600));
        assert_eq!(parse_time_arg("30m", NOW), Ok(NOW - 1_800));
        assert_eq!(parse_time_arg("2w", NOW), Ok(NOW - 14 * 86_400));
        assert_eq!(parse_time_arg("0s", NOW), Ok(NOW));
        assert_eq!(parse_time_arg(" now ", NOW), Ok(NOW));
        assert_eq!(parse_time_arg("2026-10-01", NOW), Ok(1_790_812_800));
        assert_eq!(
            parse_time_arg("2026-10-01T12:00:00Z", NOW),
            Ok(1_790_812_800 + 43_200)
        );
        assert_eq!(
            parse_time_arg("2026-10-01T14:00:00+02:00", NOW),
            Ok(1_790_812_800 + 43_200)
        );
        for bad in [
            "",
            "7",
            "d",
            "-7d",
            "7x",
            "7 d",
            "1.5h",
            "2026-13-01",
            "yesterday",
            "7dd",
        ] {
            let e = parse_time_arg(bad, NOW).unwrap_err();
            assert_eq!(e, TimeArgError::Invalid(bad.to_owned()), "{bad}");
            assert!(e.to_string().contains("7d"), "{e}");
        }
        assert!(matches!(
            parse_time_arg("99999999999999999d", NOW),
            Err(TimeArgError::OutOfRange(_))
        ));
    }

    #[test]
    fn ranges_are_half_open_and_never_empty() {
        let r = Range::parse(Some("2026-10-01"), Some("2026-10-02"), NOW, 0).unwrap();
        assert!(r.contains(1_790_812_800));
        assert!(r.contains(1_790_812_800 + 86_399));
        assert!(!r.contains(1_790_812_800 + 86_400));
        assert!(!r.contains(1_790_812_799));
        let r = Range::parse(None, None, NOW, NOW - 10).unwrap();
        assert_eq!((r.since, r.until), (NOW - 10, NOW + 1));
        let e = Range::parse(Some("1d"), Some("2d"), NOW, 0).unwrap_err();
        assert!(matches!(e, TimeArgError::Empty { .. }), "{e}");
        assert!(Range::new(5, 5).is_err());
    }

    #[test]
    fn months_newest_first_across_a_year_end() {
        let since = parse_time_arg("2025-11-30T23:59:59Z", NOW).unwrap();
        let until = parse_time_arg("2026-02-01", NOW).unwrap();
        let r = Range::new(since, until).unwrap();
        assert_eq!(months(&r), ["2026-01", "2025-12", "2025-11"]);
        assert_eq!(month(since), "2025-11");
        let one = Range::new(until, until + 1).unwrap();
        assert_eq!(months(&one), ["2026-02"]);
    }

    fn event(id: &str, time: i64, account: &str, severity: Severity) -> SessionEvent {
        SessionEvent {
            event_id: id.to_owned(),
            time,
            event_time: format_time(time),
            event_source: "sts.amazonaws.com".to_owned(),
            event_name: "AssumeRole".to_owned(),
            account: account.to_owned(),
            region: "eu-west-1".to_owned(),
            principal: "arn:aws:iam::111122223333:user/break-glass-1".to_owned(),
            severity,
            kinds: BTreeSet::from([DetectionKind::BreakGlassRoleAssumed]),
            keys: BTreeSet::new(),
            summary: "break-glass-1 assumed BreakGlassRole".to_owned(),
            source_ip: Some("198.51.100.7".to_owned()),
            user_agent: None,
            mfa: Mfa::Yes,
            error_code: None,
            recovered: None,
        }
    }

    fn filter(range: Range) -> SessionFilter {
        SessionFilter {
            range,
            account: None,
            principal: None,
            min_severity: None,
            open_at: None,
        }
    }

    #[test]
    fn the_most_selective_filter_is_the_key_and_all_filters_apply() {
        let range = Range::new(NOW - 40 * 86_400, NOW).unwrap();
        let mut f = filter(range);
        assert!(matches!(f.key(), SessionKey::Time(m) if m.len() == 2));
        f.min_severity = Some(Severity::High);
        assert_eq!(
            f.key(),
            SessionKey::Severity(vec![Severity::Critical, Severity::High])
        );
        f.account = Some("444455556666".into());
        assert_eq!(f.key(), SessionKey::Account("444455556666".into()));
        f.principal = Some("arn:aws:iam::111122223333:user/break-glass-1".into());
        assert!(matches!(f.key(), SessionKey::Principal(_)));

        let s = Session::of(&event("a", NOW - 100, "444455556666", Severity::High));
        assert!(f.matches(&s));
        f.min_severity = Some(Severity::Critical);
        assert!(!f.matches(&s));
        f.min_severity = None;
        f.account = Some("999999999999".into());
        assert!(!f.matches(&s));
        f.account = None;
        f.open_at = Some((NOW, 3_600));
        assert!(f.matches(&s), "last seen 100 s ago, quiet period 1 h");
        f.open_at = Some((NOW, 60));
        assert!(!f.matches(&s));
        f.open_at = None;
        f.range = Range::new(NOW - 99, NOW).unwrap();
        assert!(!f.matches(&s), "started before the range");
    }

    #[test]
    fn session_rows_name_accounts_entry_and_slack() {
        let s = Session::of(&event("a", NOW - 3_725, "111122223333", Severity::Critical))
            .with_event(&event("b", NOW - 100, "444455556666", Severity::High));
        let names = BTreeMap::from([("111122223333".to_owned(), "prod".to_owned())]);
        let slack = SlackThread {
            root_ts: Some("1.2"),
            channel: Some("C1"),
            permalink: Some("https://example.slack.com/archives/C1/p12"),
        };
        let row = SessionRow::new(&s, &slack, &names, NOW, 3_600);
        let cells = row.cells();
        assert_eq!(cells.len(), SESSION_COLUMNS.len());
        assert_eq!(cells[2], "1h 00m (open)");
        assert_eq!(cells[4], "sts:AssumeRole");
        assert_eq!(cells[5], "111122223333 (prod), 444455556666");
        assert_eq!(cells[7], "2");
        assert_eq!(cells[8], "critical");
        assert_eq!(cells[10], "https://example.slack.com/archives/C1/p12");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["accounts"][0]["name"], "prod");
        assert!(json["accounts"][1].get("name").is_none());
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["kinds"][0], "break_glass_role_assumed");

        let heading = session_heading(&row).render();
        let lines: Vec<&str> = heading.lines().collect();
        assert!(lines[0].starts_with("session:") && lines[0].ends_with(&row.session_id));
        assert!(lines[1].starts_with("start:") && lines[2].starts_with("end:"));
        assert_eq!(lines.len(), SESSION_COLUMNS.len() + 1);

        let webhook = SlackThread {
            root_ts: Some(WEBHOOK_ROOT),
            ..SlackThread::default()
        };
        assert_eq!(webhook.describe(), "webhook (no link)");
        assert_eq!(SlackThread::default().describe(), "not posted");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration(65), "1m 05s");
        assert_eq!(format_duration(3_600 * 3 + 120), "3h 02m");
        assert_eq!(format_duration(86_400 * 2 + 3_600 * 4), "2d 04h");
        assert_eq!(format_duration(-5), "0s");
    }

    #[test]
    fn csv_quotes_and_defuses_hostile_strings() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field("cr\rlf"), "\"cr\rlf\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        for lead in ["+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            let f = csv_field(lead);
            assert!(f.starts_with("\"'"), "{lead:?} → {f}");
        }
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_record(&["a", "b,c", "=1"]), "a,\"b,c\",\"'=1\"\r\n");
    }

    #[test]
    fn tables_align_and_strip_terminal_escapes() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.push(vec!["\u{1b}[31mred".into(), String::new()]);
        t.push(vec!["x\u{202e}gnp.exe".into(), "y".into()]);
        let out = t.render();
        assert_eq!(
            out,
            "A          LONGER\n\u{fffd}[31mred   -\nx\u{fffd}gnp.exe  y\n"
        );
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }

    #[test]
    fn coverage_rows_with_and_without_stack_instances() {
        let item = |account: &str, region: &str, last: i64, trail| Coverage {
            account: account.into(),
            region: region.into(),
            last_heartbeat: last,
            trail,
            agent_version: "0.1.0".into(),
            alerted: Health::Healthy,
            dead_letters: 0,
            reported: true,
        };
        let items = [
            item("222233334444", "eu-west-1", NOW - 60, TrailStatus::Logging),
            item(
                "111122223333",
                "us-east-1",
                NOW - 3_600,
                TrailStatus::Logging,
            ),
            item(
                "111122223333",
                "eu-west-1",
                NOW - 60,
                TrailStatus::NotLogging,
            ),
        ];
        let names = BTreeMap::from([("111122223333".to_owned(), "prod".to_owned())]);
        let table = coverage_table(&items, None, &names, NOW, 900);
        assert_eq!(table.header.len(), 7);
        let health: Vec<(&str, &str, &str)> = table
            .rows
            .iter()
            .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
            .collect();
        assert_eq!(
            health,
            [
                ("111122223333 (prod)", "eu-west-1", "trail_not_logging"),
                ("111122223333 (prod)", "us-east-1", "silent"),
                ("222233334444", "eu-west-1", "healthy"),
            ]
        );
        assert_eq!(table.rows[1][4], "1h 00m ago");

        let stacks = StackStatuses::from([
            (
                ("111122223333".to_owned(), "eu-west-1".to_owned()),
                "CURRENT".to_owned(),
            ),
            (
                ("333344445555".to_owned(), "eu-west-1".to_owned()),
                "OUTDATED".to_owned(),
            ),
        ]);
        let table = coverage_table(&items, Some(&stacks), &names, NOW, 900);
        assert_eq!(
            table.header.last().map(String::as_str),
            Some("STACK INSTANCE")
        );
        assert_eq!(table.rows.len(), 4);
        assert_eq!(table.rows[0][7], "CURRENT");
        assert_eq!(table.rows[1][7], "");
        assert_eq!(
            table.rows[3],
            [
                "333344445555",
                "eu-west-1",
                "no_heartbeat",
                "",
                "",
                "",
                "",
                "OUTDATED"
            ]
        );
    }

    #[test]
    fn manifest_lists_files_in_sha256sum_format() {
        let range = Range::new(NOW - 86_400, NOW).unwrap();
        let mut m = Manifest::new("t", &range, NOW);
        m.files.push(ManifestFile {
            path: "sessions.csv".into(),
            bytes: 3,
            sha256: "ab".repeat(32),
        });
        assert_eq!(
            m.sha256sums(),
            format!("{}  sessions.csv\n", "ab".repeat(32))
        );
        assert_eq!(m.since, "2026-10-13T15:00:00Z");
        assert_eq!(
            session_file("6f1c-aa").as_deref(),
            Some("sessions/6f1c-aa.jsonl")
        );
        assert_eq!(session_file("../etc/passwd"), None);
        assert_eq!(session_file(""), None);
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_severity("high"), Some(Severity::High));
        assert_eq!(parse_severity("HIGH"), None);
        assert_eq!(
            parse_kind("monitoring_tamper"),
            Some(DetectionKind::MonitoringTamper)
        );
        assert_eq!(parse_kind("tamper"), None);
    }
}
