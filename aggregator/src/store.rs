//! The DynamoDB audit store: one table, the single-table layout in
//! ARCHITECTURE.md.
//!
//! | pk | sk | what |
//! |---|---|---|
//! | `EVENT#<eventID>` | `EVENT` | the event, its verdict and the signal as evidence; its existence makes a redelivery a no-op |
//! | `SESSION#<id>` | `SESSION` | the session summary, version, Slack state; or `merged_into` |
//! | `SESSION#<id>` | `EVENT#<time>#<eventID>` | the events written under this session |
//! | `SESSION#<id>` | `ACCOUNT#<account>` | index item: sessions by account |
//! | `EVENT#<eventID>` | `KIND#<kind>` | index item: detections by kind and month |
//! | `KEY#<key>` | `<time>#<eventID>` | a use of a correlation key |
//! | `KEY#<key>` | `HEAD` | the key's version: concurrent writers of one key serialise on it |
//! | `COVERAGE` | `<account>#<region>` | last heartbeat and trail status |
//! | `PENDING` | `<session id>` | a session with Slack messages not yet sent, with the `events` its next digest lists (for a merged-away session: its 'continues in' notice) |
//! | `SPOOFED#<eventID>` | `SPOOFED` | a signal whose sender is not its account |
//!
//! One event is one `TransactWriteItems` request: the event items, its key
//! uses, the surviving session (conditional on the version read) and the
//! sessions it absorbs. A concurrent writer makes the transaction fail on
//! a version, and the ingest starts again from the reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use glasswatch_core::DetectionKind;
use glasswatch_core::audit::month;
use glasswatch_core::correlate::{Ingest, KeyUse, linked_sessions, plan, window};
use glasswatch_core::coverage::{Coverage, Health};
use glasswatch_core::session::{Session, SessionEvent};
use glasswatch_core::signal::TrailStatus;
use glasswatch_core::verify::Verdict;

/// Sort keys by time: fixed width, so string order is time order.
fn time_sk(time: i64, event_id: &str) -> String {
    format!("{time:012}#{event_id}")
}

/// GSI partition of the by-time index: one per month.
fn month_of(time: i64) -> String {
    time_partition(&month(time))
}

/// The by-time partition of a month (`2026-10`).
pub fn time_partition(month: &str) -> String {
    format!("MONTH#{month}")
}

/// The by-kind partition of a detection kind in a month (`2026-10`).
pub fn kind_partition(kind: DetectionKind, month: &str) -> String {
    format!("KIND#{}#{month}", kind.as_str())
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

/// Cancellation reasons that mean "read again and retry".
const RETRY_REASONS: [&str; 4] = [
    "None",
    "ConditionalCheckFailed",
    "TransactionConflict",
    "ThrottlingError",
];

/// Attempts at one ingest when other writers keep winning.
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB failed or throttled, or other writers kept winning:
    /// retrying the message later can succeed.
    #[error("DynamoDB {operation}: {message}")]
    Retryable {
        operation: &'static str,
        message: String,
    },
    /// The stored data is not what this code wrote.
    #[error("stored item {key} is invalid: {reason}")]
    Corrupt { key: String, reason: String },
}

impl StoreError {
    pub(crate) fn sdk<E: std::error::Error + 'static, R: std::fmt::Debug>(
        operation: &'static str,
        e: SdkError<E, R>,
    ) -> Self {
        let message = match &e {
            SdkError::ServiceError(s) => {
                format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(s.err()))
            }
            other => format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(other)),
        };
        Self::Retryable { operation, message }
    }
}

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}
pub(crate) fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Evidence kept with an event.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    pub verdict: &'a Verdict,
    /// The envelope's `account`, if it had one.
    pub sender: Option<&'a str>,
    /// The signal as received (JSON), the audit evidence.
    pub signal_json: &'a str,
}

/// A live session with its Slack state, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionItem {
    pub session: Session,
    pub version: i64,
    pub root_ts: Option<String>,
    /// The channel id of the root message (bot mode).
    pub root_channel: Option<String>,
    /// The root message's permalink, as `chat.getPermalink` gave it.
    pub slack_permalink: Option<String>,
    /// Sessions merged into this one.
    pub absorbed: BTreeSet<String>,
    /// Events covered by Slack messages so far.
    pub notified_count: u64,
    /// When the last thread digest went out.
    pub digest_sent_at: Option<i64>,
    /// Set when this session was merged away: the survivor's id.
    pub merged_into: Option<String>,
}

