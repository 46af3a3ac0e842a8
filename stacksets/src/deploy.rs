//! `deploy`, end to end: who is calling, which regions and accounts, the
//! artifact buckets, the audit stack, the StackSet and its instances, and
//! the management account's own stacks. Every step compares before it
//! writes, so a second run with nothing changed writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use aws_sdk_account::types::RegionOptStatus;
use glasswatch_aggregator::store::coverage::Targets;
use glasswatch_core::Config;

use crate::aws::{Progress, Waiting, caller_account, cloudformation, in_region, s3};
use crate::buckets::{ensure_bucket, upload};
use crate::error::{DeployError, STACKSETS_PRINCIPAL, aws, code_of};
use crate::render::{
    Artifacts, Blueprint, agent_parameters, artifact_bucket, artifact_key, audit_parameters,
    pin_code_versions,
};
use crate::stacks::{
    Caller, Instance, Outcome, Place, StackSetSpec, ensure_instances, ensure_stack,
    ensure_stack_set, instances,
};

/// Who runs the deployment, in which organization.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Identity {
    pub account: String,
    pub organization_id: String,
    pub management_account: String,
    pub root_id: String,
    pub caller: Caller,
}

/// The organization's answer to "who is calling?". Errors say how to fix a
/// missing organization or missing delegated administration.
pub async fn identify(sdk: &SdkConfig) -> Result<Identity, DeployError> {
    let account = caller_account(sdk).await?;
    identify_account(&aws_sdk_organizations::Client::new(sdk), account).await
}

/// [`identify`] for a known caller account.
pub async fn identify_account(
    orgs: &aws_sdk_organizations::Client,
    account: String,
) -> Result<Identity, DeployError> {
    let org = orgs
        .describe_organization()
        .send()
        .await
        .map_err(|e| aws("organizations:DescribeOrganization", e))?
        .organization
        .ok_or(DeployError::NoOrganization)?;
    let management_account = org.master_account_id().unwrap_or_default().to_owned();
    let caller = if account == management_account {
        Caller::Management
    } else {
        let admins = orgs
            .list_delegated_administrators()
            .service_principal(STACKSETS_PRINCIPAL)
            .send()
            .await
            .map_err(|e| aws("organizations:ListDelegatedAdministrators", e))?;
        if admins
            .delegated_administrators()
            .iter()
            .any(|a| a.id() == Some(account.as_str()))
        {
            Caller::DelegatedAdmin
        } else {
            return Err(DeployError::NotAdministrator {
                caller: account,
                management: management_account,
            });
        }
    };
    let root_id = orgs
        .list_roots()
        .send()
        .await
        .map_err(|e| aws("organizations:ListRoots", e))?
        .roots()
        .first()
        .and_then(|r| r.id())
        .unwrap_or_default()
        .to_owned();
    Ok(Identity {
        account,
        organization_id: org.id().unwrap_or_default().to_owned(),
        management_account,
        root_id,
        caller,
    })
}

/// The regions to cover: the configured ones, each checked to be enabled,
/// or every enabled region.
pub async fn regions(
    sdk: &SdkConfig,
    config: &Config,
    account: &str,
    progress: &dyn Progress,
) -> Result<Vec<String>, DeployError> {
    regions_with(
        &aws_sdk_account::Client::new(sdk),
        config,
        account,
        progress,
    )
    .await
}

