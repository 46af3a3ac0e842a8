//! One invocation: a batch of SQS messages, or the scheduled tick
//! (coverage check, pending Slack messages, unfinished merges).
//!
//! Two queues feed it: the priority queue (signals that may start a
//! session or alert on their own, heartbeats, tamper events, alarms) and
//! the activity queue (the rest of a session's calls), so that a busy
//! session never delays another account's alert. Either carries:
//! - agent signals and heartbeats (`glasswatch.agent`);
//! - CloudTrail events that the agents' tamper rules send to the central
//!   bus themselves, with no agent in the path (`aws.*`), so that
//!   disabling or rewriting the agent cannot hide its own tampering:
//!   they are classified here, with the same core code and watch list;
//! - CloudWatch alarm notifications from SNS (Glasswatch's own alarms).
//!
//! A message whose processing failed is reported in `batchItemFailures`,
//! so SQS retries only it, and its queue's redrive policy keeps it in the
//! dead-letter queue in the end. A Slack message that cannot be sent does
//! not fail the message: the event is stored, the session is marked
//! pending, and the tick sends it later.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use glasswatch_core::correlate::Ingest;
use glasswatch_core::coverage::{Change, Coverage, Health, MISSED_INTERVALS, change, health};
use glasswatch_core::detect::correlation_keys;
use glasswatch_core::notify::{SlackState, Step, WEBHOOK_ROOT, next_step};
use glasswatch_core::record::parse_time;
use glasswatch_core::session::{Recovered, SessionEvent, SessionEventError};
use glasswatch_core::signal::{
    ACTIVITY_DETAIL_TYPE, HEARTBEAT_DETAIL_TYPE, Heartbeat, SIGNAL_DETAIL_TYPE, SIGNAL_SOURCE,
    Signal,
};
use glasswatch_core::slack::{
    AlarmNotice, CoverageProblem, Misplaced, RenderContext, SpoofedSignal, alarm_alert,
    coverage_alert, coverage_recovered, session_merged, spoofed_signal,
};
use glasswatch_core::verify::{Verdict, verify};
use glasswatch_core::{Detection, Record, RecordError, classify};
use serde_json::Value;

use crate::accounts::{AccountList, Accounts};
use crate::config::AggregatorConfig;
use crate::notifier::Slack;
use crate::slack::SlackError;
use crate::store::coverage::{Beat, SpoofAlert};
use crate::store::{Evidence, Store, StoreError};

/// The sessions a batch touched: their new events, and the messages that
/// brought them.
pub(crate) type Touched = BTreeMap<String, (Vec<SessionEvent>, Vec<String>)>;

/// A root-message claim older than this is presumed dead.
const CLAIM_STALE_SECS: i64 = 120;

/// One spoofing alert per sender per this many seconds.
pub const SPOOF_ALERT_WINDOW_SECS: i64 = 600;

/// The detail-type of CloudTrail API calls on EventBridge.
const API_CALL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// The message can never be processed: retries lead to the DLQ, where
    /// it is kept as evidence.
    #[error("bad message: {0}")]
    BadMessage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("slack: {0}")]
    Slack(#[from] SlackError),
    /// Some items of a tick failed; the others were done.
    #[error("tick: {failed} of {total} items failed; first: {first}")]
    Tick {
        failed: usize,
        total: usize,
        first: String,
    },
}

impl AggregatorError {
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::BadMessage(_))
    }
}

impl From<AggregatorError> for lambda_runtime::Diagnostic {
    fn from(e: AggregatorError) -> Self {
        crate::diagnostic(e.retryable(), e.to_string())
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
        /// Every session merged away by this event (its plan, and the
        /// settling after it).
        absorbed: Vec<String>,
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
    /// A CloudTrail event from a tamper rule that flags nothing here.
    Ignored {
        event_id: String,
    },
    Alarm {
        name: String,
    },
}

/// Where a record to admit came from.
#[derive(Debug)]
pub(crate) struct Origin<'a> {
    /// The envelope's `account` (fast path), or the log file's account.
    pub sender: Option<&'a str>,
    /// The evidence kept with it (JSON).
    pub signal_json: &'a str,
    /// Set for a record read from the trail's log files.
    pub recovered: Option<Recovered>,
    /// Set (to a [`Verdict::Misplaced`]) for a record in another account's
    /// or region's log file: the verdict, without asking `verify`.
    pub misplaced: Option<Verdict>,
}

