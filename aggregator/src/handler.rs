//! One invocation: a batch of SQS messages (signals and heartbeats), or
//! the scheduled tick (coverage check, pending Slack messages).
//!
//! A message whose processing failed is reported in `batchItemFailures`,
//! so SQS retries only it, and its queue's redrive policy keeps it in the
//! dead-letter queue in the end. A Slack message that cannot be sent does
//! not fail the message: the event is stored, the session is marked
//! pending, and the tick sends it later.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use glasswatch_core::correlate::Ingest;
use glasswatch_core::coverage::{Change, Health, change, health};
use glasswatch_core::notify::{SlackState, Step, WEBHOOK_ROOT, next_step};
use glasswatch_core::record::parse_time;
use glasswatch_core::session::{SessionEvent, SessionEventError};
use glasswatch_core::signal::{
    HEARTBEAT_DETAIL_TYPE, Heartbeat, SIGNAL_DETAIL_TYPE, SIGNAL_SOURCE, Signal,
};
use glasswatch_core::slack::{
    CoverageProblem, RenderContext, SpoofedSignal, coverage_alert, coverage_recovered,
    session_merged, spoofed_signal,
};
use glasswatch_core::verify::{Verdict, verify};
use glasswatch_core::{Record, RecordError};
use serde_json::Value;

use crate::accounts::{Accounts, AccountsError};
use crate::config::AggregatorConfig;
use crate::slack::{SlackClient, SlackError};
use crate::store::{Evidence, Store, StoreError};

/// A root-message claim older than this is presumed dead.
const CLAIM_STALE_SECS: i64 = 120;

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// The message can never be processed: retries lead to the DLQ, where
    /// it is kept as evidence.
    #[error("bad message: {0}")]
    BadMessage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    #[error("slack: {0}")]
    Slack(#[from] SlackError),
}

impl AggregatorError {
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::BadMessage(_))
    }
}

