//! The monthly cost model of `cargo xtask bench`: Lambda, EventBridge,
//! DynamoDB (and SQS, which the pipeline also uses) for a fleet, from the
//! measured durations, memory and DynamoDB requests. [`monthly`] is pure
//! arithmetic; every line says how it was computed.
//!
//! Assumptions, stated in the output too: every matching event is relayed
//! as one signal; every agent invocation is a cold start (a heartbeat every
//! 15 minutes rarely finds a warm environment), billed from spawn to the
//! answer, init included (Lambda bills the init phase); each aggregator
//! invocation carries one message (no batching, the worst case); the tick
//! runs every minute (the audit template's schedule) and reads every coverage item; free tiers are left
//! out.

use serde::Serialize;

use super::aggregator::DynamoReport;

/// Public list prices, us-east-1, x86_64 Lambda, on-demand DynamoDB
/// (standard table class), SQS standard queues; free tiers not applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    pub region: &'static str,
    pub as_of: &'static str,
    /// USD per million Lambda requests.
    pub lambda_requests: f64,
    /// USD per GB-second of Lambda duration (x86_64, first tier).
    pub lambda_gb_second: f64,
    /// USD per million custom events put on a bus (64 KB chunks).
    pub eventbridge_events: f64,
    /// USD per million DynamoDB write request units (on-demand).
    pub dynamodb_wru: f64,
    /// USD per million DynamoDB read request units (on-demand).
    pub dynamodb_rru: f64,
    /// USD per GB-month of DynamoDB storage.
    pub dynamodb_storage: f64,
    /// USD per million SQS requests (standard queue, 64 KB chunks).
    pub sqs_requests: f64,
}

pub const PRICES: Prices = Prices {
    region: "us-east-1",
    as_of: "2026-11-21",
    lambda_requests: 0.20,
    lambda_gb_second: 0.000_016_666_7,
    eventbridge_events: 1.00,
    dynamodb_wru: 0.625,
    dynamodb_rru: 0.125,
    dynamodb_storage: 0.25,
    sqs_requests: 0.40,
};

/// What is watched, and how busy it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fleet {
    pub accounts: f64,
    pub regions: f64,
    /// CloudTrail events per account per day.
    pub events_per_account_day: f64,
    /// The share of them that match the agent's rules.
    pub matching: f64,
    pub heartbeat_minutes: f64,
    pub tick_minutes: f64,
    /// AWS bills a month as 730 hours.
    pub days_per_month: f64,
}

impl Fleet {
    /// Issue 8's fleet: 100 accounts × 17 regions, 1 M CloudTrail events
    /// per account per day, 0.01 % of them matching.
    pub const ISSUE: Self = Self {
        accounts: 100.0,
        regions: 17.0,
        events_per_account_day: 1e6,
        matching: 0.0001,
        heartbeat_minutes: 15.0,
        tick_minutes: 1.0,
        days_per_month: 730.0 / 24.0,
    };
}

/// The agent's measured figures the model uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgentMeasured {
    /// Spawn to the first event answered, median (ms).
    pub first_event_ms: f64,
    /// A warm event, median (ms).
    pub event_ms: f64,
    pub peak_rss_mb: f64,
}

/// The aggregator Lambda's measured figures the model uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AggregatorMeasured {
    /// Median invocation (ms), on moto.
    pub invocation_ms: f64,
    pub peak_rss_mb: f64,
    /// Mean signal envelope size (bytes).
    pub signal_bytes: f64,
}

/// DynamoDB work per signal event, from the `dynamodb` part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DynamoPerEvent {
    /// Items written inside `TransactWriteItems` (2 WRU per KB each).
    pub transact_items: f64,
    /// Single-item writes (`PutItem`, `UpdateItem`, `DeleteItem`).
    pub single_writes: f64,
    /// Read requests (`GetItem`, `Query`, ...), each taken as 1 RRU.
    pub reads: f64,
}

