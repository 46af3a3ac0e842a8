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
//! - [`slack`]: the Slack Web API and incoming-webhook client.

pub mod accounts;
pub mod config;
pub mod handler;
pub mod notifier;
pub mod query;
pub mod secret;
pub mod slack;
pub mod store;

pub use config::AggregatorConfig;
pub use handler::{Aggregator, AggregatorError};

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
