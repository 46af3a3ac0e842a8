//! What the store keeps about the organization rather than sessions:
//! heartbeats per account × region, what deploy targeted, the last good
//! account list from Organizations, and untrusted signals with the rate
//! of their alerts.

use std::collections::BTreeMap;

use glasswatch_core::coverage::{Coverage, Health};
use glasswatch_core::signal::TrailStatus;
use serde::{Deserialize, Serialize};

use super::keys::{
    ACCOUNTS_SK, COVERAGE_PK, NOTICE_SK, ORGANIZATION_PK, SPOOF_RATE_SK, SPOOFED_SK, TARGETS_SK,
    coverage_sk, notice_pk, spoofed_pk, spoofer_pk,
};
use super::{
    Evidence, Item, Store, StoreError, condition_failed, conditional, get_n, get_s, n, s, to_json,
};

/// One heartbeat, as stored on its account×region coverage item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub trail: TrailStatus,
    pub agent_version: &'a str,
    pub dead_letters: Option<u64>,
    pub at: i64,
}

/// What deploy targeted: the accounts of the target OUs, and the regions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// Whether the target is the organization root, so that every account
    /// of the organization, new ones too, is expected.
    pub whole_organization: bool,
}

/// Whether a spoofing alert may go out now, and how many were held back
/// since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoofAlert {
    Send { suppressed: u64 },
    Suppressed,
}

impl Store {
    /// Record a heartbeat on its account×region coverage item. An older
    /// heartbeat arriving late changes nothing.
    pub async fn record_heartbeat(&self, beat: &Beat<'_>) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(COVERAGE_PK))
            .key("sk", s(coverage_sk(beat.account, beat.region)))
            .condition_expression(
                "attribute_not_exists(last_heartbeat) OR last_heartbeat <= :at OR reported = :no",
            )
            .expression_attribute_names("#region", "region")
            .expression_attribute_values(":a", s(beat.account))
            .expression_attribute_values(":r", s(beat.region))
            .expression_attribute_values(":t", s(beat.trail.as_str()))
            .expression_attribute_values(":v", s(beat.agent_version))
            .expression_attribute_values(":at", n(beat.at))
            .expression_attribute_values(
                ":yes",
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            )
            .expression_attribute_values(
                ":no",
                aws_sdk_dynamodb::types::AttributeValue::Bool(false),
            )
            .expression_attribute_values(":healthy", s(Health::Healthy.as_str()));
        let mut expression = String::from(
            "SET account = :a, #region = :r, trail = :t, agent_version = :v, \
             last_heartbeat = :at, reported = :yes, alerted = if_not_exists(alerted, :healthy)",
        );
        if let Some(depth) = beat.dead_letters {
            expression.push_str(", dead_letters = :dlq");
            update = update.expression_attribute_values(":dlq", n(depth));
        }
        let result = update.update_expression(expression).send().await;
        conditional("UpdateItem", result).map(|_| ())
    }

    /// Every coverage item.
    pub async fn coverage(&self) -> Result<Vec<Coverage>, StoreError> {
        self.query_all(COVERAGE_PK)
            .await?
            .iter()
            .map(parse_coverage)
            .collect()
    }

    /// Start expecting heartbeats from an account×region deploy targeted
    /// that never sent one: its item records when it was first expected,
    /// so it alerts [`MISSED_INTERVALS`](glasswatch_core::coverage::MISSED_INTERVALS)
    /// intervals later unless a heartbeat comes. Nothing changes for a
    /// cell already known.
    pub async fn expect(&self, account: &str, region: &str, now: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(COVERAGE_PK))
            .item("sk", s(coverage_sk(account, region)))
            .item("account", s(account))
            .item("region", s(region))
            .item("trail", s(TrailStatus::Unknown.as_str()))
            .item("agent_version", s(""))
            .item("last_heartbeat", n(now))
            .item(
                "reported",
                aws_sdk_dynamodb::types::AttributeValue::Bool(false),
            )
            .item("alerted", s(Health::Healthy.as_str()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional("PutItem", result).map(|_| ())
    }

    /// Remember what was alerted for an account×region.
    pub async fn set_alerted(
        &self,
        account: &str,
        region: &str,
        health: Health,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(COVERAGE_PK))
            .key("sk", s(coverage_sk(account, region)))
            .update_expression("SET alerted = :h")
            .expression_attribute_values(":h", s(health.as_str()))
            .send()
            .await
            .map_err(|e| StoreError::sdk("UpdateItem", e))?;
        Ok(())
    }

    /// Keep the organization's account list (id → name) as last read.
    pub async fn save_accounts(
        &self,
        names: &BTreeMap<String, String>,
        at: i64,
    ) -> Result<(), StoreError> {
        self.put_organization(ACCOUNTS_SK, &to_json("account list", names)?, at)
            .await
    }

    /// The account list as last read, and when.
    pub async fn saved_accounts(
        &self,
    ) -> Result<Option<(BTreeMap<String, String>, i64)>, StoreError> {
        self.organization_item(ACCOUNTS_SK).await
    }

    /// Record what deploy targeted.
    pub async fn save_targets(&self, targets: &Targets, at: i64) -> Result<(), StoreError> {
        self.put_organization(TARGETS_SK, &to_json("targets", targets)?, at)
            .await
    }

    /// What deploy last targeted, if it recorded it.
    pub async fn targets(&self) -> Result<Option<Targets>, StoreError> {
        Ok(self.organization_item(TARGETS_SK).await?.map(|(t, _)| t))
    }

