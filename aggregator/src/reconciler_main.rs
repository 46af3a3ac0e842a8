//! The reconciler's Lambda entry point: init tracing, read config from
//! the environment once (the aggregator's, and the `[trail]` table), build
//! the clients once, run.

use glasswatch_aggregator::notifier::Slack;
use glasswatch_aggregator::reconcile::{Reconciler, trail_from_lookup};
use glasswatch_aggregator::{Aggregator, AggregatorConfig, init_tracing};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = AggregatorConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "configuration error"))?;
    let trail = trail_from_lookup(|name| std::env::var(name).ok())
        .inspect_err(|e| tracing::error!(error = %e, "configuration error"))?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let slack = Slack::from_secret(&config, aws_sdk_secretsmanager::Client::new(&aws));
    let s3 = glasswatch_aggregator::s3::client(&aws);
    let reconciler = Reconciler::new(Aggregator::new(config, &aws, slack), s3, trail);
    let reconciler = &reconciler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = glasswatch_aggregator::deadline(&event.context);
        reconciler.invoke(&event.payload, deadline).await
    }))
    .await
}
