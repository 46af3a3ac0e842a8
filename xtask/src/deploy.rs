//! `cargo xtask deploy | destroy | status`: the command line around
//! `glasswatch_stacksets`. Reads the configuration, resolves credentials
//! (profiles and SSO through `aws-config`; `AWS_ENDPOINT_URL` is honoured),
//! builds the Lambdas, shows progress, asks before destroying, and prints
//! what happened.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, SdkConfig};
use glasswatch_core::Config;
use glasswatch_stacksets::aws::{Progress, Waiting, assume_role, cloudformation, in_region};
use glasswatch_stacksets::deploy::{self as stackset_deploy, Access, Options, Plan, Report, Zips};
use glasswatch_stacksets::render::Blueprint;
use glasswatch_stacksets::stacks::{Caller, Outcome, describe, instances};
use glasswatch_stacksets::status::{Observed, Row, rows};
use indicatif::{ProgressBar, ProgressStyle};

use crate::replay::load_config;

/// Where to act, and as whom: shared by deploy, destroy and status.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The configuration file.
    #[arg(long, default_value = "glasswatch.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// AWS profile of the management account or a StackSets delegated
    /// administrator (default: the usual credential chain).
    #[arg(long, value_name = "P")]
    pub profile: Option<String>,
    /// AWS profile for the audit account, instead of assuming --audit-role.
    #[arg(long, value_name = "P")]
    pub audit_profile: Option<String>,
    /// Role assumed in the audit account when no --audit-profile is given.
    #[arg(
        long,
        default_value = "OrganizationAccountAccessRole",
        value_name = "ROLE"
    )]
    pub audit_role: String,
    /// AWS profile for the management account's own stacks, needed only
    /// when --profile is a delegated administrator.
    #[arg(long, value_name = "P")]
    pub management_profile: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print the plan (regions, OUs and their accounts, buckets, stacks,
    /// rule patterns) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Use prebuilt zips from this directory (agent.zip, aggregator.zip)
    /// instead of building with cargo lambda.
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Do not add the statement that lets the audit account list the
    /// organization's accounts to the organization's resource policy (for
    /// endpoints without Organizations resource policies, or to add it
    /// yourself).
    #[arg(long)]
    pub skip_list_accounts_delegation: bool,
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub target: Target,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Also delete the DynamoDB audit table and its evidence, which is
    /// otherwise kept.
    #[arg(long)]
    pub delete_audit_data: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

async fn profile_config(profile: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    loader.load().await
}

/// Configuration, blueprint and credentials for every place deploy acts.
pub struct Deployment {
    pub config: Config,
    pub blueprint: Blueprint,
    pub access: Access,
}

pub async fn context(target: &Target) -> Result<Deployment> {
    let config = load_config(&target.config)?;
    let blueprint = Blueprint::of(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let deployer = profile_config(target.profile.as_deref()).await;
    access(target, config, blueprint, deployer).await
}

/// Credentials for the audit and management accounts, from the deployer's.
pub async fn access(
    target: &Target,
    config: Config,
    blueprint: Blueprint,
    deployer: SdkConfig,
) -> Result<Deployment> {
    let identity = stackset_deploy::identify(&deployer)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let audit_account = &config.organization.audit_account;
    let audit = match &target.audit_profile {
        Some(profile) => profile_config(Some(profile)).await,
        None if &identity.account == audit_account => deployer.clone(),
        None => assume_role(&deployer, audit_account, &target.audit_role)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n  hint: pass --audit-profile, or --audit-role with a role this identity may assume"))?,
    };
    let management = match (&target.management_profile, identity.caller) {
        (Some(profile), _) => Some(profile_config(Some(profile)).await),
        (None, Caller::Management) => Some(deployer.clone()),
        (None, Caller::DelegatedAdmin) => None,
    };
    Ok(Deployment {
        config,
        blueprint,
        access: Access {
            deployer,
            audit,
            management,
        },
    })
}

/// indicatif bars, one per phase.
#[derive(Debug, Default)]
pub struct Bars {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, phase: &str, steps: u64) {
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<28} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, message: &str) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.set_message(message.to_owned());
            bar.inc(1);
        }
    }

    fn finish(&self, summary: &str) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_with_message(summary.to_owned());
        }
    }

    fn note(&self, message: &str) {
        let shown = self.bar.lock().ok().and_then(|slot| slot.clone());
        match shown {
            Some(bar) => bar.println(format!("note: {message}")),
            None => eprintln!("note: {message}"),
        }
    }
}

pub fn read_zips(built: &crate::lambda::Built) -> Result<Zips> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    Ok(Zips {
        agent: read(&built.agent)?,
        aggregator: read(&built.aggregator)?,
    })
}