    async fn put_organization(&self, sk: &str, json: &str, at: i64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(ORGANIZATION_PK))
            .item("sk", s(sk))
            .item("value", s(json))
            .item("saved_at", n(at))
            .send()
            .await
            .map_err(|e| StoreError::sdk("PutItem", e))?;
        Ok(())
    }

    async fn organization_item<T: for<'de> Deserialize<'de>>(
        &self,
        sk: &str,
    ) -> Result<Option<(T, i64)>, StoreError> {
        let Some(item) = self.get(ORGANIZATION_PK, sk).await? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            key: format!("{ORGANIZATION_PK}/{sk}"),
            reason,
        };
        let value =
            serde_json::from_str(get_s(&item, "value").ok_or_else(|| corrupt("no value".into()))?)
                .map_err(|e| corrupt(e.to_string()))?;
        Ok(Some((value, get_n(&item, "saved_at").unwrap_or(0))))
    }

    /// Store a spoofed or outside signal once. Returns whether it was new
    /// (and so deserves an alert). A resent request (its answer lost) is
    /// still this call's, so still new.
    pub async fn record_untrusted(
        &self,
        event_id: &str,
        evidence: &Evidence<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let writer = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(spoofed_pk(event_id)))
            .item("sk", s(SPOOFED_SK))
            .item("verdict", s(to_json("verdict", evidence.verdict)?))
            .item("signal", s(evidence.signal_json))
            .item("received_at", n(now))
            .item("expires_at", self.expires(now))
            .item("writer", s(&writer))
            .condition_expression("attribute_not_exists(pk) OR writer = :me")
            .expression_attribute_values(":me", s(&writer));
        if let Some(sender) = evidence.sender {
            put = put.item("sender", s(sender));
        }
        conditional("PutItem", put.send().await)
    }

    /// Remove an untrusted signal's record, so that a retry alerts again
    /// when its alert could not be sent.
    pub async fn forget_untrusted(&self, event_id: &str) -> Result<(), StoreError> {
        self.delete(&spoofed_pk(event_id), SPOOFED_SK).await
    }

    /// Claim the posting of a notice (an alarm's SNS message, which SQS
    /// may deliver twice). `true`: this call's to post. A resent request
    /// (its answer lost) is still this call's.
    pub async fn first_notice(&self, message_id: &str, now: i64) -> Result<bool, StoreError> {
        let writer = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(notice_pk(message_id)))
            .item("sk", s(NOTICE_SK))
            .item("received_at", n(now))
            .item("expires_at", self.expires(now))
            .item("writer", s(&writer))
            .condition_expression("attribute_not_exists(pk) OR writer = :me")
            .expression_attribute_values(":me", s(&writer))
            .send()
            .await;
        conditional("PutItem", result)
    }

    /// Give a notice back (it could not be posted), so the retry posts it.
    pub async fn forget_notice(&self, message_id: &str) -> Result<(), StoreError> {
        self.delete(&notice_pk(message_id), NOTICE_SK).await
    }

    /// One spoofing alert per sender per `window_secs`: a compromised
    /// account sending forged signals by the thousand gets one message,
    /// then one per window saying how many were held back. Every signal
    /// is stored either way.
    pub async fn spoof_alert(
        &self,
        sender: &str,
        now: i64,
        window_secs: i64,
    ) -> Result<SpoofAlert, StoreError> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(spoofer_pk(sender)))
            .key("sk", s(SPOOF_RATE_SK))
            .update_expression("SET alerted_at = :now, suppressed = :zero")
            .condition_expression("attribute_not_exists(alerted_at) OR alerted_at <= :before")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":before", n(now - window_secs))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match claimed {
            Ok(out) => Ok(SpoofAlert::Send {
                suppressed: out
                    .attributes
                    .as_ref()
                    .and_then(|a| get_n(a, "suppressed"))
                    .and_then(|c| u64::try_from(c).ok())
                    .unwrap_or(0),
            }),
            Err(e) if condition_failed(&e) => {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(spoofer_pk(sender)))
                    .key("sk", s(SPOOF_RATE_SK))
                    .update_expression("ADD suppressed :one")
                    .expression_attribute_values(":one", n(1))
                    .send()
                    .await
                    .map_err(|e| StoreError::sdk("UpdateItem", e))?;
                Ok(SpoofAlert::Suppressed)
            }
            Err(e) => Err(StoreError::sdk("UpdateItem", e)),
        }
    }

    /// Give a spoofing alert back (it could not be sent), so the retry
    /// may send it.
    pub async fn release_spoof_alert(&self, sender: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(spoofer_pk(sender)))
            .key("sk", s(SPOOF_RATE_SK))
            .update_expression("REMOVE alerted_at")
            .send()
            .await
            .map_err(|e| StoreError::sdk("UpdateItem", e))?;
        Ok(())
    }
}

fn parse_coverage(item: &Item) -> Result<Coverage, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: format!("{COVERAGE_PK}/{}", get_s(item, "sk").unwrap_or("?")),
        reason: reason.to_owned(),
    };
    Ok(Coverage {
        account: get_s(item, "account")
            .ok_or_else(|| corrupt("no account"))?
            .to_owned(),
        region: get_s(item, "region")
            .ok_or_else(|| corrupt("no region"))?
            .to_owned(),
        last_heartbeat: get_n(item, "last_heartbeat")
            .ok_or_else(|| corrupt("no last_heartbeat"))?,
        trail: TrailStatus::parse(get_s(item, "trail").unwrap_or_default()),
        agent_version: get_s(item, "agent_version").unwrap_or_default().to_owned(),
        alerted: get_s(item, "alerted")
            .and_then(Health::parse)
            .unwrap_or(Health::Healthy),
        dead_letters: get_n(item, "dead_letters")
            .and_then(|d| u64::try_from(d).ok())
            .unwrap_or(0),
        reported: item
            .get("reported")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(true),
    })
}
