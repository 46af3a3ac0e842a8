//! What Slack shows of each session: the claim to post its root message,
//! the root's `ts` and channel, how many events the messages cover, when
//! the last digest went out, whether the root's counts are stale, and the
//! `PENDING` marks the tick retries.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use glasswatch_core::session::SessionEvent;

use super::keys::{EVENT_SK, PENDING_PK, SESSION_SK, event_pk, session_pk};
use super::{Store, StoreError, conditional, get_n, get_s, n, s};

/// At most this many event ids wait in a `PENDING` item for the next
/// digest; beyond, the digest counts them without listing them, so the
/// item stays small whatever a session's rate.
pub const MAX_DEFERRED: usize = 100;

impl Store {
    /// An update of the session item `session_id`.
    fn update_session(
        &self,
        session_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(session_id)))
            .key("sk", s(SESSION_SK))
    }

    /// Claim the right to post a session's root message. Exactly one
    /// claimant wins until the claim goes stale (`stale_before`), which
    /// frees a claim whose holder died.
    pub async fn claim_root(
        &self,
        session_id: &str,
        claimant: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .update_session(session_id)
            .update_expression("SET root_claim = :me, root_claimed_at = :now")
            // Our own claim counts as won: the SDK may resend a claim whose
            // answer was lost.
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(merged_into) AND attribute_not_exists(root_ts) \
                 AND (attribute_not_exists(root_claim) OR root_claimed_at < :stale OR root_claim = :me)",
            )
            .expression_attribute_values(":me", s(claimant))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":stale", n(stale_before))
            .send()
            .await;
        conditional("UpdateItem", result)
    }

    /// Give up a claim (the post failed), so a retry can claim again.
    pub async fn release_root(&self, session_id: &str, claimant: &str) -> Result<(), StoreError> {
        let result = self
            .update_session(session_id)
            .update_expression("REMOVE root_claim, root_claimed_at")
            .condition_expression("root_claim = :me")
            .expression_attribute_values(":me", s(claimant))
            .send()
            .await;
        // Not ours (any more): nothing to release.
        conditional("UpdateItem", result).map(|_| ())
    }

    /// Record what Slack now shows for a session: the root `ts` (once)
    /// and how many events the messages cover. Clears the pending mark
    /// when everything is covered.
    pub async fn record_notified(
        &self,
        session_id: &str,
        root_ts: &str,
        notified_count: u64,
        digest_sent_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .update_session(session_id)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":ts", s(root_ts))
            .expression_attribute_values(":count", n(notified_count))
            .return_values(ReturnValue::AllNew);
        let mut expression = String::from(
            "SET root_ts = if_not_exists(root_ts, :ts), notified_count = :count REMOVE root_claim, root_claimed_at",
        );
        if let Some(at) = digest_sent_at {
            expression = expression.replace(" REMOVE", ", digest_sent_at = :at REMOVE");
            update = update.expression_attribute_values(":at", n(at));
        }
        let out = update
            .update_expression(expression)
            .send()
            .await
            .map_err(|e| StoreError::sdk("UpdateItem", e))?;
        let covered = out
            .attributes
            .as_ref()
            .and_then(|a| get_n(a, "event_count"))
            .is_some_and(|c| u64::try_from(c).unwrap_or(0) <= notified_count);
        if covered {
            self.set_pending(session_id, false).await?;
        }
        Ok(())
    }

    /// Mark (or clear) a session's root message as showing older counts
    /// than its thread: a digest went out but the root's update did not.
    /// The tick sends the update; the digest is never posted again.
    pub async fn set_root_stale(&self, session_id: &str, stale: bool) -> Result<(), StoreError> {
        let update = self
            .update_session(session_id)
            .condition_expression("attribute_exists(pk)");
        let update = if stale {
            update
                .update_expression("SET root_stale = :t")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
        } else {
            update.update_expression("REMOVE root_stale")
        };
        conditional("UpdateItem", update.send().await)?;
        if stale {
            self.set_pending(session_id, true).await?;
        }
        Ok(())
    }

    /// Remember where a session's root message is: its channel id and,
    /// when Slack gave one, its permalink (`audit sessions` shows it).
    pub async fn record_root_link(
        &self,
        session_id: &str,
        channel: &str,
        permalink: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .update_session(session_id)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":channel", s(channel))
            .update_expression("SET root_channel = :channel");
        if let Some(link) = permalink {
            update = update
                .update_expression("SET root_channel = :channel, slack_permalink = :link")
                .expression_attribute_values(":link", s(link));
        }
        // Only a session that exists gets a link; none is not an error.
        conditional("UpdateItem", update.send().await).map(|_| ())
    }

    /// Mark (or unmark) a session as having Slack messages not yet sent,
    /// so the scheduled check retries them.
    /// Writes only when the mark changes: a read is cheaper than a write,
    /// and most sessions are never pending.
    pub async fn set_pending(&self, session_id: &str, pending: bool) -> Result<(), StoreError> {
        if self.get(PENDING_PK, session_id).await?.is_some() == pending {
            return Ok(());
        }
        if pending {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(PENDING_PK))
                .item("sk", s(session_id))
                .send()
                .await
                .map_err(|e| StoreError::sdk("PutItem", e))?;
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(PENDING_PK))
                .key("sk", s(session_id))
                .send()
                .await
                .map_err(|e| StoreError::sdk("DeleteItem", e))?;
        }
        Ok(())
    }

    /// Mark a session pending and remember `event_ids` for its next
    /// thread digest, which the tick sends. At most about
    /// [`MAX_DEFERRED`] ids are kept; the digest counts the rest.
    pub async fn defer_events(
        &self,
        session_id: &str,
        event_ids: &[String],
    ) -> Result<(), StoreError> {
        if event_ids.is_empty() {
            return self.set_pending(session_id, true).await;
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(PENDING_PK))
            .key("sk", s(session_id))
            .update_expression("ADD events :ids")
            .condition_expression("attribute_not_exists(events) OR size(events) < :cap")
            .expression_attribute_values(":ids", AttributeValue::Ss(event_ids.to_vec()))
            .expression_attribute_values(":cap", n(MAX_DEFERRED))
            .send()
            .await;
        // Full: the item exists, so the session is pending already.
        conditional("UpdateItem", result).map(|_| ())
    }

    /// The events deferred for a session's next digest
    /// ([`defer_events`](Self::defer_events)).
    pub async fn deferred_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        let Some(pending) = self.get(PENDING_PK, session_id).await? else {
            return Ok(Vec::new());
        };
        let ids = pending
            .get("events")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        let mut events = Vec::new();
        for event_id in ids {
            let key = event_pk(&event_id);
            let Some(item) = self.get(&key, EVENT_SK).await? else {
                continue;
            };
            let json = get_s(&item, "event").ok_or_else(|| StoreError::Corrupt {
                key: key.clone(),
                reason: "no event".into(),
            })?;
            events.push(serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
                key,
                reason: e.to_string(),
            })?);
        }
        Ok(events)
    }

    /// Sessions with Slack messages still to send.
    pub async fn pending(&self) -> Result<Vec<String>, StoreError> {
        let items = self.query_all(PENDING_PK).await?;
        Ok(items
            .iter()
            .filter_map(|i| get_s(i, "sk").map(str::to_owned))
            .collect())
    }
}
