//! The organization trail as tests need it: gzipped log files, their
//! object keys, a bucket on moto holding them, and the notifications
//! CloudTrail sends for them.

use std::io::Write;

use serde_json::{Value, json};

/// `bytes`, gzipped.
///
/// # Panics
/// Never in practice: writing to memory does not fail.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip to memory");
    gz.finish().expect("gzip to memory")
}

/// A gzipped CloudTrail log file: `{"Records":[…]}`.
///
/// # Panics
/// As [`gzip`].
pub fn gzip_log_file(records: &[Value]) -> Vec<u8> {
    gzip(json!({ "Records": records }).to_string().as_bytes())
}

/// Where an organization trail (organization `o-exampleorg1`, no prefix)
/// writes the log file of `account` × `region` delivered at `stamp`
/// (`YYYYMMDDTHHMMZ`), `unique` telling files of one minute apart.
pub fn log_file_key(account: &str, region: &str, stamp: &str, unique: &str) -> String {
    let (y, m, d) = (&stamp[..4], &stamp[4..6], &stamp[6..8]);
    format!(
        "AWSLogs/o-exampleorg1/{account}/CloudTrail/{region}/{y}/{m}/{d}/{account}_CloudTrail_{region}_{stamp}_{unique}.json.gz"
    )
}

/// A new bucket on moto (in the client's region, which must be
/// `us-east-1`) holding these objects.
///
/// # Errors
/// What S3 answered.
pub async fn trail_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    objects: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    s3.create_bucket().bucket(bucket).send().await?;
    for (key, body) in objects {
        put(s3, bucket, key, body).await?;
    }
    Ok(())
}

/// One object more.
///
/// # Errors
/// What S3 answered.
pub async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await?;
    Ok(())
}

/// The SQS body of CloudTrail's SNS notification for these log files.
pub fn sns_notification(bucket: &str, keys: &[&str]) -> String {
    json!({
        "Type": "Notification",
        "MessageId": crate::unique("sns"),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:org-trail",
        "Message": json!({ "s3Bucket": bucket, "s3ObjectKey": keys }).to_string(),
    })
    .to_string()
}
