//! Plain stacks and the StackSet: create, or update only what differs, and
//! wait for CloudFormation to finish. Each function answers whether it
//! changed anything, so that a second deploy can say it changed nothing.

use std::collections::BTreeSet;
use std::time::Instant;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{
    AutoDeployment, CallAs, Capability, DeploymentTargets, Parameter, PermissionModels,
    RegionConcurrencyType, StackSetOperationPreferences, StackSetOperationStatus, StackStatus,
    TemplateStage,
};

use crate::aws::Waiting;
use crate::error::{DeployError, StackFailure, aws, code_of, lines};
use crate::render::Parameters;

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Deleted,
    Absent,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Deleted => "deleted",
            Self::Absent => "absent",
        })
    }
}

/// Where a stack is, for messages.
#[derive(Debug, Clone)]
pub struct Place {
    pub account: String,
    pub region: String,
}

fn parameters(params: &[(String, String)]) -> Vec<Parameter> {
    params
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

/// Whether the deployed parameters hold every wanted value. CloudFormation
/// also reports parameters left at their defaults, which deploy never sets.
fn holds(deployed: &[(String, String)], wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|w| deployed.contains(w))
}

fn pairs(params: &[Parameter]) -> Parameters {
    let mut out: Parameters = params
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_owned(),
                p.parameter_value().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// A stack as CloudFormation reports it.
#[derive(Debug, Clone)]
pub struct StackState {
    pub status: StackStatus,
    pub reason: String,
    pub parameters: Parameters,
    pub outputs: Vec<(String, String)>,
}

pub async fn describe(client: &Client, stack: &str) -> Result<Option<StackState>, DeployError> {
    let out = match client.describe_stacks().stack_name(stack).send().await {
        Ok(out) => out,
        Err(e)
            if code_of(&e) == Some("ValidationError")
                && aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                    .to_string()
                    .contains("does not exist") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(aws("cloudformation:DescribeStacks", e)),
    };
    let Some(s) = out.stacks.unwrap_or_default().into_iter().next() else {
        return Ok(None);
    };
    let status = s
        .stack_status
        .clone()
        .unwrap_or_else(|| StackStatus::from("UNKNOWN"));
    if status == StackStatus::DeleteComplete {
        return Ok(None);
    }
    Ok(Some(StackState {
        status,
        reason: s.stack_status_reason.clone().unwrap_or_default(),
        parameters: pairs(s.parameters()),
        outputs: s
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect(),
    }))
}

fn in_progress(status: &StackStatus) -> bool {
    status.as_str().ends_with("_IN_PROGRESS")
}

fn failed(stack: &str, place: &Place, state: &StackState, reason: String) -> DeployError {
    let status = state.status.as_str().to_owned();
    let region = &place.region;
    let hint = match state.status {
        StackStatus::RollbackComplete | StackStatus::RollbackFailed | StackStatus::CreateFailed => {
            format!(
                "its creation failed earlier and it holds nothing; delete it with `aws cloudformation delete-stack --region {region} --stack-name {stack}` and run this again"
            )
        }
        StackStatus::UpdateRollbackFailed => format!(
            "finish the rollback with `aws cloudformation continue-update-rollback --region {region} --stack-name {stack}` and run this again"
        ),
        StackStatus::DeleteFailed => format!(
            "see its events (`aws cloudformation describe-stack-events --region {region} --stack-name {stack}`), remove what blocks the delete, and delete it again"
        ),
        _ => "see the stack's events in the CloudFormation console for the resource that failed"
            .to_owned(),
    };
    DeployError::StackFailed(Box::new(StackFailure {
        stack: stack.to_owned(),
        account: place.account.clone(),
        region: place.region.clone(),
        status,
        reason,
        hint,
    }))
}

/// The first failure among the stack's recent events.
async fn failure_reason(client: &Client, stack: &str, fallback: &str) -> String {
    let Ok(out) = client
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
    else {
        return fallback.to_owned();
    };
    out.stack_events()
        .iter()
        .rev()
        .find(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.logical_resource_id().unwrap_or("?"),
                e.resource_status_reason().unwrap_or("no reason given")
            )
        })
        .unwrap_or_else(|| fallback.to_owned())
}

/// Wait until the stack is no longer changing; `None` once deleted.
pub async fn settle(
    client: &Client,
    stack: &str,
    waiting: Waiting,
) -> Result<Option<StackState>, DeployError> {
    let start = Instant::now();
    loop {
        let state = describe(client, stack).await?;
        match &state {
            Some(s) if in_progress(&s.status) => {}
            _ => return Ok(state),
        }
        if start.elapsed() > waiting.timeout {
            return Err(DeployError::Timeout {
                what: format!("stack {stack}"),
                minutes: waiting.timeout.as_secs() / 60,
            });
        }
        tokio::time::sleep(waiting.poll).await;
    }
}

