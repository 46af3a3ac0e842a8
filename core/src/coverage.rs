//! Coverage: is every account×region still watched?
//!
//! Each agent sends a heartbeat every `heartbeat_minutes` with what it can
//! see of CloudTrail and how many events wait in its dead-letter queue.
//! An account×region is unhealthy when it has missed [`MISSED_INTERVALS`]
//! heartbeats (or, targeted by deploy, never sent one), its trail is not
//! logging, or its agent dead-lettered events. The check alerts once when
//! it turns unhealthy (or changes how it is unhealthy) and once when it
//! recovers, never on every run.

use serde::{Deserialize, Serialize};

use crate::signal::TrailStatus;

/// Heartbeats missed before an account×region counts as silent.
pub const MISSED_INTERVALS: i64 = 3;

/// What the store keeps per account×region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub account: String,
    pub region: String,
    /// Seconds since the epoch of the last heartbeat received.
    pub last_heartbeat: i64,
    pub trail: TrailStatus,
    pub agent_version: String,
    /// The health last alerted on.
    pub alerted: Health,
    /// Events in the agent's dead-letter queue at the last heartbeat.
    #[serde(default)]
    pub dead_letters: u64,
    /// Whether a heartbeat ever arrived. A cell deploy targeted that never
    /// reported is kept with `last_heartbeat` = when it was first expected.
    #[serde(default = "yes")]
    pub reported: bool,
}

fn yes() -> bool {
    true
}

/// The health of one account×region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    /// No heartbeat for [`MISSED_INTERVALS`] intervals or more.
    Silent,
    /// Targeted by deploy, and no heartbeat ever, [`MISSED_INTERVALS`]
    /// intervals after it was first expected.
    NeverReported,
    /// The agent reports no trail logging in the region.
    TrailNotLogging,
    /// The agent's dead-letter queue holds events it could not relay.
    DeadLetters,
}

impl Health {
    pub const ALL: [Health; 5] = [
        Self::Healthy,
        Self::Silent,
        Self::NeverReported,
        Self::TrailNotLogging,
        Self::DeadLetters,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Silent => "silent",
            Self::NeverReported => "never_reported",
            Self::TrailNotLogging => "trail_not_logging",
            Self::DeadLetters => "dead_letters",
        }
    }

    /// The health [`as_str`](Self::as_str) wrote; `None` for other text.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == text)
    }
}

/// The health at `now`. An `unknown` trail status is not an alert: the
/// account could not tell, and `status` shows it.
pub fn health(coverage: &Coverage, now: i64, interval_secs: i64) -> Health {
    if now - coverage.last_heartbeat >= MISSED_INTERVALS * interval_secs {
        if coverage.reported {
            Health::Silent
        } else {
            Health::NeverReported
        }
    } else if coverage.trail == TrailStatus::NotLogging {
        Health::TrailNotLogging
    } else if coverage.dead_letters > 0 {
        Health::DeadLetters
    } else {
        Health::Healthy
    }
}

/// A change worth a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unhealthy(Health),
    Recovered,
}

/// Compare the health now with what was last alerted. `None`: nothing to
/// say.
pub fn change(alerted: Health, now: Health) -> Option<Change> {
    match (alerted, now) {
        (a, b) if a == b => None,
        (_, Health::Healthy) => Some(Change::Recovered),
        (_, unhealthy) => Some(Change::Unhealthy(unhealthy)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(last: i64, trail: TrailStatus) -> Coverage {
        Coverage {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            last_heartbeat: last,
            trail,
            agent_version: "0.1.0".into(),
            alerted: Health::Healthy,
            dead_letters: 0,
            reported: true,
        }
    }

    #[test]
    fn dead_letters_and_cells_that_never_reported() {
        let mut c = item(1000, TrailStatus::Logging);
        c.dead_letters = 3;
        assert_eq!(health(&c, 1001, 300), Health::DeadLetters);
        c.trail = TrailStatus::NotLogging;
        assert_eq!(health(&c, 1001, 300), Health::TrailNotLogging);
        let mut expected = item(1000, TrailStatus::Unknown);
        expected.reported = false;
        assert_eq!(health(&expected, 1000 + 899, 300), Health::Healthy);
        assert_eq!(health(&expected, 1000 + 900, 300), Health::NeverReported);
        for h in Health::ALL {
            assert_eq!(Health::parse(h.as_str()), Some(h));
        }
    }

    #[test]
    fn silence_after_three_intervals() {
        let c = item(1000, TrailStatus::Logging);
        assert_eq!(health(&c, 1000 + 3 * 300 - 1, 300), Health::Healthy);
        assert_eq!(health(&c, 1000 + 3 * 300, 300), Health::Silent);
    }

    #[test]
    fn trail_status() {
        assert_eq!(
            health(&item(1000, TrailStatus::NotLogging), 1001, 300),
            Health::TrailNotLogging
        );
        assert_eq!(
            health(&item(1000, TrailStatus::Unknown), 1001, 300),
            Health::Healthy
        );
    }

    #[test]
    fn alerts_once_and_on_recovery() {
        assert_eq!(change(Health::Healthy, Health::Healthy), None);
        assert_eq!(
            change(Health::Healthy, Health::Silent),
            Some(Change::Unhealthy(Health::Silent))
        );
        assert_eq!(change(Health::Silent, Health::Silent), None);
        assert_eq!(
            change(Health::Silent, Health::TrailNotLogging),
            Some(Change::Unhealthy(Health::TrailNotLogging))
        );
        assert_eq!(
            change(Health::TrailNotLogging, Health::Healthy),
            Some(Change::Recovered)
        );
    }
}