/// The store, over one table.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
    quiet_secs: i64,
    retention_secs: i64,
}

impl Store {
    pub fn new(
        client: Client,
        table: impl Into<String>,
        quiet_secs: i64,
        retention_days: u32,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            quiet_secs,
            retention_secs: i64::from(retention_days) * 86_400,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn expires(&self, time: i64) -> AttributeValue {
        n(time.saturating_add(self.retention_secs))
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::sdk("GetItem", e))?;
        Ok(out.item)
    }

    /// Follow `merged_into` from a session id as written to the live
    /// session.
    async fn resolve(&self, id: &str) -> Result<(String, Option<SessionItem>), StoreError> {
        let mut id = id.to_owned();
        for _ in 0..64 {
            let Some(item) = self.get(&format!("SESSION#{id}"), "SESSION").await? else {
                return Ok((id, None));
            };
            match get_s(&item, "merged_into") {
                Some(next) => id = next.to_owned(),
                None => return Ok((id.clone(), Some(parse_session(&id, &item)?))),
            }
        }
        Err(StoreError::Corrupt {
            key: format!("SESSION#{id}"),
            reason: "merge redirects do not end".into(),
        })
    }

    /// The live session this id (as written, or since merged) is now.
    pub async fn session(&self, id: &str) -> Result<Option<SessionItem>, StoreError> {
        Ok(self.resolve(id).await?.1)
    }

    /// The session item with exactly this id, live or merged away.
    pub async fn session_exact(&self, id: &str) -> Result<Option<SessionItem>, StoreError> {
        match self.get(&format!("SESSION#{id}"), "SESSION").await? {
            Some(item) => Ok(Some(parse_session(id, &item)?)),
            None => Ok(None),
        }
    }

    /// The session an already-stored event belongs to now.
    pub async fn session_of_event(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        let Some(item) = self.get(&format!("EVENT#{event_id}"), "EVENT").await? else {
            return Ok(None);
        };
        let written = get_s(&item, "session_id").ok_or_else(|| StoreError::Corrupt {
            key: format!("EVENT#{event_id}"),
            reason: "no session_id".into(),
        })?;
        Ok(Some(self.resolve(written).await?.0))
    }

