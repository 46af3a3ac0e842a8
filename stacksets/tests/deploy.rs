//! Deploy against moto: an organization with an OU tree, four member
//! accounts (one the audit account) and two regions. The real deploy entry
//! point runs; then every account and region is inspected through
//! `AssumeRole`, and a second deploy must change nothing.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use glasswatch_core::Config;
use glasswatch_stacksets::aws::{Silent, Waiting, assume_role, in_region};
use glasswatch_stacksets::deploy::{Access, Options, Plan, Zips, deploy, plan};
use glasswatch_stacksets::render::Blueprint;
use glasswatch_stacksets::stacks::Outcome;
use serde_json::Value;
use test_support::account_config;
use test_support::org::{Org, stub_zip};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const AUDIT_REGION: &str = "eu-west-1";
const SECRET: &str = "glasswatch/slack";

fn config(org: &Org) -> Result<Config> {
    let text = format!(
        r#"
[organization]
management_account = "{management}"
audit_account = "{audit}"
audit_region = "{AUDIT_REGION}"
target_ous = ["{security}", "{workloads}"]
regions = ["us-east-1", "eu-west-1"]

[watch]
iam_users = ["break-glass-1"]
roles = ["BreakGlassRole", "Emergency*"]
sso_permission_sets = ["BreakGlassAdmin"]
root_sign_in = true

[slack]
mode = "bot"
channel = "C0GLASS"
secret_name = "{SECRET}"

[deploy]
name_prefix = "glasswatch"
lambda_architecture = "x86_64"
heartbeat_minutes = 15
"#,
        management = org.management,
        audit = &org.audit,
        security = org.ou("Security"),
        workloads = org.ou("Workloads"),
    );
    Config::parse(&text, "deploy-test.toml").map_err(|e| anyhow::anyhow!("{e}"))
}

/// moto has no Organizations resource policies; their request is
/// checked in `deploy.rs`'s unit tests.
const OPTIONS: Options = Options {
    waiting: Waiting {
        poll: Duration::from_millis(20),
        timeout: Duration::from_secs(120),
    },
    delegate_list_accounts: false,
};

struct Bed {
    org: Org,
    config: Config,
    blueprint: Blueprint,
    access: Access,
    zips: Zips,
}

