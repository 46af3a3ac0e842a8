//! The reconciler: the durable path. The organization trail announces each
//! log file it delivers (its SNS topic, or S3's `Object Created` events
//! through EventBridge) on the reconciler's queue; each announced log file
//! is streamed from the bucket through `core`'s decoder, pre-filter and
//! detector, with the watch list the agents use, and every flagged record
//! goes through the aggregator's idempotent path keyed by `eventID`.
//!
//! - An event the fast path delivered already is a no-op.
//! - An event seen first here is stored as recovered from the trail (the
//!   log file and how late), joins or starts its session as usual, shows
//!   so in Slack and in the audit timeline, and raises a "missed by the
//!   fast path" alert naming its account and region.
//! - A flagged record whose account or region is not the one the object
//!   key names is stored and alerted like a spoofed signal, never joined.
//! - Every log file processed is kept (one item per object key), so a
//!   notification delivered twice reads nothing; its account × region's
//!   progress moves forward, for `status`.
//!
//! A failure fails the message (`batchItemFailures`): SQS retries it and
//! its dead-letter queue keeps it in the end. Reading a file again is
//! harmless: every write is idempotent.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use glasswatch_core::WatchList;
use glasswatch_core::correlate::Ingest;
use glasswatch_core::env::{EnvError, required};
use glasswatch_core::prefilter::Prefilter;
use glasswatch_core::session::Recovered;
use glasswatch_core::slack::{MissedByFastPath, missed_by_fast_path};
use glasswatch_core::trail::{
    Flagged, LogFileScan, ObjectKey, ObjectKind, ObjectRef, TrailConfig, notification_objects,
    scan_log_file,
};
use glasswatch_core::verify::Verdict;
use serde_json::{Value, json};

use crate::handler::{Aggregator, AggregatorError, Origin, Processed, Touched};
use crate::store::trail::LogFileItem;

/// What stops one message.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The message is not a notification of this trail's log files:
    /// retrying cannot help (the dead-letter queue keeps it).
    #[error("{0}")]
    BadNotification(String),
    /// The log file could not be read (S3 refused or failed, the download
    /// broke off, the file is broken past reading): retried as a whole.
    #[error("log file {key}: {reason}")]
    Read { key: String, reason: String },
    #[error(transparent)]
    Aggregator(#[from] AggregatorError),
}

impl ReconcileError {
    pub fn retryable(&self) -> bool {
        match self {
            Self::BadNotification(_) => false,
            Self::Read { .. } => true,
            Self::Aggregator(e) => e.retryable(),
        }
    }
}

impl From<ReconcileError> for lambda_runtime::Diagnostic {
    fn from(e: ReconcileError) -> Self {
        crate::diagnostic(e.retryable(), e.to_string())
    }
}

/// The `[trail]` table as the reconciler gets it (`GLASSWATCH_TRAIL`,
/// JSON), checked as `glasswatch.toml` is.
pub fn trail_from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<TrailConfig, EnvError> {
    let name = "GLASSWATCH_TRAIL";
    let invalid = |reason: String| EnvError::Invalid { name, reason };
    let trail: TrailConfig = serde_json::from_str(&required(&get, name)?)
        .map_err(|e| invalid(format!("not a [trail] table as JSON: {e}")))?;
    let problems = trail.problems();
    if !problems.is_empty() {
        return Err(invalid(
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path.join("."), p.message))
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    Ok(trail)
}

/// What one announced object came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Processed before: nothing read.
    Done,
    /// A digest file: its check is not this Lambda's (see `replay
    /// --digests`).
    Digest,
    Read(Box<LogFileItem>),
}

/// The reconciler with its clients, built once per container.
#[derive(Debug)]
pub struct Reconciler {
    pub aggregator: Aggregator,
    pub s3: aws_sdk_s3::Client,
    pub trail: TrailConfig,
    scanner: Arc<(WatchList, Prefilter)>,
}

/// The evidence kept with an event read from the trail.
fn evidence(trail: &TrailConfig, key: &str, flagged: &Flagged) -> String {
    json!({
        "origin": "trail",
        "s3Bucket": trail.bucket,
        "s3ObjectKey": key,
        "index": flagged.index,
        "detections": flagged.detections,
    })
    .to_string()
}

impl Reconciler {
    pub fn new(aggregator: Aggregator, s3: aws_sdk_s3::Client, trail: TrailConfig) -> Self {
        let watch = aggregator.config.watch.clone();
        let prefilter = Prefilter::new(&watch);
        Self {
            aggregator,
            s3,
            trail,
            scanner: Arc::new((watch, prefilter)),
        }
    }

    /// One Lambda invocation: an SQS batch, answered with its
    /// `batchItemFailures`.
    pub async fn invoke(
        &self,
        payload: &Value,
        deadline: Instant,
    ) -> Result<Value, ReconcileError> {
        let batch: SqsEvent = serde_json::from_value(payload.clone())
            .map_err(|e| ReconcileError::BadNotification(format!("not an SQS batch: {e}")))?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let response = self.handle_batch(&batch, now, deadline).await;
        serde_json::to_value(response)
            .map_err(|e| ReconcileError::BadNotification(format!("batch response: {e}")))
    }

