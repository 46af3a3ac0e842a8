//! What goes wrong in a deployment, each with what to do about it. The
//! operator sees these messages as they are, without a stack trace.

use std::fmt::Display;

use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};

/// The service principal StackSets delegated administrators register for.
pub const STACKSETS_PRINCIPAL: &str = "member.org.stacksets.cloudformation.amazonaws.com";

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "this account is not in an AWS Organization.\n  hint: from the account that should manage the organization, run `aws organizations create-organization --feature-set ALL`"
    )]
    NoOrganization,
    #[error(
        "account {caller} is neither the organization's management account ({management}) nor a delegated administrator for CloudFormation StackSets.\n  hint: run deploy with management-account credentials, or from the management account run `aws organizations register-delegated-administrator --account-id {caller} --service-principal {STACKSETS_PRINCIPAL}`"
    )]
    NotAdministrator { caller: String, management: String },
    #[error(
        "trusted access between CloudFormation StackSets and AWS Organizations is not enabled.\n  hint: from the management account run `aws cloudformation activate-organizations-access` (or enable it under CloudFormation > StackSets in the console)"
    )]
    TrustedAccess,
    #[error(
        "missing permission `{action}` ({detail}).\n  hint: grant it to the identity running deploy; the README lists every permission deploy needs"
    )]
    AccessDenied {
        action: &'static str,
        detail: String,
    },
    #[error(
        "region {region} is not enabled in account {account} (it is opted out).\n  hint: enable it with `aws account enable-region --region-name {region}`, or remove it from `organization.regions`"
    )]
    RegionNotEnabled { region: String, account: String },
    #[error(
        "another operation on StackSet {stack_set} is still running{operation} (a deploy or destroy interrupted earlier, or one run by someone else).\n  hint: wait for it (`aws cloudformation list-stack-set-operations --stack-set-name {stack_set}`), or stop it with `aws cloudformation stop-stack-set-operation --stack-set-name {stack_set} --operation-id <id>`, then run this again"
    )]
    OperationInProgress {
        stack_set: String,
        operation: String,
    },
    #[error(
        "stack {} in account {}, {}, is {}: {}.\n  hint: {}",
        .0.stack, .0.account, .0.region, .0.status, .0.reason, .0.hint
    )]
    StackFailed(Box<StackFailure>),
    #[error(
        "StackSet {stack_set} operation {operation_id} ended {status}:\n{failures}\n  hint: fix the cause in the failing accounts, then run this again; succeeded instances are kept"
    )]
    OperationFailed {
        stack_set: String,
        operation_id: String,
        status: String,
        failures: String,
    },
    #[error(
        "the Slack secret `{name}` does not exist in the audit account {account}, {region}.\n  hint: create it there first: `aws secretsmanager create-secret --region {region} --name {name} --secret-string '{{\"token\":\"xoxb-...\"}}'` (bot mode) or `'{{\"webhook_url\":\"https://hooks.slack.com/...\"}}'` (webhook mode)"
    )]
    MissingSecret {
        name: String,
        account: String,
        region: String,
    },
    #[error("the configuration does not match the organization: {0}")]
    ConfigMismatch(String),
    #[error("cannot reach the audit account {account} through {how}: {detail}")]
    AuditAccess {
        account: String,
        how: String,
        detail: String,
    },
    #[error(
        "{what} did not finish within {minutes} minutes; it may still be running. Run this again to pick it up"
    )]
    Timeout { what: String, minutes: u64 },
    #[error("{0}")]
    Blueprint(#[from] crate::render::BlueprintError),
    #[error(
        "the endpoint does not support `{operation}` (HTTP {status}, {returned}): the API is missing there, this is not a permission problem.\n  hint: {hint}"
    )]
    Unsupported {
        operation: &'static str,
        status: u16,
        /// What came back instead of an AWS error, in a few words.
        returned: &'static str,
        hint: &'static str,
    },
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        code: String,
        message: String,
    },
}

/// A stack in a state deploy cannot go on from.
#[derive(Debug)]
pub struct StackFailure {
    pub stack: String,
    pub account: String,
    pub region: String,
    pub status: String,
    pub reason: String,
    pub hint: String,
}