/// Create the stack, or update it if its template or parameters differ.
pub async fn ensure_stack(
    client: &Client,
    stack: &str,
    template: &str,
    params: &Parameters,
    place: &Place,
    waiting: Waiting,
) -> Result<(Outcome, StackState), DeployError> {
    let existing = settle(client, stack, waiting).await?;
    let outcome = match existing {
        None => {
            client
                .create_stack()
                .stack_name(stack)
                .template_body(template)
                .set_parameters(Some(parameters(params)))
                .capabilities(Capability::CapabilityNamedIam)
                .enable_termination_protection(false)
                .send()
                .await
                .map_err(|e| aws("cloudformation:CreateStack", e))?;
            Outcome::Created
        }
        Some(state) => {
            match state.status {
                StackStatus::CreateComplete
                | StackStatus::UpdateComplete
                | StackStatus::UpdateRollbackComplete
                | StackStatus::ImportComplete
                | StackStatus::ImportRollbackComplete => {}
                _ => {
                    let reason = failure_reason(client, stack, &state.reason).await;
                    return Err(failed(stack, place, &state, reason));
                }
            }
            let body = client
                .get_template()
                .stack_name(stack)
                .template_stage(TemplateStage::Original)
                .send()
                .await
                .map_err(|e| aws("cloudformation:GetTemplate", e))?
                .template_body
                .unwrap_or_default();
            if body == template && holds(&state.parameters, params) {
                return Ok((Outcome::Unchanged, state));
            }
            match client
                .update_stack()
                .stack_name(stack)
                .template_body(template)
                .set_parameters(Some(parameters(params)))
                .capabilities(Capability::CapabilityNamedIam)
                .send()
                .await
            {
                Ok(_) => Outcome::Updated,
                Err(e)
                    if aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                        .to_string()
                        .contains("No updates are to be performed") =>
                {
                    return Ok((Outcome::Unchanged, state));
                }
                Err(e) => return Err(aws("cloudformation:UpdateStack", e)),
            }
        }
    };
    let state = settle(client, stack, waiting)
        .await?
        .ok_or_else(|| DeployError::Aws {
            operation: "cloudformation:DescribeStacks",
            code: String::new(),
            message: format!("stack {stack} vanished while being deployed"),
        })?;
    match state.status {
        StackStatus::CreateComplete | StackStatus::UpdateComplete => Ok((outcome, state)),
        _ => {
            let reason = failure_reason(client, stack, &state.reason).await;
            Err(failed(stack, place, &state, reason))
        }
    }
}

/// Delete a stack and wait until it is gone.
pub async fn delete_stack(
    client: &Client,
    stack: &str,
    place: &Place,
    waiting: Waiting,
) -> Result<Outcome, DeployError> {
    if settle(client, stack, waiting).await?.is_none() {
        return Ok(Outcome::Absent);
    }
    client
        .delete_stack()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| aws("cloudformation:DeleteStack", e))?;
    match settle(client, stack, waiting).await? {
        None => Ok(Outcome::Deleted),
        Some(state) => {
            let reason = failure_reason(client, stack, &state.reason).await;
            Err(failed(stack, place, &state, reason))
        }
    }
}

/// Who the StackSet calls are made as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Caller {
    Management,
    DelegatedAdmin,
}

impl Caller {
    pub fn call_as(self) -> CallAs {
        match self {
            Self::Management => CallAs::SelfValue,
            Self::DelegatedAdmin => CallAs::DelegatedAdmin,
        }
    }
}

/// The StackSet's desired shape.
#[derive(Debug, Clone)]
pub struct StackSetSpec<'a> {
    pub name: &'a str,
    pub template: &'a str,
    pub params: &'a [(String, String)],
    pub caller: Caller,
    pub target_ous: &'a [String],
    pub regions: &'a [String],
}

/// Regions in parallel, accounts as fast as CloudFormation allows, and a
/// tenth of the accounts may fail without stopping the rest.
pub fn preferences() -> StackSetOperationPreferences {
    StackSetOperationPreferences::builder()
        .region_concurrency_type(RegionConcurrencyType::Parallel)
        .max_concurrent_percentage(100)
        .failure_tolerance_percentage(10)
        .build()
}

fn auto_deployment() -> AutoDeployment {
    AutoDeployment::builder()
        .enabled(true)
        .retain_stacks_on_account_removal(false)
        .build()
}

fn targets(ous: &[String]) -> DeploymentTargets {
    DeploymentTargets::builder()
        .set_organizational_unit_ids(Some(ous.to_vec()))
        .build()
}

