//! The audit store's read paths, for `cargo xtask audit`.
//!
//! Every read is a `Query` with a key condition on the table or one of its
//! indexes (or a `GetItem`/`BatchGetItem` by key), paged with the SDK's
//! paginators and handed out one item at a time, so a large result never
//! sits in memory whole. Nothing here scans the table.
//!
//! | read | key condition |
//! |---|---|
//! | sessions by time | `by-time`: `gsi_time_pk = MONTH#<month>` for each month, `gsi_sk` in the range |
//! | sessions by account | `by-account`: `gsi_account_pk = ACCOUNT#<id>`, `gsi_sk` in the range; then `BatchGetItem` of the sessions |
//! | sessions by principal | `by-principal`: `gsi_principal_pk = PRINCIPAL#<arn>`, `gsi_sk` in the range |
//! | sessions by severity | `by-severity`: `gsi_severity_pk = SEVERITY#<level>` for each level asked, `gsi_sk` in the range |
//! | detections | `by-kind`: `gsi_kind_pk = KIND#<kind>#<month>`, `gsi_sk` in the range (account: a filter expression) |
//! | a session's timeline | table: `pk = SESSION#<id>`, `begins_with(sk, EVENT#)` for it and each session it absorbed |
//! | original records | `BatchGetItem` of `EVENT#<eventID>` items |
//! | coverage | table: `pk = COVERAGE` |
//!
//! Index sort keys start with a zero-padded time (`gsi_sk` =
//! `<time>#<id>`), so a range is one `BETWEEN` and string order is time
//! order. Several partitions are merged on that key, newest first.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::query::{QueryError, QueryOutput};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_smithy_async::future::pagination_stream::PaginationStream;
use glasswatch_core::DetectionKind;
use glasswatch_core::audit::{Range, SessionKey, parse_kind};
use glasswatch_core::coverage::Coverage;
use glasswatch_core::session::SessionEvent;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::store::{
    GSI_BY_ACCOUNT, GSI_BY_KIND, GSI_BY_PRINCIPAL, GSI_BY_SEVERITY, GSI_BY_TIME, Item, SessionItem,
    Store, StoreError, get_s, kind_partition, parse_session, s, time_partition,
};

/// Keys per `BatchGetItem` (DynamoDB's limit).
const BATCH_GET: usize = 100;
/// Rounds of `UnprocessedKeys` before giving up.
const BATCH_ROUNDS: u32 = 10;

type Pages = PaginationStream<Result<QueryOutput, SdkError<QueryError, HttpResponse>>>;

/// Reads for audit queries over one table.
#[derive(Debug, Clone)]
pub struct Reader {
    client: Client,
    table: String,
    store: Store,
}

/// One partition after another, page by page.
struct Source {
    queries: VecDeque<QueryFluentBuilder>,
    pages: Option<Pages>,
    items: VecDeque<Item>,
}

impl Source {
    fn new(queries: impl IntoIterator<Item = QueryFluentBuilder>) -> Self {
        Self {
            queries: queries.into_iter().collect(),
            pages: None,
            items: VecDeque::new(),
        }
    }

    /// Make the next item available, reading pages and partitions as
    /// needed. `false` at the end.
    async fn fill(&mut self) -> Result<bool, StoreError> {
        loop {
            if !self.items.is_empty() {
                return Ok(true);
            }
            if let Some(pages) = &mut self.pages {
                match pages.next().await {
                    Some(Ok(page)) => {
                        self.items.extend(page.items.unwrap_or_default());
                        continue;
                    }
                    Some(Err(e)) => return Err(StoreError::sdk("Query", e)),
                    None => self.pages = None,
                }
            }
            match self.queries.pop_front() {
                Some(query) => self.pages = Some(query.into_paginator().send()),
                None => return Ok(false),
            }
        }
    }
}

/// Several sources merged on a sort key attribute.
struct Merge {
    sources: Vec<Source>,
    order: &'static str,
    descending: bool,
}