impl DeployError {
    /// The error code AWS returned, if this is a plain AWS failure.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Aws { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The error code of an SDK failure, or `None` for transport failures.
pub fn code_of<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// An SDK failure of `operation` (an IAM action name such as
/// `cloudformation:CreateStackSet`), recognising the cases that need a
/// specific answer.
pub fn aws<E>(operation: &'static str, e: SdkError<E, HttpResponse>) -> DeployError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = code_of(&e).unwrap_or_default().to_owned();
    let raw = match &e {
        SdkError::ServiceError(service) => Some(service.raw()),
        SdkError::ResponseError(response) => Some(response.raw()),
        _ => None,
    };
    if let Some(raw) = raw
        && let Some(returned) = unsupported(&code, raw.status().as_u16(), raw.body().bytes())
    {
        return DeployError::Unsupported {
            operation,
            status: raw.status().as_u16(),
            returned,
            hint: way_around(operation),
        };
    }
    let message = match &e {
        SdkError::ServiceError(service) if service.err().message().is_some() => {
            service.err().message().unwrap_or_default().to_owned()
        }
        SdkError::ServiceError(service) => format!(
            "{} (HTTP {})",
            aws_sdk_cloudformation::error::DisplayErrorContext(service.err()),
            service.raw().status().as_u16()
        ),
        other => aws_sdk_cloudformation::error::DisplayErrorContext(other).to_string(),
    };
    classify(operation, code, message)
}

/// Whether an answer says the endpoint lacks the API (an emulator, a proxy,
/// a partition without the service), and what it returned instead: an
/// HTML page, a "not implemented" code, or a 404/501 with no error code.
fn unsupported(code: &str, status: u16, body: Option<&[u8]>) -> Option<&'static str> {
    let body = body.unwrap_or_default().trim_ascii_start();
    if matches!(
        code,
        "NotImplemented"
            | "NotImplementedException"
            | "UnknownOperationException"
            | "InvalidAction"
    ) {
        return Some("an unknown-operation error");
    }
    if !code.is_empty() {
        return None;
    }
    if body.starts_with(b"<") && !body.starts_with(b"<?xml") && !body.starts_with(b"<Error") {
        return Some("an HTML page instead of an AWS error");
    }
    matches!(status, 404 | 501).then_some("no AWS error code")
}

/// The flag or step that goes around a missing API.
fn way_around(operation: &str) -> &'static str {
    match operation {
        "organizations:DescribeResourcePolicy" | "organizations:PutResourcePolicy" => {
            "run deploy again with --skip-list-accounts-delegation; then, from the management account, allow the audit account organizations:ListAccounts in the organization's resource policy (`aws organizations put-resource-policy`, see the README), or leave it: the aggregator then keeps the last account list it saw"
        }
        "account:ListRegions" => {
            "list the regions to cover in `organization.regions` of glasswatch.toml; deploy then goes on without checking that they are enabled"
        }
        "organizations:ListDelegatedAdministrators" => {
            "run deploy with the management account's credentials (--profile), which needs no delegated-administrator check"
        }
        _ => {
            "this endpoint is not full AWS (check AWS_ENDPOINT_URL and --profile); deploy to AWS itself, or run `cargo xtask demo` for the whole system on local emulation"
        }
    }
}

fn classify(operation: &'static str, code: String, message: String) -> DeployError {
    match code.as_str() {
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "AuthorizationError" => DeployError::AccessDenied {
            action: operation,
            detail: message,
        },
        "AWSOrganizationsNotInUseException" => DeployError::NoOrganization,
        _ if message.contains("organizations access") || message.contains("trusted access") => {
            DeployError::TrustedAccess
        }
        _ => DeployError::Aws {
            operation,
            code,
            message,
        },
    }
}

/// A list of failures, one per line, for an error message.
pub fn lines<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_names_the_action() {
        let e = classify(
            "cloudformation:CreateStackSet",
            "AccessDenied".into(),
            "User: arn:aws:iam::1:user/x is not authorized".into(),
        );
        let text = e.to_string();
        assert!(text.contains("`cloudformation:CreateStackSet`"), "{text}");
        assert!(text.contains("hint:"), "{text}");
    }

    #[test]
    fn trusted_access_is_recognised_with_the_command() {
        let e = classify(
            "cloudformation:CreateStackSet",
            "ValidationError".into(),
            "You must enable organizations access to operate a service managed stack set".into(),
        );
        assert!(matches!(e, DeployError::TrustedAccess));
        assert!(
            e.to_string()
                .contains("aws cloudformation activate-organizations-access")
        );
    }

    #[test]
    fn a_missing_api_is_named_with_the_way_around_it() {
        assert_eq!(
            unsupported(
                "",
                404,
                Some(b"\n<!doctype html><html><body>Not Found</body></html>")
            ),
            Some("an HTML page instead of an AWS error")
        );
        assert_eq!(unsupported("", 501, None), Some("no AWS error code"));
        assert!(unsupported("AccessDenied", 403, Some(b"<html>")).is_none());
        assert!(unsupported("", 500, Some(b"<Error><Code>x</Code></Error>")).is_none());
        assert!(
            way_around("organizations:DescribeResourcePolicy")
                .contains("--skip-list-accounts-delegation")
        );
    }

    #[test]
    fn no_organization_says_how_to_make_one() {
        let e = classify(
            "organizations:DescribeOrganization",
            "AWSOrganizationsNotInUseException".into(),
            String::new(),
        );
        assert!(
            e.to_string()
                .contains("create-organization --feature-set ALL")
        );
    }
}
