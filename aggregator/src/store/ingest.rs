//! One event into its session: idempotent by `eventID`, with reads bounded
//! by a constant whatever a key's history, and every transaction bounded
//! whatever a session's width.
//!
//! Reads, for each of the event's keys: the nearest stored use before and
//! the nearest after it (`Query`, `Limit 2`), and the live sessions they
//! were written under. Within the quiet period, the uses on one side of an
//! event are all linked to each other, so they are one session already and
//! the nearest stands for all of them (`core::correlate`).
//!
//! Writes, in one `TransactWriteItems`: the event's items (conditional on
//! the event being new), its key uses, and the session. A busy session is
//! not rewritten for every event: when the event adds nothing to its
//! summary beyond the count and the last time, the session only gets
//! `ADD event_count :1` (and a raised `last_seen`), conditional on not
//! being merged away, and its `version` is left alone. A summary that
//! changes is rewritten under its `version`. Sessions that a merge absorbs
//! become redirects, conditional on the version and count read, so no
//! concurrent event is lost from the survivor's count. Account index items
//! of a merged session are rewritten after the transaction, in batches
//! (the merge leaves a `REINDEX` marker until that is done, which the
//! tick finishes if this invocation dies), so a merge of sessions that span
//! a hundred accounts stays far below DynamoDB's 100 actions.
//!
//! Concurrent writers: there is no per-key lock item, so a hot key is not
//! a hot item. Instead, after its transaction, an ingest reads its keys'
//! nearest uses again ([`Store::settle`]); a use that a concurrent writer
//! put in another session meanwhile is then found, and the two sessions
//! are merged. Of two linked events, the one that commits last sees the
//! other (nothing lies between two uses that end up adjacent), so the
//! sessions end as the connected components whatever the interleaving. A
//! redelivered event (a lost answer, a crash after the commit) settles
//! again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update, WriteRequest};
use glasswatch_core::correlate::{
    Ingest, KeyUse, Plan, linked_sessions, merge_sessions, plan, window,
};
use glasswatch_core::session::{Session, SessionEvent};

use super::keys::{
    self, EVENT_SK, GSI_BY_ACCOUNT, GSI_BY_KIND, PENDING_PK, REINDEX_PK, SESSION_SK,
    account_partition, account_sk, event_pk, key_pk, kind_partition, kind_sk, month_of,
    principal_partition, session_event_sk, session_gsi_sk, session_pk, severity_partition, time_sk,
};
use super::{
    Evidence, Item, SessionItem, Store, StoreError, cancellation, get_n, get_s, n, s, to_json,
};

/// Cancellation reasons that mean "read again and retry".
const RETRY_REASONS: [&str; 4] = [
    "None",
    "ConditionalCheckFailed",
    "TransactionConflict",
    "ThrottlingError",
];

/// Attempts at one write when other writers keep winning.
const MAX_ATTEMPTS: u32 = 12;

/// DynamoDB's limit of actions in one transaction.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Items per `BatchWriteItem` (DynamoDB's limit).
const BATCH_WRITE: usize = 25;

/// Full-jitter backoff before the `attempt`-th retry (1-based).
fn backoff(attempt: u32) -> Duration {
    let cap = 20u64.saturating_mul(1 << attempt.min(6)).min(1000);
    Duration::from_millis(fastrand::u64(0..=cap))
}

/// What storing one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub ingest: Ingest,
    /// Sessions merged afterwards, when a concurrent writer had put a
    /// linked event in another session (see [`Store::settle`]).
    pub settled: Vec<String>,
}

impl Ingested {
    /// The live session the event is in.
    pub fn session_id(&self) -> &str {
        self.ingest.session_id()
    }

    /// Every session this ingest merged away.
    pub fn absorbed(&self) -> impl Iterator<Item = &String> {
        let planned = match &self.ingest {
            Ingest::Stored { absorbed, .. } => absorbed.as_slice(),
            Ingest::Duplicate { .. } => &[],
        };
        planned.iter().chain(&self.settled)
    }
}

