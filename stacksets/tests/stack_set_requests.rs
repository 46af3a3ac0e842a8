//! What deploy asks CloudFormation for, checked request by request with
//! `aws-smithy-mocks`: moto ignores `AutoDeployment`, operation
//! preferences, `CallAs` and StackSet updates, so those are asserted here.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudformation::error::ErrorMetadata;
use aws_sdk_cloudformation::operation::create_stack_instances::CreateStackInstancesOutput;
use aws_sdk_cloudformation::operation::create_stack_set::CreateStackSetOutput;
use aws_sdk_cloudformation::operation::describe_stack_set::{
    DescribeStackSetError, DescribeStackSetOutput,
};
use aws_sdk_cloudformation::operation::describe_stack_set_operation::DescribeStackSetOperationOutput;
use aws_sdk_cloudformation::operation::list_stack_instances::ListStackInstancesOutput;
use aws_sdk_cloudformation::operation::list_stack_set_operation_results::ListStackSetOperationResultsOutput;
use aws_sdk_cloudformation::operation::update_stack_set::{
    UpdateStackSetError, UpdateStackSetOutput,
};
use aws_sdk_cloudformation::types::error::{
    OperationInProgressException, StackSetNotFoundException,
};
use aws_sdk_cloudformation::types::{
    AutoDeployment, CallAs, Parameter, PermissionModels, RegionConcurrencyType,
    StackInstanceSummary, StackSet, StackSetOperation, StackSetOperationResultStatus,
    StackSetOperationResultSummary, StackSetOperationStatus,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use glasswatch_stacksets::DeployError;
use glasswatch_stacksets::aws::Waiting;
use glasswatch_stacksets::stacks::{
    Caller, Outcome, StackSetSpec, ensure_instances, ensure_stack_set,
};

const WAIT: Waiting = Waiting {
    poll: Duration::from_millis(1),
    timeout: Duration::from_secs(5),
};

fn params() -> Vec<(String, String)> {
    vec![(
        "CentralBusArn".into(),
        "arn:aws:events:eu-west-1:310987654321:event-bus/gw".into(),
    )]
}

fn spec<'a>(
    params: &'a [(String, String)],
    ous: &'a [String],
    regions: &'a [String],
) -> StackSetSpec<'a> {
    StackSetSpec {
        name: "glasswatch-agent",
        template: "TEMPLATE v2",
        params,
        caller: Caller::DelegatedAdmin,
        target_ous: ous,
        regions,
    }
}

fn operation(status: StackSetOperationStatus) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_stack_set_operation).then_output(move || {
        DescribeStackSetOperationOutput::builder()
            .stack_set_operation(StackSetOperation::builder().status(status.clone()).build())
            .build()
    })
}

fn not_found() -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_stack_set).then_error(|| {
        DescribeStackSetError::StackSetNotFoundException(
            StackSetNotFoundException::builder()
                .message("StackSet glasswatch-agent not found")
                .meta(
                    ErrorMetadata::builder()
                        .code("StackSetNotFoundException")
                        .build(),
                )
                .build(),
        )
    })
}

fn existing(template: &str) -> Rule {
    let template = template.to_owned();
    mock!(aws_sdk_cloudformation::Client::describe_stack_set).then_output(move || {
        DescribeStackSetOutput::builder()
            .stack_set(
                StackSet::builder()
                    .stack_set_name("glasswatch-agent")
                    .template_body(&template)
                    .parameters(
                        Parameter::builder()
                            .parameter_key("CentralBusArn")
                            .parameter_value("arn:aws:events:eu-west-1:310987654321:event-bus/gw")
                            .build(),
                    )
                    .permission_model(PermissionModels::ServiceManaged)
                    .auto_deployment(
                        AutoDeployment::builder()
                            .enabled(true)
                            .retain_stacks_on_account_removal(false)
                            .build(),
                    )
                    .build(),
            )
            .build()
    })
}

fn instances(pairs: &[(&str, &str)]) -> Rule {
    let summaries: Vec<StackInstanceSummary> = pairs
        .iter()
        .map(|(account, region)| {
            StackInstanceSummary::builder()
                .account(*account)
                .region(*region)
                .build()
        })
        .collect();
    mock!(aws_sdk_cloudformation::Client::list_stack_instances).then_output(move || {
        ListStackInstancesOutput::builder()
            .set_summaries(Some(summaries.clone()))
            .build()
    })
}

