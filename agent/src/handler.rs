//! One invocation: a scheduled heartbeat; a CloudTrail event to classify
//! and relay (as the static rules deliver it, or wrapped by a follow rule);
//! or follow instructions from the follow topic (SNS).

use std::time::{Duration, Instant};

use glasswatch_core::follow::{FOLLOW_KEY, Follow, Followed, classify_followed, follows};
use glasswatch_core::signal::{
    HEARTBEAT_DETAIL_TYPE, Heartbeat, SCHEMA_VERSION, SignalError, TrailStatus,
    build_signal_following, detail_type_for,
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
    /// Follow rules installed in this region, by name.
    Following {
        rules: Vec<String>,
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
    #[error("follow: {0}")]
    Follow(#[from] crate::follow::FollowError),
    /// A follow-topic message or a followed event the agent cannot read.
    #[error("follow message: {0}")]
    BadFollow(String),
}

impl AgentError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Relay(RelayError::Exhausted { .. })
                | Self::Follow(crate::follow::FollowError::Aws { .. })
        )
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
    /// EventBridge in the agent's own region, for its follow rules.
    pub local_events: aws_sdk_eventbridge::Client,
}

fn is_heartbeat(event: &Value) -> bool {
    event["source"] == "aws.events" && event["detail-type"] == "Scheduled Event"
}

/// A Lambda event from SNS: the follow topic.
fn is_sns(event: &Value) -> bool {
    event["Records"][0]["EventSource"] == "aws:sns"
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
        if is_sns(event) {
            return self.install_follows(event).await;
        }
        let (record, detections, bare) = if event.get(FOLLOW_KEY).is_some() {
            let followed: Followed = serde_json::from_value(event.clone())
                .map_err(|e| AgentError::BadFollow(format!("followed event: {e}")))?;
            let record = Record::from_value(&followed.event)?;
            let detections = classify_followed(&self.config.watch, &followed, &record)
                .map_err(|e| AgentError::BadFollow(e.to_string()))?;
            (record, detections, followed.event)
        } else {
            let record = Record::from_value(event)?;
            let detections = classify(&self.config.watch, &record);
            (record, detections, event.clone())
        };
        if detections.is_empty() {
            tracing::debug!(event_id = %record.event_id, event_name = %record.event_name, "no detection; dropped");
            return Ok(Outcome::Dropped);
        }
        self.relay_detections(&record, detections, &bare, deadline, counts)
            .await
    }

    /// Relay one flagged record, with the credentials to follow it shows.
    async fn relay_detections(
        &self,
        record: &Record,
        detections: Vec<glasswatch_core::Detection>,
        event: &Value,
        deadline: Option<Instant>,
        counts: &mut Counts,
    ) -> Result<Outcome, AgentError> {
        counts.detections += detections.len() as u64;
        let kinds: Vec<&str> = detections.iter().map(|d| d.kind.as_str()).collect();
        let detection_count = detections.len();
        let bare = match &record.envelope {
            Some(_) => &event["detail"],
            None => event,
        };
        let follow = follows(record, &detections);
        let envelope = record.envelope.as_ref();
        let account = envelope
            .and_then(|e| e.account.as_deref())
            .unwrap_or(&record.account);
        let region = envelope
            .and_then(|e| e.region.as_deref())
            .unwrap_or(&record.region);
        let detail_type = detail_type_for(&detections);
        let (signal, detail) =
            build_signal_following(bare, detections, AGENT_VERSION, account, region, follow)?;
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
        if self.config.follow.is_some() {
            let now = event["time"]
                .as_str()
                .and_then(glasswatch_core::record::parse_time)
                .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
            let removed = crate::follow::remove_expired(
                &self.local_events,
                self.config.watch.name_prefix(),
                now,
            )
            .await?;
            if removed > 0 {
                tracing::info!(removed, "expired follow rules removed");
            }
        }
        Ok(Outcome::Heartbeat { trail })
    }

    /// Follow instructions from the follow topic: one rule each, in this
    /// region.
    async fn install_follows(&self, event: &Value) -> Result<Outcome, AgentError> {
        let Some(target) = &self.config.follow else {
            return Err(AgentError::BadFollow(
                "a follow instruction reached an agent configured to follow nothing (GLASSWATCH_FUNCTION_ARN, GLASSWATCH_DLQ_ARN)".into(),
            ));
        };
        let mut rules = Vec::new();
        for record in event["Records"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let message = record["Sns"]["Message"].as_str().unwrap_or_default();
            let follow: Follow = serde_json::from_str(message)
                .map_err(|e| AgentError::BadFollow(format!("follow instruction: {e}")))?;
            let rule = crate::follow::install(
                &self.local_events,
                self.config.watch.name_prefix(),
                target,
                &follow,
            )
            .await?;
            tracing::info!(rule = %rule, until = follow.until, "following a break-glass session's credentials");
            rules.push(rule);
        }
        Ok(Outcome::Following { rules })
    }
}

impl From<AgentError> for lambda_runtime::Diagnostic {
    fn from(e: AgentError) -> Self {
        let error_type = match &e {
            AgentError::BadEvent(_) => "BadEvent",
            AgentError::Signal(_) => "SignalTooLarge",
            AgentError::Relay(RelayError::Exhausted { .. }) => "RelayRetryable",
            AgentError::Relay(RelayError::Refused(_)) => "RelayRefused",
            AgentError::Follow(crate::follow::FollowError::Aws { .. }) => "FollowRetryable",
            AgentError::Follow(_) => "FollowRefused",
            AgentError::BadFollow(_) => "BadFollow",
        };
        Self {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}