/// One transaction being assembled; building errors are kept, never
/// dropped.
struct Transaction<'s> {
    store: &'s Store,
    items: Vec<TransactWriteItem>,
}

impl<'s> Transaction<'s> {
    fn new(store: &'s Store) -> Self {
        Self {
            store,
            items: Vec::new(),
        }
    }

    fn put(&mut self, item: Item, condition: Option<&str>) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.store.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(StoreError::build("TransactWriteItems Put"))?;
        self.items
            .push(TransactWriteItem::builder().put(put).build());
        Ok(())
    }

    fn update(&mut self, update: Update) {
        self.items
            .push(TransactWriteItem::builder().update(update).build());
    }

    fn update_builder(
        &self,
        pk: String,
        sk: &str,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.store.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
    }
}

/// A session update: `SET` and `ADD` clauses, a condition, and values.
#[derive(Default)]
struct SessionUpdate {
    set: Vec<&'static str>,
    add: Vec<&'static str>,
    remove: Vec<&'static str>,
    conditions: Vec<&'static str>,
    values: HashMap<String, AttributeValue>,
}

impl SessionUpdate {
    fn value(&mut self, name: &str, value: AttributeValue) {
        self.values.insert(name.to_owned(), value);
    }

    fn expression(&self) -> String {
        let mut out = Vec::new();
        if !self.set.is_empty() {
            out.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.add.is_empty() {
            out.push(format!("ADD {}", self.add.join(", ")));
        }
        if !self.remove.is_empty() {
            out.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        out.join(" ")
    }

    fn build(self, tx: &Transaction<'_>, session_id: &str) -> Result<Update, StoreError> {
        let expression = self.expression();
        let mut update = tx
            .update_builder(session_pk(session_id), SESSION_SK)
            .update_expression(expression.clone())
            .condition_expression(self.conditions.join(" AND "))
            .set_expression_attribute_values(Some(self.values));
        if expression.contains("#session") {
            update = update.expression_attribute_names("#session", "session");
        }
        update
            .build()
            .map_err(StoreError::build("TransactWriteItems Update"))
    }
}

impl Store {
    /// Store one event and merge the sessions it links. Idempotent by
    /// `eventID`: a redelivery changes nothing but settling (which a
    /// crash after the commit may have left undone).
    pub async fn ingest(
        &self,
        event: &SessionEvent,
        evidence: &Evidence<'_>,
    ) -> Result<Ingested, StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            if let Some(written) = self.written_session(&event.event_id).await? {
                let (session_id, settled) = self.settle(event, &written).await?;
                return Ok(Ingested {
                    ingest: Ingest::Duplicate { session_id },
                    settled,
                });
            }
            let live = self.linked_live(event, None).await?;
            let sessions: Vec<Session> = live.values().map(|i| i.session.clone()).collect();
            let planned = plan(event, &sessions);
            let items = self.event_transaction(event, evidence, &planned, &live)?;
            match self.commit(items).await? {
                true => {
                    if needs_reindex(&planned) {
                        self.reindex(&planned.session.session_id).await?;
                    }
                    let (session_id, settled) =
                        self.settle(event, &planned.session.session_id).await?;
                    return Ok(Ingested {
                        ingest: Ingest::Stored {
                            session_id,
                            absorbed: planned.absorbed,
                        },
                        settled,
                    });
                }
                false => tokio::time::sleep(backoff(attempt)).await,
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

    /// Send a transaction. `Ok(false)`: another writer got there first
    /// (read again and retry).
    async fn commit(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::Request {
                operation: "TransactWriteItems",
                reason: format!(
                    "{} actions, over DynamoDB's {MAX_TRANSACTION_ITEMS}",
                    items.len()
                ),
            });
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match cancellation(&e) {
                Some(reasons) if reasons.iter().all(|r| RETRY_REASONS.contains(&r.as_str())) => {
                    Ok(false)
                }
                _ => Err(StoreError::sdk("TransactWriteItems", e)),
            },
        }
    }

    /// The nearest stored uses of `key` on each side of the event's
    /// `(time, eventID)`, within the quiet period: at most two items read,
    /// whatever the key's history. The event's own use is skipped.
    async fn nearest_uses(
        &self,
        key: &str,
        event: &SessionEvent,
    ) -> Result<Vec<KeyUse>, StoreError> {
        let (from, to) = window(event.time, self.quiet_secs);
        let at = time_sk(event.time, &event.event_id);
        let mut uses = Vec::new();
        for (low, high, forward) in [
            (keys::time_from(from), at.clone(), false),
            (at.clone(), keys::time_to(to), true),
        ] {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
                .expression_attribute_values(":pk", s(key_pk(key)))
                .expression_attribute_values(":low", s(low))
                .expression_attribute_values(":high", s(high))
                .scan_index_forward(forward)
                // The event's own use, when it is stored, is one of them.
                .limit(2)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| StoreError::sdk("Query", e))?;
            let nearest = out
                .items()
                .iter()
                .map(|item| key_use(key, item))
                .find(|u| !matches!(u, Ok(u) if u.event_id == event.event_id));
            if let Some(found) = nearest {
                uses.push(found?);
            }
        }
        Ok(uses)
    }