/// [`regions`] with a given Account client.
pub async fn regions_with(
    client: &aws_sdk_account::Client,
    config: &Config,
    account: &str,
    progress: &dyn Progress,
) -> Result<Vec<String>, DeployError> {
    let mut pages = client.list_regions().into_paginator().send();
    let mut enabled = BTreeSet::new();
    let mut known = true;
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => enabled.extend(
                page.regions()
                    .iter()
                    .filter(|r| {
                        matches!(
                            r.region_opt_status(),
                            Some(RegionOptStatus::Enabled | RegionOptStatus::EnabledByDefault)
                        )
                    })
                    .filter_map(|r| r.region_name().map(str::to_owned)),
            ),
            Err(e) if config.organization.regions.is_empty() => {
                return Err(match aws("account:ListRegions", e) {
                    DeployError::Aws { message, .. } => DeployError::ConfigMismatch(format!(
                        "cannot list the enabled regions ({message}); list them in `organization.regions`"
                    )),
                    other => other,
                });
            }
            Err(e) => {
                progress.note(&format!(
                    "cannot check that the configured regions are enabled (account:ListRegions: {}); going on with them",
                    code_of(&e).unwrap_or("no answer")
                ));
                known = false;
                break;
            }
        }
    }
    if config.organization.regions.is_empty() {
        return with_global_events_region(enabled.into_iter().collect(), config);
    }
    if known {
        for region in &config.organization.regions {
            if !enabled.contains(region) {
                return Err(DeployError::RegionNotEnabled {
                    region: region.clone(),
                    account: account.to_owned(),
                });
            }
        }
    }
    with_global_events_region(config.organization.regions.clone(), config)
}

/// Refuse a set of regions without the one where CloudTrail delivers the
/// global services' events: IAM, global STS and root sign-in would go
/// unseen.
fn with_global_events_region(
    regions: Vec<String>,
    config: &Config,
) -> Result<Vec<String>, DeployError> {
    let global = glasswatch_core::config::global_events_region(&config.organization.audit_region);
    if regions.iter().any(|r| r == global) {
        return Ok(regions);
    }
    Err(DeployError::ConfigMismatch(format!(
        "{global} is not among the regions to cover ({}): CloudTrail delivers IAM, global STS, Organizations and root sign-in events only there; enable {global}, or list it in `organization.regions`",
        regions.join(", ")
    )))
}

/// An active account the StackSet will reach.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrgAccount {
    pub id: String,
    pub name: String,
    pub parent: String,
}

/// Every active account under the given OUs (or root), at any depth,
/// except the management account, which StackSets never deploy to.
pub async fn accounts_under(
    sdk: &SdkConfig,
    parents: &[String],
    management_account: &str,
) -> Result<Vec<OrgAccount>, DeployError> {
    let orgs = aws_sdk_organizations::Client::new(sdk);
    let mut queue: Vec<String> = parents.to_vec();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while let Some(parent) = queue.pop() {
        if !seen.insert(parent.clone()) {
            continue;
        }
        let mut pages = orgs
            .list_accounts_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        let mut accounts = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws("organizations:ListAccountsForParent", e))?;
            accounts.extend(page.accounts.unwrap_or_default());
        }
        for account in accounts {
            let active = account
                .status()
                .is_none_or(|s| s == &aws_sdk_organizations::types::AccountStatus::Active);
            let id = account.id().unwrap_or_default();
            if active && id != management_account {
                out.push(OrgAccount {
                    id: id.to_owned(),
                    name: account.name().unwrap_or_default().to_owned(),
                    parent: parent.clone(),
                });
            }
        }
        let mut pages = orgs
            .list_organizational_units_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| aws("organizations:ListOrganizationalUnitsForParent", e))?;
            queue.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|ou| ou.id().map(str::to_owned)),
            );
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

/// Credentials for each place deploy writes to.
#[derive(Debug, Clone)]
pub struct Access {
    /// The deploying identity: management account or delegated admin.
    pub deployer: SdkConfig,
    /// The audit account.
    pub audit: SdkConfig,
    /// The management account, for its plain stacks; `None` when running
    /// as a delegated administrator without management credentials.
    pub management: Option<SdkConfig>,
}

/// The Lambda zips.
#[derive(Debug, Clone)]
pub struct Zips {
    pub agent: Vec<u8>,
    pub aggregator: Vec<u8>,
}

/// Everything deploy will do, resolved but not yet done.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub identity: Identity,
    pub regions: Vec<String>,
    pub target_ous: Vec<String>,
    pub accounts: Vec<OrgAccount>,
    pub buckets: Vec<String>,
    pub artifacts: PlanArtifacts,
    pub audit_stack: String,
    pub audit_account: String,
    pub audit_region: String,
    pub stack_set: String,
    pub management_stacks: Vec<String>,
    pub rules: Vec<(String, String)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanArtifacts {
    pub bucket_prefix: String,
    pub agent_key: String,
    pub aggregator_key: String,
}

