//! # glasswatch-aggregator
//!
//! The audit-account Lambda that correlates signals into sessions. Its Lambda
//! runtime wiring arrives with the aggregator issue; until then this binary only
//! states what it is, so the workspace builds end to end.

fn main() {
    eprintln!(
        "glasswatch-aggregator {}: the Lambda runtime is not wired yet (see the aggregator issue)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
