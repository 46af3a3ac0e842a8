//! The agent's configuration, from its environment, read once at init.
//!
//! | variable | required | meaning |
//! |---|---|---|
//! | `GLASSWATCH_BUS_ARN` | yes | the central bus ARN |
//! | `GLASSWATCH_WATCH` | yes | the `[watch]` table as JSON, plus optional `name_prefix` |
//! | `GLASSWATCH_RELAY_BUDGET_MS` | no | time for `PutEvents` retries, default 20000 |
//! | `GLASSWATCH_DLQ_URL` | no | the agent's dead-letter queue, whose depth each heartbeat reports |
//! | `GLASSWATCH_FUNCTION_ARN` | no | this function, the target of the follow rules it installs |
//! | `GLASSWATCH_DLQ_ARN` | no | the dead-letter queue of those rules; both are needed to follow a break-glass session's onward credentials |
//! | `GLASSWATCH_LOG` | no | log filter, default `info` |

use std::time::Duration;

use glasswatch_core::WatchList;

pub const DEFAULT_PREFIX: &str = glasswatch_core::config::DEFAULT_NAME_PREFIX;
pub const DEFAULT_RELAY_BUDGET: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub bus_arn: String,
    pub watch: WatchList,
    pub relay_budget: Duration,
    pub dlq_url: Option<String>,
    /// Where follow rules deliver; `None`: this agent follows nothing.
    pub follow: Option<crate::follow::FollowTarget>,
}

impl AgentConfig {
    /// Read from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read from any lookup, for tests.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let bus_arn =
            get("GLASSWATCH_BUS_ARN").ok_or(ConfigError::Missing("GLASSWATCH_BUS_ARN"))?;
        if !is_bus_arn(&bus_arn) {
            return Err(ConfigError::Invalid {
                name: "GLASSWATCH_BUS_ARN",
                reason: format!(
                    "`{bus_arn}` is not an event bus ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)"
                ),
            });
        }
        let watch =
            glasswatch_core::env::watch_list(&get, "GLASSWATCH_WATCH").map_err(|e| match e {
                glasswatch_core::env::EnvError::Missing(name) => ConfigError::Missing(name),
                glasswatch_core::env::EnvError::Invalid { name, reason } => {
                    ConfigError::Invalid { name, reason }
                }
            })?;
        let relay_budget = match get("GLASSWATCH_RELAY_BUDGET_MS") {
            None => DEFAULT_RELAY_BUDGET,
            Some(ms) => match ms.parse::<u64>() {
                Ok(ms) if (100..=600_000).contains(&ms) => Duration::from_millis(ms),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "GLASSWATCH_RELAY_BUDGET_MS",
                        reason: format!(
                            "`{ms}` is not a whole number of milliseconds from 100 to 600000"
                        ),
                    });
                }
            },
        };
        Ok(Self {
            bus_arn,
            watch,
            relay_budget,
            dlq_url: get("GLASSWATCH_DLQ_URL").filter(|u| !u.trim().is_empty()),
            follow: follow_target(&get)?,
        })
    }
}

impl AgentConfig {
    /// The central bus's region: `PutEvents` goes to that region's
    /// endpoint, whatever region the agent runs in.
    pub fn bus_region(&self) -> &str {
        self.bus_arn.split(':').nth(3).unwrap_or_default()
    }
}

fn is_bus_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "events"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[5]
            .strip_prefix("event-bus/")
            .is_some_and(|n| !n.is_empty())
}

fn follow_target(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::follow::FollowTarget>, ConfigError> {
    let (Some(function_arn), Some(dlq_arn)) =
        (get("GLASSWATCH_FUNCTION_ARN"), get("GLASSWATCH_DLQ_ARN"))
    else {
        return Ok(None);
    };
    let account = function_arn
        .split(':')
        .nth(4)
        .filter(|a| glasswatch_core::config::is_account_id(a) && function_arn.starts_with("arn:"))
        .ok_or(ConfigError::Invalid {
            name: "GLASSWATCH_FUNCTION_ARN",
            reason: format!("`{function_arn}` is not a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)"),
        })?
        .to_owned();
    Ok(Some(crate::follow::FollowTarget {
        function_arn,
        dlq_arn,
        account,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    const BUS: &str = "arn:aws:events:eu-west-1:310987654321:event-bus/glasswatch-central";
    const WATCH: &str = r#"{"iam_users":["break-glass-1"],"roles":["BreakGlassRole"],"sso_permission_sets":[],"root_sign_in":true,"name_prefix":"gw"}"#;

    #[test]
    fn reads_the_two_required_variables() {
        let config = AgentConfig::from_lookup(lookup(&[
            ("GLASSWATCH_BUS_ARN", BUS),
            ("GLASSWATCH_WATCH", WATCH),
        ]))
        .unwrap();
        assert_eq!(config.bus_arn, BUS);
        assert_eq!(config.watch.name_prefix(), "gw");
        assert_eq!(config.relay_budget, DEFAULT_RELAY_BUDGET);
        assert_eq!(
            config.bus_region(),
            "eu-west-1",
            "PutEvents goes to the bus's region"
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let e = AgentConfig::from_lookup(lookup(&[("GLASSWATCH_WATCH", WATCH)])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable GLASSWATCH_BUS_ARN is not set"
        );
        let e = AgentConfig::from_lookup(lookup(&[
            ("GLASSWATCH_BUS_ARN", "bus"),
            ("GLASSWATCH_WATCH", WATCH),
        ]))
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable GLASSWATCH_BUS_ARN is invalid"),
            "{e}"
        );
        let e = AgentConfig::from_lookup(lookup(&[
            ("GLASSWATCH_BUS_ARN", BUS),
            ("GLASSWATCH_WATCH", r#"{"iam_user":[]}"#),
        ]))
        .unwrap_err();
        assert!(
            e.to_string().contains("GLASSWATCH_WATCH") && e.to_string().contains("iam_user"),
            "{e}"
        );
        let e = AgentConfig::from_lookup(lookup(&[
            ("GLASSWATCH_BUS_ARN", BUS),
            ("GLASSWATCH_WATCH", WATCH),
            ("GLASSWATCH_RELAY_BUDGET_MS", "soon"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("GLASSWATCH_RELAY_BUDGET_MS"), "{e}");
    }
}