impl From<AggregatorError> for lambda_runtime::Diagnostic {
    fn from(e: AggregatorError) -> Self {
        let error_type = if e.retryable() {
            "Retryable"
        } else {
            "BadInput"
        };
        Self {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

impl From<RecordError> for AggregatorError {
    fn from(e: RecordError) -> Self {
        Self::BadMessage(format!("signal record: {e}"))
    }
}

impl From<SessionEventError> for AggregatorError {
    fn from(e: SessionEventError) -> Self {
        Self::BadMessage(format!("signal detections: {e}"))
    }
}

/// What one message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Processed {
    Event {
        ingest: Ingest,
        event: Box<SessionEvent>,
    },
    Untrusted {
        verdict: Verdict,
        event_id: String,
    },
    Heartbeat {
        account: String,
        region: String,
    },
}

/// The aggregator with its clients, built once per container.
#[derive(Debug)]
pub struct Aggregator {
    pub config: AggregatorConfig,
    pub store: Store,
    pub slack: SlackClient,
    pub accounts: Accounts,
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

impl Aggregator {
    /// Build the AWS clients once, from one SDK configuration.
    pub fn new(config: AggregatorConfig, aws: &aws_config::SdkConfig, slack: SlackClient) -> Self {
        let store = Store::new(
            aws_sdk_dynamodb::Client::new(aws),
            config.table.clone(),
            config.quiet_secs,
            config.retention_days,
        );
        let accounts = Accounts::new(aws_sdk_organizations::Client::new(aws), config.accounts_ttl);
        Self {
            config,
            store,
            slack,
            accounts,
        }
    }

    /// One Lambda invocation: an SQS batch (answered with its
    /// `batchItemFailures`), or the scheduled tick.
    pub async fn invoke(
        &self,
        payload: &Value,
        deadline: Instant,
    ) -> Result<Value, AggregatorError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if payload.get("Records").is_some() {
            let batch: SqsEvent = serde_json::from_value(payload.clone())
                .map_err(|e| AggregatorError::BadMessage(format!("SQS event: {e}")))?;
            let response = self.handle_batch(&batch, now, deadline).await;
            return serde_json::to_value(response)
                .map_err(|e| AggregatorError::BadMessage(format!("batch response: {e}")));
        }
        if str_field(payload, "detail-type") == Some("Scheduled Event") {
            let report = self.tick(now, deadline).await?;
            return Ok(serde_json::json!({
                "coverage_alerts": report.coverage_alerts,
                "pending_retried": report.pending_retried,
            }));
        }
        Err(AggregatorError::BadMessage(
            "neither an SQS batch nor a scheduled event".to_owned(),
        ))
    }

    async fn context(&self, must_have: &[&str]) -> Result<RenderContext, AggregatorError> {
        let mut ctx = RenderContext::new(self.config.slack_mode, &self.config.slack_channel);
        ctx.account_names = self.accounts.names(must_have).await?;
        Ok(ctx)
    }

    /// Process one SQS message body: an EventBridge envelope.
    pub async fn process(
        &self,
        body: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<Processed, AggregatorError> {
        let envelope: Value = serde_json::from_str(body)
            .map_err(|e| AggregatorError::BadMessage(format!("not JSON: {e}")))?;
        if str_field(&envelope, "source") != Some(SIGNAL_SOURCE) {
            return Err(AggregatorError::BadMessage(format!(
                "source is {:?}, not {SIGNAL_SOURCE}",
                str_field(&envelope, "source")
            )));
        }
        let sender = str_field(&envelope, "account");
        let detail = envelope.get("detail").cloned().unwrap_or(Value::Null);
        match str_field(&envelope, "detail-type") {
            Some(SIGNAL_DETAIL_TYPE) => {
                let signal: Signal = serde_json::from_value(detail)
                    .map_err(|e| AggregatorError::BadMessage(format!("signal: {e}")))?;
                self.signal(&signal, sender, now, deadline).await
            }
            Some(HEARTBEAT_DETAIL_TYPE) => {
                let heartbeat: Heartbeat = serde_json::from_value(detail)
                    .map_err(|e| AggregatorError::BadMessage(format!("heartbeat: {e}")))?;
                if sender.is_some_and(|s| s != heartbeat.account) {
                    return Err(AggregatorError::BadMessage(format!(
                        "heartbeat for account {} sent by account {}",
                        heartbeat.account,
                        sender.unwrap_or_default()
                    )));
                }
                let at = parse_time(&heartbeat.sent_at).unwrap_or(now).min(now);
                self.store
                    .record_heartbeat(
                        &heartbeat.account,
                        &heartbeat.region,
                        heartbeat.trail,
                        &heartbeat.agent_version,
                        at,
                    )
                    .await?;
                Ok(Processed::Heartbeat {
                    account: heartbeat.account,
                    region: heartbeat.region,
                })
            }
            other => Err(AggregatorError::BadMessage(format!(
                "unknown detail-type {other:?}"
            ))),
        }
    }

    async fn signal(
        &self,
        signal: &Signal,
        sender: Option<&str>,
        now: i64,
        deadline: Instant,
    ) -> Result<Processed, AggregatorError> {
        let record = Record::from_value(&signal.record)?;
        let mut must_have = vec![record.account.as_str()];
        must_have.extend(sender);
        let names = self.accounts.names(&must_have).await?;
        let verdict = verify(sender, &record.account, |a| names.contains_key(a));
        let signal_json = serde_json::to_string(signal).unwrap_or_default();
        let evidence = Evidence {
            verdict: &verdict,
            sender,
            signal_json: &signal_json,
        };
        if !verdict.trusted() {
            if self
                .store
                .record_untrusted(&record.event_id, &evidence, now)
                .await?
            {
                let ctx = self.context(&[]).await?;
                let alert = spoofed_signal(
                    &ctx,
                    &SpoofedSignal {
                        sender: sender.map(str::to_owned),
                        claimed_account: record.account.clone(),
                        event_id: record.event_id.clone(),
                        event_name: record.event_name.clone(),
                        region: record.region.clone(),
                        received_at: now,
                    },
                );
                if let Err(e) = self.slack.send(&alert, deadline).await {
                    // Alert again on the retry rather than never.
                    self.store.forget_untrusted(&record.event_id).await?;
                    return Err(e.into());
                }
            }
            return Ok(Processed::Untrusted {
                verdict,
                event_id: record.event_id,
            });
        }
        // The detections must be about this record: a forged signal
        // cannot pin events on another account or event.
        if let Some(d) = signal
            .detections
            .iter()
            .find(|d| d.event_id != record.event_id || d.account != record.account)
        {
            return Err(AggregatorError::BadMessage(format!(
                "detection for event {} in account {} does not match record {} in account {}",
                d.event_id, d.account, record.event_id, record.account
            )));
        }
        let event = SessionEvent::from_detections(&signal.detections)?;
        let ingest = self.store.ingest(&event, &evidence).await?;
        Ok(Processed::Event {
            ingest,
            event: Box::new(event),
        })
    }

    /// A batch from SQS: every message is processed, failures are
    /// reported one by one, then each touched session is announced.
    pub async fn handle_batch(
        &self,
        batch: &SqsEvent,
        now: i64,
        deadline: Instant,
    ) -> SqsBatchResponse {
        let mut failures = Vec::new();
        let mut touched: BTreeMap<String, (Vec<SessionEvent>, Vec<String>)> = BTreeMap::new();
        let mut absorbed: Vec<String> = Vec::new();
        for message in &batch.records {
            let id = message.message_id.clone().unwrap_or_default();
            let Some(body) = message.body.as_deref() else {
                tracing::error!(message_id = %id, "message without a body");
                failures.push(id);
                continue;
            };
            match self.process(body, now, deadline).await {
                Ok(Processed::Event { ingest, event }) => {
                    if let Ingest::Stored { absorbed: gone, .. } = &ingest {
                        absorbed.extend(gone.iter().cloned());
                    }
                    let entry = touched.entry(ingest.session_id().to_owned()).or_default();
                    entry.0.push(*event);
                    entry.1.push(id);
                }
                Ok(other) => tracing::debug!(message_id = %id, outcome = ?other, "processed"),
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, retryable = e.retryable(), "message failed");
                    failures.push(id);
                }
            }
        }
        for gone in &absorbed {
            if let Err(e) = self.announce_merge(gone, deadline).await {
                tracing::warn!(session_id = %gone, error = %e, "merge notice not sent; pending for the tick");
            }
        }
        for (session_id, (events, messages)) in &touched {
            // A session merged later in the batch is announced under the
            // survivor, which the store resolves.
            if let Err(e) = self.notify(session_id, events, now, deadline, false).await {
                tracing::error!(session_id = %session_id, error = %e, "could not record Slack state");
                failures.extend(messages.iter().cloned());
            }
        }
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures
            .into_iter()
            .map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                f
            })
            .collect();
        response
    }

    /// Tell an announced session's thread that it continues in the
    /// session it was merged into, then clear its pending mark (which the
    /// merge wrote). Nothing to say for a session never announced.
    async fn announce_merge(&self, gone: &str, deadline: Instant) -> Result<(), AggregatorError> {
        let Some(old) = self.store.session_exact(gone).await? else {
            return Ok(());
        };
        if let Some(ts) = old.root_ts.as_deref()
            && let Some(survivor) = self.store.session(gone).await?
        {
            let ctx = self.context(&[]).await?;
            let thread = (ts != WEBHOOK_ROOT).then_some(ts);
            let notice = session_merged(&ctx, &old.session, &survivor.session, thread);
            self.slack.send(&notice, deadline).await?;
        }
        self.store.set_pending(gone, false).await?;
        Ok(())
    }

    /// Make Slack show a session ([`next_step`]): claim and post its root
    /// message once, then coalesced digests in its thread and an updated
    /// root. A Slack failure leaves the session pending; only a failure to
    /// record that is an error.
    pub async fn notify(
        &self,
        session_id: &str,
        new_events: &[SessionEvent],
        now: i64,
        deadline: Instant,
        flush: bool,
    ) -> Result<(), AggregatorError> {
        let Some(item) = self.store.session(session_id).await? else {
            return Ok(());
        };
        let session = &item.session;
        let id = &session.session_id;
        let accounts: Vec<&str> = session.accounts.iter().map(String::as_str).collect();
        let ctx = self.context(&accounts).await?;
        let state = SlackState {
            root_ts: item.root_ts.clone(),
            notified_count: item.notified_count,
            digest_sent_at: item.digest_sent_at,
        };
        let mut step = next_step(&ctx, session, &state, new_events, now, flush);
        // A digest also lists the events deferred since the last one.
        let mut events = new_events.to_vec();
        if matches!(step, Step::Follow(_)) {
            let deferred = self.store.deferred_events(id).await?;
            if !deferred.is_empty() {
                events.extend(deferred);
                step = next_step(&ctx, session, &state, &events, now, flush);
            }
        }
        let event_ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        match step {
            // Up to date; a tick clears a pending mark left behind.
            Step::Nothing if flush => Ok(self.store.set_pending(id, false).await?),
            Step::Nothing => Ok(()),
            Step::Defer => Ok(self.store.defer_events(id, &event_ids).await?),
            Step::Root(request) => {
                let claimant = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
                if !self
                    .store
                    .claim_root(id, &claimant, now, now - CLAIM_STALE_SECS)
                    .await?
                {
                    // Another invocation is posting it, and may not cover
                    // these events (or may die): the tick looks again.
                    return Ok(self.store.set_pending(id, true).await?);
                }
                match self.slack.send(&request, deadline).await {
                    Ok(sent) => {
                        let ts = sent.ts.clone().unwrap_or_else(|| WEBHOOK_ROOT.to_owned());
                        self.record_root(id, &ts, session.event_count, now, deadline)
                            .await?;
                        if let (Some(channel), Some(ts)) = (&sent.channel, &sent.ts) {
                            self.record_link(id, channel, ts, deadline).await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(session_id = %id, error = %e, "root message not sent; pending");
                        self.store.release_root(id, &claimant).await?;
                        self.store.set_pending(id, true).await?;
                    }
                }
                Ok(())
            }
            Step::Follow(requests) => {
                for request in &requests {
                    if let Err(e) = self.slack.send(request, deadline).await {
                        tracing::warn!(session_id = %id, error = %e, "digest not sent; pending");
                        self.store.defer_events(id, &event_ids).await?;
                        return Ok(());
                    }
                }
                let root = state.root_ts.as_deref().unwrap_or(WEBHOOK_ROOT);
                self.store
                    .record_notified(id, root, session.event_count, Some(now))
                    .await?;
                Ok(())
            }
        }
    }

    /// Keep where a root message is, for `audit sessions`: its channel and
    /// permalink. The alert is out already, so a link Slack did not give
    /// is logged and left out; the channel and `ts` still locate it.
    async fn record_link(
        &self,
        session_id: &str,
        channel: &str,
        ts: &str,
        deadline: Instant,
    ) -> Result<(), AggregatorError> {
        let link = match self.slack.permalink(channel, ts, deadline).await {
            Ok(link) => Some(link),
            Err(e) => {
                tracing::warn!(session_id = %session_id, error = %e, "no permalink for the root message");
                None
            }
        };
        Ok(self
            .store
            .record_root_link(session_id, channel, link.as_deref())
            .await?)
    }

    /// Record a posted root message's `ts`, trying again while the
    /// deadline allows: Slack shows the message now, and a `ts` that is
    /// not recorded gets the session a second root message later.
    async fn record_root(
        &self,
        id: &str,
        ts: &str,
        covered: u64,
        now: i64,
        deadline: Instant,
    ) -> Result<(), AggregatorError> {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.store.record_notified(id, ts, covered, Some(now)).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() + wait + Duration::from_secs(2) < deadline => {
                    tracing::warn!(session_id = %id, error = %e, "root message sent but not recorded; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The scheduled tick: coverage alerts, then pending Slack messages.
    pub async fn tick(&self, now: i64, deadline: Instant) -> Result<TickReport, AggregatorError> {
        let mut report = TickReport::default();
        let coverage = self.store.coverage().await?;
        let ctx = self.context(&[]).await?;
        for c in &coverage {
            let now_health = health(c, now, self.config.heartbeat_secs);
            let Some(what) = change(c.alerted, now_health) else {
                continue;
            };
            let request = match what {
                Change::Recovered => coverage_recovered(&ctx, &c.account, &c.region, now),
                Change::Unhealthy(Health::Silent) => coverage_alert(
                    &ctx,
                    &c.account,
                    &c.region,
                    &CoverageProblem::MissedHeartbeats {
                        last_heartbeat: c.last_heartbeat,
                        intervals: glasswatch_core::coverage::MISSED_INTERVALS,
                    },
                ),
                Change::Unhealthy(_) => coverage_alert(
                    &ctx,
                    &c.account,
                    &c.region,
                    &CoverageProblem::TrailNotLogging {
                        last_heartbeat: c.last_heartbeat,
                    },
                ),
            };
            self.slack.send(&request, deadline).await?;
            self.store
                .set_alerted(&c.account, &c.region, now_health)
                .await?;
            report.coverage_alerts += 1;
        }
        for id in self.store.pending().await? {
            if deadline.saturating_duration_since(Instant::now()) < Duration::from_secs(2) {
                break;
            }
            let merged = self
                .store
                .session_exact(&id)
                .await?
                .is_some_and(|item| item.merged_into.is_some());
            if merged {
                self.announce_merge(&id, deadline).await?;
            } else {
                self.notify(&id, &[], now, deadline, true).await?;
            }
            report.pending_retried += 1;
        }
        Ok(report)
    }
}

/// What a tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub coverage_alerts: usize,
    pub pending_retried: usize,
}
