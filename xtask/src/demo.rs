//! `cargo xtask demo`: the main job, end to end, on local emulated AWS.
//!
//! The outer process installs the tools (moto, cargo-lambda and zig into
//! `target/py`), starts moto, and runs itself again as the inner process
//! with moto's address in its environment. The inner process then builds
//! an organization, deploys with the real deploy code, plays a scripted
//! incident through the pipeline (`test_support::pipeline`: agents, bus,
//! queue, aggregator, a Slack stand-in), prints Slack as it arrives, and
//! shows the audit trail with the real `audit` commands. Everything stops
//! at the end, unless `--keep-running`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use glasswatch_core::config::LambdaArchitecture;
use glasswatch_stacksets::aws::{Waiting, assume_role, in_region};
use glasswatch_stacksets::deploy::{Access, Options};
use glasswatch_stacksets::render::Blueprint;
use test_support::moto::PrivateMoto;
use test_support::org::{OTHER_REGION, Org};
use test_support::pipeline::{
    Delivery, Deployed, DrainReport, Options as PipelineOptions, Pipeline,
};
use test_support::scenario::{CHAIN, INCIDENT_START, Scenario};
use test_support::slack::{CHANNEL_ID, SlackCall};

use crate::demo_view::{self, Channel};
use crate::deploy::AuditOutputs;
use crate::python::{self, target_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Leave moto running afterwards, with the deployment and the audit
    /// data, for exploring with `cargo xtask audit` and `status`.
    #[arg(long)]
    keep_running: bool,
    /// Internal: the inner process, with moto's address in its
    /// environment.
    #[arg(long, hide = true)]
    inner: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    if args.inner {
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        return runtime.block_on(inner()).map(|()| ExitCode::SUCCESS);
    }
    let started = Instant::now();
    step(1, "tools: moto, cargo-lambda and zig in target/py");
    let venv = python::ensure()?;
    step(2, "moto on 127.0.0.1");
    let moto = PrivateMoto::start_with(&venv.bin("python"))?;
    println!("    moto at {}", moto.endpoint);
    let status = Command::new(std::env::current_exe().context("cannot find xtask itself")?)
        .args(["demo", "--inner"])
        .env("GLASSWATCH_MOTO_ENDPOINT", &moto.endpoint)
        .env("GLASSWATCH_PYTHON_BIN", venv.root.join("bin"))
        .env("GLASSWATCH_LOG", "warn")
        .status()
        .context("cannot run the demo")?;
    if !status.success() {
        bail!(
            "the demo failed ({status}); moto's log is {}",
            moto.log.display()
        );
    }
    println!(
        "\nDemo finished in {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    if args.keep_running {
        println!(
            "moto keeps running at {} with the deployment and the audit data.\n\
             In another terminal: `source {}` and try the commands it lists.\n\
             Press Ctrl-C here to stop moto.",
            moto.endpoint,
            explore_file().display()
        );
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("cannot start the async runtime")?
            .block_on(tokio::signal::ctrl_c())
            .context("cannot wait for Ctrl-C")?;
    }
    drop(moto);
    Ok(ExitCode::SUCCESS)
}

/// How many numbered steps the demo shows.
const STEPS: u32 = 10;

fn step(n: u32, what: &str) {
    println!("\n==> [{n}/{STEPS}] {what}");
    std::io::stdout().flush().ok();
}

fn demo_dir() -> PathBuf {
    target_dir().join("demo")
}

fn explore_file() -> PathBuf {
    demo_dir().join("explore.sh")
}