async fn bed() -> Result<Bed> {
    let org = Org::create().await?;
    let config = config(&org)?;
    let blueprint = Blueprint::of(&config)?;
    let deployer = org.management_config.clone();
    let audit = assume_role(&deployer, &org.audit, "OrganizationAccountAccessRole").await?;
    aws_sdk_secretsmanager::Client::new(&in_region(&audit, AUDIT_REGION))
        .create_secret()
        .name(SECRET)
        .secret_string(r#"{"token":"xoxb-test"}"#)
        .send()
        .await
        .context("create the Slack secret in the audit account")?;
    Ok(Bed {
        access: Access {
            management: Some(deployer.clone()),
            deployer,
            audit,
        },
        org,
        config,
        blueprint,
        zips: Zips {
            agent: stub_zip("agent v1"),
            aggregator: stub_zip("aggregator v1"),
        },
    })
}

async fn run(bed: &Bed) -> Result<(Plan, glasswatch_stacksets::deploy::Report)> {
    let plan = plan(
        &bed.access,
        &bed.config,
        &bed.blueprint,
        Some(&bed.zips),
        &Silent,
    )
    .await?;
    let report = deploy(
        &bed.access,
        &bed.config,
        &bed.blueprint,
        &plan,
        &bed.zips,
        OPTIONS,
        &Silent,
    )
    .await?;
    Ok((plan, report))
}

/// The agent stack's resources in one account and region.
async fn assert_agent(sdk: &SdkConfig, bed: &Bed, bus_arn: &str, where_: &str) -> Result<()> {
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let function_arn = aws_sdk_lambda::Client::new(sdk)
        .get_function()
        .function_name("glasswatch-agent")
        .send()
        .await
        .with_context(|| format!("{where_}: the agent function"))?;
    let configuration = function_arn.configuration.context("no configuration")?;
    let arn = configuration.function_arn().unwrap_or_default().to_owned();
    let location = function_arn
        .code
        .and_then(|c| c.location)
        .unwrap_or_default();
    let agent_key = glasswatch_stacksets::render::artifact_key("agent", &bed.zips.agent);
    assert!(
        location.ends_with(&agent_key),
        "{where_}: code at {location}, expected key {agent_key}"
    );
    let env = configuration
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        env.get("GLASSWATCH_BUS_ARN").map(String::as_str),
        Some(bus_arn),
        "{where_}"
    );
    assert_eq!(
        env.get("GLASSWATCH_FUNCTION_ARN").map(String::as_str),
        Some(arn.as_str()),
        "{where_}: the follow rules' target is the agent itself"
    );
    assert!(
        configuration.role().is_some_and(|r| r.ends_with(&format!(
            "role/glasswatch-agent-{}",
            sdk.region().map(|r| r.as_ref()).unwrap_or_default()
        ))),
        "{where_}: role {:?}",
        configuration.role()
    );
    let dlq = aws_sdk_sqs::Client::new(sdk)
        .get_queue_url()
        .queue_name("glasswatch-agent-dlq")
        .send()
        .await
        .with_context(|| format!("{where_}: the agent's dead-letter queue"))?;
    assert!(dlq.queue_url.is_some());
    for rule in &bed.blueprint.rules {
        let described = events
            .describe_rule()
            .name(&rule.name)
            .send()
            .await
            .with_context(|| format!("{where_}: rule {}", rule.name))?;
        assert_eq!(
            described.state().map(|s| s.as_str()),
            Some("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"),
            "{where_}: {}",
            rule.name
        );
        let pattern: Value = serde_json::from_str(described.event_pattern().unwrap_or_default())?;
        assert_eq!(pattern, rule.pattern, "{where_}: {}", rule.name);
        let targets = events
            .list_targets_by_rule()
            .rule(&rule.name)
            .send()
            .await?;
        let target = targets.targets().first().context("a rule without target")?;
        // Tamper rules send their events to the central bus with no agent
        // in the path, through a role of their own.
        if glasswatch_stacksets::render::is_tamper_rule(rule) {
            assert_eq!(target.arn(), bus_arn, "{where_}: {}", rule.name);
            assert!(
                target
                    .role_arn()
                    .is_some_and(|r| r.contains(":role/glasswatch-tamper-forward-")),
                "{where_}: {} forwards without its role",
                rule.name
            );
        } else {
            assert_eq!(target.arn(), arn.as_str(), "{where_}: {}", rule.name);
        }
        assert!(
            target
                .dead_letter_config()
                .and_then(|d| d.arn())
                .is_some_and(|a| a.ends_with(":glasswatch-agent-dlq")),
            "{where_}: {} has no dead-letter queue",
            rule.name
        );
        assert_eq!(
            target
                .retry_policy()
                .and_then(|r| r.maximum_retry_attempts()),
            Some(185)
        );
    }
    Ok(())
}

