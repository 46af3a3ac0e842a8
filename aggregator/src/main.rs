//! The aggregator's Lambda entry point: init tracing, read config from the
//! environment once, build the clients once, run. The Slack credential is
//! read from Secrets Manager when the first message needs it, so no
//! outage there keeps events from being stored.

use std::time::{Duration, Instant, SystemTime};

use glasswatch_aggregator::notifier::Slack;
use glasswatch_aggregator::{Aggregator, AggregatorConfig, init_tracing};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

/// Time assumed left when the runtime's deadline is unusable.
const UNKNOWN_DEADLINE_BUDGET: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = AggregatorConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "configuration error"))?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let slack = Slack::from_secret(&config, aws_sdk_secretsmanager::Client::new(&aws));
    let aggregator = Aggregator::new(config, &aws, slack);
    let aggregator = &aggregator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let left = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .ok();
        // A deadline already past is not one Lambda would give (`cargo
        // lambda watch` sends a relative 600000 ms): assume a budget.
        let deadline = Instant::now() + left.unwrap_or(UNKNOWN_DEADLINE_BUDGET);
        aggregator.invoke(&event.payload, deadline).await
    }))
    .await
}
