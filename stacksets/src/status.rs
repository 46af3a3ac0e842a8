//! Pure: the coverage of an organization, one row per account × region,
//! from what CloudFormation says is deployed and what the agents' heartbeats
//! say is running. A row is a gap when either is missing or unhealthy.

use std::collections::BTreeMap;

use glasswatch_core::coverage::{Coverage, Health, health};
use glasswatch_core::signal::TrailStatus;

use crate::stacks::Instance;

/// Deployment states that mean the agent stack is in place.
fn deployed(status: &str) -> bool {
    matches!(
        status,
        "CURRENT"
            | "SUCCEEDED"
            | "CREATE_COMPLETE"
            | "UPDATE_COMPLETE"
            | "UPDATE_ROLLBACK_COMPLETE"
    )
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub account: String,
    pub account_name: String,
    pub region: String,
    /// StackSet instance status, or the management stack's status;
    /// `MISSING` when there is neither.
    pub stack: String,
    /// Seconds since the epoch; `None` when no heartbeat ever arrived.
    pub last_heartbeat: Option<i64>,
    pub trail: String,
    pub health: String,
    pub gap: bool,
}

/// Everything status knows, gathered by the shell.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// (account id, name), every active account of the organization.
    pub accounts: Vec<(String, String)>,
    pub regions: Vec<String>,
    pub instances: Vec<Instance>,
    /// The management account's plain stacks, by region.
    pub management: Option<(String, BTreeMap<String, String>)>,
    pub coverage: Vec<Coverage>,
}

pub fn rows(observed: &Observed, now: i64, heartbeat_secs: i64) -> Vec<Row> {
    let instances: BTreeMap<(&str, &str), &Instance> = observed
        .instances
        .iter()
        .map(|i| ((i.account.as_str(), i.region.as_str()), i))
        .collect();
    let coverage: BTreeMap<(&str, &str), &Coverage> = observed
        .coverage
        .iter()
        .map(|c| ((c.account.as_str(), c.region.as_str()), c))
        .collect();
    let mut out = Vec::new();
    for (account, name) in &observed.accounts {
        for region in &observed.regions {
            let key = (account.as_str(), region.as_str());
            let stack = match &observed.management {
                Some((management, stacks)) if management == account => stacks
                    .get(region)
                    .cloned()
                    .unwrap_or_else(|| "MISSING".to_owned()),
                _ => instances
                    .get(&key)
                    .map_or_else(|| "MISSING".to_owned(), |i| i.status.clone()),
            };
            let seen = coverage.get(&key);
            let state = seen.map(|c| health(c, now, heartbeat_secs));
            let gap = !deployed(&stack) || state != Some(Health::Healthy);
            out.push(Row {
                account: account.clone(),
                account_name: name.clone(),
                region: region.clone(),
                stack,
                last_heartbeat: seen.map(|c| c.last_heartbeat),
                trail: seen
                    .map_or_else(|| "unknown".to_owned(), |c| trail_name(c.trail).to_owned()),
                health: state.map_or_else(|| "no heartbeat".to_owned(), |h| h.as_str().to_owned()),
                gap,
            });
        }
    }
    out
}

fn trail_name(trail: TrailStatus) -> &'static str {
    match trail {
        TrailStatus::Logging => "logging",
        TrailStatus::NotLogging => "not logging",
        TrailStatus::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(account: &str, region: &str, last: i64, trail: TrailStatus) -> Coverage {
        Coverage {
            account: account.into(),
            region: region.into(),
            last_heartbeat: last,
            trail,
            agent_version: "0.1.0".into(),
            alerted: Health::Healthy,
            dead_letters: 0,
            reported: true,
        }
    }

    #[test]
    fn a_row_is_a_gap_without_a_stack_without_heartbeats_or_without_logging() {
        let now = 1_800_000_000;
        let observed = Observed {
            accounts: vec![
                ("111111111111".into(), "management".into()),
                ("222222222222".into(), "app".into()),
            ],
            regions: vec!["eu-west-1".into(), "us-east-1".into()],
            instances: vec![
                Instance {
                    account: "222222222222".into(),
                    region: "eu-west-1".into(),
                    status: "SUCCEEDED".into(),
                    reason: String::new(),
                },
                Instance {
                    account: "222222222222".into(),
                    region: "us-east-1".into(),
                    status: "SUCCEEDED".into(),
                    reason: String::new(),
                },
            ],
            management: Some((
                "111111111111".into(),
                BTreeMap::from([("eu-west-1".into(), "CREATE_COMPLETE".into())]),
            )),
            coverage: vec![
                coverage("111111111111", "eu-west-1", now - 60, TrailStatus::Logging),
                coverage(
                    "222222222222",
                    "eu-west-1",
                    now - 60,
                    TrailStatus::NotLogging,
                ),
                coverage(
                    "222222222222",
                    "us-east-1",
                    now - 10 * 900,
                    TrailStatus::Logging,
                ),
            ],
        };
        let rows = rows(&observed, now, 900);
        let gaps: Vec<(&str, &str, bool)> = rows
            .iter()
            .map(|r| (r.account.as_str(), r.region.as_str(), r.gap))
            .collect();
        assert_eq!(
            gaps,
            [
                ("111111111111", "eu-west-1", false),
                ("111111111111", "us-east-1", true),
                ("222222222222", "eu-west-1", true),
                ("222222222222", "us-east-1", true),
            ]
        );
        assert_eq!(rows[1].stack, "MISSING");
        assert_eq!(rows[1].health, "no heartbeat");
    }
}
