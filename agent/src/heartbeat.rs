//! What this account can see of CloudTrail in its region:
//! `DescribeTrails` with shadow trails (so an organization trail counts),
//! then `GetTrailStatus` for each. Anything it cannot read is `unknown`,
//! never `logging`.

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