impl DynamoPerEvent {
    pub fn of(report: &DynamoReport) -> Self {
        let requests = |ops: &[&str]| -> f64 {
            ops.iter()
                .filter_map(|op| report.dynamodb.requests.get(*op))
                .sum::<u64>() as f64
        };
        let events = report.events.max(1) as f64;
        let single = requests(&["PutItem", "UpdateItem", "DeleteItem"]);
        let batched = report.dynamodb.items_written as f64 - single;
        Self {
            transact_items: batched.max(0.0) / events,
            single_writes: single / events,
            reads: report.dynamodb.reads() as f64 / events,
        }
    }
}

/// What the parts that ran measured, for the model.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    pub agent: Option<AgentMeasured>,
    pub aggregator: Option<AggregatorMeasured>,
    pub dynamodb: Option<DynamoPerEvent>,
}

/// Everything the model needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Inputs {
    pub agent: AgentMeasured,
    pub aggregator: AggregatorMeasured,
    pub dynamodb: DynamoPerEvent,
}

impl Measured {
    pub fn complete(&self) -> Option<Inputs> {
        Some(Inputs {
            agent: self.agent?,
            aggregator: self.aggregator?,
            dynamodb: self.dynamodb?,
        })
    }
}

/// One priced quantity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub service: &'static str,
    pub what: String,
    /// In millions (requests, events, GB-seconds are not: see `unit`).
    pub quantity: f64,
    pub unit: &'static str,
    pub unit_price: f64,
    pub usd: f64,
}

/// The monthly bill, line by line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub fleet: Fleet,
    pub prices: Prices,
    pub inputs: Inputs,
    pub lines: Vec<Line>,
}

/// Lambda memory for a peak RSS: twice the peak, rounded up to 64 MB, and
/// at least the 128 MB minimum.
pub fn memory_mb(peak_rss_mb: f64) -> f64 {
    ((2.0 * peak_rss_mb / 64.0).ceil() * 64.0).max(128.0)
}