impl<'a> Origin<'a> {
    fn fast(sender: Option<&'a str>, signal_json: &'a str) -> Self {
        Self {
            sender,
            signal_json,
            recovered: None,
            misplaced: None,
        }
    }
}

/// The aggregator with its clients, built once per container.
#[derive(Debug)]
pub struct Aggregator {
    pub config: AggregatorConfig,
    pub store: Store,
    pub slack: Slack,
    pub accounts: Accounts,
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

impl Aggregator {
    /// Build the AWS clients once, from one SDK configuration.
    pub fn new(
        config: AggregatorConfig,
        aws: &aws_config::SdkConfig,
        slack: impl Into<Slack>,
    ) -> Self {
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
            slack: slack.into(),
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

    /// The organization's accounts, whatever Organizations does.
    async fn account_list(
        &self,
        must_have: &[&str],
        now: i64,
    ) -> Result<AccountList, AggregatorError> {
        Ok(self.accounts.list(must_have, &self.store, now).await?)
    }

    pub(crate) async fn context(
        &self,
        must_have: &[&str],
        now: i64,
    ) -> Result<RenderContext, AggregatorError> {
        let mut ctx = RenderContext::new(self.config.slack_mode, &self.config.slack_channel);
        ctx.account_names = self.account_list(must_have, now).await?.names;
        Ok(ctx)
    }

    /// Process one SQS message body.
    pub async fn process(
        &self,
        body: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<Processed, AggregatorError> {
        let envelope: Value = serde_json::from_str(body)
            .map_err(|e| AggregatorError::BadMessage(format!("not JSON: {e}")))?;
        if str_field(&envelope, "Type") == Some("Notification") {
            return self.alarm(&envelope, now, deadline).await;
        }
        let sender = str_field(&envelope, "account");
        let source = str_field(&envelope, "source").unwrap_or_default();
        if source.starts_with("aws.")
            && str_field(&envelope, "detail-type") == Some(API_CALL_DETAIL_TYPE)
        {
            return self.direct(&envelope, sender, now, deadline).await;
        }
        if source != SIGNAL_SOURCE {
            return Err(AggregatorError::BadMessage(format!(
                "source is {:?}, neither {SIGNAL_SOURCE} nor a CloudTrail API call",
                str_field(&envelope, "source")
            )));
        }
        let detail = envelope.get("detail").cloned().unwrap_or(Value::Null);
        match str_field(&envelope, "detail-type") {
            Some(SIGNAL_DETAIL_TYPE | ACTIVITY_DETAIL_TYPE) => {
                let signal: Signal = serde_json::from_value(detail)
                    .map_err(|e| AggregatorError::BadMessage(format!("signal: {e}")))?;
                self.signal(&signal, sender, now, deadline).await
            }
            Some(HEARTBEAT_DETAIL_TYPE) => {
                let heartbeat: Heartbeat = serde_json::from_value(detail)
                    .map_err(|e| AggregatorError::BadMessage(format!("heartbeat: {e}")))?;
                self.heartbeat(heartbeat, sender, now).await
            }
            other => Err(AggregatorError::BadMessage(format!(
                "unknown detail-type {other:?}"
            ))),
        }
    }

    /// A heartbeat counts only from the account it is about, and only for
    /// a region deploy targets.
    async fn heartbeat(
        &self,
        heartbeat: Heartbeat,
        sender: Option<&str>,
        now: i64,
    ) -> Result<Processed, AggregatorError> {
        match sender {
            Some(s) if s == heartbeat.account => {}
            Some(s) => {
                return Err(AggregatorError::BadMessage(format!(
                    "heartbeat for account {} sent by account {s}",
                    heartbeat.account
                )));
            }
            None => {
                return Err(AggregatorError::BadMessage(format!(
                    "heartbeat for account {} without a sender (the envelope has no account)",
                    heartbeat.account
                )));
            }
        }
        if !self.config.regions.is_empty() && !self.config.regions.contains(&heartbeat.region) {
            return Err(AggregatorError::BadMessage(format!(
                "heartbeat for region {}, which deploy does not target ({})",
                heartbeat.region,
                self.config.regions.join(", ")
            )));
        }
        let at = parse_time(&heartbeat.sent_at).unwrap_or(now).min(now);
        self.store
            .record_heartbeat(&Beat {
                account: &heartbeat.account,
                region: &heartbeat.region,
                trail: heartbeat.trail,
                agent_version: &heartbeat.agent_version,
                dead_letters: heartbeat.dead_letters,
                at,
            })
            .await?;
        Ok(Processed::Heartbeat {
            account: heartbeat.account,
            region: heartbeat.region,
        })
    }

    /// A CloudTrail event a tamper rule sent to the central bus directly:
    /// classified here, with the aggregator's own watch list.
    async fn direct(
        &self,
        envelope: &Value,
        sender: Option<&str>,
        now: i64,
        deadline: Instant,
    ) -> Result<Processed, AggregatorError> {
        let record = Record::from_value(envelope)?;
        let detections = classify(&self.config.watch, &record);
        if detections.is_empty() {
            return Ok(Processed::Ignored {
                event_id: record.event_id,
            });
        }
        let evidence = serde_json::to_string(envelope)
            .map_err(|e| AggregatorError::BadMessage(format!("event: {e}")))?;
        self.admit(
            &record,
            &detections,
            Origin::fast(sender, &evidence),
            now,
            deadline,
        )
        .await
    }

    async fn signal(
        &self,
        signal: &Signal,
        sender: Option<&str>,
        now: i64,
        deadline: Instant,
    ) -> Result<Processed, AggregatorError> {
        let record = Record::from_value(&signal.record)?;
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
        let evidence = serde_json::to_string(signal)
            .map_err(|e| AggregatorError::BadMessage(format!("signal: {e}")))?;
        self.admit(
            &record,
            &signal.detections,
            Origin::fast(sender, &evidence),
            now,
            deadline,
        )
        .await
    }

    /// The trust check, then the store: an untrusted record is kept as
    /// evidence and alerted (at a bounded rate per sender); a trusted one
    /// joins its session. Correlation keys are recomputed from the record,
    /// never taken from the message, so a forged message cannot claim
    /// another session's keys.
    pub(crate) async fn admit(
        &self,
        record: &Record,
        detections: &[Detection],
        from: Origin<'_>,
        now: i64,
        deadline: Instant,
    ) -> Result<Processed, AggregatorError> {
        let Origin {
            sender,
            signal_json,
            recovered,
            misplaced,
        } = from;
        let mut must_have = vec![record.account.as_str()];
        must_have.extend(sender);
        let accounts = self.account_list(&must_have, now).await?;
        // With no account list at all, membership rests on the central
        // bus's organization-only policy.
        let verdict = match misplaced {
            Some(verdict) => verdict,
            None => verify(sender, &record.account, |a| {
                accounts.member(a).unwrap_or(true)
            }),
        };
        let evidence = Evidence {
            verdict: &verdict,
            sender,
            signal_json,
        };
        if !verdict.trusted() {
            self.untrusted(record, &evidence, &accounts, now, deadline)
                .await?;
            return Ok(Processed::Untrusted {
                verdict,
                event_id: record.event_id.clone(),
            });
        }
        let mut event = SessionEvent::from_detections(detections)?;
        event.recovered = recovered;
        event.keys = correlation_keys(record)
            .iter()
            .map(ToString::to_string)
            .collect();
        let ingested = self.store.ingest(&event, &evidence).await?;
        Ok(Processed::Event {
            absorbed: ingested.absorbed().cloned().collect(),
            ingest: ingested.ingest,
            event: Box::new(event),
        })
    }

    async fn untrusted(
        &self,
        record: &Record,
        evidence: &Evidence<'_>,
        accounts: &AccountList,
        now: i64,
        deadline: Instant,
    ) -> Result<(), AggregatorError> {
        if !self
            .store
            .record_untrusted(&record.event_id, evidence, now)
            .await?
        {
            return Ok(());
        }
        let who = evidence.sender.unwrap_or("no-sender");
        let SpoofAlert::Send { suppressed } = self
            .store
            .spoof_alert(who, now, SPOOF_ALERT_WINDOW_SECS)
            .await?
        else {
            tracing::warn!(sender = %who, event_id = %record.event_id, "untrusted signal stored; alert held back (rate limit)");
            return Ok(());
        };
        let mut ctx = RenderContext::new(self.config.slack_mode, &self.config.slack_channel);
        ctx.account_names = accounts.names.clone();
        let alert = spoofed_signal(
            &ctx,
            &SpoofedSignal {
                sender: evidence.sender.map(str::to_owned),
                claimed_account: record.account.clone(),
                event_id: record.event_id.clone(),
                event_name: record.event_name.clone(),
                region: record.region.clone(),
                received_at: now,
                held_back: suppressed,
                misplaced: match evidence.verdict {
                    Verdict::Misplaced {
                        log_file,
                        file_account,
                        file_region,
                    } => Some(Misplaced {
                        log_file: log_file.clone(),
                        file_account: file_account.clone(),
                        file_region: file_region.clone(),
                    }),
                    _ => None,
                },
            },
        );
        if let Err(e) = self.slack.send(&alert, deadline).await {
            // Alert again on the retry rather than never.
            self.store.forget_untrusted(&record.event_id).await?;
            self.store.release_spoof_alert(who).await?;
            return Err(e.into());
        }
        Ok(())
    }

    /// A CloudWatch alarm notification (SNS, through the queue): posted
    /// once per notification.
    async fn alarm(
        &self,
        notification: &Value,
        now: i64,
        deadline: Instant,
    ) -> Result<Processed, AggregatorError> {
        let bad = |what: &str| AggregatorError::BadMessage(format!("SNS notification: {what}"));
        let id = str_field(notification, "MessageId").ok_or_else(|| bad("no MessageId"))?;
        let message: Value = serde_json::from_str(
            str_field(notification, "Message").ok_or_else(|| bad("no Message"))?,
        )
        .map_err(|e| bad(&format!("Message is not an alarm's JSON: {e}")))?;
        let field = |name: &str| str_field(&message, name).unwrap_or_default().to_owned();
        let notice = AlarmNotice {
            name: str_field(&message, "AlarmName")
                .ok_or_else(|| bad("Message has no AlarmName"))?
                .to_owned(),
            state: field("NewStateValue"),
            reason: field("NewStateReason"),
            description: field("AlarmDescription"),
            account: field("AWSAccountId"),
            region: field("Region"),
        };
        if !matches!(notice.state.as_str(), "ALARM" | "OK")
            || !self.store.first_notice(id, now).await?
        {
            return Ok(Processed::Alarm { name: notice.name });
        }
        let ctx = self.context(&[], now).await?;
        if let Err(e) = self.slack.send(&alarm_alert(&ctx, &notice), deadline).await {
            self.store.forget_notice(id).await?;
            return Err(e.into());
        }
        Ok(Processed::Alarm { name: notice.name })
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
        let mut touched = Touched::new();
        let mut absorbed: BTreeSet<String> = BTreeSet::new();
        for message in &batch.records {
            let id = message.message_id.clone().unwrap_or_default();
            let Some(body) = message.body.as_deref() else {
                tracing::error!(message_id = %id, "message without a body");
                failures.push(id);
                continue;
            };
            match self.process(body, now, deadline).await {
                Ok(Processed::Event {
                    ingest,
                    absorbed: gone,
                    event,
                }) => {
                    absorbed.extend(gone);
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
        failures.extend(self.announce(&touched, &absorbed, now, deadline).await);
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

    /// After a batch: the merge notices, then each touched session shown
    /// in Slack. Returns the messages (the second of each `touched` entry)
    /// whose session's Slack state could not be recorded.
    pub(crate) async fn announce(
        &self,
        touched: &Touched,
        absorbed: &BTreeSet<String>,
        now: i64,
        deadline: Instant,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        for gone in absorbed {
            if let Err(e) = self.announce_merge(gone, now, deadline).await {
                tracing::warn!(session_id = %gone, error = %e, "merge notice not sent; pending for the tick");
            }
        }
        for (session_id, (events, messages)) in touched {
            // A session merged later in the batch is announced under the
            // survivor, which the store resolves.
            if let Err(e) = self.notify(session_id, events, now, deadline, false).await {
                tracing::error!(session_id = %session_id, error = %e, "could not record Slack state");
                failures.extend(messages.iter().cloned());
            }
        }
        failures
    }

    /// Tell an announced session's thread that it continues in the
    /// session it was merged into, then clear its pending mark (which the
    /// merge wrote). Nothing to say for a session never announced.
    async fn announce_merge(
        &self,
        gone: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<(), AggregatorError> {
        let Some(old) = self.store.session_exact(gone).await? else {
            return Ok(());
        };
        if let Some(ts) = old.root_ts.as_deref()
            && let Some(survivor) = self.store.session(gone).await?
        {
            let ctx = self.context(&[], now).await?;
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
        let ctx = self.context(&accounts, now).await?;
        let state = SlackState {
            root_ts: item.root_ts.clone(),
            root_channel: item.root_channel.clone(),
            notified_count: item.notified_count,
            digest_sent_at: item.digest_sent_at,
            root_stale: item.root_stale,
        };
        let mut step = next_step(&ctx, session, &state, new_events, now, flush);
        // A digest also lists the events deferred since the last one.
        let mut events = new_events.to_vec();
        if matches!(step, Step::Follow { .. }) && session.event_count > state.notified_count {
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
            Step::Follow { digest, update } => {
                let root = state.root_ts.as_deref().unwrap_or(WEBHOOK_ROOT);
                if let Some(digest) = digest {
                    if let Err(e) = self.slack.send(&digest, deadline).await {
                        tracing::warn!(session_id = %id, error = %e, "digest not sent; pending");
                        self.store.defer_events(id, &event_ids).await?;
                        return Ok(());
                    }
                    // Recorded before the update: whatever happens to the
                    // update, this digest is never posted again.
                    self.store
                        .record_notified(id, root, session.event_count, Some(now))
                        .await?;
                }
                if let Some(update) = update {
                    match self.slack.send(&update, deadline).await {
                        Ok(_) if item.root_stale => self.store.set_root_stale(id, false).await?,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(session_id = %id, error = %e, "root update not sent; the tick retries it");
                            self.store.set_root_stale(id, true).await?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Keep where a root message is, for `audit sessions` and for
    /// `chat.update`: its channel id and permalink. The alert is out
    /// already, so a link Slack did not give is logged and left out; the
    /// channel and `ts` still locate it.
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

    /// The scheduled tick: every targeted account × region expected,
    /// coverage alerts, unfinished merges, then pending Slack messages.
    /// Each item is handled on its own: one that fails is logged and
    /// counted, the rest go on, and the tick fails at the end (so its
    /// retries and alarm see it) only after doing all it could.
    pub async fn tick(&self, now: i64, deadline: Instant) -> Result<TickReport, AggregatorError> {
        let mut report = TickReport::default();
        let mut failures: Vec<String> = Vec::new();
        let mut total = 0usize;
        let mut fail = |what: String, e: AggregatorError| {
            tracing::error!(item = %what, error = %e, "tick item failed");
            failures.push(format!("{what}: {e}"));
        };
        if let Err(e) = self.expect_targets(now).await {
            fail("expected coverage".into(), e);
        }
        match self.store.coverage().await {
            Err(e) => fail("coverage".into(), e.into()),
            Ok(coverage) => {
                for c in &coverage {
                    total += 1;
                    match self.coverage_cell(c, now, deadline).await {
                        Ok(true) => report.coverage_alerts += 1,
                        Ok(false) => {}
                        Err(e) => fail(format!("coverage {}#{}", c.account, c.region), e),
                    }
                }
            }
        }
        match self.store.reindex_pending().await {
            Err(e) => fail("reindex".into(), e.into()),
            Ok(ids) => {
                for id in ids {
                    total += 1;
                    if let Err(e) = self.store.reindex(&id).await {
                        fail(format!("reindex {id}"), e.into());
                    }
                }
            }
        }
        match self.store.pending().await {
            Err(e) => fail("pending".into(), e.into()),
            Ok(ids) => {
                for id in ids {
                    if deadline.saturating_duration_since(Instant::now()) < Duration::from_secs(2) {
                        break;
                    }
                    total += 1;
                    match self.retry_pending(&id, now, deadline).await {
                        Ok(()) => report.pending_retried += 1,
                        Err(e) => fail(format!("pending {id}"), e),
                    }
                }
            }
        }
        match failures.first() {
            None => Ok(report),
            Some(first) => Err(AggregatorError::Tick {
                failed: failures.len(),
                total: total.max(failures.len()),
                first: first.clone(),
            }),
        }
    }

    async fn retry_pending(
        &self,
        id: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<(), AggregatorError> {
        let merged = self
            .store
            .session_exact(id)
            .await?
            .is_some_and(|item| item.merged_into.is_some());
        if merged {
            self.announce_merge(id, now, deadline).await
        } else {
            self.notify(id, &[], now, deadline, true).await
        }
    }

    /// Expect a heartbeat from every account × region deploy targeted (and,
    /// when it targets the whole organization, from every active account),
    /// so that a cell whose agent never came up alerts too.
    async fn expect_targets(&self, now: i64) -> Result<(), AggregatorError> {
        let targets = self.store.targets().await?.unwrap_or_default();
        let regions: BTreeSet<&String> =
            targets.regions.iter().chain(&self.config.regions).collect();
        let mut accounts: BTreeSet<String> = targets.accounts.iter().cloned().collect();
        if targets.whole_organization {
            let list = self.account_list(&[], now).await?;
            accounts.extend(list.active);
        }
        let known: BTreeSet<(String, String)> = self
            .store
            .coverage()
            .await?
            .into_iter()
            .map(|c| (c.account, c.region))
            .collect();
        for account in &accounts {
            for region in &regions {
                if !known.contains(&(account.clone(), (*region).clone())) {
                    self.store.expect(account, region, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Alert on one account × region when its health changed. `Ok(true)`
    /// when a message went out.
    async fn coverage_cell(
        &self,
        c: &Coverage,
        now: i64,
        deadline: Instant,
    ) -> Result<bool, AggregatorError> {
        let now_health = health(c, now, self.config.heartbeat_secs);
        let Some(what) = change(c.alerted, now_health) else {
            return Ok(false);
        };
        let ctx = self.context(&[], now).await?;
        let problem = match (what, now_health) {
            (Change::Recovered, _) => None,
            (_, Health::Silent) => Some(CoverageProblem::MissedHeartbeats {
                last_heartbeat: c.last_heartbeat,
                intervals: MISSED_INTERVALS,
            }),
            (_, Health::NeverReported) => Some(CoverageProblem::NeverReported {
                intervals: MISSED_INTERVALS,
                expected_since: c.last_heartbeat,
            }),
            (_, Health::DeadLetters) => Some(CoverageProblem::DeadLetters {
                count: c.dead_letters,
                last_heartbeat: c.last_heartbeat,
            }),
            _ => Some(CoverageProblem::TrailNotLogging {
                last_heartbeat: c.last_heartbeat,
            }),
        };
        let request = match &problem {
            None => coverage_recovered(&ctx, &c.account, &c.region, now),
            Some(p) => coverage_alert(&ctx, &c.account, &c.region, p),
        };
        self.slack.send(&request, deadline).await?;
        self.store
            .set_alerted(&c.account, &c.region, now_health)
            .await?;
        Ok(true)
    }
}

/// What a tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub coverage_alerts: usize,
    pub pending_retried: usize,
}
