//! An endpoint that lacks an API deploy calls (moto has no
//! `organizations:DescribeResourcePolicy`; a proxy may answer with a web
//! page) is named, with the flag or step that goes around it, instead of
//! an SDK dump of the HTML body.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use aws_smithy_mocks::{RuleMode, mock, mock_client};
use glasswatch_stacksets::DeployError;
use glasswatch_stacksets::deploy::ensure_list_accounts_delegation;

const PAGE: &str = "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>The requested URL was not found on the server.</p></body></html>";

#[tokio::test]
async fn a_missing_organizations_api_names_itself_and_the_flag_around_it() {
    let page = mock!(aws_sdk_organizations::Client::describe_resource_policy)
        .sequence()
        .http_status(404, Some(PAGE.to_owned()))
        .build();
    let orgs = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, [&page]);
    let error = ensure_list_accounts_delegation(&orgs, "310987654321", "eu-west-1")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, DeployError::Unsupported { status: 404, .. }),
        "{text}"
    );
    assert!(
        text.contains("`organizations:DescribeResourcePolicy`"),
        "{text}"
    );
    assert!(text.contains("--skip-list-accounts-delegation"), "{text}");
    assert!(
        !text.contains("<html") && !text.contains("DOCTYPE"),
        "{text}"
    );
}
