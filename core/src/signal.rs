//! The messages the agent relays to the central bus: a `Glasswatch Signal`
//! per flagged record and a `Glasswatch Heartbeat` per schedule tick. The
//! format lives here because both the agent (writer) and the aggregator
//! (reader) depend on it.
//!
//! A signal must fit one EventBridge entry (256 KB). When a record is too
//! large, bulky fields that no decision needs are pruned and named in
//! `dropped_fields`; identity, time and correlation keys are never dropped.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::detect::Detection;

pub const SIGNAL_SOURCE: &str = "glasswatch.agent";
/// A signal that may start a session or raise an alert of its own: it goes
/// to the aggregator's priority queue.
pub const SIGNAL_DETAIL_TYPE: &str = "Glasswatch Signal";
/// A signal that is only the activity of a break-glass session: it goes to
/// a queue of its own, so that a session calling an API a thousand times
/// never delays another account's alert.
pub const ACTIVITY_DETAIL_TYPE: &str = "Glasswatch Activity";
pub const HEARTBEAT_DETAIL_TYPE: &str = "Glasswatch Heartbeat";
pub const SCHEMA_VERSION: u32 = 1;

/// The detail-type a signal with these detections travels under: activity
/// of a session ([`ACTIVITY_DETAIL_TYPE`]) when every detection is
/// `session_activity` of a principal other than root (root's own calls
/// alert at once), else [`SIGNAL_DETAIL_TYPE`].
pub fn detail_type_for(detections: &[Detection]) -> &'static str {
    let activity_only = !detections.is_empty()
        && detections.iter().all(|d| {
            d.kind == crate::detect::DetectionKind::SessionActivity && d.principal_type != "Root"
        });
    if activity_only {
        ACTIVITY_DETAIL_TYPE
    } else {
        SIGNAL_DETAIL_TYPE
    }
}

/// EventBridge counts the detail, source, detail-type and resources of an
/// entry against 256 KB; keep the detail under it with room for the rest.
pub const MAX_DETAIL_BYTES: usize = 256 * 1024 - 1024;

/// Longest a free-text field (user agent, error message) may stay when a
/// signal has to shrink.
const LONG_TEXT: usize = 2048;

/// Fixed namespace for signal ids: UUIDv5(namespace, eventID).
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x6b, 0x1d, 0x7a, 0x52, 0x3e, 0x0c, 0x4f, 0x1e, 0x9a, 0x55, 0x0d, 0x2b, 0x8e, 0x61, 0x47, 0xc3,
]);

/// The id of the signal for a CloudTrail `eventID`: the same event always
/// gives the same id, in every account, region and retry.
pub fn signal_id(event_id: &str) -> String {
    uuid::Uuid::new_v5(&NAMESPACE, event_id.as_bytes()).to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub schema_version: u32,
    pub signal_id: String,
    pub agent_version: String,
    /// The account and region whose default bus delivered the record.
    pub received_account: String,
    pub received_region: String,
    pub detections: Vec<Detection>,
    /// The original CloudTrail record, pruned only if it had to shrink.
    pub record: Value,
    /// Fields pruned or shortened to fit, e.g. `requestParameters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_fields: Vec<String>,
    /// Credentials the record shows a break-glass session taking, for the
    /// agents of the account where they act to follow (the central bus
    /// routes signals that carry one to the follow topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<crate::follow::Follow>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error(
        "event {event_id}: signal is {size} bytes even without bulky fields, over {MAX_DETAIL_BYTES}"
    )]
    TooLarge { event_id: String, size: usize },
    #[error("signal has no detections")]
    NoDetections,
}

/// Top-level record fields kept no matter what.
const ESSENTIAL: [&str; 12] = [
    "eventVersion",
    "userIdentity",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "eventID",
    "recipientAccountId",
    "readOnly",
    "eventType",
    "errorCode",
];

/// What each bulky field keeps when pruned: the parts decisions and
/// correlation read.
const KEEP: [(&str, &[&str]); 4] = [
    (
        "requestParameters",
        &[
            "roleArn",
            "roleSessionName",
            "sourceIdentity",
            "userName",
            "roleName",
            "serialNumber",
            "policyArn",
            "groupName",
            "name",
            "rule",
            "eventBusName",
            "trailName",
            "functionName",
            "stackName",
            "stackSetName",
            "accountId",
        ],
    ),
    (
        "responseElements",
        &[
            "credentials",
            "assumedRoleUser",
            "ConsoleLogin",
            "SwitchRole",
        ],
    ),
    (
        "additionalEventData",
        &["MFAUsed", "SwitchTo", "SwitchFrom", "UserName"],
    ),
    (
        "serviceEventDetails",
        &["role_name", "account_id", "roleName", "accountId"],
    ),
];