impl PlanArtifacts {
    fn artifacts(&self) -> Artifacts {
        Artifacts {
            bucket_prefix: self.bucket_prefix.clone(),
            agent_key: self.agent_key.clone(),
            aggregator_key: self.aggregator_key.clone(),
        }
    }
}

/// Resolve the plan with reads only; `--dry-run` prints it. Without zips
/// (a dry run that builds nothing) the code keys are placeholders.
pub async fn plan(
    access: &Access,
    config: &Config,
    blueprint: &Blueprint,
    zips: Option<&Zips>,
    progress: &dyn Progress,
) -> Result<Plan, DeployError> {
    let identity = identify(&access.deployer).await?;
    let org = &config.organization;
    if identity.management_account != org.management_account {
        return Err(DeployError::ConfigMismatch(format!(
            "`organization.management_account` is {}, but this organization's management account is {}",
            org.management_account, identity.management_account
        )));
    }
    let regions = regions(&access.deployer, config, &identity.account, progress).await?;
    if !regions.contains(&org.audit_region) {
        return Err(DeployError::ConfigMismatch(format!(
            "the audit region {} is not among the regions to cover ({})",
            org.audit_region,
            regions.join(", ")
        )));
    }
    let target_ous = if org.target_ous.is_empty() {
        vec![identity.root_id.clone()]
    } else {
        org.target_ous.clone()
    };
    let accounts =
        accounts_under(&access.deployer, &target_ous, &identity.management_account).await?;
    if !accounts.iter().any(|a| a.id == org.audit_account) {
        progress.note(&format!(
            "the audit account {} is not under the target OUs; its own activity will not be watched",
            org.audit_account
        ));
    }
    let bucket_prefix = blueprint.artifact_bucket_prefix(&identity.account);
    let buckets = regions
        .iter()
        .map(|r| artifact_bucket(&bucket_prefix, r))
        .collect();
    let management_stacks = if access.management.is_some() {
        regions
            .iter()
            .map(|r| {
                format!(
                    "{} in {} {r}",
                    blueprint.agent_stack(),
                    identity.management_account
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Plan {
        regions,
        target_ous,
        accounts,
        buckets,
        artifacts: PlanArtifacts {
            bucket_prefix,
            agent_key: zips.map_or_else(
                || "agent/<sha256 of the zip>.zip".to_owned(),
                |z| artifact_key("agent", &z.agent),
            ),
            aggregator_key: zips.map_or_else(
                || "aggregator/<sha256 of the zip>.zip".to_owned(),
                |z| artifact_key("aggregator", &z.aggregator),
            ),
        },
        audit_stack: blueprint.audit_stack(),
        audit_account: org.audit_account.clone(),
        audit_region: org.audit_region.clone(),
        stack_set: blueprint.agent_stack(),
        management_stacks,
        rules: blueprint
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.pattern_json()))
            .collect(),
        identity,
    })
}

/// One thing deploy created, updated or left alone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub what: String,
    pub outcome: Outcome,
}

/// What deploy did, and where the agent now runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub changes: Vec<Change>,
    pub bus_arn: String,
    pub table: String,
    pub instances: Vec<Instance>,
}

impl Report {
    pub fn changed(&self) -> bool {
        self.changes.iter().any(|c| c.outcome != Outcome::Unchanged)
    }
}

/// Choices the caller makes about a deployment.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub waiting: Waiting,
    /// Let the audit account call `organizations:ListAccounts` through the
    /// organization's resource policy (the aggregator checks senders'
    /// membership with it). Off only against emulators without
    /// Organizations resource policies (moto).
    pub delegate_list_accounts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            waiting: Waiting::default(),
            delegate_list_accounts: true,
        }
    }
}