/// The monthly cost of `fleet` at `prices`, from the measured `inputs`.
pub fn monthly(fleet: &Fleet, inputs: &Inputs, prices: &Prices) -> Model {
    let days = fleet.days_per_month;
    let signals = fleet.accounts * fleet.events_per_account_day * fleet.matching * days;
    let heartbeats = fleet.accounts * fleet.regions * (1440.0 / fleet.heartbeat_minutes) * days;
    let ticks = 1440.0 / fleet.tick_minutes * days;
    let agent_invocations = signals + heartbeats;
    let aggregator_invocations = signals + heartbeats + ticks;
    let agent_gb = memory_mb(inputs.agent.peak_rss_mb) / 1024.0;
    let aggregator_gb = memory_mb(inputs.aggregator.peak_rss_mb) / 1024.0;
    // Lambda bills whole milliseconds.
    let agent_ms = inputs.agent.first_event_ms.ceil();
    let aggregator_ms = inputs.aggregator.invocation_ms.ceil();
    let signal_chunks = (inputs.aggregator.signal_bytes / 65_536.0).ceil().max(1.0);
    let signal_kb = (inputs.aggregator.signal_bytes / 1024.0).ceil().max(1.0);
    // The event item holds the signal: its extra KBs, written in the
    // transaction, cost 2 WRU each.
    let wru_per_signal = 2.0 * inputs.dynamodb.transact_items
        + inputs.dynamodb.single_writes
        + 2.0 * (signal_kb - 1.0);
    // A coverage item is about 200 bytes; a strongly consistent read is 1
    // RRU per 4 KB.
    let rru_per_tick = (fleet.accounts * fleet.regions * 200.0 / 4096.0).ceil();
    // Per signal: the event item (signal and event), its session entry and
    // key items, about 512 bytes each besides the signal.
    let gb_per_month =
        signals * (inputs.aggregator.signal_bytes + 512.0 * inputs.dynamodb.transact_items) / 1e9;
    let million = |n: f64| n / 1e6;
    let line = |service, what: String, quantity: f64, unit, unit_price: f64| Line {
        service,
        what,
        quantity,
        unit,
        unit_price,
        usd: quantity * unit_price,
    };
    let lines = vec![
        line(
            "Lambda",
            format!(
                "agent requests: {signals:.0} signals + {heartbeats:.0} heartbeats \
                 ({} accounts × {} regions × {:.0}/day × {days:.2} days)",
                fleet.accounts,
                fleet.regions,
                1440.0 / fleet.heartbeat_minutes
            ),
            million(agent_invocations),
            "M requests",
            prices.lambda_requests,
        ),
        line(
            "Lambda",
            format!(
                "agent duration: {:.3} M × {agent_ms:.0} ms (cold: spawn to answer) × {agent_gb:.3} GB",
                million(agent_invocations)
            ),
            agent_invocations * agent_ms / 1000.0 * agent_gb,
            "GB-s",
            prices.lambda_gb_second,
        ),
        line(
            "Lambda",
            format!(
                "aggregator requests: one message each + {ticks:.0} ticks (every {} min)",
                fleet.tick_minutes
            ),
            million(aggregator_invocations),
            "M requests",
            prices.lambda_requests,
        ),
        line(
            "Lambda",
            format!(
                "aggregator duration: {:.3} M × {aggregator_ms:.0} ms (median on moto) × {aggregator_gb:.3} GB",
                million(aggregator_invocations)
            ),
            aggregator_invocations * aggregator_ms / 1000.0 * aggregator_gb,
            "GB-s",
            prices.lambda_gb_second,
        ),
        line(
            "EventBridge",
            format!(
                "custom events to the central bus: {signals:.0} signals × {signal_chunks:.0} chunk + {heartbeats:.0} heartbeats \
                 (CloudTrail's own events on the default buses are free)"
            ),
            million(signals * signal_chunks + heartbeats),
            "M events",
            prices.eventbridge_events,
        ),
        line(
            "DynamoDB",
            format!(
                "writes: {signals:.0} signals × {wru_per_signal:.1} WRU (2 × {:.2} transaction items + {:.2} single writes \
                 + 2 × {:.0} extra KB of signal) + {heartbeats:.0} heartbeats × 1 WRU",
                inputs.dynamodb.transact_items,
                inputs.dynamodb.single_writes,
                signal_kb - 1.0
            ),
            million(signals * wru_per_signal + heartbeats),
            "M WRU",
            prices.dynamodb_wru,
        ),
        line(
            "DynamoDB",
            format!(
                "reads: {signals:.0} signals × {:.2} RRU + {ticks:.0} ticks × {rru_per_tick:.0} RRU (coverage)",
                inputs.dynamodb.reads
            ),
            million(signals * inputs.dynamodb.reads + ticks * rru_per_tick),
            "M RRU",
            prices.dynamodb_rru,
        ),
        line(
            "DynamoDB",
            "storage added per month of signals (kept for the retention period, so it adds up)"
                .to_owned(),
            gb_per_month,
            "GB-month",
            prices.dynamodb_storage,
        ),
        line(
            "SQS",
            format!(
                "{:.3} M messages × 3 requests (send, receive, delete; unbatched)",
                million(signals + heartbeats)
            ),
            million(3.0 * (signals + heartbeats)),
            "M requests",
            prices.sqs_requests,
        ),
    ];
    Model {
        fleet: *fleet,
        prices: *prices,
        inputs: *inputs,
        lines,
    }
}

