//! Counts per invocation, written as one CloudWatch Embedded Metric Format
//! line on stdout (Lambda ships stdout to CloudWatch Logs, which turns the
//! line into metrics).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub events_received: u64,
    pub detections: u64,
    pub relayed: u64,
    pub retried: u64,
    pub failed: u64,
}

impl Counts {
    /// The EMF line for these counts at `timestamp_ms`.
    pub fn emf_line(&self, timestamp_ms: u128) -> String {
        let metric = |name: &str| json!({"Name": name, "Unit": "Count"});
        json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": "Glasswatch/Agent",
                    "Dimensions": [[]],
                    "Metrics": [
                        metric("EventsReceived"), metric("Detections"), metric("Relayed"),
                        metric("Retried"), metric("Failed"),
                    ],
                }],
            },
            "EventsReceived": self.events_received,
            "Detections": self.detections,
            "Relayed": self.relayed,
            "Retried": self.retried,
            "Failed": self.failed,
        })
        .to_string()
    }

    pub fn emit(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        println!("{}", self.emf_line(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_shape() {
        let counts = Counts {
            events_received: 1,
            detections: 2,
            relayed: 1,
            retried: 3,
            failed: 0,
        };
        let v: serde_json::Value =
            serde_json::from_str(&counts.emf_line(1_700_000_000_000)).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        assert_eq!(v["Retried"], 3);
        assert_eq!(v["Detections"], 2);
    }
}
