//! One invocation: a scheduled heartbeat, or a CloudTrail event to
//! classify and relay.

use std::time::{Duration, Instant};

use glasswatch_core::signal::{
    HEARTBEAT_DETAIL_TYPE, Heartbeat, SCHEMA_VERSION, SignalError, TrailStatus, build_signal,
    detail_type_for,
};
use glasswatch_core::{Record, RecordError, classify};
use serde_json::Value;

use crate::AGENT_VERSION;
use crate::config::AgentConfig;
use crate::heartbeat;
use crate::metrics::Counts;
use crate::relay::{Outgoing, RelayError, relay};

/// Time kept back from the Lambda deadline for returning the error.
const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Matched a coarse pattern but no detection: expected, dropped.
    Dropped,
    Relayed {
        signal_id: String,
        detections: usize,
    },
    Heartbeat {
        trail: TrailStatus,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The event is not a CloudTrail record; retrying will not help, but
    /// the error sends it to the DLQ as evidence.
    #[error("event is not a usable CloudTrail record: {0}")]
    BadEvent(#[from] RecordError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    Relay(#[from] RelayError),
}

impl AgentError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Relay(RelayError::Exhausted { .. }))
    }
}

/// Everything an invocation needs, built once per container.
#[derive(Debug, Clone)]
pub struct Agent {
    pub config: AgentConfig,
    pub events: aws_sdk_eventbridge::Client,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    /// Reads the agent's own dead-letter queue for heartbeats.
    pub sqs: aws_sdk_sqs::Client,
}

fn is_heartbeat(event: &Value) -> bool {
    event["source"] == "aws.events" && event["detail-type"] == "Scheduled Event"
}

impl Agent {
    /// Handle one event and write its metrics line. `deadline` is the
    /// Lambda deadline, when known.
    pub async fn handle(
        &self,
        event: &Value,
        deadline: Option<Instant>,
    ) -> Result<Outcome, AgentError> {
        let (result, counts) = self.handle_counted(event, deadline).await;
        counts.emit();
        result
    }

    /// Handle one event, and return its counts instead of writing them
    /// (for a host that keeps stdout for itself, such as the local
    /// pipeline).
    pub async fn handle_counted(
        &self,
        event: &Value,
        deadline: Option<Instant>,
    ) -> (Result<Outcome, AgentError>, Counts) {
        let mut counts = Counts {
            events_received: 1,
            ..Counts::default()
        };
        let result = self.process(event, deadline, &mut counts).await;
        if let Err(e) = &result {
            counts.failed += 1;
            tracing::error!(error = %e, retryable = e.is_retryable(), "invocation failed");
        }
        (result, counts)
    }

    fn budget(&self, deadline: Option<Instant>) -> Duration {
        let left = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_MARGIN)
        });
        left.map_or(self.config.relay_budget, |l| {
            l.min(self.config.relay_budget)
        })
    }

    async fn process(
        &self,
        event: &Value,
        deadline: Option<Instant>,
        counts: &mut Counts,
    ) -> Result<Outcome, AgentError> {
        if is_heartbeat(event) {
            return self.heartbeat(event, deadline, counts).await;
        }
        let record = Record::from_value(event)?;
        let detections = classify(&self.config.watch, &record);
        if detections.is_empty() {
            tracing::debug!(event_id = %record.event_id, event_name = %record.event_name, "no detection; dropped");
            return Ok(Outcome::Dropped);
        }
        counts.detections += detections.len() as u64;
        let kinds: Vec<&str> = detections.iter().map(|d| d.kind.as_str()).collect();
        let detection_count = detections.len();
        let bare = match &record.envelope {
            Some(_) => &event["detail"],
            None => event,
        };
        let envelope = record.envelope.as_ref();
        let account = envelope
            .and_then(|e| e.account.as_deref())
            .unwrap_or(&record.account);
        let region = envelope
            .and_then(|e| e.region.as_deref())
            .unwrap_or(&record.region);
        let detail_type = detail_type_for(&detections);
        let (signal, detail) = build_signal(bare, detections, AGENT_VERSION, account, region)?;
        if !signal.dropped_fields.is_empty() {
            tracing::warn!(event_id = %record.event_id, dropped = ?signal.dropped_fields, "record shrunk to fit EventBridge");
        }
        self.send(detail_type, detail, deadline, counts).await?;
        tracing::info!(signal_id = %signal.signal_id, event_id = %record.event_id, event_name = %record.event_name, ?kinds, "signal relayed");
        Ok(Outcome::Relayed {
            signal_id: signal.signal_id,
            detections: detection_count,
        })
    }

    /// Relay one message to the central bus, counting what happened.
    async fn send(
        &self,
        detail_type: &'static str,
        detail: String,
        deadline: Option<Instant>,
        counts: &mut Counts,
    ) -> Result<(), AgentError> {
        let item = Outgoing {
            detail_type,
            detail,
        };
        let report = relay(
            &self.events,
            &self.config.bus_arn,
            &[item],
            self.budget(deadline),
        )
        .await?;
        counts.relayed += report.relayed as u64;
        counts.retried += report.retried as u64;
        Ok(())
    }

    async fn heartbeat(
        &self,
        event: &Value,
        deadline: Option<Instant>,
        counts: &mut Counts,
    ) -> Result<Outcome, AgentError> {
        let (trail, trails) = heartbeat::observe(&self.cloudtrail).await;
        let dead_letters = match &self.config.dlq_url {
            Some(url) => heartbeat::dead_letters(&self.sqs, url).await,
            None => None,
        };
        let sent_at = event["time"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            });
        let beat = Heartbeat {
            schema_version: SCHEMA_VERSION,
            account: event["account"].as_str().unwrap_or_default().to_owned(),
            region: event["region"].as_str().unwrap_or_default().to_owned(),
            agent_version: AGENT_VERSION.to_owned(),
            sent_at,
            trail,
            trails,
            dead_letters,
        };
        let detail = serde_json::to_string(&beat).expect("heartbeats are plain data");
        self.send(HEARTBEAT_DETAIL_TYPE, detail, deadline, counts)
            .await?;
        tracing::info!(?trail, "heartbeat sent");
        Ok(Outcome::Heartbeat { trail })
    }
}

impl From<AgentError> for lambda_runtime::Diagnostic {
    fn from(e: AgentError) -> Self {
        let error_type = match &e {
            AgentError::BadEvent(_) => "BadEvent",
            AgentError::Signal(_) => "SignalTooLarge",
            AgentError::Relay(RelayError::Exhausted { .. }) => "RelayRetryable",
            AgentError::Relay(RelayError::Refused(_)) => "RelayRefused",
        };
        Self {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}
