//! Every key of the table, spelled once. The store writes through these
//! functions and the audit reads (`query`) read through them, so a key's
//! shape cannot drift between the two.

use glasswatch_core::DetectionKind;
use glasswatch_core::Severity;
use glasswatch_core::audit::month;

/// Sort key of an event's own item.
pub const EVENT_SK: &str = "EVENT";
/// Sort key of a session's summary item.
pub const SESSION_SK: &str = "SESSION";
/// Prefix of the sort keys of a session's event items.
pub const SESSION_EVENT_PREFIX: &str = "EVENT#";
/// Partition of sessions with Slack messages still to send.
pub const PENDING_PK: &str = "PENDING";
/// Partition of sessions whose account index items a merge left to
/// rewrite (outside its transaction, which must stay small).
pub const REINDEX_PK: &str = "REINDEX";
/// Partition of the account × region coverage items.
pub const COVERAGE_PK: &str = "COVERAGE";
/// The organization's account list as last read from Organizations, and
/// what deploy targeted.
pub const ORGANIZATION_PK: &str = "ORGANIZATION";
pub const ACCOUNTS_SK: &str = "ACCOUNTS";
pub const TARGETS_SK: &str = "TARGETS";
/// Sort key of an untrusted signal's item.
pub const SPOOFED_SK: &str = "SPOOFED";
/// Sort key of a notice's item.
pub const NOTICE_SK: &str = "NOTICE";
/// Sort key of a sender's spoofing-alert rate limit.
pub const SPOOF_RATE_SK: &str = "RATE";
/// Sort key of a trail log file's item (one per object key processed).
pub const LOG_FILE_SK: &str = "LOGFILE";
/// Partition of the reconciler's progress per account × region.
pub const TRAIL_PK: &str = "TRAIL";
/// An event item's `origin` when the trail's log files delivered it first.
pub const ORIGIN_TRAIL: &str = "trail";

/// Times in sort keys: fixed width, so string order is time order.
pub fn time_sk(time: i64, event_id: &str) -> String {
    format!("{time:012}#{event_id}")
}

/// The lower bound of every [`time_sk`] at or after `time`.
pub fn time_from(time: i64) -> String {
    format!("{time:012}#")
}

/// The upper bound of every [`time_sk`] at or before `time`.
pub fn time_to(time: i64) -> String {
    format!("{time:012}#~")
}

pub fn event_pk(event_id: &str) -> String {
    format!("EVENT#{event_id}")
}

pub fn session_pk(session_id: &str) -> String {
    format!("SESSION#{session_id}")
}

/// The session id of a `SESSION#<id>` partition key.
pub fn session_id_of(pk: &str) -> &str {
    pk.strip_prefix("SESSION#").unwrap_or(pk)
}

/// A session's item for one of its events.
pub fn session_event_sk(time: i64, event_id: &str) -> String {
    format!("{SESSION_EVENT_PREFIX}{}", time_sk(time, event_id))
}

/// A session's index item for one account, and the by-account partition.
pub fn account_sk(account: &str) -> String {
    format!("ACCOUNT#{account}")
}

pub fn account_partition(account: &str) -> String {
    account_sk(account)
}

/// An event's index item for one detection kind.
pub fn kind_sk(kind: DetectionKind) -> String {
    format!("KIND#{}", kind.as_str())
}

/// The by-kind partition of a detection kind in a month (`2026-10`).
pub fn kind_partition(kind: DetectionKind, month: &str) -> String {
    format!("KIND#{}#{month}", kind.as_str())
}

/// The by-time partition of a month (`2026-10`).
pub fn time_partition(month: &str) -> String {
    format!("MONTH#{month}")
}

/// The by-time partition of the month `time` falls in.
pub fn month_of(time: i64) -> String {
    time_partition(&month(time))
}

pub fn principal_partition(principal: &str) -> String {
    format!("PRINCIPAL#{principal}")
}

pub fn severity_partition(severity: Severity) -> String {
    format!("SEVERITY#{}", severity.as_str())
}

/// Uses of a correlation key (`key:ASIA…`).
pub fn key_pk(key: &str) -> String {
    format!("KEY#{key}")
}

pub fn coverage_sk(account: &str, region: &str) -> String {
    format!("{account}#{region}")
}

pub fn spoofed_pk(event_id: &str) -> String {
    format!("SPOOFED#{event_id}")
}

/// A sender's spoofing alerts, for their rate limit.
pub fn spoofer_pk(sender: &str) -> String {
    format!("SPOOFER#{sender}")
}

/// A trail log file the reconciler processed, by its object key.
pub fn log_file_pk(key: &str) -> String {
    format!("LOGFILE#{key}")
}

/// An operational notice (an alarm's SNS message) already posted.
pub fn notice_pk(message_id: &str) -> String {
    format!("NOTICE#{message_id}")
}

/// The index names, with their partition and sort key attributes.
pub const GSI_BY_TIME: (&str, &str, &str) = ("by-time", "gsi_time_pk", "gsi_sk");
pub const GSI_BY_ACCOUNT: (&str, &str, &str) = ("by-account", "gsi_account_pk", "gsi_sk");
pub const GSI_BY_PRINCIPAL: (&str, &str, &str) = ("by-principal", "gsi_principal_pk", "gsi_sk");
pub const GSI_BY_SEVERITY: (&str, &str, &str) = ("by-severity", "gsi_severity_pk", "gsi_sk");
/// Detections (the `KIND#` items of events), sorted by
/// `<time>#<eventID>`.
pub const GSI_BY_KIND: (&str, &str, &str) = ("by-kind", "gsi_kind_pk", "gsi_sk");
/// Every index: (name, partition key attribute, sort key attribute).
pub const INDEXES: [(&str, &str, &str); 5] = [
    GSI_BY_TIME,
    GSI_BY_ACCOUNT,
    GSI_BY_PRINCIPAL,
    GSI_BY_SEVERITY,
    GSI_BY_KIND,
];

/// The index sort key of a session: its first event's time, then its id.
pub fn session_gsi_sk(first_seen: i64, session_id: &str) -> String {
    time_sk(first_seen, session_id)
}