impl Merge {
    async fn next(&mut self) -> Result<Option<Item>, StoreError> {
        let mut best: Option<(usize, String)> = None;
        for (i, source) in self.sources.iter_mut().enumerate() {
            if !source.fill().await? {
                continue;
            }
            let key = source
                .items
                .front()
                .and_then(|item| get_s(item, self.order))
                .unwrap_or_default();
            let better = best.as_ref().is_none_or(|(_, b)| {
                if self.descending {
                    key > b.as_str()
                } else {
                    key < b.as_str()
                }
            });
            if better {
                best = Some((i, key.to_owned()));
            }
        }
        Ok(best.and_then(|(i, _)| self.sources[i].items.pop_front()))
    }
}

fn corrupt(key: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn pk_id<'a>(item: &'a Item, prefix: &str) -> &'a str {
    let pk = get_s(item, "pk").unwrap_or_default();
    pk.strip_prefix(prefix).unwrap_or(pk)
}

fn parse_event(item: &Item) -> Result<SessionEvent, StoreError> {
    let key = format!(
        "{}/{}",
        get_s(item, "pk").unwrap_or("?"),
        get_s(item, "sk").unwrap_or("?")
    );
    let json = get_s(item, "event").ok_or_else(|| corrupt(&key, "no event"))?;
    serde_json::from_str(json).map_err(|e| corrupt(&key, e.to_string()))
}

/// Sessions, newest first ([`Reader::sessions`]).
pub struct SessionStream<'r> {
    reader: &'r Reader,
    merge: Merge,
    /// The by-account index holds index items: their sessions are read in
    /// batches.
    index_items: bool,
    ready: VecDeque<SessionItem>,
}

impl std::fmt::Debug for SessionStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStream").finish_non_exhaustive()
    }
}

impl SessionStream<'_> {
    pub async fn next(&mut self) -> Result<Option<SessionItem>, StoreError> {
        if !self.index_items {
            return match self.merge.next().await? {
                Some(item) => Ok(Some(parse_session(pk_id(&item, "SESSION#"), &item)?)),
                None => Ok(None),
            };
        }
        while self.ready.is_empty() {
            let mut ids = Vec::new();
            while ids.len() < BATCH_GET {
                match self.merge.next().await? {
                    Some(item) => ids.push(pk_id(&item, "SESSION#").to_owned()),
                    None => break,
                }
            }
            if ids.is_empty() {
                return Ok(None);
            }
            self.ready = self.reader.live_sessions(&ids).await?.into();
        }
        Ok(self.ready.pop_front())
    }
}

/// One detection of an event, with the live session it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub kind: DetectionKind,
    pub event: SessionEvent,
    pub session_id: String,
}

/// Detections, newest first ([`Reader::detections`]).
pub struct DetectionStream<'r> {
    reader: &'r Reader,
    merge: Merge,
    /// Session as written → live session.
    live: HashMap<String, String>,
}

impl std::fmt::Debug for DetectionStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectionStream").finish_non_exhaustive()
    }
}

impl DetectionStream<'_> {
    pub async fn next(&mut self) -> Result<Option<Detection>, StoreError> {
        let Some(item) = self.merge.next().await? else {
            return Ok(None);
        };
        let event = parse_event(&item)?;
        let kind = get_s(&item, "sk")
            .and_then(|sk| sk.strip_prefix("KIND#"))
            .and_then(parse_kind)
            .ok_or_else(|| corrupt(&format!("EVENT#{}", event.event_id), "bad KIND# item"))?;
        let written = get_s(&item, "session_id").unwrap_or_default().to_owned();
        let session_id = match self.live.get(&written) {
            Some(live) => live.clone(),
            None => {
                let live = self
                    .reader
                    .store
                    .session(&written)
                    .await?
                    .map_or_else(|| written.clone(), |s| s.session.session_id);
                self.live.insert(written, live.clone());
                live
            }
        };
        Ok(Some(Detection {
            kind,
            event,
            session_id,
        }))
    }
}