    /// The live sessions the event links to through its keys' nearest
    /// uses; with `own`, the session it was written under, too.
    async fn linked_live(
        &self,
        event: &SessionEvent,
        own: Option<&str>,
    ) -> Result<BTreeMap<String, SessionItem>, StoreError> {
        let mut uses = Vec::new();
        for key in &event.keys {
            uses.extend(self.nearest_uses(key, event).await?);
        }
        let mut written = linked_sessions(event, &uses, self.quiet_secs);
        written.extend(own.map(str::to_owned));
        let mut live = BTreeMap::new();
        for id in written {
            if let (id, Some(item)) = self.resolve(&id).await? {
                live.insert(id, item);
            }
        }
        Ok(live)
    }

    /// After an event is stored (under `written`): merge what a
    /// concurrent writer may have put in another session meanwhile.
    /// Returns the live session the event is in, and the sessions merged
    /// away.
    pub async fn settle(
        &self,
        event: &SessionEvent,
        written: &str,
    ) -> Result<(String, Vec<String>), StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let live = self.linked_live(event, Some(written)).await?;
            let sessions: Vec<Session> = live.values().map(|i| i.session.clone()).collect();
            let Some(planned) = merge_sessions(&sessions) else {
                let own = live
                    .into_keys()
                    .next()
                    .unwrap_or_else(|| written.to_owned());
                return Ok((own, Vec::new()));
            };
            let mut tx = Transaction::new(self);
            self.session_writes(&mut tx, &planned, &live, None)?;
            if self.commit(tx.items).await? {
                self.reindex(&planned.session.session_id).await?;
                return Ok((planned.session.session_id, planned.absorbed));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(StoreError::Retryable {
            operation: "TransactWriteItems",
            message: format!(
                "settling event {}: concurrent writers won {MAX_ATTEMPTS} times",
                event.event_id
            ),
        })
    }