/// Build the signal for a flagged record. `record` is the bare CloudTrail
/// record (an envelope's `detail`). Returns the signal and its JSON, which
/// is at most [`MAX_DETAIL_BYTES`].
pub fn build_signal(
    record: &Value,
    detections: Vec<Detection>,
    agent_version: &str,
    received_account: &str,
    received_region: &str,
) -> Result<(Signal, String), SignalError> {
    build_signal_following(
        record,
        detections,
        agent_version,
        received_account,
        received_region,
        None,
    )
}

/// [`build_signal`], carrying credentials to follow.
pub fn build_signal_following(
    record: &Value,
    detections: Vec<Detection>,
    agent_version: &str,
    received_account: &str,
    received_region: &str,
    follow: Option<crate::follow::Follow>,
) -> Result<(Signal, String), SignalError> {
    let event_id = detections
        .first()
        .ok_or(SignalError::NoDetections)?
        .event_id
        .clone();
    let mut signal = Signal {
        schema_version: SCHEMA_VERSION,
        signal_id: signal_id(&event_id),
        agent_version: agent_version.to_owned(),
        received_account: received_account.to_owned(),
        received_region: received_region.to_owned(),
        detections,
        record: record.clone(),
        dropped_fields: Vec::new(),
        follow,
    };
    let mut json = to_json(&signal);
    if json.len() <= MAX_DETAIL_BYTES {
        return Ok((signal, json));
    }
    let steps: [&dyn Fn(&mut Signal); 4] = [
        &prune_bulky,
        &drop_unknown_fields,
        &shorten_text,
        &shorten_detections,
    ];
    for step in steps {
        step(&mut signal);
        json = to_json(&signal);
        if json.len() <= MAX_DETAIL_BYTES {
            return Ok((signal, json));
        }
    }
    Err(SignalError::TooLarge {
        event_id,
        size: json.len(),
    })
}

fn to_json(signal: &Signal) -> String {
    serde_json::to_string(signal).expect("signals hold only JSON-safe data")
}

fn prune_bulky(signal: &mut Signal) {
    let Some(record) = signal.record.as_object_mut() else {
        return;
    };
    for (field, keep) in KEEP {
        let Some(value) = record.get_mut(field) else {
            continue;
        };
        let Some(map) = value.as_object() else {
            continue;
        };
        let pruned: Map<String, Value> = map
            .iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if pruned.len() != map.len() {
            *value = Value::Object(pruned);
            signal.dropped_fields.push(field.to_owned());
        }
    }
}

fn drop_unknown_fields(signal: &mut Signal) {
    let Some(record) = signal.record.as_object_mut() else {
        return;
    };
    let unknown: Vec<String> = record
        .keys()
        .filter(|k| !ESSENTIAL.contains(&k.as_str()) && !KEEP.iter().any(|(f, _)| f == k))
        .filter(|k| !matches!(k.as_str(), "userAgent" | "errorMessage"))
        .cloned()
        .collect();
    for key in unknown {
        record.remove(&key);
        signal.dropped_fields.push(key);
    }
}

/// Cut `s` to [`LONG_TEXT`] bytes (on a character boundary), marking the
/// cut with `…`. Returns whether it cut.
fn shorten(s: &mut String) -> bool {
    if s.len() <= LONG_TEXT {
        return false;
    }
    let mut cut = LONG_TEXT;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push('…');
    true
}

fn shorten_text(signal: &mut Signal) {
    let Some(record) = signal.record.as_object_mut() else {
        return;
    };
    for key in ["userAgent", "errorMessage"] {
        if let Some(Value::String(text)) = record.get_mut(key)
            && shorten(text)
        {
            signal.dropped_fields.push(format!("{key} (shortened)"));
        }
    }
}

fn shorten_detections(signal: &mut Signal) {
    let (mut texts, mut summaries) = (false, false);
    for detection in &mut signal.detections {
        for text in [&mut detection.user_agent, &mut detection.target]
            .into_iter()
            .flatten()
        {
            texts |= shorten(text);
        }
        summaries |= shorten(&mut detection.summary);
    }
    if texts {
        signal
            .dropped_fields
            .push("detection text (shortened)".to_owned());
    }
    if summaries {
        signal
            .dropped_fields
            .push("detection summary (shortened)".to_owned());
    }
}

/// Whether CloudTrail is logging in a region, as far as the account can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailStatus {
    Logging,
    NotLogging,
    Unknown,
}

impl TrailStatus {
    pub const ALL: [TrailStatus; 3] = [Self::Logging, Self::NotLogging, Self::Unknown];

