//! What this account can see of CloudTrail in its region:
//! `DescribeTrails` with shadow trails (so an organization trail counts),
//! then `GetTrailStatus` for each. Anything it cannot read is `unknown`,
//! never `logging`. And how many events wait in the agent's own
//! dead-letter queue, which the aggregator alerts on.

use aws_sdk_cloudtrail::Client;
use glasswatch_core::signal::{TrailObservation, TrailStatus, trail_status};

pub async fn observe(client: &Client) -> (TrailStatus, Vec<String>) {
    let trails = match client
        .describe_trails()
        .include_shadow_trails(true)
        .send()
        .await
    {
        Ok(out) => out.trail_list.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %aws_sdk_cloudtrail::error::DisplayErrorContext(&e), "DescribeTrails failed; trail status unknown");
            return (trail_status(None), Vec::new());
        }
    };
    let mut observations = Vec::new();
    for trail in trails {
        let Some(id) = trail.trail_arn().or(trail.name()).map(str::to_owned) else {
            continue;
        };
        let is_logging = match client.get_trail_status().name(&id).send().await {
            Ok(status) => status.is_logging,
            Err(e) => {
                tracing::warn!(trail = %id, error = %aws_sdk_cloudtrail::error::DisplayErrorContext(&e), "GetTrailStatus failed");
                None
            }
        };
        observations.push(TrailObservation {
            name: trail.name().unwrap_or(&id).to_owned(),
            is_logging,
        });
    }
    let names = observations.iter().map(|o| o.name.clone()).collect();
    (trail_status(Some(&observations)), names)
}

/// Messages in the agent's dead-letter queue; `None` when it cannot be
/// read (the heartbeat still goes out, without the figure).
pub async fn dead_letters(client: &aws_sdk_sqs::Client, queue_url: &str) -> Option<u64> {
    let out = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await;
    match out {
        Ok(out) => out
            .attributes
            .as_ref()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .and_then(|n| n.parse().ok()),
        Err(e) => {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "dead-letter queue depth unknown");
            None
        }
    }
}
