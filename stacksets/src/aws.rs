//! Clients and credentials: one region's view of an `SdkConfig`, another
//! account reached through `AssumeRole`, and the progress reporting the
//! long operations share.

use std::time::{Duration, SystemTime};

use aws_config::{Region, SdkConfig};
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};

use crate::error::{DeployError, aws};

/// The same identity in another region.
pub fn in_region(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

/// S3 needs path-style addressing behind an endpoint override (moto).
pub use glasswatch_aggregator::s3::client as s3;

pub fn cloudformation(sdk: &SdkConfig) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(sdk)
}

/// The account behind these credentials.
pub async fn caller_account(sdk: &SdkConfig) -> Result<String, DeployError> {
    let me = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| aws("sts:GetCallerIdentity", e))?;
    me.account.ok_or_else(|| DeployError::Aws {
        operation: "sts:GetCallerIdentity",
        code: String::new(),
        message: "the answer named no account".into(),
    })
}

/// Credentials in `account` through `role`, as `sdk` may assume it. They
/// last an hour, which is longer than a deploy waits for anything.
pub async fn assume_role(
    sdk: &SdkConfig,
    account: &str,
    role: &str,
) -> Result<SdkConfig, DeployError> {
    let arn = format!(
        "arn:{}:iam::{account}:role/{role}",
        partition(sdk.region().map(Region::as_ref).unwrap_or("us-east-1"))
    );
    let out = aws_sdk_sts::Client::new(sdk)
        .assume_role()
        .role_arn(&arn)
        .role_session_name("glasswatch-deploy")
        .duration_seconds(3600)
        .send()
        .await
        .map_err(|e| DeployError::AuditAccess {
            account: account.to_owned(),
            how: format!("role {arn}"),
            detail: match aws("sts:AssumeRole", e) {
                DeployError::Aws { message, .. } => message,
                other => other.to_string(),
            },
        })?;
    let c = out.credentials.ok_or_else(|| DeployError::AuditAccess {
        account: account.to_owned(),
        how: format!("role {arn}"),
        detail: "AssumeRole returned no credentials".into(),
    })?;
    let expiry = SystemTime::try_from(c.expiration).ok();
    let credentials = Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        expiry,
        "glasswatch-assume-role",
    );
    Ok(sdk
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build())
}

/// The ARN partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// How deploy, destroy and status report progress: one phase at a time,
/// each with a known number of steps. The xtask shows these as progress
/// bars; tests stay silent.
pub trait Progress: Send + Sync {
    fn start(&self, phase: &str, steps: u64);
    fn advance(&self, message: &str);
    fn finish(&self, summary: &str);
    fn note(&self, message: &str);
}

/// No output.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str) {}
    fn finish(&self, _: &str) {}
    fn note(&self, _: &str) {}
}

/// How often to poll, and for how long, when waiting on CloudFormation.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub poll: Duration,
    pub timeout: Duration,
}

impl Default for Waiting {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(5),
            timeout: Duration::from_secs(60 * 60),
        }
    }
}
