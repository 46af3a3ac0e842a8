//! What the reconciler keeps: one item per trail log file processed (by
//! its object key, so a notification delivered twice is seen as done),
//! the newest log file per account × region (for `status`: how far
//! behind the reconciler is), and where a stored event came from.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::keys::{
    EVENT_SK, LOG_FILE_SK, ORIGIN_TRAIL, TRAIL_PK, coverage_sk, event_pk, log_file_pk,
};
use super::{Item, Store, StoreError, conditional, get_n, get_s, n, s, to_json};

/// One processed log file, as kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFileItem {
    pub key: String,
    pub account: String,
    pub region: String,
    /// The delivery time in the key (to the minute), Unix seconds.
    pub delivered_at: i64,
    pub processed_at: i64,
    pub records: u64,
    /// Flagged records that belong to the file (stored or already there).
    pub detections: u64,
    /// Of those, the ones the fast path had missed.
    pub recovered: Vec<String>,
    /// Flagged records of another account or region (stored as untrusted).
    pub misplaced: Vec<String>,
    /// Records that could not be read: `index: reason`.
    pub bad: Vec<String>,
}

/// The newest log file the reconciler processed for an account × region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailProgress {
    pub account: String,
    pub region: String,
    pub last_key: String,
    pub delivered_at: i64,
    pub processed_at: i64,
}

impl TrailProgress {
    /// How far behind the trail the reconciler was when it processed the
    /// newest file: from its delivery to its processing.
    pub fn lag_secs(&self) -> i64 {
        (self.processed_at - self.delivered_at).max(0)
    }
}

impl Store {
    /// The log file's item, if the reconciler processed it.
    pub async fn log_file(&self, key: &str) -> Result<Option<LogFileItem>, StoreError> {
        let Some(item) = self.get(&log_file_pk(key), LOG_FILE_SK).await? else {
            return Ok(None);
        };
        let text = get_s(&item, "file").ok_or_else(|| StoreError::Corrupt {
            key: log_file_pk(key),
            reason: "no file".into(),
        })?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: log_file_pk(key),
                reason: e.to_string(),
            })
    }

    /// Record a processed log file once (the first processing's item
    /// stays), and move its account × region's progress forward, never
    /// back.
    pub async fn record_log_file(&self, file: &LogFileItem) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(log_file_pk(&file.key)))
            .item("sk", s(LOG_FILE_SK))
            .item("account", s(&file.account))
            .item("region", s(&file.region))
            .item("delivered_at", n(file.delivered_at))
            .item("processed_at", n(file.processed_at))
            .item("file", s(to_json("log file", file)?))
            .item("expires_at", self.expires(file.processed_at))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional("PutItem", put)?;
        let progress = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(TRAIL_PK))
            .key("sk", s(coverage_sk(&file.account, &file.region)))
            .update_expression(
                "SET account = :a, #region = :r, last_key = :k, delivered_at = :d, processed_at = :p",
            )
            .condition_expression("attribute_not_exists(delivered_at) OR delivered_at <= :d")
            .expression_attribute_names("#region", "region")
            .expression_attribute_values(":a", s(&file.account))
            .expression_attribute_values(":r", s(&file.region))
            .expression_attribute_values(":k", s(&file.key))
            .expression_attribute_values(":d", n(file.delivered_at))
            .expression_attribute_values(":p", n(file.processed_at))
            .send()
            .await;
        conditional("UpdateItem", progress).map(|_| ())
    }

    /// The reconciler's progress, every account × region it has seen.
    pub async fn trail_progress(&self) -> Result<Vec<TrailProgress>, StoreError> {
        self.query_all(TRAIL_PK)
            .await?
            .iter()
            .map(parse_progress)
            .collect()
    }

    /// Whether a stored event was first seen in the trail's log files;
    /// `None` when the event is not stored.
    pub async fn event_from_trail(&self, event_id: &str) -> Result<Option<bool>, StoreError> {
        Ok(self
            .get(&event_pk(event_id), EVENT_SK)
            .await?
            .map(|item| item.get("origin") == Some(&AttributeValue::S(ORIGIN_TRAIL.to_owned()))))
    }
}

fn parse_progress(item: &Item) -> Result<TrailProgress, StoreError> {
    let field = |name: &str| {
        get_s(item, name)
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt {
                key: format!("{TRAIL_PK}/{}", get_s(item, "sk").unwrap_or_default()),
                reason: format!("no {name}"),
            })
    };
    Ok(TrailProgress {
        account: field("account")?,
        region: field("region")?,
        last_key: field("last_key")?,
        delivered_at: get_n(item, "delivered_at").unwrap_or(0),
        processed_at: get_n(item, "processed_at").unwrap_or(0),
    })
}