    /// The uses of the event's keys within its window, and the version of
    /// each key's head item. Writing the heads back under a version
    /// condition is what makes two concurrent events with a shared key
    /// see each other: one of them fails and reads again.
    async fn key_uses(
        &self,
        event: &SessionEvent,
    ) -> Result<(Vec<KeyUse>, BTreeMap<String, i64>), StoreError> {
        let (from, to) = window(event.time, self.quiet_secs);
        let mut uses = Vec::new();
        let mut heads = BTreeMap::new();
        for key in &event.keys {
            let head = self.get(&format!("KEY#{key}"), "HEAD").await?;
            heads.insert(
                key.clone(),
                head.as_ref().and_then(|h| get_n(h, "version")).unwrap_or(0),
            );
            let mut start = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                    .expression_attribute_values(":pk", s(format!("KEY#{key}")))
                    .expression_attribute_values(":from", s(format!("{from:012}#")))
                    .expression_attribute_values(":to", s(format!("{to:012}#~")))
                    .consistent_read(true)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| StoreError::sdk("Query", e))?;
                for item in out.items() {
                    let (Some(time), Some(event_id), Some(session_id)) = (
                        get_n(item, "time"),
                        get_s(item, "event_id"),
                        get_s(item, "session_id"),
                    ) else {
                        return Err(StoreError::Corrupt {
                            key: format!("KEY#{key}"),
                            reason: "key use without time, event_id or session_id".into(),
                        });
                    };
                    uses.push(KeyUse {
                        key: key.clone(),
                        time,
                        event_id: event_id.to_owned(),
                        session_id: session_id.to_owned(),
                    });
                }
                match out.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
        }
        Ok((uses, heads))
    }

    /// Store one event and merge the sessions it links. Idempotent by
    /// `eventID`.
    pub async fn ingest(
        &self,
        event: &SessionEvent,
        evidence: &Evidence<'_>,
    ) -> Result<Ingest, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(session_id) = self.session_of_event(&event.event_id).await? {
                return Ok(Ingest::Duplicate { session_id });
            }
            let (uses, heads) = self.key_uses(event).await?;
            let mut live: BTreeMap<String, SessionItem> = BTreeMap::new();
            for written in linked_sessions(event, &uses, self.quiet_secs) {
                if let (id, Some(item)) = self.resolve(&written).await? {
                    live.insert(id, item);
                }
            }
            let sessions: Vec<Session> = live.values().map(|i| i.session.clone()).collect();
            let planned = plan(event, &sessions);
            let items = self.transaction(event, evidence, &planned, &live, &heads);
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            match result {
                Ok(_) => {
                    return Ok(Ingest::Stored {
                        session_id: planned.session.session_id,
                        absorbed: planned.absorbed,
                    });
                }
                Err(e) => match cancellation(&e) {
                    // Someone else stored this event, or changed a session
                    // we read: read again.
                    Some(reasons)
                        if reasons.iter().all(|r| RETRY_REASONS.contains(&r.as_str())) =>
                    {
                        continue;
                    }
                    _ => return Err(StoreError::sdk("TransactWriteItems", e)),
                },
            }
        }
        Err(StoreError::Retryable {
            operation: "TransactWriteItems",
            message: format!(
                "event {}: concurrent writers won {MAX_ATTEMPTS} times",
                event.event_id
            ),
        })
    }

    fn transaction(
        &self,
        event: &SessionEvent,
        evidence: &Evidence<'_>,
        planned: &glasswatch_core::correlate::Plan,
        live: &BTreeMap<String, SessionItem>,
        heads: &BTreeMap<String, i64>,
    ) -> Vec<TransactWriteItem> {
        let survivor = &planned.session;
        let id = &survivor.session_id;
        let expires = self.expires(survivor.last_seen.max(event.time));
        let mut items = Vec::new();
        let event_json = serde_json::to_string(event).unwrap_or_default();
        let mut put = |item: Item, condition: Option<&str>| {
            let mut p = Put::builder().table_name(&self.table).set_item(Some(item));
            if let Some(c) = condition {
                p = p.condition_expression(c);
            }
            if let Ok(p) = p.build() {
                items.push(TransactWriteItem::builder().put(p).build());
            }
        };
        let mut event_item: Item = HashMap::from([
            ("pk".into(), s(format!("EVENT#{}", event.event_id))),
            ("sk".into(), s("EVENT")),
            ("session_id".into(), s(id)),
            ("time".into(), n(event.time)),
            ("event".into(), s(&event_json)),
            ("verdict".into(), s(evidence.verdict.as_str())),
            ("signal".into(), s(evidence.signal_json)),
            ("expires_at".into(), expires.clone()),
        ]);
        if let Some(sender) = evidence.sender {
            event_item.insert("sender".into(), s(sender));
        }
        put(event_item, Some("attribute_not_exists(pk)"));
        put(
            HashMap::from([
                ("pk".into(), s(format!("SESSION#{id}"))),
                (
                    "sk".into(),
                    s(format!("EVENT#{}", time_sk(event.time, &event.event_id))),
                ),
                ("event".into(), s(&event_json)),
                ("expires_at".into(), expires.clone()),
            ]),
            None,
        );
        // One index item per detection kind, for `audit events --kind`.
        for kind in &event.kinds {
            put(
                HashMap::from([
                    ("pk".into(), s(format!("EVENT#{}", event.event_id))),
                    ("sk".into(), s(format!("KIND#{}", kind.as_str()))),
                    (
                        GSI_BY_KIND.1.into(),
                        s(kind_partition(*kind, &month(event.time))),
                    ),
                    (
                        GSI_BY_KIND.2.into(),
                        s(time_sk(event.time, &event.event_id)),
                    ),
                    ("account".into(), s(&event.account)),
                    ("session_id".into(), s(id)),
                    ("event".into(), s(&event_json)),
                    ("expires_at".into(), expires.clone()),
                ]),
                None,
            );
        }
        for key in &event.keys {
            put(
                HashMap::from([
                    ("pk".into(), s(format!("KEY#{key}"))),
                    ("sk".into(), s(time_sk(event.time, &event.event_id))),
                    ("time".into(), n(event.time)),
                    ("event_id".into(), s(&event.event_id)),
                    ("session_id".into(), s(id)),
                    ("expires_at".into(), expires.clone()),
                ]),
                None,
            );
        }
        // Index items for the survivor's accounts; the absorbed sessions'
        // go.
        let previous_accounts: BTreeSet<String> = live
            .get(id)
            .map(|i| i.session.accounts.clone())
            .unwrap_or_default();
        let gsi_sk = format!("{:012}#{id}", survivor.first_seen);
        let first_seen_changed = live
            .get(id)
            .is_none_or(|i| i.session.first_seen != survivor.first_seen);
        for account in &survivor.accounts {
            if first_seen_changed || !previous_accounts.contains(account) {
                put(
                    HashMap::from([
                        ("pk".into(), s(format!("SESSION#{id}"))),
                        ("sk".into(), s(format!("ACCOUNT#{account}"))),
                        (GSI_BY_ACCOUNT.1.into(), s(format!("ACCOUNT#{account}"))),
                        (GSI_BY_ACCOUNT.2.into(), s(&gsi_sk)),
                        ("expires_at".into(), expires.clone()),
                    ]),
                    None,
                );
            }
        }
        for gone in &planned.absorbed {
            if let Some(old) = live.get(gone) {
                for account in &old.session.accounts {
                    if let Ok(d) = Delete::builder()
                        .table_name(&self.table)
                        .key("pk", s(format!("SESSION#{gone}")))
                        .key("sk", s(format!("ACCOUNT#{account}")))
                        .build()
                    {
                        items.push(TransactWriteItem::builder().delete(d).build());
                    }
                }
            }
        }
        for (key, version) in heads {
            let condition = if *version == 0 {
                "attribute_not_exists(pk)"
            } else {
                "version = :v"
            };
            let mut u = Update::builder()
                .table_name(&self.table)
                .key("pk", s(format!("KEY#{key}")))
                .key("sk", s("HEAD"))
                .update_expression("SET version = :v1, expires_at = :exp")
                .condition_expression(condition)
                .expression_attribute_values(":v1", n(version + 1))
                .expression_attribute_values(":exp", expires.clone());
            if *version != 0 {
                u = u.expression_attribute_values(":v", n(*version));
            }
            if let Ok(u) = u.build() {
                items.push(TransactWriteItem::builder().update(u).build());
            }
        }
        // The survivor keeps its own root message, else inherits that of
        // the earliest absorbed session that had one.
        let own = live.get(id);
        let inherited = match own {
            Some(o) if o.root_ts.is_some() => None,
            _ => planned
                .absorbed
                .iter()
                .filter_map(|a| live.get(a))
                .filter(|i| i.root_ts.is_some())
                .min_by_key(|i| (i.session.anchor_time, i.session.anchor_event_id.clone())),
        };
        let mut absorbed: BTreeSet<String> = own.map(|i| i.absorbed.clone()).unwrap_or_default();
        for gone in &planned.absorbed {
            absorbed.insert(gone.clone());
            if let Some(old) = live.get(gone) {
                absorbed.extend(old.absorbed.iter().cloned());
            }
        }
        let mut values: Item = HashMap::from([
            (
                ":session".into(),
                s(serde_json::to_string(survivor).unwrap_or_default()),
            ),
            (":v1".into(), n(own.map_or(1, |i| i.version + 1))),
            (":tpk".into(), s(month_of(survivor.first_seen))),
            (
                ":ppk".into(),
                s(format!("PRINCIPAL#{}", survivor.principal)),
            ),
            (
                ":spk".into(),
                s(format!("SEVERITY#{}", survivor.severity.as_str())),
            ),
            (":gsk".into(), s(&gsi_sk)),
            (":first".into(), n(survivor.first_seen)),
            (":last".into(), n(survivor.last_seen)),
            (":count".into(), n(survivor.event_count)),
            (":principal".into(), s(&survivor.principal)),
            (":severity".into(), s(survivor.severity.as_str())),
            (":exp".into(), expires.clone()),
        ]);
        let mut set = String::from(
            "SET #session = :session, version = :v1, gsi_time_pk = :tpk, gsi_principal_pk = :ppk, \
             gsi_severity_pk = :spk, gsi_sk = :gsk, first_seen = :first, last_seen = :last, \
             event_count = :count, principal = :principal, severity = :severity, expires_at = :exp",
        );
        if !absorbed.is_empty() {
            set.push_str(", absorbed = :absorbed");
            values.insert(
                ":absorbed".into(),
                AttributeValue::Ss(absorbed.into_iter().collect()),
            );
        }
        if let Some(from) = inherited
            && let Some(ts) = &from.root_ts
        {
            set.push_str(", root_ts = :root, notified_count = :notified");
            values.insert(":root".into(), s(ts));
            values.insert(":notified".into(), n(from.notified_count));
            if let Some(channel) = &from.root_channel {
                set.push_str(", root_channel = :channel");
                values.insert(":channel".into(), s(channel));
            }
            if let Some(link) = &from.slack_permalink {
                set.push_str(", slack_permalink = :link");
                values.insert(":link".into(), s(link));
            }
        }
        let condition = match own {
            Some(i) => {
                values.insert(":v".into(), n(i.version));
                "version = :v"
            }
            None => "attribute_not_exists(pk)",
        };
        if let Ok(u) = Update::builder()
            .table_name(&self.table)
            .key("pk", s(format!("SESSION#{id}")))
            .key("sk", s("SESSION"))
            .update_expression(set)
            .condition_expression(condition)
            .expression_attribute_names("#session", "session")
            .set_expression_attribute_values(Some(values))
            .build()
        {
            items.push(TransactWriteItem::builder().update(u).build());
        }
        for gone in &planned.absorbed {
            if let Some(old) = live.get(gone)
                && let Ok(u) = Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(format!("SESSION#{gone}")))
                    .key("sk", s("SESSION"))
                    .update_expression(
                        "SET merged_into = :into, version = :v1 \
                         REMOVE gsi_time_pk, gsi_principal_pk, gsi_severity_pk, gsi_sk",
                    )
                    .condition_expression("version = :v")
                    .expression_attribute_values(":into", s(id))
                    .expression_attribute_values(":v", n(old.version))
                    .expression_attribute_values(":v1", n(old.version + 1))
                    .build()
            {
                items.push(TransactWriteItem::builder().update(u).build());
            }
            // An absorbed session that was announced owes its thread a
            // "continues in" notice: pending until sent, like any message.
            if live.get(gone).is_some_and(|old| old.root_ts.is_some())
                && let Ok(p) = Put::builder()
                    .table_name(&self.table)
                    .item("pk", s("PENDING"))
                    .item("sk", s(gone))
                    .build()
            {
                items.push(TransactWriteItem::builder().put(p).build());
            }
        }
        items
    }

    /// An update of the session item `session_id`.
    fn update_session(
        &self,
        session_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SESSION#{session_id}")))
            .key("sk", s("SESSION"))
    }

    /// Claim the right to post a session's root message. Exactly one
    /// claimant wins until the claim goes stale (`stale_before`), which
    /// frees a claim whose holder died.
    pub async fn claim_root(
        &self,
        session_id: &str,
        claimant: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .update_session(session_id)
            .update_expression("SET root_claim = :me, root_claimed_at = :now")
            // Our own claim counts as won: the SDK may resend a claim whose
            // answer was lost.
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(merged_into) AND attribute_not_exists(root_ts) \
                 AND (attribute_not_exists(root_claim) OR root_claimed_at < :stale OR root_claim = :me)",
            )
            .expression_attribute_values(":me", s(claimant))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":stale", n(stale_before))
            .send()
            .await;
        conditional("UpdateItem", result)
    }

    /// Give up a claim (the post failed), so a retry can claim again.
    pub async fn release_root(&self, session_id: &str, claimant: &str) -> Result<(), StoreError> {
        let result = self
            .update_session(session_id)
            .update_expression("REMOVE root_claim, root_claimed_at")
            .condition_expression("root_claim = :me")
            .expression_attribute_values(":me", s(claimant))
            .send()
            .await;
        // Not ours (any more): nothing to release.
        conditional("UpdateItem", result).map(|_| ())
    }

    /// Record what Slack now shows for a session: the root `ts` (once)
    /// and how many events the messages cover. Clears the pending mark
    /// when everything is covered.
    pub async fn record_notified(
        &self,
        session_id: &str,
        root_ts: &str,
        notified_count: u64,
        digest_sent_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .update_session(session_id)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":ts", s(root_ts))
            .expression_attribute_values(":count", n(notified_count))
            .return_values(ReturnValue::AllNew);
        let mut expression = String::from(
            "SET root_ts = if_not_exists(root_ts, :ts), notified_count = :count REMOVE root_claim, root_claimed_at",
        );
        if let Some(at) = digest_sent_at {
            expression = expression.replace(" REMOVE", ", digest_sent_at = :at REMOVE");
            update = update.expression_attribute_values(":at", n(at));
        }
        let out = update
            .update_expression(expression)
            .send()
            .await
            .map_err(|e| StoreError::sdk("UpdateItem", e))?;
        let covered = out
            .attributes
            .as_ref()
            .and_then(|a| get_n(a, "event_count"))
            .is_some_and(|c| u64::try_from(c).unwrap_or(0) <= notified_count);
        if covered {
            self.set_pending(session_id, false).await?;
        }
        Ok(())
    }

    /// Remember where a session's root message is: its channel id and,
    /// when Slack gave one, its permalink (`audit sessions` shows it).
    pub async fn record_root_link(
        &self,
        session_id: &str,
        channel: &str,
        permalink: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .update_session(session_id)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":channel", s(channel))
            .update_expression("SET root_channel = :channel");
        if let Some(link) = permalink {
            update = update
                .update_expression("SET root_channel = :channel, slack_permalink = :link")
                .expression_attribute_values(":link", s(link));
        }
        // Only a session that exists gets a link; none is not an error.
        conditional("UpdateItem", update.send().await).map(|_| ())
    }

    /// Mark (or unmark) a session as having Slack messages not yet sent,
    /// so the scheduled check retries them.
    /// Writes only when the mark changes: a read is cheaper than a write,
    /// and most sessions are never pending.
    pub async fn set_pending(&self, session_id: &str, pending: bool) -> Result<(), StoreError> {
        if self.get("PENDING", session_id).await?.is_some() == pending {
            return Ok(());
        }
        if pending {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s("PENDING"))
                .item("sk", s(session_id))
                .send()
                .await
                .map_err(|e| StoreError::sdk("PutItem", e))?;
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s("PENDING"))
                .key("sk", s(session_id))
                .send()
                .await
                .map_err(|e| StoreError::sdk("DeleteItem", e))?;
        }
        Ok(())
    }

    /// Mark a session pending and remember `event_ids` for its next
    /// thread digest, which the tick sends.
    pub async fn defer_events(
        &self,
        session_id: &str,
        event_ids: &[String],
    ) -> Result<(), StoreError> {
        if event_ids.is_empty() {
            return self.set_pending(session_id, true).await;
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("PENDING"))
            .key("sk", s(session_id))
            .update_expression("ADD events :ids")
            .expression_attribute_values(":ids", AttributeValue::Ss(event_ids.to_vec()))
            .send()
            .await
            .map_err(|e| StoreError::sdk("UpdateItem", e))?;
        Ok(())
    }

    /// The events deferred for a session's next digest
    /// ([`defer_events`](Self::defer_events)).
    pub async fn deferred_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        let Some(pending) = self.get("PENDING", session_id).await? else {
            return Ok(Vec::new());
        };
        let ids = pending
            .get("events")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        let mut events = Vec::new();
        for event_id in ids {
            let key = format!("EVENT#{event_id}");
            let Some(item) = self.get(&key, "EVENT").await? else {
                continue;
            };
            let json = get_s(&item, "event").ok_or_else(|| StoreError::Corrupt {
                key: key.clone(),
                reason: "no event".into(),
            })?;
            events.push(serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
                key,
                reason: e.to_string(),
            })?);
        }
        Ok(events)
    }

    /// Sessions with Slack messages still to send.
    pub async fn pending(&self) -> Result<Vec<String>, StoreError> {
        let items = self.query_all("PENDING").await?;
        Ok(items
            .iter()
            .filter_map(|i| get_s(i, "sk").map(str::to_owned))
            .collect())
    }

    async fn query_all(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::sdk("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Store a spoofed or outside signal once. Returns whether it was new
    /// (and so deserves an alert). A resent request (its answer lost) is
    /// still this call's, so still new.
    pub async fn record_untrusted(
        &self,
        event_id: &str,
        evidence: &Evidence<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let writer = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("SPOOFED#{event_id}")))
            .item("sk", s("SPOOFED"))
            .item(
                "verdict",
                s(serde_json::to_string(evidence.verdict).unwrap_or_default()),
            )
            .item("signal", s(evidence.signal_json))
            .item("received_at", n(now))
            .item("expires_at", self.expires(now))
            .item("writer", s(&writer))
            .condition_expression("attribute_not_exists(pk) OR writer = :me")
            .expression_attribute_values(":me", s(&writer));
        if let Some(sender) = evidence.sender {
            put = put.item("sender", s(sender));
        }
        conditional("PutItem", put.send().await)
    }

    /// Remove an untrusted signal's record, so that a retry alerts again
    /// when its alert could not be sent.
    pub async fn forget_untrusted(&self, event_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("SPOOFED#{event_id}")))
            .key("sk", s("SPOOFED"))
            .send()
            .await
            .map_err(|e| StoreError::sdk("DeleteItem", e))?;
        Ok(())
    }

    /// Record a heartbeat on its account×region coverage item.
    pub async fn record_heartbeat(
        &self,
        account: &str,
        region: &str,
        trail: TrailStatus,
        agent_version: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("COVERAGE"))
            .key("sk", s(format!("{account}#{region}")))
            .update_expression(
                "SET account = :a, #region = :r, trail = :t, agent_version = :v, \
                 last_heartbeat = :at, alerted = if_not_exists(alerted, :healthy)",
            )
            .condition_expression("attribute_not_exists(last_heartbeat) OR last_heartbeat <= :at")
            .expression_attribute_names("#region", "region")
            .expression_attribute_values(":a", s(account))
            .expression_attribute_values(":r", s(region))
            .expression_attribute_values(":t", s(trail_str(trail)))
            .expression_attribute_values(":v", s(agent_version))
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":healthy", s(Health::Healthy.as_str()))
            .send()
            .await;
        // An older heartbeat arriving late changes nothing.
        conditional("UpdateItem", result).map(|_| ())
    }

    /// Every coverage item.
    pub async fn coverage(&self) -> Result<Vec<Coverage>, StoreError> {
        self.query_all("COVERAGE")
            .await?
            .iter()
            .map(parse_coverage)
            .collect()
    }

    /// Remember what was alerted for an account×region.
    pub async fn set_alerted(
        &self,
        account: &str,
        region: &str,
        health: Health,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("COVERAGE"))
            .key("sk", s(format!("{account}#{region}")))
            .update_expression("SET alerted = :h")
            .expression_attribute_values(":h", s(health.as_str()))
            .send()
            .await
            .map_err(|e| StoreError::sdk("UpdateItem", e))?;
        Ok(())
    }
}

