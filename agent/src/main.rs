//! # glasswatch-agent
//!
//! The forwarder Lambda that runs in every account and region. Its Lambda
//! runtime wiring arrives with the agent issue; until then this binary only
//! states what it is, so the workspace builds end to end.

fn main() {
    eprintln!(
        "glasswatch-agent {}: the Lambda runtime is not wired yet (see the agent issue)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
