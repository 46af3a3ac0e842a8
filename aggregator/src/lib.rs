//! # glasswatch-aggregator
//!
//! The audit-account Lambda. An SQS queue (fed by a rule on the central
//! bus) delivers signal and heartbeat envelopes; the aggregator checks each
//! envelope, correlates events into break-glass sessions with
//! `glasswatch_core::correlate`, stores them in DynamoDB and alerts Slack,
//! one thread per session.
//!
//! Layout:
//! - [`config`]: the environment, read once at init;
//! - [`handler`]: one batch (envelope check, correlation, Slack) or the
//!   scheduled tick (coverage, pending messages);
//! - [`secret`]: the Slack credential from Secrets Manager, never logged;
//! - [`notifier`]: the Slack sender, which reads that credential when the
//!   first message needs it (and again when Slack refuses it);
//! - [`accounts`]: the organization's accounts, cached;
//! - [`store`]: the DynamoDB single-table store (a module tree: keys,
//!   ingest, Slack state, coverage, schema): idempotent event writes with
//!   bounded reads, session merges, Slack state, coverage;
//! - [`query`]: the store's read paths for audit queries (key conditions
//!   and paginators, never a scan);
//! - [`slack`]: the Slack Web API and incoming-webhook client;
//! - [`reconcile`]: the reconciler Lambda's work: the organization
//!   trail's log files, announced on its own queue, read from S3 and
//!   held against what the fast path delivered;
//! - [`s3`]: the S3 client and an object streamed as a blocking reader.

pub mod accounts;
pub mod config;
pub mod handler;
pub mod notifier;
pub mod query;
pub mod reconcile;
pub mod s3;
pub mod secret;
pub mod slack;
pub mod store;

pub use config::AggregatorConfig;
pub use handler::{Aggregator, AggregatorError};

/// Time assumed left when the runtime's deadline is unusable.
const UNKNOWN_DEADLINE_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// When this invocation must be done by, from the runtime's deadline. A
/// deadline already past is not one Lambda would give (`cargo lambda
/// watch` sends a relative 600000 ms): a budget is assumed.
pub fn deadline(context: &lambda_runtime::Context) -> std::time::Instant {
    let left = context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .ok();
    std::time::Instant::now() + left.unwrap_or(UNKNOWN_DEADLINE_BUDGET)
}

/// A Lambda error report: its type says whether a retry can help.
pub(crate) fn diagnostic(retryable: bool, message: String) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: if retryable { "Retryable" } else { "BadInput" }.to_owned(),
        error_message: message,
    }
}

/// JSON logs to stdout, filtered by `GLASSWATCH_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GLASSWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .init();
}
