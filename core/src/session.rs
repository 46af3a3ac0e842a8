//! Break-glass sessions: what one event contributes ([`SessionEvent`]) and
//! the summary of a correlated session ([`Session`]).
//!
//! A session summary is a join: merging two summaries, in either order,
//! gives the same result, and the summary of a set of events does not
//! depend on the order they were folded in. Sets of attacker-chosen
//! strings (user agents, source IPs) are bounded by keeping the smallest
//! few, which is also order-independent.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::detect::{Detection, DetectionKind, Mfa, Severity};
use crate::record::parse_time;

/// At most this many distinct user agents, source IPs and principals are
/// kept in a session summary; the count of events is exact.
pub const MAX_SET: usize = 16;

const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c0e_7d0a_3f7e_4c55_9a8b_2d4e_1f60_b7c3);

/// The id of the session whose earliest event is `anchor_event_id`.
pub fn session_id(anchor_event_id: &str) -> String {
    uuid::Uuid::new_v5(&NAMESPACE, anchor_event_id.as_bytes()).to_string()
}

/// One CloudTrail event, as correlation and alerting see it: the union of
/// the detections the agent made on its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub event_id: String,
    /// Seconds since the epoch (CloudTrail times are whole seconds).
    pub time: i64,
    pub event_time: String,
    pub event_source: String,
    pub event_name: String,
    pub account: String,
    pub region: String,
    pub principal: String,
    pub severity: Severity,
    pub kinds: BTreeSet<DetectionKind>,
    /// Correlation keys, as their `kind:value` text.
    pub keys: BTreeSet<String>,
    /// The summary of the most severe detection.
    pub summary: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub mfa: Mfa,
    pub error_code: Option<String>,
    /// Set when the event was first seen in the organization trail's log
    /// files, not on the fast path (EventBridge did not deliver it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Recovered>,
}

/// Where and how late the reconciler found an event the fast path missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovered {
    /// The log file's object key.
    pub log_file: String,
    /// Seconds from the event's time to its processing.
    pub late_secs: i64,
}

/// Why a list of detections does not make a [`SessionEvent`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionEventError {
    #[error("the signal carries no detections")]
    NoDetections,
    #[error("the detections are of different events ({0} and {1})")]
    MixedEvents(String, String),
    #[error("eventTime `{0}` is not an RFC 3339 time")]
    BadTime(String),
}

impl SessionEvent {
    /// Fold the detections of one record into one event.
    pub fn from_detections(detections: &[Detection]) -> Result<Self, SessionEventError> {
        let first = detections.first().ok_or(SessionEventError::NoDetections)?;
        if let Some(other) = detections.iter().find(|d| d.event_id != first.event_id) {
            return Err(SessionEventError::MixedEvents(
                first.event_id.clone(),
                other.event_id.clone(),
            ));
        }
        let time = parse_time(&first.event_time)
            .ok_or_else(|| SessionEventError::BadTime(first.event_time.clone()))?;
        // The most severe detection speaks for the event; ties go to the
        // lowest kind, so the choice does not depend on the list's order.
        let lead = detections
            .iter()
            .max_by(|a, b| a.severity.cmp(&b.severity).then(b.kind.cmp(&a.kind)))
            .unwrap_or(first);
        Ok(Self {
            event_id: first.event_id.clone(),
            time,
            event_time: first.event_time.clone(),
            event_source: first.event_source.clone(),
            event_name: first.event_name.clone(),
            account: first.account.clone(),
            region: first.region.clone(),
            principal: first.principal.clone(),
            severity: lead.severity,
            kinds: detections.iter().map(|d| d.kind).collect(),
            keys: detections
                .iter()
                .flat_map(|d| d.keys.iter().map(ToString::to_string))
                .collect(),
            summary: lead.summary.clone(),
            source_ip: first.source_ip.clone(),
            user_agent: first.user_agent.clone(),
            mfa: first.mfa,
            error_code: first.error_code.clone(),
            recovered: None,
        })
    }

    /// Events are ordered by time, then id: the earliest is a session's
    /// anchor.
    pub fn order_key(&self) -> (i64, &str) {
        (self.time, &self.event_id)
    }
}