#[tokio::test]
async fn deploy_covers_every_account_and_region_and_a_second_run_changes_nothing() -> Result<()> {
    let bed = bed().await?;
    let (plan, report) = run(&bed).await?;
    assert_eq!(plan.regions, REGIONS.map(str::to_owned).to_vec());
    let mut planned: Vec<String> = plan.accounts.iter().map(|a| a.id.clone()).collect();
    planned.sort();
    let mut members = bed.org.members();
    members.sort();
    assert_eq!(
        planned, members,
        "the OUs resolve to every member account, the management account excluded"
    );
    assert!(report.changed());
    assert!(
        report.changes.iter().all(|c| c.outcome == Outcome::Created),
        "{:#?}",
        report.changes
    );

    // Every member account and region, through AssumeRole.
    for account in bed.org.members() {
        for region in REGIONS {
            let (sdk, _) = account_config(&account, region).await?;
            assert_agent(&sdk, &bed, &report.bus_arn, &format!("{account} {region}")).await?;
        }
    }
    // The management account, which the StackSet skips.
    for region in REGIONS {
        let sdk = in_region(&bed.org.management_config, region);
        assert_agent(&sdk, &bed, &report.bus_arn, &format!("management {region}")).await?;
    }
    let instances: Vec<(String, String)> = report
        .instances
        .iter()
        .map(|i| (i.account.clone(), i.region.clone()))
        .collect();
    assert_eq!(
        instances.len(),
        members.len() * REGIONS.len(),
        "{instances:?}"
    );
    assert!(
        !instances.iter().any(|(a, _)| a == &bed.org.management),
        "no StackSet instance in the management account"
    );

    // The audit account: bus, table with its indexes, queue, function.
    let (audit, _) = account_config(&bed.org.audit, AUDIT_REGION).await?;
    let bus = aws_sdk_eventbridge::Client::new(&audit)
        .describe_event_bus()
        .name("glasswatch-central")
        .send()
        .await?;
    assert_eq!(bus.arn(), Some(report.bus_arn.as_str()));
    assert!(report.bus_arn.contains(bed.org.audit.as_str()));
    let table = aws_sdk_dynamodb::Client::new(&audit)
        .describe_table()
        .table_name(&report.table)
        .send()
        .await?
        .table
        .context("no table")?;
    let mut indexes: Vec<&str> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    indexes.sort_unstable();
    let mut expected: Vec<&str> = glasswatch_aggregator::store::INDEXES
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    expected.sort_unstable();
    assert_eq!(
        indexes, expected,
        "the template declares the store's indexes"
    );
    assert_eq!(table.deletion_protection_enabled(), Some(true));
    aws_sdk_sqs::Client::new(&audit)
        .get_queue_url()
        .queue_name("glasswatch-signals")
        .send()
        .await
        .context("the aggregator's queue")?;
    let aggregator = aws_sdk_lambda::Client::new(&audit)
        .get_function()
        .function_name("glasswatch-aggregator")
        .send()
        .await
        .context("the aggregator function")?;
    let env = aggregator
        .configuration()
        .and_then(|c| c.environment())
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    assert_eq!(env.get("GLASSWATCH_TABLE"), Some(&report.table));
    assert_eq!(
        env.get("GLASSWATCH_REGIONS").map(String::as_str),
        Some(plan.regions.join(",").as_str()),
        "heartbeats from regions deploy did not cover are refused"
    );
    assert_eq!(
        env.get("GLASSWATCH_SLACK_SECRET_ARN").map(String::as_str),
        Some(SECRET),
        "the secret is passed by name, never its value"
    );
    assert!(!env.values().any(|v| v.contains("xoxb")));
    let mappings = aws_sdk_lambda::Client::new(&audit)
        .list_event_source_mappings()
        .function_name("glasswatch-aggregator")
        .send()
        .await?;
    // The priority queue and the session-activity queue.
    let mut sources: Vec<&str> = mappings
        .event_source_mappings()
        .iter()
        .filter_map(|m| m.event_source_arn())
        .map(|a| a.rsplit(':').next().unwrap_or(a))
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ["glasswatch-activity", "glasswatch-signals"]);

    // A second run with nothing changed writes nothing.
    let (_, again) = run(&bed).await?;
    assert!(!again.changed(), "{:#?}", again.changes);

    // Each stack runs the code version deploy uploaded, pinned.
    let bucket =
        glasswatch_stacksets::render::artifact_bucket(&plan.artifacts.bucket_prefix, "us-east-1");
    let key = glasswatch_stacksets::render::artifact_key("agent", &bed.zips.agent);
    let management = in_region(&bed.org.management_config, "us-east-1");
    let s3 = aws_sdk_s3::Client::new(&management);
    let pinned = |template: &str| -> Option<String> {
        let at = template.find("    us-east-1:\n      Version: ")?;
        let rest = &template[at + "    us-east-1:\n      Version: ".len()..];
        Some(rest.lines().next()?.trim_matches('"').to_owned())
    };
    let management_template = || async {
        let cf = aws_sdk_cloudformation::Client::new(&management);
        anyhow::Ok(
            cf.get_template()
                .stack_name(bed.blueprint.agent_stack())
                .send()
                .await
                .context("the management stack's template")?
                .template_body
                .unwrap_or_default(),
        )
    };
    let first = s3.head_object().bucket(&bucket).key(&key).send().await?;
    assert_eq!(
        pinned(&management_template().await?).as_deref(),
        first.version_id(),
        "the stack pins the uploaded version"
    );

    // Someone overwrites the agent zip under its content-addressed key:
    // the next run sees the checksum differ, puts the right bytes back as
    // a new version and pins the stacks to it.
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(b"not the agent".to_vec().into())
        .send()
        .await?;
    let (_, repaired) = run(&bed).await?;
    let code = repaired
        .changes
        .iter()
        .find(|c| c.what == format!("agent code s3://{bucket}/{key}"))
        .context("the agent code change")?;
    assert_eq!(code.outcome, Outcome::Updated, "{:#?}", repaired.changes);
    let object = s3.get_object().bucket(&bucket).key(&key).send().await?;
    let version = object.version_id().map(str::to_owned);
    assert_eq!(
        object.body.collect().await?.into_bytes().as_ref(),
        bed.zips.agent.as_slice()
    );
    assert_ne!(version.as_deref(), first.version_id());
    assert_eq!(pinned(&management_template().await?), version);

    // A new agent zip rolls out through a new code key.
    let bed = Bed {
        zips: Zips {
            agent: stub_zip("agent v2"),
            aggregator: bed.zips.aggregator.clone(),
        },
        ..bed
    };
    let (_, third) = run(&bed).await?;
    let changed: Vec<&str> = third
        .changes
        .iter()
        .filter(|c| c.outcome != Outcome::Unchanged)
        .map(|c| c.what.as_str())
        .collect();
    assert!(
        changed
            .iter()
            .any(|w| w.starts_with("StackSet glasswatch-agent")),
        "{changed:?}"
    );
    assert!(
        changed.iter().all(|w| !w.starts_with("audit stack")),
        "{changed:?}"
    );
    let sdk = in_region(&bed.org.management_config, "us-east-1");
    assert_agent(
        &sdk,
        &bed,
        &report.bus_arn,
        "management us-east-1 after the update",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_slack_secret_stops_deploy_with_the_command_to_create_it() -> Result<()> {
    let mut bed = bed().await?;
    bed.config.slack.secret_name = "glasswatch/absent".into();
    let plan = plan(
        &bed.access,
        &bed.config,
        &bed.blueprint,
        Some(&bed.zips),
        &Silent,
    )
    .await?;
    let error = deploy(
        &bed.access,
        &bed.config,
        &bed.blueprint,
        &plan,
        &bed.zips,
        OPTIONS,
        &Silent,
    )
    .await
    .err()
    .context("deploy should fail")?;
    let text = error.to_string();
    assert!(text.contains("aws secretsmanager create-secret"), "{text}");
    assert!(text.contains("glasswatch/absent"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_caller_outside_the_organization_is_told_what_to_do() -> Result<()> {
    let (outsider, _) = account_config("918273645501", AUDIT_REGION).await?;
    let error = glasswatch_stacksets::deploy::identify(&outsider)
        .await
        .err()
        .context("an account without an organization cannot deploy")?;
    let text = error.to_string();
    assert!(text.contains("create-organization"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_dry_run_resolves_the_plan_and_writes_nothing() -> Result<()> {
    let bed = bed().await?;
    let plan = plan(&bed.access, &bed.config, &bed.blueprint, None, &Silent).await?;
    assert_eq!(plan.accounts.len(), 4);
    assert_eq!(plan.rules.len(), bed.blueprint.rules.len());
    assert!(
        plan.artifacts.agent_key.contains("sha256"),
        "no zip, no key yet"
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&bed.org.management_config)
            .force_path_style(true)
            .build(),
    );
    let buckets = s3.list_buckets().send().await?;
    for planned in &plan.buckets {
        assert!(
            !buckets
                .buckets()
                .iter()
                .any(|b| b.name() == Some(planned.as_str())),
            "{planned} was created by a dry run"
        );
    }
    let stack_sets =
        aws_sdk_cloudformation::Client::new(&in_region(&bed.org.management_config, AUDIT_REGION))
            .list_stack_sets()
            .send()
            .await?;
    assert!(stack_sets.summaries().is_empty());
    Ok(())
}

#[tokio::test]
async fn destroy_removes_everything_but_the_audit_table_unless_asked() -> Result<()> {
    let bed = bed().await?;
    let (plan, report) = run(&bed).await?;
    // moto ignores `DeploymentTargets` when deleting instances (it reads
    // only the self-managed `Accounts` list), so its instances are removed
    // here the way it understands; the OU-targeted request destroy makes
    // is checked in stack_set_requests.rs.
    let cf =
        aws_sdk_cloudformation::Client::new(&in_region(&bed.org.management_config, AUDIT_REGION));
    cf.delete_stack_instances()
        .stack_set_name(&plan.stack_set)
        .set_accounts(Some(bed.org.members()))
        .set_regions(Some(plan.regions.clone()))
        .retain_stacks(false)
        .send()
        .await
        .context("moto: remove the instances by account")?;
    let changes = glasswatch_stacksets::destroy::destroy(
        &bed.access,
        &bed.config,
        &bed.blueprint,
        false,
        OPTIONS.waiting,
        &Silent,
    )
    .await?;
    let outcome = |prefix: &str| {
        changes
            .iter()
            .filter(|c| c.what.starts_with(prefix))
            .map(|c| c.outcome)
            .collect::<Vec<_>>()
    };
    assert_eq!(outcome("StackSet"), [Outcome::Deleted]);
    assert_eq!(outcome("agent stack"), [Outcome::Deleted, Outcome::Deleted]);
    assert_eq!(outcome("audit stack"), [Outcome::Deleted]);
    assert_eq!(outcome("audit table"), [Outcome::Unchanged], "kept");
    assert_eq!(outcome("bucket"), [Outcome::Deleted, Outcome::Deleted]);

    assert!(
        cf.describe_stack_set()
            .stack_set_name(&plan.stack_set)
            .send()
            .await
            .is_err_and(|e| format!("{e:?}").contains("StackSetNotFound"))
            || cf
                .describe_stack_set()
                .stack_set_name(&plan.stack_set)
                .send()
                .await
                .ok()
                .and_then(|o| o.stack_set)
                .and_then(|s| s.status)
                .is_some_and(|s| s.as_str() == "DELETED"),
        "the StackSet is gone"
    );
    let (app, _) = account_config(&bed.org.prod, "us-east-1").await?;
    assert!(
        aws_sdk_lambda::Client::new(&app)
            .get_function()
            .function_name("glasswatch-agent")
            .send()
            .await
            .is_err(),
        "the member account's agent is gone"
    );
    let (audit, _) = account_config(&bed.org.audit, AUDIT_REGION).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&audit);
    dynamodb
        .describe_table()
        .table_name(&report.table)
        .send()
        .await
        .context("the audit table survives destroy")?;

    // Again, now asking for the audit data to go: everything else is
    // already gone, and the table goes too.
    let changes = glasswatch_stacksets::destroy::destroy(
        &bed.access,
        &bed.config,
        &bed.blueprint,
        true,
        OPTIONS.waiting,
        &Silent,
    )
    .await?;
    assert!(
        changes
            .iter()
            .any(|c| c.what.starts_with("audit table") && c.outcome == Outcome::Deleted),
        "{changes:#?}"
    );
    assert!(
        dynamodb
            .describe_table()
            .table_name(&report.table)
            .send()
            .await
            .is_err()
    );
    Ok(())
}
