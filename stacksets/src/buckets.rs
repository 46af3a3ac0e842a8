//! The artifact buckets: one per region (Lambda reads code only from its
//! own region), in the deploying account, readable by the organization,
//! versioned, encrypted and closed to the public. Zips go under
//! content-hash keys, so an upload of the same zip is skipped.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::aws::partition;
use crate::error::{DeployError, aws, code_of};
use crate::stacks::Outcome;

/// The bucket policy: the organization may read code; nobody may use
/// plain HTTP. `tls_only` is false only for a local emulator reached over
/// `http://`, which evaluates the policy and would refuse its own caller.
pub fn bucket_policy(bucket: &str, region: &str, organization_id: &str, tls_only: bool) -> String {
    let arn = format!("arn:{}:s3:::{bucket}", partition(region));
    let mut statements = vec![json!(
    {
        "Sid": "OrganizationReadsLambdaCode",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": format!("{arn}/*"),
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": organization_id}}
    })];
    if tls_only {
        statements.push(json!({
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn.clone(), format!("{arn}/*")],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Create the bucket with its settings, or bring an existing one's policy
/// up to date.
///
/// `owner` is the deployer's account: bucket names are global, and one of
/// this name in another account (taken first by someone else) is refused,
/// never written to or read from.
pub async fn ensure_bucket(
    client: &Client,
    bucket: &str,
    owner: &str,
    region: &str,
    organization_id: &str,
    tls_only: bool,
) -> Result<Outcome, DeployError> {
    let policy = bucket_policy(bucket, region, organization_id, tls_only);
    let exists = match client
        .head_bucket()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => false,
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
            return Err(DeployError::ConfigMismatch(format!(
                "bucket {bucket} exists but not in account {owner}, or this identity may not read it (s3:ListBucket); Glasswatch never puts code in a bucket it does not own: delete the bucket, or deploy with another `deploy.name_prefix`"
            )));
        }
        Err(e) => return Err(aws("s3:ListBucket", e)),
    };
    if exists {
        ensure_versioning(client, bucket, owner).await?;
        let current = match client.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => out.policy.unwrap_or_default(),
            Err(e) if code_of(&e) == Some("NoSuchBucketPolicy") => String::new(),
            Err(e) => return Err(aws("s3:GetBucketPolicy", e)),
        };
        if same_json(&current, &policy) {
            return Ok(Outcome::Unchanged);
        }
        put_policy(client, bucket, &policy).await?;
        return Ok(Outcome::Updated);
    }
    let mut create = client.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    create.send().await.map_err(|e| aws("s3:CreateBucket", e))?;
    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws("s3:PutBucketPublicAccessBlock", e))?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .map_err(|e| invalid("s3:PutEncryptionConfiguration", e))?,
        )
        .build();
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| invalid("s3:PutEncryptionConfiguration", e))?,
        )
        .send()
        .await
        .map_err(|e| aws("s3:PutEncryptionConfiguration", e))?;
    ensure_versioning(client, bucket, owner).await?;
    put_policy(client, bucket, &policy).await?;
    Ok(Outcome::Created)
}

/// Versioning on: the stacks pin the version of the code they run.
async fn ensure_versioning(client: &Client, bucket: &str, owner: &str) -> Result<(), DeployError> {
    let current = client
        .get_bucket_versioning()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await
        .map_err(|e| aws("s3:GetBucketVersioning", e))?;
    if current.status() == Some(&BucketVersioningStatus::Enabled) {
        return Ok(());
    }
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws("s3:PutBucketVersioning", e))?;
    Ok(())
}

fn invalid(operation: &'static str, e: aws_sdk_s3::error::BuildError) -> DeployError {
    DeployError::Aws {
        operation,
        code: "BuildError".into(),
        message: e.to_string(),
    }
}

async fn put_policy(client: &Client, bucket: &str, policy: &str) -> Result<(), DeployError> {
    client
        .put_bucket_policy()
        .bucket(bucket)
        .policy(policy)
        .send()
        .await
        .map_err(|e| aws("s3:PutBucketPolicy", e))?;
    Ok(())
}

/// The object metadata key holding a code zip's SHA-256 (hex).
pub const SHA256_METADATA: &str = "glasswatch-sha256";

/// A code zip in its bucket: what deploy did, and the version the stacks
/// pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub outcome: Outcome,
    pub version: String,
}

/// Upload `zip` under `key` unless the same bytes are there already. An
/// object under the key whose checksum differs (written by someone else:
/// the key is the content's hash) is replaced by a new version, reported
/// as `Updated`. Returns the version that holds these bytes.
pub async fn upload(
    client: &Client,
    bucket: &str,
    owner: &str,
    key: &str,
    zip: &[u8],
) -> Result<Uploaded, DeployError> {
    let hex = crate::render::sha256_hex(zip);
    let outcome = match client
        .head_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(owner)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
    {
        Ok(head) => {
            let stored = head
                .metadata()
                .and_then(|m| m.get(SHA256_METADATA))
                .map(String::as_str);
            if stored == Some(hex.as_str())
                && head.content_length() == i64::try_from(zip.len()).ok()
                && let Some(version) = head.version_id()
            {
                return Ok(Uploaded {
                    outcome: Outcome::Unchanged,
                    version: version.to_owned(),
                });
            }
            Outcome::Updated
        }
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Outcome::Created,
        Err(e) => return Err(aws("s3:GetObject", e)),
    };
    let put = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(owner)
        .body(ByteStream::from(zip.to_vec()))
        .content_type("application/zip")
        .checksum_sha256(aws_smithy_types::base64::encode(Sha256::digest(zip)))
        .metadata(SHA256_METADATA, &hex)
        .send()
        .await
        .map_err(|e| aws("s3:PutObject", e))?;
    let version = put.version_id().map(str::to_owned).ok_or_else(|| {
        DeployError::ConfigMismatch(format!(
            "bucket {bucket} keeps no object versions, so the stacks cannot pin their code; turn versioning on (`aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled`)"
        ))
    })?;
    Ok(Uploaded { outcome, version })
}

/// Empty the bucket, every version of every object, then delete it.
pub async fn delete_bucket(client: &Client, bucket: &str) -> Result<Outcome, DeployError> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            return Ok(Outcome::Absent);
        }
        Err(e) => return Err(aws("s3:ListBucket", e)),
    }
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = client
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| aws("s3:ListBucketVersions", e))?;
        let ids = page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(key, version)| {
                ObjectIdentifier::builder()
                    .set_key(key.map(str::to_owned))
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if !ids.is_empty() {
            client
                .delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids))
                        .quiet(true)
                        .build()
                        .map_err(|e| invalid("s3:DeleteObject", e))?,
                )
                .send()
                .await
                .map_err(|e| aws("s3:DeleteObjectVersion", e))?;
        }
        if page.is_truncated != Some(true) {
            break;
        }
        key_marker = page.next_key_marker;
        version_marker = page.next_version_id_marker;
    }
    client
        .delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| aws("s3:DeleteBucket", e))?;
    Ok(Outcome::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_lets_only_the_organization_read_and_only_over_tls() {
        let policy: serde_json::Value = serde_json::from_str(&bucket_policy(
            "b-eu-west-1",
            "eu-west-1",
            "o-abc1234567",
            true,
        ))
        .unwrap_or_default();
        let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0]["Action"], "s3:GetObject");
        assert_eq!(
            statements[0]["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
            "o-abc1234567"
        );
        assert_eq!(statements[0]["Resource"], "arn:aws:s3:::b-eu-west-1/*");
        assert_eq!(statements[1]["Effect"], "Deny");
    }
}