impl Model {
    pub fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.usd).sum()
    }

    /// The arithmetic, line by line, with the prices and assumptions.
    pub fn render(&self) -> String {
        let mut out = format!(
            "Monthly cost model: {} accounts × {} regions, {} CloudTrail events per account per day, \
             {}% matching; list prices {} as of {}, x86_64 Lambda, on-demand DynamoDB, no free tier.\n\
             Prices: Lambda ${}/M requests, ${}/GB-s; EventBridge ${}/M custom events; \
             DynamoDB ${}/M WRU, ${}/M RRU, ${}/GB-month; SQS ${}/M requests.\n",
            self.fleet.accounts,
            self.fleet.regions,
            self.fleet.events_per_account_day,
            self.fleet.matching * 100.0,
            self.prices.region,
            self.prices.as_of,
            self.prices.lambda_requests,
            self.prices.lambda_gb_second,
            self.prices.eventbridge_events,
            self.prices.dynamodb_wru,
            self.prices.dynamodb_rru,
            self.prices.dynamodb_storage,
            self.prices.sqs_requests,
        );
        for l in &self.lines {
            out += &format!(
                "  {:<11} {:>12.4} {:<10} × ${:<10} = ${:>8.2}   {}\n",
                l.service, l.quantity, l.unit, l.unit_price, l.usd, l.what
            );
        }
        out += &format!("  total: ${:.2} per month", self.total());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            agent: AgentMeasured {
                first_event_ms: 9.2,
                event_ms: 0.4,
                peak_rss_mb: 12.0,
            },
            aggregator: AggregatorMeasured {
                invocation_ms: 30.5,
                peak_rss_mb: 20.0,
                signal_bytes: 3000.0,
            },
            dynamodb: DynamoPerEvent {
                transact_items: 7.0,
                single_writes: 1.0,
                reads: 5.0,
            },
        }
    }

    #[test]
    fn memory_is_twice_the_peak_rounded_up_and_at_least_128_mb() {
        assert_eq!(memory_mb(12.0), 128.0);
        assert_eq!(memory_mb(64.0), 128.0);
        assert_eq!(memory_mb(65.0), 192.0);
        assert_eq!(memory_mb(200.0), 448.0);
    }

    #[test]
    fn the_issue_fleet_costs_what_the_arithmetic_says() {
        let model = monthly(&Fleet::ISSUE, &inputs(), &PRICES);
        let days = 730.0 / 24.0;
        let signals = 100.0 * 1e6 * 1e-4 * days; // 304,167
        let heartbeats = 100.0 * 17.0 * 96.0 * days; // 4,964,000
        let ticks = 1440.0 * days; // every minute
        let usd = |service: &str, unit: &str| -> f64 {
            model
                .lines
                .iter()
                .filter(|l| l.service == service && l.unit == unit)
                .map(|l| l.usd)
                .sum()
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6 * b.max(1.0);
        assert!(close(signals, 304_166.666_666_7));
        assert!(close(heartbeats, 4_964_000.0));
        // Lambda requests: both functions.
        let requests = (2.0 * (signals + heartbeats) + ticks) / 1e6 * 0.20;
        assert!(close(usd("Lambda", "M requests"), requests));
        // Duration: 10 ms (9.2 rounded up) and 31 ms, at 128 MB.
        let gb_s =
            (signals + heartbeats) * 0.010 * 0.125 + (signals + heartbeats + ticks) * 0.031 * 0.125;
        assert!(close(usd("Lambda", "GB-s"), gb_s * 0.000_016_666_7));
        assert!(close(
            usd("EventBridge", "M events"),
            (signals + heartbeats) / 1e6
        ));
        // 3,000-byte signals: 3 KB, so 2 extra KB at 2 WRU; 2 × 7 + 1 + 4.
        let wru = signals * 19.0 + heartbeats;
        assert!(close(usd("DynamoDB", "M WRU"), wru / 1e6 * 0.625));
        // 1,700 coverage items × 200 B = 340 KB: 84 RRU per tick.
        let rru = signals * 5.0 + ticks * 84.0;
        assert!(close(usd("DynamoDB", "M RRU"), rru / 1e6 * 0.125));
        assert!(close(
            usd("SQS", "M requests"),
            3.0 * (signals + heartbeats) / 1e6 * 0.40
        ));
        let total: f64 = model.lines.iter().map(|l| l.usd).sum();
        assert!(close(model.total(), total));
        // The order of magnitude the figures give: tens of dollars.
        assert!((10.0..100.0).contains(&model.total()), "{}", model.total());
        let text = model.render();
        assert!(
            text.contains("us-east-1") && text.contains("2026-11-21"),
            "{text}"
        );
        assert!(text.contains("total: $"), "{text}");
    }

    #[test]
    fn the_inputs_are_complete_only_with_all_three_parts() {
        let all = inputs();
        let mut measured = Measured {
            agent: Some(all.agent),
            aggregator: Some(all.aggregator),
            dynamodb: None,
        };
        assert_eq!(measured.complete(), None);
        measured.dynamodb = Some(all.dynamodb);
        assert_eq!(measured.complete(), Some(all));
    }
}
