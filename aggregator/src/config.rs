//! The aggregator's configuration, from its environment, read once at
//! init.
//!
//! | variable | required | default | meaning |
//! |---|---|---|---|
//! | `GLASSWATCH_TABLE` | yes | | the DynamoDB table |
//! | `GLASSWATCH_SLACK_MODE` | yes | | `bot` or `webhook` |
//! | `GLASSWATCH_SLACK_SECRET_ARN` | yes | | Secrets Manager secret holding the bot token or the webhook URL |
//! | `GLASSWATCH_SLACK_CHANNEL` | bot mode | | channel id for `chat.postMessage` |
//! | `GLASSWATCH_SLACK_API_URL` | no | `https://slack.com/api/` | Slack Web API base (a local server in the demo) |
//! | `GLASSWATCH_QUIET_MINUTES` | no | 60 | session quiet period |
//! | `GLASSWATCH_RETENTION_DAYS` | no | 2555 | TTL of stored items |
//! | `GLASSWATCH_HEARTBEAT_MINUTES` | no | 15 | the agents' heartbeat interval |
//! | `GLASSWATCH_ACCOUNTS_TTL_SECS` | no | 300 | how long the organization's account list is cached |
//! | `GLASSWATCH_WATCH` | yes | | the watch list (as the agents get it), to classify the events that reach the central bus without an agent (tamper) |
//! | `GLASSWATCH_REGIONS` | no | any | the regions deploy targets, comma-separated: heartbeats from others are refused, and every targeted account × region is expected to report |
//! | `GLASSWATCH_LOG` | no | `info` | log filter |

use std::time::Duration;

use glasswatch_core::WatchList;
use glasswatch_core::config::SlackMode;
use glasswatch_core::env::{EnvError, list, number, required, watch_list};

pub const DEFAULT_SLACK_API: &str = "https://slack.com/api/";

#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    pub table: String,
    pub slack_mode: SlackMode,
    pub slack_secret_arn: String,
    pub slack_channel: String,
    pub slack_api_url: String,
    pub quiet_secs: i64,
    pub retention_days: u32,
    pub heartbeat_secs: i64,
    pub accounts_ttl: Duration,
    pub watch: WatchList,
    /// Empty: any region.
    pub regions: Vec<String>,
}

impl AggregatorConfig {
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let slack_mode = match required(&get, "GLASSWATCH_SLACK_MODE")?.as_str() {
            "bot" => SlackMode::Bot,
            "webhook" => SlackMode::Webhook,
            other => {
                return Err(EnvError::Invalid {
                    name: "GLASSWATCH_SLACK_MODE",
                    reason: format!("`{other}` is neither `bot` nor `webhook`"),
                });
            }
        };
        let slack_channel = match slack_mode {
            SlackMode::Bot => required(&get, "GLASSWATCH_SLACK_CHANNEL")?,
            SlackMode::Webhook => get("GLASSWATCH_SLACK_CHANNEL").unwrap_or_default(),
        };
        let slack_api_url =
            get("GLASSWATCH_SLACK_API_URL").unwrap_or_else(|| DEFAULT_SLACK_API.to_owned());
        if !(slack_api_url.starts_with("https://") || slack_api_url.starts_with("http://127.0.0.1"))
        {
            return Err(EnvError::Invalid {
                name: "GLASSWATCH_SLACK_API_URL",
                reason: format!("`{slack_api_url}` is not an https URL (http only to 127.0.0.1)"),
            });
        }
        Ok(Self {
            table: required(&get, "GLASSWATCH_TABLE")?,
            slack_mode,
            slack_secret_arn: required(&get, "GLASSWATCH_SLACK_SECRET_ARN")?,
            slack_channel,
            slack_api_url,
            quiet_secs: i64::from(number(&get, "GLASSWATCH_QUIET_MINUTES", 60u32, 1..=1440)?) * 60,
            retention_days: number(&get, "GLASSWATCH_RETENTION_DAYS", 2555u32, 1..=36500)?,
            heartbeat_secs: i64::from(number(
                &get,
                "GLASSWATCH_HEARTBEAT_MINUTES",
                15u32,
                1..=1440,
            )?) * 60,
            accounts_ttl: Duration::from_secs(number(
                &get,
                "GLASSWATCH_ACCOUNTS_TTL_SECS",
                300u64,
                0..=86_400,
            )?),
            watch: watch_list(&get, "GLASSWATCH_WATCH")?,
            regions: list(&get, "GLASSWATCH_REGIONS"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_and_errors() {
        let c = AggregatorConfig::from_lookup(lookup(&[
            ("GLASSWATCH_TABLE", "t"),
            ("GLASSWATCH_WATCH", r#"{"roles":["BreakGlassRole"]}"#),
            ("GLASSWATCH_REGIONS", "us-east-1, eu-west-1"),
            ("GLASSWATCH_SLACK_MODE", "webhook"),
            (
                "GLASSWATCH_SLACK_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:310987654321:secret:s",
            ),
        ]))
        .unwrap();
        assert_eq!(c.quiet_secs, 3600);
        assert_eq!(c.heartbeat_secs, 900);
        assert_eq!(c.slack_api_url, DEFAULT_SLACK_API);
        assert_eq!(c.regions, ["us-east-1", "eu-west-1"]);
        assert!(c.watch.role_watched(None, "breakglassrole"));
        let e = AggregatorConfig::from_lookup(lookup(&[
            ("GLASSWATCH_TABLE", "t"),
            ("GLASSWATCH_SLACK_MODE", "bot"),
            ("GLASSWATCH_SLACK_SECRET_ARN", "s"),
        ]))
        .unwrap_err();
        assert_eq!(e, EnvError::Missing("GLASSWATCH_SLACK_CHANNEL"));
        let e =
            AggregatorConfig::from_lookup(lookup(&[("GLASSWATCH_SLACK_MODE", "irc")])).unwrap_err();
        assert!(e.to_string().contains("GLASSWATCH_SLACK_MODE"), "{e}");
        let e = AggregatorConfig::from_lookup(lookup(&[
            ("GLASSWATCH_TABLE", "t"),
            ("GLASSWATCH_SLACK_MODE", "webhook"),
            ("GLASSWATCH_SLACK_SECRET_ARN", "s"),
            ("GLASSWATCH_SLACK_API_URL", "http://evil.example/"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("GLASSWATCH_SLACK_API_URL"), "{e}");
    }
}