async fn inner() -> Result<()> {
    let dir = demo_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    step(
        3,
        "an organization: management, audit, prod, shared-services, dev; 2 regions; a trail logging in each",
    );
    let org = Org::create().await?;
    for (id, name) in &org.names {
        println!("    {id}  {name}");
    }
    org.start_trails().await?;

    step(4, "the Lambda zips (cargo lambda build --release --x86-64)");
    let venv = python::ensure()?;
    let built = crate::lambda::build(&venv, LambdaArchitecture::X86_64)?;
    let zips = crate::deploy::read_zips(&built)?;

    step(5, "cargo xtask deploy, against moto");
    let (config_path, config) = demo_config(&org, &dir)?;
    let deployed = deploy(&org, &config, &zips).await?;
    let table = deployed.table.clone();
    let audit_env = account_env(&org, &org.audit).await?;
    let management_env = account_env(&org, &org.management).await?;
    let since = time::OffsetDateTime::from_unix_timestamp(INCIDENT_START)
        .context("the incident's start")?
        .date()
        .to_string();
    write_explore(&audit_env, &management_env, &config_path, &table, &since)?;
    let config_args = ["--config", &config_path.to_string_lossy()].map(str::to_owned);
    let status = |expect: i32| {
        let mut args = vec!["status".to_owned()];
        args.extend(config_args.iter().cloned());
        xtask(&args, &management_env, expect)
    };
    let audit = |command: &[&str]| {
        let mut args: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
        args.extend(config_args.iter().cloned());
        args.extend(["--table".to_owned(), table.clone()]);
        xtask(&args, &audit_env, 0)
    };

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<SlackCall>();
    let pipeline = Pipeline::start(
        org.clone(),
        PipelineOptions {
            deployed: Some(deployed),
            slack_observer: Some(tx),
            ..PipelineOptions::default()
        },
    )
    .await?;
    let mut slack = Shown {
        calls: rx,
        channel: Channel::default(),
    };

    step(
        6,
        "every agent's first heartbeat, then cargo xtask status (every account x region covered)",
    );
    heartbeats(&pipeline).await?;
    status(0)?;

    step(
        7,
        "the scripted incident: agents -> bus -> the audit stack's queue -> aggregator -> its table, Slack",
    );
    let scenario = Scenario::incident(&org, INCIDENT_START, "demo")?;
    play(&pipeline, &scenario, &mut slack).await?;

    step(
        8,
        "the incident stopped the trail: the next heartbeats, a coverage alert, and status shows the gap",
    );
    org.stop_trail(&org.management, OTHER_REGION).await?;
    heartbeats(&pipeline).await?;
    pipeline
        .tick()
        .await
        .map_err(|e| anyhow::anyhow!("the aggregator's tick failed: {e}"))?;
    if !slack.show() {
        bail!("no coverage alert for the stopped trail");
    }
    status(1)?;
    check(&pipeline, &scenario).await?;

    step(
        9,
        "cargo xtask audit sessions, and the cross-account chain's timeline",
    );
    audit(&["audit", "sessions", "--since", &since])?;
    let chain = scenario
        .expected_sessions()
        .into_iter()
        .find(|s| s.name == CHAIN)
        .context("the scenario has no break-glass chain")?;
    println!();
    audit(&["audit", "session", &chain.session_id])?;

    step(STEPS, "done: stopping the pipeline and moto");
    Ok(())
}