    fn event_transaction(
        &self,
        event: &SessionEvent,
        evidence: &Evidence<'_>,
        planned: &Plan,
        live: &BTreeMap<String, SessionItem>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let id = &planned.session.session_id;
        let expires = self.expires(planned.session.last_seen.max(event.time));
        let event_json = to_json("event", event)?;
        let mut tx = Transaction::new(self);
        let mut event_item: Item = HashMap::from([
            ("pk".into(), s(event_pk(&event.event_id))),
            ("sk".into(), s(EVENT_SK)),
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
        if let Some(recovered) = &event.recovered {
            event_item.insert("origin".into(), s(keys::ORIGIN_TRAIL));
            event_item.insert("late_secs".into(), n(recovered.late_secs));
            event_item.insert("log_file".into(), s(&recovered.log_file));
        }
        tx.put(event_item, Some("attribute_not_exists(pk)"))?;
        tx.put(
            HashMap::from([
                ("pk".into(), s(session_pk(id))),
                (
                    "sk".into(),
                    s(session_event_sk(event.time, &event.event_id)),
                ),
                ("event".into(), s(&event_json)),
                ("expires_at".into(), expires.clone()),
            ]),
            None,
        )?;
        // One index item per detection kind, for `audit events --kind`.
        for kind in &event.kinds {
            tx.put(
                HashMap::from([
                    ("pk".into(), s(event_pk(&event.event_id))),
                    ("sk".into(), s(kind_sk(*kind))),
                    (
                        GSI_BY_KIND.1.into(),
                        s(kind_partition(
                            *kind,
                            &glasswatch_core::audit::month(event.time),
                        )),
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
            )?;
        }
        for key in &event.keys {
            tx.put(
                key_use_item(key, event.time, &event.event_id, id, expires.clone()),
                None,
            )?;
        }
        // A session that only gains this event's account gets its index
        // item now; a merged one is reindexed after the transaction.
        if !needs_reindex(planned)
            && live
                .get(id)
                .is_none_or(|own| !own.session.accounts.contains(&event.account))
        {
            tx.put(
                self.account_item(&planned.session, &event.account, expires),
                None,
            )?;
        }
        self.session_writes(&mut tx, planned, live, Some(event))?;
        Ok(tx.items)
    }

    fn account_item(&self, session: &Session, account: &str, expires: AttributeValue) -> Item {
        HashMap::from([
            ("pk".into(), s(session_pk(&session.session_id))),
            ("sk".into(), s(account_sk(account))),
            (GSI_BY_ACCOUNT.1.into(), s(account_partition(account))),
            (
                GSI_BY_ACCOUNT.2.into(),
                s(session_gsi_sk(session.first_seen, &session.session_id)),
            ),
            ("expires_at".into(), expires),
        ])
    }

    /// The writes to session items for `planned`: the survivor (counted,
    /// or rewritten), the sessions it absorbs (redirects), their merge
    /// notices, and a reindex marker. `added` is the event being stored,
    /// if any (a settle merges without one).
    fn session_writes(
        &self,
        tx: &mut Transaction<'_>,
        planned: &Plan,
        live: &BTreeMap<String, SessionItem>,
        added: Option<&SessionEvent>,
    ) -> Result<(), StoreError> {
        let survivor = &planned.session;
        let id = &survivor.session_id;
        let own = live.get(id);
        let gone: Vec<&SessionItem> = planned
            .absorbed
            .iter()
            .map(|g| {
                live.get(g).ok_or_else(|| StoreError::Corrupt {
                    key: session_pk(g),
                    reason: "a merge names a session it did not read".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        let counted =
            u64::from(added.is_some()) + gone.iter().map(|g| g.session.event_count).sum::<u64>();
        let mut u = SessionUpdate::default();
        u.add.push("event_count :count");
        u.value(":count", n(counted));
        let read_last = own.map_or(i64::MIN, |o| o.session.last_seen);
        if survivor.last_seen > read_last {
            u.set.push("last_seen = :last");
            u.set.push("expires_at = :exp");
            u.value(":last", n(survivor.last_seen));
            u.value(":exp", self.expires(survivor.last_seen));
            if own.is_some() {
                // Never lower a time a concurrent event raised.
                u.conditions.push("last_seen < :last");
            }
        }
        let rewrite =
            own.is_none_or(|o| o.session.differs_beyond_counts(survivor)) || !gone.is_empty();
        match own {
            Some(_) if !rewrite => {
                u.conditions
                    .push("attribute_exists(pk) AND attribute_not_exists(merged_into)");
            }
            Some(o) => {
                u.conditions
                    .push("version = :v AND attribute_not_exists(merged_into)");
                u.value(":v", n(o.version));
                u.value(":v1", n(o.version + 1));
            }
            None => {
                u.conditions.push("attribute_not_exists(pk)");
                u.value(":v1", n(1));
            }
        }
        if rewrite {
            u.set.extend([
                "#session = :session",
                "version = :v1",
                "gsi_time_pk = :tpk",
                "gsi_principal_pk = :ppk",
                "gsi_severity_pk = :spk",
                "gsi_sk = :gsk",
                "first_seen = :first",
                "principal = :principal",
                "severity = :severity",
            ]);
            u.value(":session", s(to_json("session", survivor)?));
            u.value(":tpk", s(month_of(survivor.first_seen)));
            u.value(":ppk", s(principal_partition(&survivor.principal)));
            u.value(":spk", s(severity_partition(survivor.severity)));
            u.value(":gsk", s(session_gsi_sk(survivor.first_seen, id)));
            u.value(":first", n(survivor.first_seen));
            u.value(":principal", s(&survivor.principal));
            u.value(":severity", s(survivor.severity.as_str()));
            if !u.set.contains(&"expires_at = :exp") {
                u.set.push("expires_at = if_not_exists(expires_at, :exp)");
                u.value(":exp", self.expires(survivor.last_seen));
            }
            if own.is_none() && !u.set.contains(&"last_seen = :last") {
                u.set.push("last_seen = :last");
                u.value(":last", n(survivor.last_seen));
            }
        }
        let mut absorbed: BTreeSet<String> = own.map(|i| i.absorbed.clone()).unwrap_or_default();
        for g in &gone {
            absorbed.insert(g.session.session_id.clone());
            absorbed.extend(g.absorbed.iter().cloned());
        }
        if !gone.is_empty() {
            u.set.push("absorbed = :absorbed");
            u.value(
                ":absorbed",
                AttributeValue::Ss(absorbed.into_iter().collect()),
            );
        }
        // The survivor keeps its own root message, else inherits that of
        // the earliest absorbed session that had one.
        let inherited = match own {
            Some(o) if o.root_ts.is_some() => None,
            _ => gone
                .iter()
                .filter(|i| i.root_ts.is_some())
                .min_by_key(|i| (i.session.anchor_time, i.session.anchor_event_id.clone())),
        };
        if let Some(from) = inherited
            && let Some(ts) = &from.root_ts
        {
            u.set.push("root_ts = :root");
            u.set.push("notified_count = :notified");
            u.value(":root", s(ts));
            u.value(":notified", n(from.notified_count));
            if let Some(channel) = &from.root_channel {
                u.set.push("root_channel = :channel");
                u.value(":channel", s(channel));
            }
            if let Some(link) = &from.slack_permalink {
                u.set.push("slack_permalink = :link");
                u.value(":link", s(link));
            }
        }
        let update = u.build(tx, id)?;
        tx.update(update);
        for old in &gone {
            let gone_id = &old.session.session_id;
            let redirect = tx
                .update_builder(session_pk(gone_id), SESSION_SK)
                .update_expression(
                    "SET merged_into = :into, version = :v1 \
                     REMOVE gsi_time_pk, gsi_principal_pk, gsi_severity_pk, gsi_sk",
                )
                // The count read is the count moved: a concurrent event
                // counted here meanwhile makes the merge read again.
                .condition_expression(
                    "version = :v AND event_count = :count AND attribute_not_exists(merged_into)",
                )
                .expression_attribute_values(":into", s(id))
                .expression_attribute_values(":v", n(old.version))
                .expression_attribute_values(":v1", n(old.version + 1))
                .expression_attribute_values(":count", n(old.session.event_count))
                .build()
                .map_err(StoreError::build("TransactWriteItems Update"))?;
            tx.update(redirect);
            // An absorbed session that was announced owes its thread a
            // "continues in" notice: pending until sent, like any message.
            if old.root_ts.is_some() {
                tx.put(
                    HashMap::from([("pk".into(), s(PENDING_PK)), ("sk".into(), s(gone_id))]),
                    None,
                )?;
            }
        }
        if needs_reindex(planned) {
            let gone_ids: Vec<String> = gone.iter().map(|g| g.session.session_id.clone()).collect();
            let mut marker: Item =
                HashMap::from([("pk".into(), s(REINDEX_PK)), ("sk".into(), s(id))]);
            if !gone_ids.is_empty() {
                marker.insert("gone".into(), AttributeValue::Ss(gone_ids));
            }
            tx.put(marker, None)?;
        }
        Ok(())
    }

    /// Bring a session's account index items in line with its accounts:
    /// one per account under the live id, none under the sessions a merge
    /// absorbed. Idempotent, in batches, outside any transaction; the
    /// `REINDEX` marker goes last.
    pub async fn reindex(&self, session_id: &str) -> Result<(), StoreError> {
        let marker = self.get(REINDEX_PK, session_id).await?;
        let Some(live) = self.session(session_id).await? else {
            return self.delete(REINDEX_PK, session_id).await;
        };
        let session = &live.session;
        let expires = self.expires(session.last_seen);
        let mut requests: Vec<WriteRequest> = Vec::new();
        for account in &session.accounts {
            let put = aws_sdk_dynamodb::types::PutRequest::builder()
                .set_item(Some(self.account_item(session, account, expires.clone())))
                .build()
                .map_err(StoreError::build("BatchWriteItem Put"))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let gone: Vec<String> = marker
            .as_ref()
            .and_then(|m| m.get("gone"))
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        for old_id in gone.iter().filter(|g| *g != &session.session_id) {
            if let Some(old) = self.session_exact(old_id).await? {
                for account in &old.session.accounts {
                    let delete = aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .key("pk", s(session_pk(old_id)))
                        .key("sk", s(account_sk(account)))
                        .build()
                        .map_err(StoreError::build("BatchWriteItem Delete"))?;
                    requests.push(WriteRequest::builder().delete_request(delete).build());
                }
            }
        }
        for chunk in requests.chunks(BATCH_WRITE) {
            self.batch_write(chunk.to_vec()).await?;
        }
        if marker.is_some() {
            self.delete(REINDEX_PK, session_id).await?;
        }
        Ok(())
    }

    /// Sessions a merge left to reindex (an invocation died between its
    /// transaction and the index writes).
    pub async fn reindex_pending(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .query_all(REINDEX_PK)
            .await?
            .iter()
            .filter_map(|i| get_s(i, "sk").map(str::to_owned))
            .collect())
    }

    async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for round in 1..=MAX_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| StoreError::sdk("BatchWriteItem", e))?;
            requests = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(backoff(round)).await;
        }
        Err(StoreError::Retryable {
            operation: "BatchWriteItem",
            message: format!("{} items still unprocessed", requests.len()),
        })
    }

    pub(crate) async fn delete(&self, pk: &str, sk: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(|e| StoreError::sdk("DeleteItem", e))?;
        Ok(())
    }
}

/// Whether a plan changes which session an account belongs to beyond the
/// one event: a merge, or a new survivor that takes over earlier sessions.
fn needs_reindex(planned: &Plan) -> bool {
    !planned.absorbed.is_empty()
}

/// The item of one use of a correlation key: which event carried it,
/// when, and the session it was written under. (`cargo xtask bench` loads
/// a long history of these as the store would have written them.)
pub fn key_use_item(
    key: &str,
    time: i64,
    event_id: &str,
    session_id: &str,
    expires: AttributeValue,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".into(), s(key_pk(key))),
        ("sk".into(), s(time_sk(time, event_id))),
        ("time".into(), n(time)),
        ("event_id".into(), s(event_id)),
        ("session_id".into(), s(session_id)),
        ("expires_at".into(), expires),
    ])
}

fn key_use(key: &str, item: &Item) -> Result<KeyUse, StoreError> {
    match (
        get_n(item, "time"),
        get_s(item, "event_id"),
        get_s(item, "session_id"),
    ) {
        (Some(time), Some(event_id), Some(session_id)) => Ok(KeyUse {
            key: key.to_owned(),
            time,
            event_id: event_id.to_owned(),
            session_id: session_id.to_owned(),
        }),
        _ => Err(StoreError::Corrupt {
            key: key_pk(key),
            reason: "key use without time, event_id or session_id".into(),
        }),
    }
}