/// Carry out the plan.
pub async fn deploy(
    access: &Access,
    config: &Config,
    blueprint: &Blueprint,
    plan: &Plan,
    zips: &Zips,
    options: Options,
    progress: &dyn Progress,
) -> Result<Report, DeployError> {
    let waiting = options.waiting;
    let mut changes = Vec::new();
    let artifacts = plan.artifacts.artifacts();
    let org_id = &plan.identity.organization_id;

    // 1. Buckets and code, one bucket per region. The stacks pin the
    // version of each zip they run.
    let mut agent_versions = BTreeMap::new();
    let mut aggregator_versions = BTreeMap::new();
    progress.start("artifact buckets", plan.regions.len() as u64);
    for region in &plan.regions {
        let sdk = in_region(&access.deployer, region);
        let client = s3(&sdk);
        let bucket = artifact_bucket(&artifacts.bucket_prefix, region);
        let tls_only = !sdk
            .endpoint_url()
            .is_some_and(|url| url.starts_with("http://"));
        let owner = &plan.identity.account;
        let outcome = ensure_bucket(&client, &bucket, owner, region, org_id, tls_only).await?;
        changes.push(Change {
            what: format!("bucket {bucket}"),
            outcome,
        });
        let mut uploads = vec![(
            "agent",
            &artifacts.agent_key,
            &zips.agent,
            &mut agent_versions,
        )];
        if region == &plan.audit_region {
            uploads.push((
                "aggregator",
                &artifacts.aggregator_key,
                &zips.aggregator,
                &mut aggregator_versions,
            ));
        }
        for (what, key, zip, versions) in uploads {
            let uploaded = upload(&client, &bucket, owner, key, zip).await?;
            if uploaded.outcome == Outcome::Updated {
                progress.note(&format!(
                    "s3://{bucket}/{key} held other bytes than its name says (written by someone else?); replaced by version {}",
                    uploaded.version
                ));
            }
            changes.push(Change {
                what: format!("{what} code s3://{bucket}/{key}"),
                outcome: uploaded.outcome,
            });
            versions.insert(region.clone(), uploaded.version);
        }
        progress.advance(region);
    }
    progress.finish(&summary(&changes));
    let agent_template =
        pin_code_versions(&blueprint.agent_template, "AgentCodeKey", &agent_versions)?;
    let audit_template = pin_code_versions(
        &blueprint.audit_template,
        "AggregatorCodeKey",
        &aggregator_versions,
    )?;

    // 2. The audit stack.
    progress.start("audit stack", 1);
    let audit_sdk = in_region(&access.audit, &plan.audit_region);
    check_secret(&audit_sdk, config, plan).await?;
    let place = Place {
        account: plan.audit_account.clone(),
        region: plan.audit_region.clone(),
    };
    let (outcome, audit) = ensure_stack(
        &cloudformation(&audit_sdk),
        &plan.audit_stack,
        &audit_template,
        &audit_parameters(config, org_id, &plan.regions, &artifacts),
        &place,
        waiting,
    )
    .await?;
    changes.push(Change {
        what: format!(
            "audit stack {} ({} {})",
            plan.audit_stack, plan.audit_account, plan.audit_region
        ),
        outcome,
    });
    let output = |key: &str| {
        audit
            .outputs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| DeployError::Aws {
                operation: "cloudformation:DescribeStacks",
                code: String::new(),
                message: format!("the audit stack has no `{key}` output"),
            })
    };
    let bus_arn = output("BusArn")?;
    let follow_topic_arn = output("FollowTopicArn")?;
    let table = output("TableName")?;
    progress.advance(&plan.audit_stack);
    progress.finish(&outcome.to_string());

    // The aggregator reads the organization's accounts from the audit
    // account; only the management account can delegate that.
    if options.delegate_list_accounts {
        match plan.identity.caller {
            Caller::Management => {
                let outcome = ensure_list_accounts_delegation(
                    &aws_sdk_organizations::Client::new(&access.deployer),
                    &plan.audit_account,
                    &plan.audit_region,
                )
                .await?;
                changes.push(Change {
                    what: format!(
                        "organization resource policy: {} may list accounts",
                        plan.audit_account
                    ),
                    outcome,
                });
            }
            Caller::DelegatedAdmin => progress.note(&format!(
                "the aggregator in {} needs organizations:ListAccounts; from the management account, add a statement allowing it to the organization's resource policy (`aws organizations put-resource-policy`), see the README",
                plan.audit_account
            )),
        }
    }

    // 3. The StackSet and its instances.
    progress.start("StackSet", 2);
    let params = agent_parameters(config, blueprint, &bus_arn, &follow_topic_arn, &artifacts);
    let home = in_region(&access.deployer, &plan.audit_region);
    let cf = cloudformation(&home);
    let spec = StackSetSpec {
        name: &plan.stack_set,
        template: &agent_template,
        params: &params,
        caller: plan.identity.caller,
        target_ous: &plan.target_ous,
        regions: &plan.regions,
    };
    let outcome = ensure_stack_set(&cf, &spec, waiting).await?;
    changes.push(Change {
        what: format!("StackSet {}", plan.stack_set),
        outcome,
    });
    progress.advance("definition");
    let account_ids: Vec<String> = plan.accounts.iter().map(|a| a.id.clone()).collect();
    let outcome = ensure_instances(&cf, &spec, &account_ids, waiting).await?;
    changes.push(Change {
        what: format!(
            "StackSet instances ({} accounts x {} regions)",
            account_ids.len(),
            plan.regions.len()
        ),
        outcome,
    });
    progress.advance("instances");
    progress.finish(&outcome.to_string());

    // 4. The management account, which StackSets skip.
    if let Some(management) = &access.management {
        progress.start("management account stacks", plan.regions.len() as u64);
        let mut tasks = tokio::task::JoinSet::new();
        for region in &plan.regions {
            let client = cloudformation(&in_region(management, region));
            let stack = blueprint.agent_stack();
            let template = agent_template.clone();
            let params = params.clone();
            let place = Place {
                account: plan.identity.management_account.clone(),
                region: region.clone(),
            };
            tasks.spawn(async move {
                let result =
                    ensure_stack(&client, &stack, &template, &params, &place, waiting).await;
                (place, result.map(|(outcome, _)| outcome))
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (place, outcome) = joined.map_err(|e| DeployError::Aws {
                operation: "cloudformation:CreateStack",
                code: String::new(),
                message: format!("a deploy task stopped: {e}"),
            })?;
            changes.push(Change {
                what: format!(
                    "agent stack {} ({} {})",
                    blueprint.agent_stack(),
                    place.account,
                    place.region
                ),
                outcome: outcome?,
            });
            progress.advance(&place.region);
        }
        progress.finish("done");
    } else {
        progress.note(
            "running as a delegated administrator without --management-profile: the management account's own stacks were not deployed, so its activity is not watched",
        );
    }
    // 5. What deploy covers, so that the aggregator expects a heartbeat
    // from every account × region, those whose agent never came up too.
    let mut accounts = account_ids;
    if access.management.is_some() {
        accounts.push(plan.identity.management_account.clone());
    }
    record_targets(
        &audit_sdk,
        &table,
        &Targets {
            accounts,
            regions: plan.regions.clone(),
            whole_organization: config.organization.target_ous.is_empty(),
        },
    )
    .await?;
    let instances = instances(&cf, &plan.stack_set, plan.identity.caller).await?;
    Ok(Report {
        changes,
        bus_arn,
        table,
        instances,
    })
}

fn summary(changes: &[Change]) -> String {
    let changed = changes
        .iter()
        .filter(|c| c.outcome != Outcome::Unchanged)
        .count();
    if changed == 0 {
        "unchanged".to_owned()
    } else {
        format!("{changed} changed")
    }
}

/// Record what deploy covers in the audit table, for the aggregator's
/// coverage check.
async fn record_targets(
    sdk: &SdkConfig,
    table: &str,
    targets: &Targets,
) -> Result<(), DeployError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    glasswatch_aggregator::store::Store::new(aws_sdk_dynamodb::Client::new(sdk), table, 3600, 1)
        .save_targets(targets, now)
        .await
        .map_err(|e| DeployError::Aws {
            operation: "dynamodb:PutItem",
            code: String::new(),
            message: format!("recording what deploy covers in {table}: {e}"),
        })
}

