//! The aggregator's Lambda entry point: init tracing, read config from the
//! environment once, build the clients once, run. The Slack credential is
//! read from Secrets Manager when the first message needs it, so no
//! outage there keeps events from being stored.

use glasswatch_aggregator::notifier::Slack;
use glasswatch_aggregator::{Aggregator, AggregatorConfig, init_tracing};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

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
        let deadline = glasswatch_aggregator::deadline(&event.context);
        aggregator.invoke(&event.payload, deadline).await
    }))
    .await
}
