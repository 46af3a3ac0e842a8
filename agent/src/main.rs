//! The agent's Lambda entry point: init tracing, read config from the
//! environment once, build the AWS clients once, run.

use std::time::{Instant, SystemTime};

use glasswatch_agent::{Agent, AgentConfig, init_tracing};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = AgentConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "configuration error"))?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // PutEvents goes to the central bus's own region.
    let events = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(&aws)
            .region(aws_config::Region::new(config.bus_region().to_owned()))
            .build(),
    );
    let agent = Agent {
        config,
        events,
        cloudtrail: aws_sdk_cloudtrail::Client::new(&aws),
        sqs: aws_sdk_sqs::Client::new(&aws),
        local_events: aws_sdk_eventbridge::Client::new(&aws),
    };
    let agent = &agent;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let left = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .ok();
        let deadline = left.map(|l| Instant::now() + l);
        agent
            .handle(&event.payload, deadline)
            .await
            .map(|outcome| format!("{outcome:?}"))
    }))
    .await
}
