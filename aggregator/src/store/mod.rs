//! The DynamoDB audit store: one table, the single-table layout in
//! ARCHITECTURE.md, and the only code that writes it.
//!
//! Layout:
//! - [`keys`]: every key and index name, spelled once;
//! - [`ingest`]: one event into its session, idempotent by `eventID`,
//!   with reads bounded whatever a key's history, and transactions
//!   bounded whatever a session's width;
//! - [`slack_state`]: what Slack shows of a session (root claim, `ts`,
//!   channel, digests, pending messages);
//! - [`coverage`]: heartbeats per account × region, what deploy
//!   targeted, the organization's last good account list, untrusted
//!   signals and their alert rate;
//! - [`schema`]: the table as the audit template declares it, for local
//!   runs and tests;
//! - [`trail`]: the reconciler's log files processed, its progress per
//!   account × region, and where a stored event came from.

pub mod coverage;
pub mod ingest;
pub mod keys;
pub mod schema;
pub mod slack_state;
pub mod trail;

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;
use glasswatch_core::session::Session;
use glasswatch_core::verify::Verdict;

pub use ingest::Ingested;
pub use keys::{
    GSI_BY_ACCOUNT, GSI_BY_KIND, GSI_BY_PRINCIPAL, GSI_BY_SEVERITY, GSI_BY_TIME, INDEXES,
    kind_partition, time_partition,
};
pub use schema::create_table;

use keys::{SESSION_SK, session_pk};

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
    /// A request could not be built: a defect, never worth a retry.
    #[error("DynamoDB {operation} request: {reason}")]
    Request {
        operation: &'static str,
        reason: String,
    },
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

    pub(crate) fn build(
        operation: &'static str,
    ) -> impl Fn(aws_sdk_dynamodb::error::BuildError) -> Self {
        move |e| Self::Request {
            operation,
            reason: e.to_string(),
        }
    }

    /// Whether retrying (the message, the tick) can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }
}

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
pub(crate) fn n(v: impl ToString) -> AttributeValue {
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

/// Serialise what the store keeps as JSON; failing is a defect, reported
/// rather than stored as an empty string.
pub(crate) fn to_json<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Request {
        operation: what,
        reason: format!("cannot encode: {e}"),
    })
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
    /// Bumped by every change of the summary beyond its count.
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
    /// A digest went out whose root update did not.
    pub root_stale: bool,
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
            let Some(item) = self.get(&session_pk(&id), SESSION_SK).await? else {
                return Ok((id, None));
            };
            match get_s(&item, "merged_into") {
                Some(next) => id = next.to_owned(),
                None => return Ok((id.clone(), Some(parse_session(&id, &item)?))),
            }
        }
        Err(StoreError::Corrupt {
            key: session_pk(&id),
            reason: "merge redirects do not end".into(),
        })
    }

    /// The live session this id (as written, or since merged) is now.
    pub async fn session(&self, id: &str) -> Result<Option<SessionItem>, StoreError> {
        Ok(self.resolve(id).await?.1)
    }

    /// The session item with exactly this id, live or merged away.
    pub async fn session_exact(&self, id: &str) -> Result<Option<SessionItem>, StoreError> {
        match self.get(&session_pk(id), SESSION_SK).await? {
            Some(item) => Ok(Some(parse_session(id, &item)?)),
            None => Ok(None),
        }
    }

    /// The session an already-stored event belongs to now.
    pub async fn session_of_event(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        match self.written_session(event_id).await? {
            Some(written) => Ok(Some(self.resolve(&written).await?.0)),
            None => Ok(None),
        }
    }

    /// The session a stored event was written under, if it is stored.
    async fn written_session(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        let key = keys::event_pk(event_id);
        let Some(item) = self.get(&key, keys::EVENT_SK).await? else {
            return Ok(None);
        };
        let written = get_s(&item, "session_id").ok_or_else(|| StoreError::Corrupt {
            key,
            reason: "no session_id".into(),
        })?;
        Ok(Some(written.to_owned()))
    }

    async fn query_all(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError::sdk("Query", e))?;
            items.extend(page.items.unwrap_or_default());
        }
        Ok(items)
    }

    /// Live sessions in one index partition (e.g. `ACCOUNT#111122223333`),
    /// earliest first. Absorbed sessions leave every index; an account
    /// item a merge has not yet moved resolves to the live session, once.
    pub async fn sessions_in(
        &self,
        index: (&str, &str, &str),
        partition: &str,
    ) -> Result<Vec<SessionItem>, StoreError> {
        let (name, pk, _) = index;
        let mut out: Vec<SessionItem> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", pk)
            .expression_attribute_values(":pk", s(partition))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError::sdk("Query", e))?;
            for item in page.items() {
                let id = keys::session_id_of(get_s(item, "pk").unwrap_or_default());
                let live = if get_s(item, "sk") == Some(SESSION_SK) {
                    Some(parse_session(id, item)?)
                } else {
                    self.session(id).await?
                };
                if let Some(live) = live
                    && seen.insert(live.session.session_id.clone())
                {
                    out.push(live);
                }
            }
        }
        Ok(out)
    }

    /// The partition of the by-time index holding sessions first seen at
    /// `time`.
    pub fn month_partition(time: i64) -> String {
        keys::month_of(time)
    }
}

pub(crate) fn parse_session(id: &str, item: &Item) -> Result<SessionItem, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: session_pk(id),
        reason,
    };
    let mut session: Session =
        serde_json::from_str(get_s(item, "session").ok_or_else(|| corrupt("no session".into()))?)
            .map_err(|e| corrupt(e.to_string()))?;
    // The summary is rewritten only when it changes beyond its counts;
    // the count and the last event time are kept up to date beside it.
    if let Some(count) = get_n(item, "event_count").and_then(|c| u64::try_from(c).ok()) {
        session.event_count = count;
    }
    if let Some(last) = get_n(item, "last_seen") {
        session.last_seen = session.last_seen.max(last);
    }
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
        root_stale: item
            .get("root_stale")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        merged_into: get_s(item, "merged_into").map(str::to_owned),
    })
}

/// Whether a request failed only because its condition did not hold.
pub(crate) fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

/// `Ok(true)` when a conditional write happened, `Ok(false)` when its
/// condition did not hold; any other failure is an error.
pub(crate) fn conditional<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if condition_failed(&e) => Ok(false),
        Err(e) => Err(StoreError::sdk(operation, e)),
    }
}

/// The reasons a transaction was cancelled, if that is what failed.
pub(crate) fn cancellation<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<String>> {
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