/// The audit stack needs the Slack secret to exist; say how to make it.
async fn check_secret(sdk: &SdkConfig, config: &Config, plan: &Plan) -> Result<(), DeployError> {
    let name = &config.slack.secret_name;
    match aws_sdk_secretsmanager::Client::new(sdk)
        .describe_secret()
        .secret_id(name)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => {
            Err(DeployError::MissingSecret {
                name: name.clone(),
                account: plan.audit_account.clone(),
                region: plan.audit_region.clone(),
            })
        }
        Err(e) => Err(aws("secretsmanager:DescribeSecret", e)),
    }
}

/// The statement id deploy owns in the organization's resource policy.
pub const DELEGATION_SID: &str = "GlasswatchAuditListAccounts";

/// The organization's resource policy with Glasswatch's statement in it,
/// or `None` when it is already there. Other statements are kept as they
/// are.
pub fn delegation_policy(
    existing: Option<&str>,
    audit_account: &str,
    region: &str,
) -> Result<Option<String>, String> {
    let statement = serde_json::json!({
        "Sid": DELEGATION_SID,
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:{}:iam::{audit_account}:root", crate::aws::partition(region))},
        "Action": "organizations:ListAccounts",
        "Resource": "*"
    });
    let mut policy: serde_json::Value = match existing {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text)
            .map_err(|e| format!("the organization's resource policy is not JSON: {e}"))?,
        _ => serde_json::json!({"Version": "2012-10-17", "Statement": []}),
    };
    let statements = match policy.get_mut("Statement") {
        Some(serde_json::Value::Array(list)) => list,
        Some(single @ serde_json::Value::Object(_)) => {
            *single = serde_json::Value::Array(vec![single.take()]);
            single.as_array_mut().ok_or("unreachable")?
        }
        _ => return Err("the organization's resource policy has no Statement list".into()),
    };
    if statements.iter().any(|s| s == &statement) {
        return Ok(None);
    }
    statements.retain(|s| s.get("Sid").and_then(|v| v.as_str()) != Some(DELEGATION_SID));
    statements.push(statement);
    Ok(Some(policy.to_string()))
}