pub fn run_deploy(args: &DeployArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let ctx = context(&args.target).await?;
        let zips = match (&args.artifacts, args.dry_run) {
            (Some(dir), _) => Some(read_zips(&crate::lambda::prebuilt(dir)?)?),
            (None, true) => None,
            (None, false) => {
                let venv = crate::python::ensure()?;
                let built = crate::lambda::build(&venv, ctx.config.deploy.lambda_architecture)?;
                Some(read_zips(&built)?)
            }
        };
        deploy_with(
            &ctx,
            zips.as_ref(),
            args.dry_run,
            args.yes,
            Options {
                delegate_list_accounts: !args.skip_list_accounts_delegation,
                ..Options::default()
            },
        )
        .await
    })
}

/// Plan, confirm, deploy and print; what `deploy` and the demo both run.
pub async fn deploy_with(
    ctx: &Deployment,
    zips: Option<&Zips>,
    dry_run: bool,
    yes: bool,
    options: Options,
) -> Result<ExitCode> {
    let bars = Bars::default();
    let plan = stackset_deploy::plan(&ctx.access, &ctx.config, &ctx.blueprint, zips, &bars)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    print_plan(&plan);
    let Some(zips) = zips.filter(|_| !dry_run) else {
        eprintln!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    };
    if !yes
        && !confirm(&format!(
            "Deploy Glasswatch to {} accounts x {} regions?",
            plan.accounts.len() + 1,
            plan.regions.len()
        ))?
    {
        bail!("not confirmed; nothing was changed");
    }
    let report = stackset_deploy::deploy(
        &ctx.access,
        &ctx.config,
        &ctx.blueprint,
        &plan,
        zips,
        options,
        &bars,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    print_report(&plan, &report);
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &Plan) {
    let caller = match plan.identity.caller {
        Caller::Management => "the management account",
        Caller::DelegatedAdmin => "a StackSets delegated administrator",
    };
    println!(
        "Plan: organization {} as {} ({})",
        plan.identity.organization_id, plan.identity.account, caller
    );
    println!("  regions:      {}", plan.regions.join(", "));
    println!("  target OUs:   {}", plan.target_ous.join(", "));
    println!("  accounts:     {} under those OUs", plan.accounts.len());
    for a in &plan.accounts {
        println!("    {}  {:<24} ({})", a.id, a.name, a.parent);
    }
    println!("  buckets:      {}", plan.buckets.join(", "));
    println!(
        "  code:         {} / {}",
        plan.artifacts.agent_key, plan.artifacts.aggregator_key
    );
    println!(
        "  audit stack:  {} in {} {}",
        plan.audit_stack, plan.audit_account, plan.audit_region
    );
    println!(
        "  StackSet:     {} (service-managed, auto-deployment on)",
        plan.stack_set
    );
    for stack in &plan.management_stacks {
        println!("  stack:        {stack}");
    }
    println!("  rules:        {}", plan.rules.len());
    for (name, pattern) in &plan.rules {
        println!("    {name}: {pattern}");
    }
}

fn print_report(plan: &Plan, report: &Report) {
    println!();
    for change in &report.changes {
        if change.outcome != Outcome::Unchanged {
            println!("  {:<10} {}", change.outcome.to_string(), change.what);
        }
    }
    if !report.changed() {
        println!("Nothing changed: the deployment already matches the configuration.");
    }
    let mut by_account: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for i in &report.instances {
        by_account
            .entry(i.account.as_str())
            .or_default()
            .push((i.region.as_str(), i.status.as_str()));
    }
    println!();
    println!("{:<14} {}", "account", plan.regions.join("  "));
    for (account, regions) in &by_account {
        let cells: Vec<String> = plan
            .regions
            .iter()
            .map(|r| {
                regions
                    .iter()
                    .find(|(region, _)| region == r)
                    .map_or("MISSING", |(_, s)| s)
                    .to_owned()
            })
            .collect();
        println!("{account:<14} {}", cells.join("  "));
    }
    if !plan.management_stacks.is_empty() {
        println!(
            "{:<14} {} (management account, plain stacks)",
            plan.identity.management_account,
            vec!["DEPLOYED"; plan.regions.len()].join("  ")
        );
    }
    println!();
    println!("Central bus: {}", report.bus_arn);
    println!("Audit table: {}", report.table);
}

fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} Not asking on a non-interactive input: pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn run_destroy(args: &DestroyArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let ctx = context(&args.target).await?;
        let what = if args.delete_audit_data {
            "and DELETE the audit table with all its evidence"
        } else {
            "(the audit table is kept)"
        };
        if !args.yes
            && !confirm(&format!(
                "Remove Glasswatch ({}) from the whole organization {what}?",
                ctx.blueprint.name_prefix
            ))?
        {
            bail!("not confirmed; nothing was removed");
        }
        let changes = glasswatch_stacksets::destroy::destroy(
            &ctx.access,
            &ctx.config,
            &ctx.blueprint,
            args.delete_audit_data,
            Waiting::default(),
            &Bars::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        for change in changes {
            println!("  {:<10} {}", change.outcome.to_string(), change.what);
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_status(args: &StatusArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let ctx = context(&args.target).await?;
        let rows = status_rows(&ctx).await?;
        print_status(&rows, args.format)?;
        let gaps = rows.iter().filter(|r| r.gap).count();
        if gaps > 0 {
            eprintln!("{gaps} of {} account x region pairs have a gap", rows.len());
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Gather what CloudFormation and the coverage items say, then judge.
pub async fn status_rows(ctx: &Deployment) -> Result<Vec<Row>> {
    let bars = Bars::default();
    let err = |e: glasswatch_stacksets::DeployError| anyhow::anyhow!("{e}");
    let identity = stackset_deploy::identify(&ctx.access.deployer)
        .await
        .map_err(err)?;
    let regions =
        stackset_deploy::regions(&ctx.access.deployer, &ctx.config, &identity.account, &bars)
            .await
            .map_err(err)?;
    let org = &ctx.config.organization;
    let mut accounts: Vec<(String, String)> = stackset_deploy::accounts_under(
        &ctx.access.deployer,
        std::slice::from_ref(&identity.root_id),
        "",
    )
    .await
    .map_err(err)?
    .into_iter()
    .map(|a| (a.id, a.name))
    .collect();
    accounts.sort();
    let home = cloudformation(&in_region(&ctx.access.deployer, &org.audit_region));
    let instances = instances(&home, &ctx.blueprint.agent_stack(), identity.caller)
        .await
        .map_err(err)?;
    let mut management_stacks = BTreeMap::new();
    if let Some(management) = &ctx.access.management {
        for region in &regions {
            let state = describe(
                &cloudformation(&in_region(management, region)),
                &ctx.blueprint.agent_stack(),
            )
            .await
            .map_err(err)?;
            if let Some(state) = state {
                management_stacks.insert(region.clone(), state.status.as_str().to_owned());
            }
        }
    }
    let audit = in_region(&ctx.access.audit, &org.audit_region);
    let table = audit_table(&audit, &ctx.blueprint).await?;
    let store = glasswatch_aggregator::store::Store::new(
        aws_sdk_dynamodb::Client::new(&audit),
        table,
        i64::from(ctx.config.session.quiet_minutes) * 60,
        ctx.config.store.retention_days,
    );
    let coverage = store
        .coverage()
        .await
        .context("cannot read the coverage items")?;
    let observed = Observed {
        accounts,
        regions,
        instances,
        management: Some((identity.management_account.clone(), management_stacks)),
        coverage,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Ok(rows(
        &observed,
        now,
        i64::from(ctx.config.deploy.heartbeat_minutes) * 60,
    ))
}

/// The audit table's name, from the audit stack's outputs.
pub async fn audit_table(audit: &SdkConfig, blueprint: &Blueprint) -> Result<String> {
    AuditOutputs::read(audit, blueprint).await?.get("TableName")
}

/// The audit stack's outputs (`TableName`, `QueueUrl`, ...).
#[derive(Debug)]
pub struct AuditOutputs {
    stack: String,
    outputs: Vec<(String, String)>,
}

impl AuditOutputs {
    pub async fn read(audit: &SdkConfig, blueprint: &Blueprint) -> Result<Self> {
        let stack = blueprint.audit_stack();
        let described = describe(&cloudformation(audit), &stack)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_context(|| {
                format!("the audit stack {stack} does not exist; run `cargo xtask deploy` first")
            })?;
        Ok(Self {
            stack,
            outputs: described.outputs,
        })
    }

    pub fn get(&self, key: &str) -> Result<String> {
        self.outputs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .with_context(|| format!("the audit stack {} has no {key} output", self.stack))
    }
}

fn print_status(rows: &[Row], format: Format) -> Result<()> {
    match format {
        Format::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(rows).context("cannot encode the status")?
            );
        }
        Format::Table => {
            println!(
                "{:<14} {:<20} {:<16} {:<24} {:<22} {:<12} {:<16} gap",
                "account", "name", "region", "stack", "last heartbeat", "trail", "health"
            );
            for r in rows {
                let heartbeat = r
                    .last_heartbeat
                    .map_or_else(|| "never".to_owned(), glasswatch_core::slack::format_time);
                println!(
                    "{:<14} {:<20} {:<16} {:<24} {:<22} {:<12} {:<16} {}",
                    r.account,
                    r.account_name,
                    r.region,
                    r.stack,
                    heartbeat,
                    r.trail,
                    r.health,
                    if r.gap { "GAP" } else { "" }
                );
            }
        }
    }
    Ok(())
}