fn in_progress_error(name: &str, e: &DeployError) -> Option<DeployError> {
    (e.code() == Some("OperationInProgressException")).then(|| DeployError::OperationInProgress {
        stack_set: name.to_owned(),
        operation: String::new(),
    })
}

/// Create the StackSet, or update it when its template, parameters or
/// auto-deployment differ. Waits for the update's operation.
pub async fn ensure_stack_set(
    client: &Client,
    spec: &StackSetSpec<'_>,
    waiting: Waiting,
) -> Result<Outcome, DeployError> {
    let call_as = spec.caller.call_as();
    let existing = match client
        .describe_stack_set()
        .stack_set_name(spec.name)
        .call_as(call_as.clone())
        .send()
        .await
    {
        Ok(out) => out.stack_set,
        Err(e) if code_of(&e) == Some("StackSetNotFoundException") => None,
        Err(e) => return Err(aws("cloudformation:DescribeStackSet", e)),
    };
    let Some(existing) = existing.filter(|s| {
        s.status()
            .is_none_or(|st| st != &aws_sdk_cloudformation::types::StackSetStatus::Deleted)
    }) else {
        client
            .create_stack_set()
            .stack_set_name(spec.name)
            .description("Glasswatch agent: break-glass detection in every account and region")
            .template_body(spec.template)
            .set_parameters(Some(parameters(spec.params)))
            .capabilities(Capability::CapabilityNamedIam)
            .permission_model(PermissionModels::ServiceManaged)
            .auto_deployment(auto_deployment())
            .call_as(call_as)
            .send()
            .await
            .map_err(|e| aws("cloudformation:CreateStackSet", e))?;
        return Ok(Outcome::Created);
    };
    let auto = existing.auto_deployment();
    let same = existing.template_body() == Some(spec.template)
        && holds(&pairs(existing.parameters()), spec.params)
        // moto does not keep AutoDeployment; AWS always reports it.
        && auto.is_none_or(|a| {
            a.enabled() == Some(true) && a.retain_stacks_on_account_removal() == Some(false)
        });
    if same {
        return Ok(Outcome::Unchanged);
    }
    // Update the instances that exist; new regions get theirs afterwards.
    let present: BTreeSet<String> = instances(client, spec.name, spec.caller)
        .await?
        .into_iter()
        .map(|i| i.region)
        .collect();
    let mut update = client
        .update_stack_set()
        .stack_set_name(spec.name)
        .template_body(spec.template)
        .set_parameters(Some(parameters(spec.params)))
        .capabilities(Capability::CapabilityNamedIam)
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(auto_deployment())
        .operation_preferences(preferences())
        .operation_id(uuid::Uuid::new_v4().to_string())
        .call_as(call_as);
    if !present.is_empty() {
        update = update
            .deployment_targets(targets(spec.target_ous))
            .set_regions(Some(present.into_iter().collect()));
    }
    let out = update.send().await.map_err(|e| {
        let e = aws("cloudformation:UpdateStackSet", e);
        in_progress_error(spec.name, &e).unwrap_or(e)
    })?;
    if let Some(id) = out.operation_id {
        wait_operation(client, spec.name, spec.caller, &id, waiting).await?;
    }
    Ok(Outcome::Updated)
}

/// Stack instances in the regions and accounts that lack them.
pub async fn ensure_instances(
    client: &Client,
    spec: &StackSetSpec<'_>,
    accounts: &[String],
    waiting: Waiting,
) -> Result<Outcome, DeployError> {
    let have: BTreeSet<(String, String)> = instances(client, spec.name, spec.caller)
        .await?
        .into_iter()
        .map(|i| (i.account, i.region))
        .collect();
    let missing: Vec<String> = spec
        .regions
        .iter()
        .filter(|region| {
            accounts
                .iter()
                .any(|a| !have.contains(&(a.clone(), (*region).clone())))
        })
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    let out = client
        .create_stack_instances()
        .stack_set_name(spec.name)
        .deployment_targets(targets(spec.target_ous))
        .set_regions(Some(missing))
        .operation_preferences(preferences())
        .operation_id(uuid::Uuid::new_v4().to_string())
        .call_as(spec.caller.call_as())
        .send()
        .await
        .map_err(|e| {
            let e = aws("cloudformation:CreateStackInstances", e);
            in_progress_error(spec.name, &e).unwrap_or(e)
        })?;
    if let Some(id) = out.operation_id {
        wait_operation(client, spec.name, spec.caller, &id, waiting).await?;
    }
    Ok(if have.is_empty() {
        Outcome::Created
    } else {
        Outcome::Updated
    })
}

/// One stack instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    pub account: String,
    pub region: String,
    pub status: String,
    pub reason: String,
}