#[tokio::test]
async fn a_new_stack_set_is_service_managed_with_auto_deployment_and_parallel_regions() {
    let created = Arc::new(Mutex::new(None));
    let instances_created = Arc::new(Mutex::new(None));
    let create = {
        let created = created.clone();
        mock!(aws_sdk_cloudformation::Client::create_stack_set)
            .match_requests(move |input| {
                *created.lock().unwrap() = Some(input.clone());
                true
            })
            .then_output(|| CreateStackSetOutput::builder().stack_set_id("id").build())
    };
    let create_instances = {
        let seen = instances_created.clone();
        mock!(aws_sdk_cloudformation::Client::create_stack_instances)
            .match_requests(move |input| {
                *seen.lock().unwrap() = Some(input.clone());
                true
            })
            .then_output(|| {
                CreateStackInstancesOutput::builder()
                    .operation_id("op-1")
                    .build()
            })
    };
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        [
            &not_found(),
            &create,
            &instances(&[]),
            &create_instances,
            &operation(StackSetOperationStatus::Succeeded)
        ]
    );
    let ous = vec![
        "ou-ab12-security".to_owned(),
        "ou-ab12-workloads".to_owned(),
    ];
    let regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
    let params = params();
    let spec = spec(&params, &ous, &regions);
    assert_eq!(
        ensure_stack_set(&client, &spec, WAIT).await.unwrap(),
        Outcome::Created
    );
    let accounts = vec!["111122223333".to_owned()];
    assert_eq!(
        ensure_instances(&client, &spec, &accounts, WAIT)
            .await
            .unwrap(),
        Outcome::Created
    );

    let input = created.lock().unwrap().clone().unwrap();
    assert_eq!(
        input.permission_model(),
        Some(&PermissionModels::ServiceManaged)
    );
    let auto = input.auto_deployment().unwrap();
    assert_eq!(auto.enabled(), Some(true));
    assert_eq!(auto.retain_stacks_on_account_removal(), Some(false));
    assert_eq!(input.call_as(), Some(&CallAs::DelegatedAdmin));
    assert_eq!(input.template_body(), Some("TEMPLATE v2"));
    assert!(
        input
            .capabilities()
            .iter()
            .any(|c| c.as_str() == "CAPABILITY_NAMED_IAM")
    );

    let input = instances_created.lock().unwrap().clone().unwrap();
    assert_eq!(
        input
            .deployment_targets()
            .unwrap()
            .organizational_unit_ids(),
        ous.as_slice()
    );
    assert_eq!(input.regions(), regions.as_slice());
    let prefs = input.operation_preferences().unwrap();
    assert_eq!(
        prefs.region_concurrency_type(),
        Some(&RegionConcurrencyType::Parallel)
    );
    assert!(prefs.failure_tolerance_percentage().unwrap_or(0) > 0);
    assert_eq!(input.call_as(), Some(&CallAs::DelegatedAdmin));
}

#[tokio::test]
async fn a_changed_template_updates_the_stack_set_and_its_instances() {
    let updated = Arc::new(Mutex::new(None));
    let update = {
        let updated = updated.clone();
        mock!(aws_sdk_cloudformation::Client::update_stack_set)
            .match_requests(move |input| {
                *updated.lock().unwrap() = Some(input.clone());
                true
            })
            .then_output(|| UpdateStackSetOutput::builder().operation_id("op-2").build())
    };
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        [
            &existing("TEMPLATE v1"),
            &instances(&[("111122223333", "us-east-1"), ("111122223333", "eu-west-1")]),
            &update,
            &operation(StackSetOperationStatus::Succeeded)
        ]
    );
    let ous = vec!["r-ab12".to_owned()];
    let regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
    let params = params();
    let spec = spec(&params, &ous, &regions);
    assert_eq!(
        ensure_stack_set(&client, &spec, WAIT).await.unwrap(),
        Outcome::Updated
    );
    let input = updated.lock().unwrap().clone().unwrap();
    assert_eq!(input.template_body(), Some("TEMPLATE v2"));
    assert_eq!(input.auto_deployment().unwrap().enabled(), Some(true));
    assert_eq!(
        input
            .deployment_targets()
            .unwrap()
            .organizational_unit_ids(),
        ous.as_slice()
    );
    let mut updated_regions = input.regions().to_vec();
    updated_regions.sort();
    assert_eq!(updated_regions, ["eu-west-1", "us-east-1"]);
    assert!(input.operation_id().is_some(), "an idempotency token");
    assert_eq!(input.call_as(), Some(&CallAs::DelegatedAdmin));

    // The same template and parameters: no update at all.
    let unchanged = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        [&existing("TEMPLATE v2")]
    );
    assert_eq!(
        ensure_stack_set(&unchanged, &spec, WAIT).await.unwrap(),
        Outcome::Unchanged
    );
}

