//! # xtask
//!
//! The operator's entry point, run as `cargo xtask <command>`. A thin shell:
//! the decisions live in `glasswatch-core`; this crate reads files, starts
//! processes and prints.
//!
//! Layout:
//! - `audit`: queries of the audit store (sessions, timelines, detections,
//!   evidence packs, coverage);
//! - `replay`: recorded events through the detector; `replay_s3`: its
//!   `s3://` inputs, listed by the days in their keys and streamed;
//! - `deploy`: deploy, destroy and status around `glasswatch-stacksets`;
//! - `demo`: the whole pipeline on moto, end to end;
//! - `lambda`: the Lambda zips, built with cargo-lambda;
//! - `test`: the one test command (tools into `target/py`, moto, fmt,
//!   clippy, every test);
//! - `python`: the virtualenv under `target/py` with pinned tools;
//! - `bench`: performance figures against their targets (the agent's init
//!   time, time per event, peak RSS, binary size);
//! - `runtime_api`: local stand-ins for the Lambda Runtime API and
//!   EventBridge on a tiny `std` HTTP/1.1 server, for `bench`.

mod audit;
mod bench;
mod demo;
mod demo_view;
mod deploy;
mod lambda;
mod python;
mod replay;
mod replay_s3;
mod runtime_api;
mod test;

use std::process::{Command as Process, ExitCode};

use anyhow::{Context, Result, bail};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Glasswatch: break-glass alerts for an AWS Organization"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay recorded CloudTrail events through the detector.
    Replay(replay::Args),
    /// Run every check: fmt, clippy, unit, property and moto-backed tests.
    Test(test::Args),
    /// Deploy to every account and region of the organization: artifact
    /// buckets, the audit stack, the agent StackSet, the management
    /// account's stacks.
    Deploy(deploy::DeployArgs),
    /// Remove a deployment; the audit table is kept unless
    /// --delete-audit-data.
    Destroy(deploy::DestroyArgs),
    /// Coverage of every account x region: stack, last heartbeat, trail.
    /// Exits 1 when there is a gap.
    Status(deploy::StatusArgs),
    /// Query the audit store: sessions, a session's timeline, detections
    /// by kind, evidence packs, coverage.
    Audit(audit::Args),
    /// The whole pipeline on local emulated AWS: an organization, a
    /// deploy, a scripted incident, Slack as it arrives, the audit trail.
    Demo(demo::Args),
    /// Performance figures against their targets: cold start, peak RSS,
    /// zip sizes, detector, replay and correlation throughput, DynamoDB
    /// writes, monthly cost; --check compares with BENCHMARKS.md.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay::run(&args),
        Command::Test(args) => test::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Deploy(args) => deploy::run_deploy(&args),
        Command::Destroy(args) => deploy::run_destroy(&args),
        Command::Status(args) => deploy::run_status(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run a process to completion; a non-zero exit is an error saying what
/// failed.
pub fn run_command(command: &mut Process, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?} to {what}", command.get_program()))?;
    if !status.success() {
        bail!("failed to {what} ({status})");
    }
    Ok(())
}
