//! # glasswatch-agent
//!
//! The forwarder Lambda that runs in every account and every enabled
//! region. EventBridge rules on the default bus (patterns from
//! `glasswatch_core::patterns`) invoke it with CloudTrail events, and a
//! schedule invokes it for heartbeats. It runs the core detector (the
//! precise second filter), builds a signal, and relays it with `PutEvents`
//! to the central bus in the audit account. It never writes DynamoDB.
//!
//! Layout:
//! - [`config`]: the environment, read once at init;
//! - [`handler`]: one invocation: heartbeat or record, classify, relay;
//! - [`relay`]: `PutEvents` with retries of only the failed entries, within
//!   a time budget; an error when anything is left unsent;
//! - [`heartbeat`]: what the account can see of CloudTrail in its region;
//! - [`follow`]: the rules that follow a break-glass session's onward
//!   credentials in this region, installed on the follow topic's word and
//!   removed by the heartbeat once expired;
//! - [`metrics`]: CloudWatch Embedded Metric Format counts.

pub mod config;
pub mod follow;
pub mod handler;
pub mod heartbeat;
pub mod metrics;
pub mod relay;

pub use config::{AgentConfig, ConfigError};
pub use handler::{Agent, AgentError, Outcome};

/// This agent's version, sent in every signal and heartbeat.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

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