#[tokio::test]
async fn an_operation_still_running_is_reported_as_a_lock_with_what_to_do() {
    let busy = mock!(aws_sdk_cloudformation::Client::update_stack_set).then_error(|| {
        UpdateStackSetError::OperationInProgressException(
            OperationInProgressException::builder()
                .message("Another Operation on StackSet is in progress")
                .meta(
                    ErrorMetadata::builder()
                        .code("OperationInProgressException")
                        .build(),
                )
                .build(),
        )
    });
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        [&existing("TEMPLATE v1"), &instances(&[]), &busy]
    );
    let ous = vec!["r-ab12".to_owned()];
    let regions = vec!["us-east-1".to_owned()];
    let params = params();
    let error = ensure_stack_set(&client, &spec(&params, &ous, &regions), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DeployError::OperationInProgress { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("stop-stack-set-operation"), "{text}");
}

#[tokio::test]
async fn a_failed_operation_names_each_failing_account_and_region() {
    let results = mock!(aws_sdk_cloudformation::Client::list_stack_set_operation_results)
        .then_output(|| {
            ListStackSetOperationResultsOutput::builder()
                .summaries(
                    StackSetOperationResultSummary::builder()
                        .account("444455556666")
                        .region("ap-south-2")
                        .status(StackSetOperationResultStatus::Failed)
                        .status_reason("Region ap-south-2 is not enabled")
                        .build(),
                )
                .build()
        });
    let create_instances = mock!(aws_sdk_cloudformation::Client::create_stack_instances)
        .then_output(|| {
            CreateStackInstancesOutput::builder()
                .operation_id("op-3")
                .build()
        });
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        [
            &instances(&[]),
            &create_instances,
            &operation(StackSetOperationStatus::Failed),
            &results
        ]
    );
    let ous = vec!["r-ab12".to_owned()];
    let regions = vec!["ap-south-2".to_owned()];
    let params = params();
    let accounts = vec!["444455556666".to_owned()];
    let error = ensure_instances(&client, &spec(&params, &ous, &regions), &accounts, WAIT)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("444455556666 ap-south-2: Region ap-south-2 is not enabled"),
        "{text}"
    );
}

#[tokio::test]
async fn destroy_removes_the_instances_of_the_target_ous_then_the_stack_set() {
    use aws_sdk_cloudformation::operation::delete_stack_instances::DeleteStackInstancesOutput;
    use aws_sdk_cloudformation::operation::delete_stack_set::DeleteStackSetOutput;
    let deleted = Arc::new(Mutex::new(None));
    let delete_instances = {
        let deleted = deleted.clone();
        mock!(aws_sdk_cloudformation::Client::delete_stack_instances)
            .match_requests(move |input| {
                *deleted.lock().unwrap() = Some(input.clone());
                true
            })
            .then_output(|| {
                DeleteStackInstancesOutput::builder()
                    .operation_id("op-4")
                    .build()
            })
    };
    let delete_set = mock!(aws_sdk_cloudformation::Client::delete_stack_set)
        .match_requests(|input| input.call_as() == Some(&CallAs::DelegatedAdmin))
        .then_output(|| DeleteStackSetOutput::builder().build());
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        [
            &instances(&[("111122223333", "us-east-1"), ("111122223333", "eu-west-1")]),
            &delete_instances,
            &operation(StackSetOperationStatus::Succeeded),
            &delete_set
        ]
    );
    let ous = vec!["ou-ab12-workloads".to_owned()];
    let outcome = glasswatch_stacksets::stacks::delete_stack_set(
        &client,
        "glasswatch-agent",
        Caller::DelegatedAdmin,
        &ous,
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Deleted);
    let input = deleted.lock().unwrap().clone().unwrap();
    assert_eq!(
        input
            .deployment_targets()
            .unwrap()
            .organizational_unit_ids(),
        ous.as_slice()
    );
    let mut regions = input.regions().to_vec();
    regions.sort();
    assert_eq!(regions, ["eu-west-1", "us-east-1"]);
    assert_eq!(input.retain_stacks(), Some(false));
    assert_eq!(input.call_as(), Some(&CallAs::DelegatedAdmin));
}