/// Deploy as `cargo xtask deploy --yes` does, as the management account,
/// with the Slack secret in place first; returns what the audit stack
/// made.
async fn deploy(
    org: &Org,
    config: &glasswatch_core::Config,
    zips: &glasswatch_stacksets::deploy::Zips,
) -> Result<Deployed> {
    let blueprint = Blueprint::of(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let deployer = org.management_config.clone();
    let audit = assume_role(&deployer, &org.audit, "OrganizationAccountAccessRole")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let audit_here = in_region(&audit, org.audit_region());
    aws_sdk_secretsmanager::Client::new(&audit_here)
        .create_secret()
        .name(&config.slack.secret_name)
        .secret_string(r#"{"token":"xoxb-glasswatch-demo"}"#)
        .send()
        .await
        .context("create the Slack secret in the audit account")?;
    let ctx = crate::deploy::Deployment {
        config: config.clone(),
        blueprint,
        access: Access {
            deployer: deployer.clone(),
            audit,
            management: Some(deployer),
        },
    };
    // moto has no Organizations resource policies, and finishes stack
    // operations at once.
    let options = Options {
        waiting: Waiting {
            poll: Duration::from_millis(50),
            timeout: Duration::from_secs(120),
        },
        delegate_list_accounts: false,
    };
    crate::deploy::deploy_with(&ctx, Some(zips), false, true, options).await?;
    let outputs = AuditOutputs::read(&audit_here, &ctx.blueprint).await?;
    Ok(Deployed {
        table: outputs.get("TableName")?,
        queue_url: outputs.get("QueueUrl")?,
        dlq_url: outputs.get("DeadLetterQueueUrl")?,
    })
}

/// The Slack calls seen so far, printed as the channel shows them.
struct Shown {
    calls: tokio::sync::mpsc::UnboundedReceiver<SlackCall>,
    channel: Channel,
}

impl Shown {
    /// Print what Slack received since the last call; say whether it
    /// received anything.
    fn show(&mut self) -> bool {
        let mut any = false;
        while let Ok(call) = self.calls.try_recv() {
            any = true;
            for line in self.channel.show(&call.method, &call.ts, &call.body) {
                println!("        {line}");
            }
        }
        any
    }
}

/// Every agent's scheduled heartbeat through the pipeline.
async fn heartbeats(pipeline: &Pipeline) -> Result<()> {
    let report = without_failures(pipeline.heartbeats().await?, "heartbeats")?;
    println!("    {} heartbeats relayed and stored", report.messages);
    Ok(())
}

/// Play the incident through the pipeline, event by event as they
/// happened, printing each event and what Slack received for it; then a
/// forged signal.
async fn play(pipeline: &Pipeline, scenario: &Scenario, slack: &mut Shown) -> Result<()> {
    let org = &scenario.org;
    println!("    Each CloudTrail event, then what Slack channel {CHANNEL_ID} received for it:");
    for event in &scenario.events {
        let name = org.names.get(&event.account).map_or("?", String::as_str);
        println!("\n    {}", demo_view::event_line(event.record(), name));
        match pipeline.deliver(&event.envelope).await? {
            Delivery::Relayed => {}
            Delivery::Dropped => {
                println!("        (not break-glass use: the agent dropped it, nothing sent)");
            }
            Delivery::DeadLettered { error } => {
                bail!("{}: the agent failed: {error}", event.label)
            }
        }
        drain(pipeline, event.label).await?;
        if !slack.show() && event.session.is_some() {
            let session = pipeline
                .store
                .session_of_event(&event.event_id)
                .await?
                .context("a relayed event was not stored")?;
            let root = pipeline
                .store
                .session(&session)
                .await?
                .and_then(|s| s.root_ts)
                .unwrap_or_default();
            println!(
                "        -> session {session}, thread #{}: held for the thread's next digest",
                slack.channel.number(&root)
            );
        }
    }
    println!(
        "\n    The aggregator's scheduled tick: the held-back follow-ups go out, one digest per thread"
    );
    pipeline.settle(5).await?;
    slack.show();

    let forged = scenario.forged_prod_activity(INCIDENT_START, "demo")?;
    println!(
        "\n    A compromised dev account puts a forged signal on the central bus, claiming prod's break-glass role called:\n    {}",
        demo_view::event_line(forged.record(), "prod")
    );
    let before = pipeline.stored_sessions().await?;
    pipeline
        .put_signal_as(&org.dev, &forged.region, forged.record())
        .await?;
    drain(pipeline, forged.label).await?;
    pipeline.settle(5).await?;
    slack.show();
    if pipeline.stored_sessions().await? != before {
        bail!("the forged signal changed a session");
    }
    Ok(())
}

/// The end state against the script: the exact sessions, one root message
/// each, two other alerts (the forged signal, the stopped trail), nothing
/// from the noise, nothing pending, no dead letters.
async fn check(pipeline: &Pipeline, scenario: &Scenario) -> Result<()> {
    let stored = pipeline.stored_sessions().await?;
    let pending = pipeline.store.pending().await?;
    let letters = pipeline.take_dead_letters().await?;
    scenario
        .check_sessions(&stored)
        .and_then(|()| pipeline.check_slack(&stored, 2))
        .map_err(|problems| anyhow::anyhow!("the outcome differs from the script:\n{problems}"))?;
    if !pending.is_empty() || !letters.is_empty() {
        bail!("left over: pending Slack messages {pending:?}, dead letters {letters:?}");
    }
    println!(
        "\n    ok: {} sessions stored as scripted, one Slack thread each; one spoofing and one coverage alert; \
         the forged signal changed no session; the agents dropped all {} ordinary events; \
         nothing pending, no dead letters",
        stored.len(),
        scenario.noise().count()
    );
    Ok(())
}

/// Feed the queue to the aggregator until it is empty; any failure stops
/// the demo (there are no injected faults here).
async fn drain(pipeline: &Pipeline, label: &str) -> Result<()> {
    without_failures(pipeline.drain().await?, label).map(drop)
}

/// The report, or an error when the aggregator failed a message or an
/// invocation (the demo injects no faults, so any failure is a bug).
fn without_failures(report: DrainReport, label: &str) -> Result<DrainReport> {
    if report.failed > 0 || !report.invocation_errors.is_empty() {
        bail!("{label}: the aggregator failed: {report:?}");
    }
    Ok(report)
}

/// The demo's `glasswatch.toml`: the repository's watch list, with this
/// organization's accounts and OUs, written where `audit` can read it.
fn demo_config(org: &Org, dir: &Path) -> Result<(PathBuf, glasswatch_core::Config)> {
    let text = org.glasswatch_toml()?;
    let config = glasswatch_core::Config::parse(&text, "demo glasswatch.toml")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = dir.join("glasswatch.toml");
    std::fs::write(&out, &text).with_context(|| format!("cannot write {}", out.display()))?;
    Ok((out, config))
}

/// An account's moto credentials, as `AWS_*` variables.
async fn account_env(org: &Org, account: &str) -> Result<Vec<(String, String)>> {
    let (_, c) = test_support::account_config(account, org.audit_region()).await?;
    Ok(vec![
        ("AWS_ENDPOINT_URL".into(), test_support::moto_endpoint()),
        ("AWS_REGION".into(), org.audit_region().to_owned()),
        ("AWS_ACCESS_KEY_ID".into(), c.access_key_id().to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            c.secret_access_key().to_owned(),
        ),
        (
            "AWS_SESSION_TOKEN".into(),
            c.session_token().unwrap_or_default().to_owned(),
        ),
    ])
}

/// `target/demo/explore.sh`: the audit account's credentials to source,
/// and commands to try against the demo's moto.
fn write_explore(
    audit_env: &[(String, String)],
    management_env: &[(String, String)],
    config: &Path,
    table: &str,
    since: &str,
) -> Result<()> {
    let mut text = String::from(
        "# The demo's moto, as the audit account: `source` this file, then try the commands below.\n",
    );
    for (k, v) in audit_env {
        text.push_str(&format!("export {k}='{v}'\n"));
    }
    let c = config.display();
    for command in [
        format!("audit sessions --since {since}"),
        format!("audit sessions --since {since} --severity critical --format json"),
        format!("audit events --since {since} --kind monitoring_tamper"),
        "audit coverage".to_owned(),
        format!("audit export --since {since} --until now --out target/demo/evidence"),
    ] {
        text.push_str(&format!(
            "# cargo xtask {command} --config {c} --table {table}\n"
        ));
    }
    text.push_str("# status runs as the management account:\n# ");
    for (k, v) in management_env {
        text.push_str(&format!("{k}='{v}' "));
    }
    text.push_str(&format!("cargo xtask status --config {c}\n"));
    let path = explore_file();
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Run this xtask's own command line, as an operator would, with these
/// credentials; any exit code but `expect` fails the demo.
fn xtask(args: &[String], env: &[(String, String)], expect: i32) -> Result<()> {
    println!("    $ cargo xtask {}", args.join(" "));
    std::io::stdout().flush().ok();
    let status = Command::new(std::env::current_exe().context("cannot find xtask itself")?)
        .args(args)
        .env_remove("AWS_PROFILE")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .with_context(|| format!("cannot run xtask {}", args.join(" ")))?;
    if status.code() != Some(expect) {
        bail!(
            "`cargo xtask {}` exited with {status}, not {expect}",
            args.join(" ")
        );
    }
    Ok(())
}