fn trail_str(t: TrailStatus) -> &'static str {
    match t {
        TrailStatus::Logging => "logging",
        TrailStatus::NotLogging => "not_logging",
        TrailStatus::Unknown => "unknown",
    }
}

fn parse_coverage(item: &Item) -> Result<Coverage, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: format!("COVERAGE/{}", get_s(item, "sk").unwrap_or("?")),
        reason: reason.to_owned(),
    };
    let trail = match get_s(item, "trail") {
        Some("logging") => TrailStatus::Logging,
        Some("not_logging") => TrailStatus::NotLogging,
        _ => TrailStatus::Unknown,
    };
    let alerted = match get_s(item, "alerted") {
        Some("silent") => Health::Silent,
        Some("trail_not_logging") => Health::TrailNotLogging,
        _ => Health::Healthy,
    };
    Ok(Coverage {
        account: get_s(item, "account")
            .ok_or_else(|| corrupt("no account"))?
            .to_owned(),
        region: get_s(item, "region")
            .ok_or_else(|| corrupt("no region"))?
            .to_owned(),
        last_heartbeat: get_n(item, "last_heartbeat")
            .ok_or_else(|| corrupt("no last_heartbeat"))?,
        trail,
        agent_version: get_s(item, "agent_version").unwrap_or_default().to_owned(),
        alerted,
    })
}

