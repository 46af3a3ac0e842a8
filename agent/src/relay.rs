//! `PutEvents` to the central bus, losing nothing: entries are packed into
//! requests within EventBridge's limits, only failed entries are re-sent,
//! with exponential backoff and full jitter, inside a time budget. Anything
//! still unsent is an error, so Lambda's retries and the DLQ keep the event.

use std::time::{Duration, Instant};

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use glasswatch_core::signal::SIGNAL_SOURCE;

/// EventBridge accepts at most 10 entries per `PutEvents`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// …and at most 256 KB in one request.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

const BASE_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Error codes that will not succeed on retry.
const PERMANENT: [&str; 7] = [
    "AccessDeniedException",
    "ValidationException",
    "InvalidArgument",
    "MalformedDetail",
    "NotAuthorizedForSourceException",
    "NotAuthorizedForDetailTypeException",
    "ResourceNotFoundException",
];

/// One message for the central bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub detail_type: &'static str,
    pub detail: String,
}

impl Outgoing {
    /// Size as EventBridge counts it: source, detail-type and detail.
    pub fn size(&self) -> usize {
        SIGNAL_SOURCE.len() + self.detail_type.len() + self.detail.len()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayReport {
    pub relayed: usize,
    /// Entry sends beyond the first (re-sent failed entries).
    pub retried: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayError {
    /// Transient failures outlasted the budget: retryable by Lambda.
    #[error(
        "{failed} of {total} entries not relayed within {budget_ms} ms; last error: {last_error}"
    )]
    Exhausted {
        failed: usize,
        total: usize,
        budget_ms: u128,
        last_error: String,
    },
    /// The bus refused for a reason a retry will not fix.
    #[error("PutEvents refused: {0}")]
    Refused(String),
}

/// Pack entry indices into requests of at most 10 entries and 256 KB.
pub fn batches(pending: &[usize], items: &[Outgoing]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &i in pending {
        let size = items[i].size();
        let fits = out
            .last()
            .is_some_and(|b| b.len() < MAX_BATCH_ENTRIES && bytes + size <= MAX_REQUEST_BYTES);
        if fits {
            if let Some(batch) = out.last_mut() {
                batch.push(i);
            }
            bytes += size;
        } else {
            out.push(vec![i]);
            bytes = size;
        }
    }
    out
}

/// Full-jitter exponential backoff for the `attempt`-th retry (1-based).
pub fn backoff(attempt: u32) -> Duration {
    let cap = BASE_DELAY
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_DELAY);
    Duration::from_millis(fastrand::u64(0..=cap.as_millis() as u64))
}

fn entry(bus_arn: &str, item: &Outgoing) -> PutEventsRequestEntry {
    PutEventsRequestEntry::builder()
        .event_bus_name(bus_arn)
        .source(SIGNAL_SOURCE)
        .detail_type(item.detail_type)
        .detail(item.detail.clone())
        .build()
}

fn sdk_error_is_permanent<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    match e {
        SdkError::ConstructionFailure(_) => true,
        SdkError::ServiceError(service) => {
            service.err().code().is_some_and(|c| PERMANENT.contains(&c))
        }
        _ => false,
    }
}

fn describe<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> String {
    match e {
        SdkError::ServiceError(s) => format!(
            "{}: {}",
            s.err().code().unwrap_or("ServiceError"),
            s.err().message().unwrap_or("no message")
        ),
        other => format!("{other:?}").chars().take(300).collect(),
    }
}

/// Send every item, or fail saying how many were left.
pub async fn relay(
    client: &Client,
    bus_arn: &str,
    items: &[Outgoing],
    budget: Duration,
) -> Result<RelayReport, RelayError> {
    let deadline = Instant::now() + budget;
    let mut pending: Vec<usize> = (0..items.len()).collect();
    let mut report = RelayReport::default();
    let mut attempt = 0u32;
    loop {
        let mut failed = Vec::new();
        let mut last_error = String::new();
        for batch in batches(&pending, items) {
            let entries = batch.iter().map(|&i| entry(bus_arn, &items[i])).collect();
            match client.put_events().set_entries(Some(entries)).send().await {
                Ok(output) => {
                    let results = output.entries();
                    for (k, &i) in batch.iter().enumerate() {
                        match results.get(k) {
                            Some(r) if r.error_code().is_none() && r.event_id().is_some() => {
                                report.relayed += 1
                            }
                            Some(r) => {
                                let code = r.error_code().unwrap_or("Unknown");
                                last_error = format!(
                                    "{code}: {}",
                                    r.error_message().unwrap_or("no message")
                                );
                                if PERMANENT.contains(&code) {
                                    return Err(RelayError::Refused(last_error));
                                }
                                failed.push(i);
                            }
                            None => {
                                last_error =
                                    "response had fewer entries than the request".to_owned();
                                failed.push(i);
                            }
                        }
                    }
                }
                Err(e) if sdk_error_is_permanent(&e) => {
                    return Err(RelayError::Refused(describe(&e)));
                }
                Err(e) => {
                    last_error = describe(&e);
                    failed.extend(batch);
                }
            }
        }
        if failed.is_empty() {
            return Ok(report);
        }
        attempt += 1;
        let delay = backoff(attempt);
        if Instant::now() + delay >= deadline {
            return Err(RelayError::Exhausted {
                failed: failed.len(),
                total: items.len(),
                budget_ms: budget.as_millis(),
                last_error,
            });
        }
        tracing::warn!(failed = failed.len(), attempt, error = %last_error, "PutEvents entries failed; retrying them");
        report.retried += failed.len();
        tokio::time::sleep(delay).await;
        pending = failed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(bytes: usize) -> Outgoing {
        Outgoing {
            detail_type: "Glasswatch Signal",
            detail: "x".repeat(bytes),
        }
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<Outgoing> = (0..25).map(|_| item(10)).collect();
        let idx: Vec<usize> = (0..25).collect();
        let b = batches(&idx, &small);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        let big: Vec<Outgoing> = (0..4).map(|_| item(100 * 1024)).collect();
        let b = batches(&[0, 1, 2, 3], &big);
        assert_eq!(b, [vec![0, 1], vec![2, 3]]);
        assert!(batches(&[], &big).is_empty());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d <= MAX_DELAY);
            assert!(d <= BASE_DELAY * 2u32.pow((attempt - 1).min(10)));
        }
    }
}