/// The summary of one correlated session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Derived from the anchor, so it is the same whatever the arrival
    /// order: see [`session_id`].
    pub session_id: String,
    /// The earliest event: `(time, eventID)`.
    pub anchor_time: i64,
    pub anchor_event_id: String,
    /// The anchor event's region, where its console link points.
    #[serde(default)]
    pub anchor_region: String,
    /// The anchor event's source and name (`sts.amazonaws.com`,
    /// `AssumeRole`): how the session began, its entry path. Empty in
    /// sessions stored before these were kept.
    #[serde(default)]
    pub anchor_event_source: String,
    #[serde(default)]
    pub anchor_event_name: String,
    /// Who the session is: the principal of the anchor event.
    pub principal: String,
    pub principals: BTreeSet<String>,
    pub accounts: BTreeSet<String>,
    pub regions: BTreeSet<String>,
    pub severity: Severity,
    pub kinds: BTreeSet<DetectionKind>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub event_count: u64,
    pub source_ips: BTreeSet<String>,
    pub user_agents: BTreeSet<String>,
    /// `no` if any event was without MFA, else `yes` if any was with it.
    pub mfa: Mfa,
    /// What the anchor event was, for the alert's headline.
    pub summary: String,
    /// Events of the session first seen in the trail's log files (the
    /// fast path missed them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recovered: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn bounded(mut set: BTreeSet<String>) -> BTreeSet<String> {
    while set.len() > MAX_SET {
        set.pop_last();
    }
    set
}

fn mfa_join(a: Mfa, b: Mfa) -> Mfa {
    match (a, b) {
        (Mfa::No, _) | (_, Mfa::No) => Mfa::No,
        (Mfa::Yes, _) | (_, Mfa::Yes) => Mfa::Yes,
        _ => Mfa::Unknown,
    }
}

impl Session {
    /// The session of one event.
    pub fn of(event: &SessionEvent) -> Self {
        Self {
            session_id: session_id(&event.event_id),
            anchor_time: event.time,
            anchor_event_id: event.event_id.clone(),
            anchor_region: event.region.clone(),
            anchor_event_source: event.event_source.clone(),
            anchor_event_name: event.event_name.clone(),
            principal: event.principal.clone(),
            principals: BTreeSet::from([event.principal.clone()]),
            accounts: BTreeSet::from([event.account.clone()]),
            regions: BTreeSet::from([event.region.clone()]),
            severity: event.severity,
            kinds: event.kinds.clone(),
            first_seen: event.time,
            last_seen: event.time,
            event_count: 1,
            source_ips: event.source_ip.iter().cloned().collect(),
            user_agents: event.user_agent.iter().cloned().collect(),
            mfa: event.mfa,
            summary: event.summary.clone(),
            recovered: u64::from(event.recovered.is_some()),
        }
    }

    /// Join two sessions of disjoint event sets. The earlier anchor names
    /// the result. Commutative and associative.
    #[must_use]
    pub fn merge(&self, other: &Self) -> Self {
        let (lead, _) = if (self.anchor_time, &self.anchor_event_id)
            <= (other.anchor_time, &other.anchor_event_id)
        {
            (self, other)
        } else {
            (other, self)
        };
        let union =
            |a: &BTreeSet<String>, b: &BTreeSet<String>| bounded(a.union(b).cloned().collect());
        Self {
            session_id: lead.session_id.clone(),
            anchor_time: lead.anchor_time,
            anchor_event_id: lead.anchor_event_id.clone(),
            anchor_region: lead.anchor_region.clone(),
            anchor_event_source: lead.anchor_event_source.clone(),
            anchor_event_name: lead.anchor_event_name.clone(),
            principal: lead.principal.clone(),
            principals: union(&self.principals, &other.principals),
            accounts: self.accounts.union(&other.accounts).cloned().collect(),
            regions: self.regions.union(&other.regions).cloned().collect(),
            severity: self.severity.max(other.severity),
            kinds: self.kinds.union(&other.kinds).copied().collect(),
            first_seen: self.first_seen.min(other.first_seen),
            last_seen: self.last_seen.max(other.last_seen),
            event_count: self.event_count + other.event_count,
            source_ips: union(&self.source_ips, &other.source_ips),
            user_agents: union(&self.user_agents, &other.user_agents),
            mfa: mfa_join(self.mfa, other.mfa),
            summary: lead.summary.clone(),
            recovered: self.recovered + other.recovered,
        }
    }

    /// Add one event not yet counted in this session.
    #[must_use]
    pub fn with_event(&self, event: &SessionEvent) -> Self {
        self.merge(&Self::of(event))
    }

    /// Whether `other` says more than this session does, beyond its count
    /// and last event time: a new account, region, principal, kind,
    /// severity, user agent, source IP, MFA answer or anchor. A store
    /// rewrites the summary only then, and otherwise only counts the
    /// event, so a busy session costs no rewrite per event.
    pub fn differs_beyond_counts(&self, other: &Self) -> bool {
        let strip = |s: &Self| Self {
            event_count: 0,
            last_seen: 0,
            ..s.clone()
        };
        strip(self) != strip(other)
    }

    /// Whether the session has been quiet for `quiet_secs` at `now`.
    pub fn closed_at(&self, now: i64, quiet_secs: i64) -> bool {
        now - self.last_seen >= quiet_secs
    }
}