pub(crate) fn parse_session(id: &str, item: &Item) -> Result<SessionItem, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: format!("SESSION#{id}"),
        reason,
    };
    let session: Session =
        serde_json::from_str(get_s(item, "session").ok_or_else(|| corrupt("no session".into()))?)
            .map_err(|e| corrupt(e.to_string()))?;
    Ok(SessionItem {
        session,
        version: get_n(item, "version").ok_or_else(|| corrupt("no version".into()))?,
        root_ts: get_s(item, "root_ts").map(str::to_owned),
        root_channel: get_s(item, "root_channel").map(str::to_owned),
        slack_permalink: get_s(item, "slack_permalink").map(str::to_owned),
        absorbed: item
            .get("absorbed")
            .and_then(|v| v.as_ss().ok())
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default(),
        notified_count: get_n(item, "notified_count")
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0),
        digest_sent_at: get_n(item, "digest_sent_at"),
        merged_into: get_s(item, "merged_into").map(str::to_owned),
    })
}

/// `Ok(true)` when a conditional write happened, `Ok(false)` when its
/// condition did not hold; any other failure is an error.
fn conditional<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(StoreError::sdk(operation, e)),
    }
}

/// The reasons a transaction was cancelled, if that is what failed.
fn cancellation<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<String>> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