/// Every instance of the StackSet; none when it does not exist.
pub async fn instances(
    client: &Client,
    name: &str,
    caller: Caller,
) -> Result<Vec<Instance>, DeployError> {
    let mut pages = client
        .list_stack_instances()
        .stack_set_name(name)
        .call_as(caller.call_as())
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) if code_of(&e) == Some("StackSetNotFoundException") => return Ok(Vec::new()),
            Err(e) => return Err(aws("cloudformation:ListStackInstances", e)),
        };
        for s in page.summaries() {
            let status = s
                .stack_instance_status()
                .and_then(|d| d.detailed_status())
                .map(|d| d.as_str().to_owned())
                .or_else(|| s.status().map(|st| st.as_str().to_owned()))
                .unwrap_or_default();
            out.push(Instance {
                account: s.account().unwrap_or_default().to_owned(),
                region: s.region().unwrap_or_default().to_owned(),
                status,
                reason: s.status_reason().unwrap_or_default().to_owned(),
            });
        }
    }
    out.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
    Ok(out)
}

/// Wait for a StackSet operation; a failed or stopped one is an error
/// listing each account and region that failed, and why.
pub async fn wait_operation(
    client: &Client,
    name: &str,
    caller: Caller,
    operation_id: &str,
    waiting: Waiting,
) -> Result<(), DeployError> {
    let start = Instant::now();
    loop {
        let out = client
            .describe_stack_set_operation()
            .stack_set_name(name)
            .operation_id(operation_id)
            .call_as(caller.call_as())
            .send()
            .await
            .map_err(|e| aws("cloudformation:DescribeStackSetOperation", e))?;
        let status = out
            .stack_set_operation
            .and_then(|o| o.status)
            .unwrap_or(StackSetOperationStatus::Running);
        match status {
            StackSetOperationStatus::Succeeded => return Ok(()),
            StackSetOperationStatus::Failed | StackSetOperationStatus::Stopped => {
                let results = client
                    .list_stack_set_operation_results()
                    .stack_set_name(name)
                    .operation_id(operation_id)
                    .call_as(caller.call_as())
                    .send()
                    .await
                    .map_err(|e| aws("cloudformation:ListStackSetOperationResults", e))?;
                let failures = results
                    .summaries()
                    .iter()
                    .filter(|r| r.status().is_some_and(|s| s.as_str() != "SUCCEEDED"))
                    .map(|r| {
                        format!(
                            "{} {}: {}",
                            r.account().unwrap_or("?"),
                            r.region().unwrap_or("?"),
                            r.status_reason().unwrap_or("no reason given")
                        )
                    });
                return Err(DeployError::OperationFailed {
                    stack_set: name.to_owned(),
                    operation_id: operation_id.to_owned(),
                    status: status.as_str().to_owned(),
                    failures: lines(failures),
                });
            }
            _ => {}
        }
        if start.elapsed() > waiting.timeout {
            return Err(DeployError::Timeout {
                what: format!("StackSet {name} operation {operation_id}"),
                minutes: waiting.timeout.as_secs() / 60,
            });
        }
        tokio::time::sleep(waiting.poll).await;
    }
}

/// Remove every instance, then the StackSet.
pub async fn delete_stack_set(
    client: &Client,
    name: &str,
    caller: Caller,
    target_ous: &[String],
    waiting: Waiting,
) -> Result<Outcome, DeployError> {
    let present: BTreeSet<String> = instances(client, name, caller)
        .await?
        .into_iter()
        .map(|i| i.region)
        .collect();
    if !present.is_empty() {
        let out = client
            .delete_stack_instances()
            .stack_set_name(name)
            .deployment_targets(targets(target_ous))
            .set_regions(Some(present.into_iter().collect()))
            .retain_stacks(false)
            .operation_preferences(preferences())
            .operation_id(uuid::Uuid::new_v4().to_string())
            .call_as(caller.call_as())
            .send()
            .await
            .map_err(|e| {
                let e = aws("cloudformation:DeleteStackInstances", e);
                in_progress_error(name, &e).unwrap_or(e)
            })?;
        if let Some(id) = out.operation_id {
            wait_operation(client, name, caller, &id, waiting).await?;
        }
    }
    match client
        .delete_stack_set()
        .stack_set_name(name)
        .call_as(caller.call_as())
        .send()
        .await
    {
        Ok(_) => Ok(Outcome::Deleted),
        Err(e) if code_of(&e) == Some("StackSetNotFoundException") => Ok(Outcome::Absent),
        Err(e) => {
            let e = aws("cloudformation:DeleteStackSet", e);
            Err(in_progress_error(name, &e).unwrap_or(e))
        }
    }
}
