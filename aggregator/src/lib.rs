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
//! - [`accounts`]: the organization's accounts, cached;
//! - [`store`]: the DynamoDB single-table store: idempotent event writes,
//!   transactional session merges, Slack state, coverage;
//! - [`query`]: the store's read paths for audit queries (key conditions
//!   and paginators, never a scan);
//! - [`slack`]: the Slack Web API and incoming-webhook client.

pub mod accounts;
pub mod config;
pub mod handler;
pub mod query;
pub mod secret;
pub mod slack;
pub mod store;

pub use config::AggregatorConfig;
pub use handler::{Aggregator, AggregatorError};

use glasswatch_core::config::SlackMode;

use crate::slack::SlackClient;

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

/// Why the Slack client could not be built at init.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error("Slack client: {0}")]
    Slack(#[from] slack::SlackError),
}

/// The Slack client, with its credential from Secrets Manager.
pub async fn build_slack(
    config: &AggregatorConfig,
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<SlackClient, InitError> {
    Ok(match config.slack_mode {
        SlackMode::Bot => {
            let token = secret::fetch(secrets, &config.slack_secret_arn, "bot token").await?;
            SlackClient::bot_with_api_base(token.expose(), &config.slack_api_url)?
        }
        SlackMode::Webhook => {
            let url = secret::fetch(secrets, &config.slack_secret_arn, "webhook URL").await?;
            SlackClient::webhook(url.expose())?
        }
    })
}