/// A session's events in time order ([`Reader::timeline`]).
pub struct EventStream {
    merge: Merge,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    pub async fn next(&mut self) -> Result<Option<SessionEvent>, StoreError> {
        match self.merge.next().await? {
            Some(item) => Ok(Some(parse_event(&item)?)),
            None => Ok(None),
        }
    }
}

/// The CloudTrail record an event was stored with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    pub event_id: String,
    /// The record's JSON, as the signal carried it.
    pub record: String,
    /// Fields the agent pruned to fit the signal under EventBridge's
    /// entry size (usually none).
    pub pruned: Vec<String>,
}

#[derive(Deserialize)]
struct StoredSignal<'a> {
    #[serde(borrow)]
    record: &'a RawValue,
    #[serde(default)]
    dropped_fields: Vec<String>,
}

impl Reader {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let table = table.into();
        Self {
            // Reads only: the quiet period and retention matter to writes.
            store: Store::new(client.clone(), table.clone(), 0, 0),
            client,
            table,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.table)
    }

    /// A query of one index partition over a time range.
    fn index_query(
        &self,
        index: (&str, &str, &str),
        partition: String,
        range: &Range,
        descending: bool,
    ) -> QueryFluentBuilder {
        let (name, pk, sk) = index;
        self.query()
            .index_name(name)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", pk)
            .expression_attribute_names("#sk", sk)
            .expression_attribute_values(":pk", s(partition))
            .expression_attribute_values(":from", s(format!("{:012}#", range.since.max(0))))
            .expression_attribute_values(":to", s(format!("{:012}#~", range.last().max(0))))
            .scan_index_forward(!descending)
    }

    /// Sessions that started in `range`, newest first, from the index
    /// `key` names. Other filters are the caller's to apply.
    pub fn sessions(&self, key: &SessionKey, range: &Range) -> SessionStream<'_> {
        let one = |index, partition: String| {
            vec![Source::new([
                self.index_query(index, partition, range, true)
            ])]
        };
        let (sources, index_items) = match key {
            SessionKey::Principal(p) => (one(GSI_BY_PRINCIPAL, format!("PRINCIPAL#{p}")), false),
            SessionKey::Account(a) => (one(GSI_BY_ACCOUNT, format!("ACCOUNT#{a}")), true),
            SessionKey::Severity(levels) => (
                levels
                    .iter()
                    .map(|l| {
                        Source::new([self.index_query(
                            GSI_BY_SEVERITY,
                            format!("SEVERITY#{}", l.as_str()),
                            range,
                            true,
                        )])
                    })
                    .collect(),
                false,
            ),
            SessionKey::Time(months) => (
                vec![Source::new(months.iter().map(|m| {
                    self.index_query(GSI_BY_TIME, time_partition(m), range, true)
                }))],
                false,
            ),
        };
        SessionStream {
            reader: self,
            merge: Merge {
                sources,
                order: "gsi_sk",
                descending: true,
            },
            index_items,
            ready: VecDeque::new(),
        }
    }

    /// Detections of `kinds` in `range` (in the months `months`, newest
    /// first), newest first, optionally in one account.
    pub fn detections(
        &self,
        kinds: &[DetectionKind],
        months: &[String],
        range: &Range,
        account: Option<&str>,
    ) -> DetectionStream<'_> {
        let sources = kinds
            .iter()
            .map(|kind| {
                Source::new(months.iter().map(|m| {
                    let mut q =
                        self.index_query(GSI_BY_KIND, kind_partition(*kind, m), range, true);
                    if let Some(a) = account {
                        q = q
                            .filter_expression("#account = :account")
                            .expression_attribute_names("#account", "account")
                            .expression_attribute_values(":account", s(a));
                    }
                    q
                }))
            })
            .collect();
        DetectionStream {
            reader: self,
            merge: Merge {
                sources,
                order: "gsi_sk",
                descending: true,
            },
            live: HashMap::new(),
        }
    }

    /// The live session an id names (following merges).
    pub async fn session(&self, id: &str) -> Result<Option<SessionItem>, StoreError> {
        self.store.session(id).await
    }

    /// Every event of a live session in time order: those written under
    /// it and under each session it absorbed.
    pub fn timeline(&self, item: &SessionItem) -> EventStream {
        let ids = std::iter::once(&item.session.session_id).chain(&item.absorbed);
        let sources = ids
            .map(|id| {
                Source::new([self
                    .query()
                    .key_condition_expression("pk = :pk AND begins_with(sk, :events)")
                    .expression_attribute_values(":pk", s(format!("SESSION#{id}")))
                    .expression_attribute_values(":events", s("EVENT#"))])
            })
            .collect();
        EventStream {
            merge: Merge {
                sources,
                order: "sk",
                descending: false,
            },
        }
    }

    /// The live sessions of these ids, in their order; a session merged
    /// away since its index item was read, or expired, is left out (the
    /// survivor has its own).
    async fn live_sessions(&self, ids: &[String]) -> Result<Vec<SessionItem>, StoreError> {
        let keys = ids
            .iter()
            .map(|id| (format!("SESSION#{id}"), "SESSION".to_owned()));
        let found = self.batch_get(keys, None).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(item) = found.get(&format!("SESSION#{id}")) {
                let session = parse_session(id, item)?;
                if session.merged_into.is_none() {
                    out.push(session);
                }
            }
        }
        Ok(out)
    }

    /// Items by key, by `pk`; with a projection, only the attributes it
    /// names (`#name` placeholders: name pairs).
    async fn batch_get(
        &self,
        keys: impl Iterator<Item = (String, String)>,
        projection: Option<(&str, &[(&str, &str)])>,
    ) -> Result<HashMap<String, Item>, StoreError> {
        let keys: Vec<HashMap<String, AttributeValue>> = keys
            .map(|(pk, sk)| HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]))
            .collect();
        let mut found = HashMap::new();
        for chunk in keys.chunks(BATCH_GET) {
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true);
            if let Some((expression, names)) = projection {
                request = request.projection_expression(expression);
                for (placeholder, name) in names {
                    request = request.expression_attribute_names(*placeholder, *name);
                }
            }
            let mut pending = request
                .build()
                .map_err(|e| corrupt(&self.table, e.to_string()))?;
            for round in 0.. {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| StoreError::sdk("BatchGetItem", e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let pk = get_s(&item, "pk").unwrap_or_default().to_owned();
                    found.insert(pk, item);
                }
                match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    Some(rest) if !rest.keys().is_empty() => {
                        if round >= BATCH_ROUNDS {
                            return Err(StoreError::Retryable {
                                operation: "BatchGetItem",
                                message: format!(
                                    "{} keys still unprocessed after {BATCH_ROUNDS} rounds",
                                    rest.keys().len()
                                ),
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(50 << round.min(6))).await;
                        pending = rest;
                    }
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    /// The CloudTrail records of these events, in their order. An event
    /// without its stored record is an error: evidence is never silently
    /// short.
    pub async fn records(&self, event_ids: &[String]) -> Result<Vec<EvidenceRecord>, StoreError> {
        let keys = event_ids
            .iter()
            .map(|id| (format!("EVENT#{id}"), "EVENT".to_owned()));
        let projection = ("pk, #signal", [("#signal", "signal")].as_slice());
        let found = self.batch_get(keys, Some(projection)).await?;
        event_ids
            .iter()
            .map(|id| {
                let key = format!("EVENT#{id}");
                let item = found
                    .get(&key)
                    .ok_or_else(|| corrupt(&key, "the event item is missing"))?;
                let text = get_s(item, "signal").ok_or_else(|| corrupt(&key, "no signal"))?;
                let signal: StoredSignal<'_> = serde_json::from_str(text)
                    .map_err(|e| corrupt(&key, format!("signal without a record: {e}")))?;
                Ok(EvidenceRecord {
                    event_id: id.clone(),
                    record: signal.record.get().to_owned(),
                    pruned: signal.dropped_fields,
                })
            })
            .collect()
    }

    /// Every coverage item (one `Query` of the `COVERAGE` partition).
    pub async fn coverage(&self) -> Result<Vec<Coverage>, StoreError> {
        self.store.coverage().await
    }
}