    /// Every message on its own: one that fails is reported, the others
    /// go on.
    pub async fn handle_batch(
        &self,
        batch: &SqsEvent,
        now: i64,
        deadline: Instant,
    ) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in &batch.records {
            let id = message.message_id.clone().unwrap_or_default();
            let outcome = match message.body.as_deref() {
                Some(body) => self.message(body, now, deadline).await,
                None => Err(ReconcileError::BadNotification(
                    "a message without a body".into(),
                )),
            };
            if let Err(e) = outcome {
                tracing::error!(message_id = %id, error = %e, retryable = e.retryable(), "trail notification failed");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// One notification: each object it announces, in turn.
    pub async fn message(
        &self,
        body: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<Vec<FileOutcome>, ReconcileError> {
        let objects = notification_objects(body)
            .map_err(|e| ReconcileError::BadNotification(e.to_string()))?;
        let mut outcomes = Vec::with_capacity(objects.len());
        for object in &objects {
            // Boxed: the whole path's future is too deep to lay out inline.
            outcomes.push(Box::pin(self.object(object, now, deadline)).await?);
        }
        Ok(outcomes)
    }

    /// One announced object of the trail.
    pub async fn object(
        &self,
        object: &ObjectRef,
        now: i64,
        deadline: Instant,
    ) -> Result<FileOutcome, ReconcileError> {
        if object.bucket != self.trail.bucket {
            return Err(ReconcileError::BadNotification(format!(
                "s3://{}/{} is not in the trail's bucket {}",
                object.bucket, object.key, self.trail.bucket
            )));
        }
        if !object.key.starts_with(&self.trail.logs_prefix()) {
            return Err(ReconcileError::BadNotification(format!(
                "{} is not under the trail's prefix {}",
                object.key,
                self.trail.logs_prefix()
            )));
        }
        let key = ObjectKey::parse(&object.key)
            .map_err(|e| ReconcileError::BadNotification(e.to_string()))?;
        if key.kind == ObjectKind::Digest {
            return Ok(FileOutcome::Digest);
        }
        let store = &self.aggregator.store;
        if store
            .log_file(&key.key)
            .await
            .map_err(AggregatorError::from)?
            .is_some()
        {
            tracing::info!(key = %key.key, "log file processed before");
            return Ok(FileOutcome::Done);
        }
        let scan = self.scan(&key).await?;
        let file = self.ingest(&key, &scan, now, deadline).await?;
        store
            .record_log_file(&file)
            .await
            .map_err(AggregatorError::from)?;
        print_metrics(&file, &scan, now);
        Ok(FileOutcome::Read(Box::new(file)))
    }

    /// Stream the log file through the pre-filter and the detector, off
    /// the runtime's threads; memory stays flat whatever its size.
    async fn scan(&self, key: &ObjectKey) -> Result<LogFileScan, ReconcileError> {
        let request = self
            .s3
            .get_object()
            .bucket(&self.trail.bucket)
            .key(&key.key)
            .expected_bucket_owner(&self.trail.bucket_account);
        let reader = crate::s3::stream(&tokio::runtime::Handle::current(), request, |_| {});
        let scanner = Arc::clone(&self.scanner);
        let owned = key.clone();
        let read = |reason: String| ReconcileError::Read {
            key: key.key.clone(),
            reason,
        };
        tokio::task::spawn_blocking(move || scan_log_file(reader, &owned, &scanner.0, &scanner.1))
            .await
            .map_err(|e| read(format!("the scan stopped: {e}")))?
            .map_err(|e| read(e.to_string()))
    }

    /// Every flagged record through the aggregator's path; the sessions
    /// touched shown in Slack, and the fast path's misses alerted, before
    /// the file counts as processed (so a failure reads it again).
    async fn ingest(
        &self,
        key: &ObjectKey,
        scan: &LogFileScan,
        now: i64,
        deadline: Instant,
    ) -> Result<LogFileItem, ReconcileError> {
        let aggregator = &self.aggregator;
        let mut touched = Touched::new();
        let mut absorbed = BTreeSet::new();
        let mut recovered = Vec::new();
        for flagged in &scan.flagged {
            let signal_json = evidence(&self.trail, &key.key, flagged);
            let origin = Origin {
                sender: Some(&key.account),
                signal_json: &signal_json,
                recovered: Some(Recovered {
                    log_file: key.key.clone(),
                    late_secs: (now - flagged.record.event_timestamp).max(0),
                }),
                misplaced: None,
            };
            let processed = aggregator
                .admit(&flagged.record, &flagged.detections, origin, now, deadline)
                .await?;
            let Processed::Event {
                ingest,
                absorbed: gone,
                event,
            } = processed
            else {
                continue;
            };
            // Stored now, or by an earlier read of this file that did not
            // get as far as recording it.
            let from_trail = match &ingest {
                Ingest::Stored { .. } => true,
                Ingest::Duplicate { .. } => aggregator
                    .store
                    .event_from_trail(&event.event_id)
                    .await
                    .map_err(AggregatorError::from)?
                    .unwrap_or(false),
            };
            if from_trail {
                recovered.push((
                    event.event_id.clone(),
                    event.event_name.clone(),
                    event.recovered.as_ref().map_or(0, |r| r.late_secs),
                ));
                absorbed.extend(gone);
                let entry = touched.entry(ingest.session_id().to_owned()).or_default();
                entry.0.push(*event);
                entry.1.push(key.key.clone());
            }
        }
        let mut misplaced = Vec::new();
        for flagged in &scan.mismatches {
            let signal_json = evidence(&self.trail, &key.key, flagged);
            let origin = Origin {
                sender: Some(&key.account),
                signal_json: &signal_json,
                recovered: None,
                misplaced: Some(Verdict::Misplaced {
                    log_file: key.key.clone(),
                    file_account: key.account.clone(),
                    file_region: key.region.clone(),
                }),
            };
            aggregator
                .admit(&flagged.record, &flagged.detections, origin, now, deadline)
                .await?;
            misplaced.push(flagged.record.event_id.clone());
        }
        if !aggregator
            .announce(&touched, &absorbed, now, deadline)
            .await
            .is_empty()
        {
            return Err(ReconcileError::Read {
                key: key.key.clone(),
                reason: "the Slack state of its sessions could not be recorded".into(),
            });
        }
        if !recovered.is_empty() {
            self.alert_missed(key, &recovered, now, deadline).await?;
        }
        Ok(LogFileItem {
            key: key.key.clone(),
            account: key.account.clone(),
            region: key.region.clone(),
            delivered_at: key.time,
            processed_at: now,
            records: scan.records,
            detections: scan.flagged.len() as u64,
            recovered: recovered.into_iter().map(|(id, ..)| id).collect(),
            misplaced,
            bad: scan
                .bad
                .iter()
                .map(|(index, e)| format!("record {index}: {e}"))
                .collect(),
        })
    }

    /// The coverage-style alert: the fast path missed these events.
    async fn alert_missed(
        &self,
        key: &ObjectKey,
        recovered: &[(String, String, i64)],
        now: i64,
        deadline: Instant,
    ) -> Result<(), ReconcileError> {
        let aggregator = &self.aggregator;
        let ctx = aggregator.context(&[key.account.as_str()], now).await?;
        let alert = missed_by_fast_path(
            &ctx,
            &MissedByFastPath {
                account: key.account.clone(),
                region: key.region.clone(),
                log_file: key.key.clone(),
                events: recovered
                    .iter()
                    .map(|(id, name, _)| (id.clone(), name.clone()))
                    .collect(),
                late_secs: recovered.iter().map(|r| r.2).max().unwrap_or(0),
            },
        );
        tracing::warn!(account = %key.account, region = %key.region, log_file = %key.key, missed = recovered.len(), "break-glass events missed by the fast path, recovered from the trail");
        aggregator
            .slack
            .send(&alert, deadline)
            .await
            .map_err(|e| AggregatorError::from(e).into())
            .map(|_| ())
    }
}

/// The file's figures as CloudWatch embedded metrics (one JSON line on
/// stdout, which Lambda sends to CloudWatch Logs).
fn print_metrics(file: &LogFileItem, scan: &LogFileScan, now: i64) {
    println!("{}", metrics(file, scan, now));
}

/// The embedded-metric-format document of one log file.
pub fn metrics(file: &LogFileItem, scan: &LogFileScan, now: i64) -> Value {
    let names = [
        ("RecordsScanned", "Count"),
        ("Detections", "Count"),
        ("MissedByFastPath", "Count"),
        ("MisplacedRecords", "Count"),
        ("BadRecords", "Count"),
        ("DeliveryToProcessingSeconds", "Seconds"),
        ("EventToProcessingSeconds", "Seconds"),
    ];
    let latest_event = scan
        .flagged
        .iter()
        .map(|f| (now - f.record.event_timestamp).max(0))
        .max()
        .unwrap_or(0);
    json!({
        "_aws": {
            "Timestamp": now * 1000,
            "CloudWatchMetrics": [{
                "Namespace": "Glasswatch/Reconciler",
                "Dimensions": [[]],
                "Metrics": names.iter().map(|(name, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        },
        "RecordsScanned": file.records,
        "Detections": file.detections,
        "MissedByFastPath": file.recovered.len(),
        "MisplacedRecords": file.misplaced.len(),
        "BadRecords": file.bad.len(),
        "DeliveryToProcessingSeconds": (now - file.delivered_at).max(0),
        "EventToProcessingSeconds": latest_event,
        "account": file.account,
        "region": file.region,
        "log_file": file.key,
        "missed": file.recovered,
    })
}