    /// As serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logging => "logging",
            Self::NotLogging => "not_logging",
            Self::Unknown => "unknown",
        }
    }

    /// The status [`as_str`](Self::as_str) wrote; anything else is
    /// `Unknown`.
    pub fn parse(text: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .unwrap_or(Self::Unknown)
    }
}

/// What the agent learned about one trail that applies to its region
/// (`DescribeTrails` with shadow trails, then `GetTrailStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailObservation {
    pub name: String,
    /// `None`: its status could not be read (an organization trail seen from
    /// a member account may refuse `GetTrailStatus`).
    pub is_logging: Option<bool>,
}

/// Logging if any trail logs; unknown if the account could not tell;
/// not logging only when every trail was read and none logs.
/// `observations` is `None` when `DescribeTrails` itself failed.
pub fn trail_status(observations: Option<&[TrailObservation]>) -> TrailStatus {
    let Some(trails) = observations else {
        return TrailStatus::Unknown;
    };
    if trails.iter().any(|t| t.is_logging == Some(true)) {
        TrailStatus::Logging
    } else if trails.iter().any(|t| t.is_logging.is_none()) {
        TrailStatus::Unknown
    } else {
        TrailStatus::NotLogging
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub schema_version: u32,
    pub account: String,
    pub region: String,
    pub agent_version: String,
    /// When the agent sent it (RFC 3339), passed in by the caller.
    pub sent_at: String,
    pub trail: TrailStatus,
    /// Names of the trails seen, for the coverage report.
    pub trails: Vec<String>,
    /// Messages in the agent's dead-letter queue (events it could not
    /// relay), when it could read the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<u64>,
}

/// What the central bus's rule puts in the aggregator's queue for a message
/// the agent relayed: EventBridge's envelope (source [`SIGNAL_SOURCE`])
/// around `detail`, a [`Signal`] or [`Heartbeat`] as JSON. EventBridge sets
/// `account` to the sending account; moto's delivery leaves it out, which
/// `sender: None` reproduces. For tests, the bench and local runs.
pub fn bus_envelope(
    detail_type: &str,
    detail: Value,
    id: &str,
    sender: Option<&str>,
    time: &str,
    region: &str,
) -> Value {
    let mut envelope = Map::new();
    envelope.insert("version".into(), Value::from("0"));
    envelope.insert("id".into(), Value::from(id));
    envelope.insert("detail-type".into(), Value::from(detail_type));
    envelope.insert("source".into(), Value::from(SIGNAL_SOURCE));
    if let Some(sender) = sender {
        envelope.insert("account".into(), Value::from(sender));
    }
    envelope.insert("time".into(), Value::from(time));
    envelope.insert("region".into(), Value::from(region));
    envelope.insert("resources".into(), Value::Array(Vec::new()));
    envelope.insert("detail".into(), detail);
    Value::Object(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{DetectionKind, Mfa, Severity};
    use serde_json::json;

    #[test]
    fn bus_envelopes_carry_the_sender_only_when_given() {
        let detail = json!({"schema_version": 1});
        let with = bus_envelope(
            SIGNAL_DETAIL_TYPE,
            detail.clone(),
            "env-1",
            Some("111122223333"),
            "2026-11-02T10:00:05Z",
            "eu-west-1",
        );
        assert_eq!(
            with,
            json!({
                "version": "0", "id": "env-1", "detail-type": "Glasswatch Signal",
                "source": "glasswatch.agent", "account": "111122223333",
                "time": "2026-11-02T10:00:05Z", "region": "eu-west-1",
                "resources": [], "detail": {"schema_version": 1}
            })
        );
        let without = bus_envelope(
            HEARTBEAT_DETAIL_TYPE,
            detail,
            "env-2",
            None,
            "2026-11-02T10:00:05Z",
            "eu-west-1",
        );
        assert!(without.get("account").is_none());
        assert_eq!(without["detail-type"], HEARTBEAT_DETAIL_TYPE);
    }

    fn detection(event_id: &str) -> Detection {
        Detection {
            kind: DetectionKind::BreakGlassRoleAssumed,
            severity: Severity::Critical,
            summary: "x assumed BreakGlassRole".into(),
            event_id: event_id.into(),
            event_time: "2026-11-02T10:00:00Z".into(),
            event_source: "sts.amazonaws.com".into(),
            event_name: "AssumeRole".into(),
            account: "111122223333".into(),
            region: "us-east-1".into(),
            principal: "arn:aws:iam::111122223333:user/break-glass-1".into(),
            principal_type: "IAMUser".into(),
            target: None,
            source_ip: None,
            mfa: Mfa::Yes,
            user_agent: Some("aws-cli/2".into()),
            error_code: None,
            keys: vec![],
        }
    }

    #[test]
    fn a_sessions_plain_activity_travels_apart_from_what_alerts() {
        let entry = detection("e-1");
        let mut activity = detection("e-2");
        activity.kind = DetectionKind::SessionActivity;
        assert_eq!(
            detail_type_for(std::slice::from_ref(&entry)),
            SIGNAL_DETAIL_TYPE
        );
        assert_eq!(
            detail_type_for(std::slice::from_ref(&activity)),
            ACTIVITY_DETAIL_TYPE
        );
        // Root's own calls alert at once; anything more than activity does.
        let mut root = activity.clone();
        root.principal_type = "Root".into();
        assert_eq!(detail_type_for(&[root]), SIGNAL_DETAIL_TYPE);
        assert_eq!(detail_type_for(&[activity, entry]), SIGNAL_DETAIL_TYPE);
        assert_eq!(detail_type_for(&[]), SIGNAL_DETAIL_TYPE);
    }

    fn record(request_bytes: usize) -> Value {
        json!({
            "eventVersion": "1.08", "eventID": "e-1", "eventTime": "2026-11-02T10:00:00Z",
            "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": "us-east-1",
            "recipientAccountId": "111122223333", "userAgent": "u".repeat(request_bytes / 4),
            "userIdentity": {"type": "IAMUser", "userName": "break-glass-1", "accessKeyId": "ASIAKEEPME"},
            "requestParameters": {"roleArn": "arn:aws:iam::1:role/BreakGlassRole", "policy": "p".repeat(request_bytes)},
            "responseElements": {"credentials": {"accessKeyId": "ASIANEWKEY"}, "blob": "b".repeat(request_bytes)},
            "tlsDetails": {"cipherSuite": "x".repeat(request_bytes)},
        })
    }

    fn build(rec: &Value) -> Result<(Signal, String), SignalError> {
        build_signal(
            rec,
            vec![detection("e-1")],
            "0.1.0",
            "111122223333",
            "us-east-1",
        )
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(signal_id("abc"), signal_id("abc"));
        assert_ne!(signal_id("abc"), signal_id("abd"));
        assert_eq!(signal_id("abc").len(), 36);
    }

    #[test]
    fn small_signals_are_untouched() {
        let rec = record(100);
        let (signal, json) = build(&rec).unwrap();
        assert_eq!(signal.record, rec);
        assert!(signal.dropped_fields.is_empty());
        assert!(!json.contains("dropped_fields"));
        let back: Signal = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signal);
    }

    #[test]
    fn large_signals_shrink_but_keep_identity_time_and_keys() {
        let rec = record(200 * 1024);
        let (signal, json) = build(&rec).unwrap();
        assert!(json.len() <= MAX_DETAIL_BYTES, "{}", json.len());
        let r = &signal.record;
        assert_eq!(r["userIdentity"]["accessKeyId"], "ASIAKEEPME");
        assert_eq!(r["eventTime"], "2026-11-02T10:00:00Z");
        assert_eq!(r["eventID"], "e-1");
        assert_eq!(
            r["requestParameters"]["roleArn"],
            "arn:aws:iam::1:role/BreakGlassRole"
        );
        assert_eq!(
            r["responseElements"]["credentials"]["accessKeyId"],
            "ASIANEWKEY"
        );
        assert!(r["requestParameters"].get("policy").is_none());
        assert!(
            signal
                .dropped_fields
                .contains(&"requestParameters".to_owned())
        );
        assert!(
            signal
                .dropped_fields
                .contains(&"responseElements".to_owned())
        );
    }

    #[test]
    fn shrinking_stops_before_essentials() {
        let mut rec = record(10);
        rec["userIdentity"]["arn"] = Value::String("a".repeat(300 * 1024));
        let err = build(&rec).unwrap_err();
        assert!(matches!(err, SignalError::TooLarge { .. }), "{err}");
        assert_eq!(
            build_signal(&rec, vec![], "0.1.0", "1", "r").unwrap_err(),
            SignalError::NoDetections
        );
    }

    #[test]
    fn trail_status_never_claims_logging_it_did_not_see() {
        let t = |name: &str, l: Option<bool>| TrailObservation {
            name: name.into(),
            is_logging: l,
        };
        assert_eq!(trail_status(None), TrailStatus::Unknown);
        assert_eq!(trail_status(Some(&[])), TrailStatus::NotLogging);
        assert_eq!(
            trail_status(Some(&[t("a", Some(false)), t("org", None)])),
            TrailStatus::Unknown
        );
        assert_eq!(
            trail_status(Some(&[t("a", Some(false)), t("org", Some(true))])),
            TrailStatus::Logging
        );
        assert_eq!(
            trail_status(Some(&[t("a", Some(false))])),
            TrailStatus::NotLogging
        );
    }
}