/// Add the statement letting the audit account list the organization's
/// accounts to the organization's resource policy, unless it is there.
pub async fn ensure_list_accounts_delegation(
    orgs: &aws_sdk_organizations::Client,
    audit_account: &str,
    region: &str,
) -> Result<Outcome, DeployError> {
    let existing = match orgs.describe_resource_policy().send().await {
        Ok(out) => out.resource_policy.and_then(|p| p.content),
        Err(e) if code_of(&e) == Some("ResourcePolicyNotFoundException") => None,
        Err(e) => return Err(aws("organizations:DescribeResourcePolicy", e)),
    };
    let Some(policy) = delegation_policy(existing.as_deref(), audit_account, region)
        .map_err(DeployError::ConfigMismatch)?
    else {
        return Ok(Outcome::Unchanged);
    };
    orgs.put_resource_policy()
        .content(policy)
        .send()
        .await
        .map_err(|e| aws("organizations:PutResourcePolicy", e))?;
    Ok(if existing.is_some() {
        Outcome::Updated
    } else {
        Outcome::Created
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delegation_joins_other_statements_once() {
        let other = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Other","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"organizations:DescribeOrganization","Resource":"*"}]}"#;
        let policy = delegation_policy(Some(other), "310987654321", "eu-west-1")
            .unwrap_or_default()
            .unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&policy).unwrap_or_default();
        let statements = value["Statement"].as_array().cloned().unwrap_or_default();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0]["Sid"], "Other");
        assert_eq!(statements[1]["Action"], "organizations:ListAccounts");
        assert_eq!(
            statements[1]["Principal"]["AWS"],
            "arn:aws:iam::310987654321:root"
        );
        assert_eq!(
            delegation_policy(Some(&policy), "310987654321", "eu-west-1"),
            Ok(None),
            "already there: nothing to write"
        );
        let moved = delegation_policy(Some(&policy), "999999999999", "eu-west-1")
            .unwrap_or_default()
            .unwrap_or_default();
        assert_eq!(
            moved.matches(DELEGATION_SID).count(),
            1,
            "replaced, not added"
        );
    }

    #[test]
    fn no_policy_yet_makes_one() {
        let policy = delegation_policy(None, "310987654321", "us-east-1")
            .unwrap_or_default()
            .unwrap_or_default();
        assert!(policy.contains("organizations:ListAccounts"));
    }
}