impl Store {
    /// Live sessions in one index partition (e.g. `ACCOUNT#111122223333`),
    /// earliest first. Absorbed sessions leave every index.
    pub async fn sessions_in(
        &self,
        index: (&str, &str, &str),
        partition: &str,
    ) -> Result<Vec<SessionItem>, StoreError> {
        let (name, pk, _) = index;
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(name)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", pk)
                .expression_attribute_values(":pk", s(partition))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::sdk("Query", e))?;
            for item in page.items() {
                let key = get_s(item, "pk").unwrap_or_default();
                let id = key.strip_prefix("SESSION#").unwrap_or(key);
                if get_s(item, "sk") == Some("SESSION") {
                    out.push(parse_session(id, item)?);
                } else if let Some(live) = self.session(id).await? {
                    out.push(live);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// The partition of the by-time index holding sessions first seen at
    /// `time`.
    pub fn month_partition(time: i64) -> String {
        month_of(time)
    }
}

/// Create the table with its indexes, TTL and point-in-time recovery, as
/// the audit stack's template declares it. For local emulation and tests;
/// deploy creates it from the template.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
        SseSpecification, TimeToLiveSpecification,
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt {
        key: table.to_owned(),
        reason: e.to_string(),
    };
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash).map_err(invalid)?)
        .key_schema(key("sk", KeyType::Range).map_err(invalid)?)
        .attribute_definitions(attr("pk").map_err(invalid)?)
        .attribute_definitions(attr("sk").map_err(invalid)?)
        .attribute_definitions(attr("gsi_sk").map_err(invalid)?)
        .sse_specification(SseSpecification::builder().enabled(true).build());
    for (name, pk, sk) in INDEXES {
        create = create
            .attribute_definitions(attr(pk).map_err(invalid)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .key_schema(key(pk, KeyType::Hash).map_err(invalid)?)
                    .key_schema(key(sk, KeyType::Range).map_err(invalid)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(invalid)?,
            );
    }
    create
        .send()
        .await
        .map_err(|e| StoreError::sdk("CreateTable", e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .map_err(|e| StoreError::sdk("UpdateTimeToLive", e))?;
    client
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .map_err(|e| StoreError::sdk("UpdateContinuousBackups", e))?;
    Ok(())
}
