//! Following a break-glass session's onward credentials.
//!
//! The EventBridge patterns are static: they match the watched names, not
//! the temporary keys a session takes. When a break-glass session assumes
//! another role (any role, in any account) or issues itself federated or
//! MFA-session credentials, the calls made with them would pass no
//! pattern in the account where they act. So the agent that sees such an
//! event puts a [`Follow`] in its signal; the central bus routes it to one
//! SNS topic, whose subscriptions are filtered by account, and the agents
//! of that account **follow** the new key: each agent installs, in
//! its own region, a rule matching `userIdentity.accessKeyId` = that key,
//! which delivers the events to the agent wrapped as a [`Followed`]. The
//! agent classifies a followed record as the activity of a break-glass
//! session, so its calls join the session through the key, and a further
//! hop is followed in turn. Each rule lives as long as the credentials
//! can (their duration, capped at 36 hours), and heartbeats remove expired
//! ones.
//!
//! Events made before the rule is in place (a few seconds after the
//! credentials were issued) reach Glasswatch only if another rule matches
//! them (a watched `sourceIdentity`, for instance).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::detect::{
    ASSUME_ROOT, Detection, DetectionKind, ROLE_ASSUMPTIONS, STS_CREDENTIAL_ISSUE,
    display_principal, source, temporary_key,
};
use crate::record::Record;
use crate::watch::parse_iam_arn;

/// The key of the wrapper a follow rule's input template makes.
pub const FOLLOW_KEY: &str = "glasswatch_follow";

/// How long credentials may live when the request does not say:
/// `AssumeRole`'s default is one hour, `GetFederationToken`'s and
/// `GetSessionToken`'s twelve.
const DEFAULT_SECONDS: i64 = 12 * 3600;
/// The longest any of these credentials can live (federation tokens).
const MAX_SECONDS: i64 = 36 * 3600;
/// A rule outlives its credentials by this much (clock skew, late events).
const GRACE_SECONDS: i64 = 900;

/// An instruction to the agents of `account`: follow `access_key` until
/// `until` (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follow {
    pub account: String,
    pub access_key: String,
    pub until: i64,
    /// The CloudTrail event that issued the key, for the rule's
    /// description and the followed events' evidence.
    pub issued_by_event: String,
}

/// What a follow rule delivers to the agent: the instruction it follows,
/// and the original event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Followed {
    #[serde(rename = "glasswatch_follow")]
    pub follow: FollowedKey,
    pub event: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FollowedKey {
    pub access_key: String,
    #[serde(default)]
    pub rule: String,
}

/// The follow instruction a flagged event calls for: a successful role
/// assumption, `AssumeRoot`, federation or session token whose detections
/// say a break-glass session (or a watched entry) took the credentials.
pub fn follows(record: &Record, detections: &[Detection]) -> Option<Follow> {
    let interesting = detections.iter().any(|d| {
        !matches!(
            d.kind,
            DetectionKind::FailedSignIn | DetectionKind::MonitoringTamper
        )
    });
    if !interesting || record.error_code.is_some() || record.event_source != source::STS {
        return None;
    }
    let key = temporary_key(record.response_str(&["credentials", "accessKeyId"]))?;
    let name = record.event_name.as_str();
    let account = if ROLE_ASSUMPTIONS.contains(&name) {
        record
            .request_str("roleArn")
            .and_then(|arn| parse_iam_arn(arn, "role"))
            .map(|(account, _)| account)
    } else if name == ASSUME_ROOT {
        record.request_str("targetPrincipal")
    } else if STS_CREDENTIAL_ISSUE.contains(&name) {
        Some(record.account.as_str())
    } else {
        None
    };
    let account = account.filter(|a| crate::config::is_account_id(a))?;
    let seconds = record
        .request_parameters
        .get("durationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_SECONDS)
        .clamp(1, MAX_SECONDS);
    Some(Follow {
        account: account.to_owned(),
        access_key: key.to_owned(),
        until: record.event_timestamp + seconds + GRACE_SECONDS,
        issued_by_event: record.event_id.clone(),
    })
}

/// The rule that follows `key`: `<prefix>-follow-<key>`.
pub fn rule_name(name_prefix: &str, access_key: &str) -> String {
    format!("{name_prefix}-follow-{access_key}")
}

/// Is this one of the follow rules the agents manage?
pub fn is_follow_rule(name_prefix: &str, rule: &str) -> bool {
    rule.strip_prefix(name_prefix)
        .and_then(|r| r.strip_prefix("-follow-"))
        .is_some_and(|key| key.starts_with("ASIA"))
}

/// The follow rule's event pattern: any AWS event made with `key`.
pub fn pattern(access_key: &str) -> Value {
    json!({
        "source": [{"prefix": "aws."}],
        "detail": {"userIdentity": {"accessKeyId": [access_key]}}
    })
}

/// The rule's description, which also says until when it is needed.
pub fn description(follow: &Follow) -> String {
    format!(
        "Glasswatch follows a break-glass session's credentials (issued by event {}) until {}",
        follow.issued_by_event, follow.until
    )
}

/// Until when a follow rule is needed, from its description.
pub fn until_of(description: &str) -> Option<i64> {
    description.rsplit_once(" until ")?.1.trim().parse().ok()
}

/// The input template of a follow rule's target: the key it follows and
/// the whole original event (`<aws.events.event.json>`).
pub fn input_template(access_key: &str) -> String {
    format!(
        "{{\"{FOLLOW_KEY}\": {{\"access_key\": \"{access_key}\", \"rule\": \"<aws.events.rule-name>\"}}, \"event\": <aws.events.event.json>}}"
    )
}

/// Classify a record a follow rule delivered. Whatever `classify` finds
/// stands; a record it finds nothing in is still the activity of a
/// break-glass session (its key says so), and a role assumption with that
/// key is the chain going on. Only the record's own key can be followed:
/// a wrapper naming another key than the record carries is refused.
pub fn classify_followed(
    watch: &crate::watch::WatchList,
    followed: &Followed,
    record: &Record,
) -> Result<Vec<Detection>, FollowError> {
    let used = record.identity.access_key_id.as_deref().unwrap_or_default();
    if used != followed.follow.access_key {
        return Err(FollowError::KeyMismatch {
            followed: followed.follow.access_key.clone(),
            used: used.to_owned(),
        });
    }
    let found = crate::detect::classify(watch, record);
    if !found.is_empty() {
        return Ok(found);
    }
    let name = record.event_name.as_str();
    let who = display_principal(record);
    let chained = record.event_source == source::STS
        && record.error_code.is_none()
        && (ROLE_ASSUMPTIONS.contains(&name) || STS_CREDENTIAL_ISSUE.contains(&name));
    let (kind, summary) = if chained {
        (
            DetectionKind::BreakGlassRoleChained,
            format!(
                "{who}, with credentials a break-glass session took, went on with {name} {}",
                record.request_str("roleArn").unwrap_or_default()
            ),
        )
    } else {
        (
            DetectionKind::SessionActivity,
            format!(
                "{who} called {}:{name} with credentials a break-glass session took",
                record
                    .event_source
                    .strip_suffix(".amazonaws.com")
                    .unwrap_or(&record.event_source)
            ),
        )
    };
    Ok(vec![crate::detect::detection_of(
        watch,
        record,
        kind,
        summary,
        record.request_str("roleArn"),
    )])
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("a follow of key {followed} delivered an event made with key `{used}`")]
    KeyMismatch { followed: String, used: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn watch() -> crate::watch::WatchList {
        Config::parse(include_str!("../../glasswatch.toml"), "glasswatch.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .watch_list()
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn record(text: &str) -> Record {
        let doc: Value = serde_json::from_str(text).unwrap_or_default();
        Record::from_value(&doc).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_chained_hop_is_followed_in_the_account_of_its_role() {
        let watch = watch();
        let hop = record(include_str!(
            "../tests/fixtures/66-sts-break-glass-role-chains-into-organization-access-role.json"
        ));
        let found = follows(&hop, &crate::classify(&watch, &hop))
            .unwrap_or_else(|| panic!("the hop is followed"));
        assert_eq!(found.account, "777788889999");
        assert_eq!(found.access_key, "ASIAW2LM9CHAINEDHOP2");
        assert_eq!(
            found.until,
            hop.event_timestamp + DEFAULT_SECONDS + GRACE_SECONDS
        );
        // Its description says until when the rule is needed.
        assert_eq!(until_of(&description(&found)), Some(found.until));
        assert!(is_follow_rule(
            "glasswatch",
            &rule_name("glasswatch", &found.access_key)
        ));
        assert!(!is_follow_rule("glasswatch", "glasswatch-signin"));
        // A federation token is followed in the caller's own account.
        let token = record(include_str!(
            "../tests/fixtures/68-sts-get-federation-token-by-break-glass-1.json"
        ));
        let found = follows(&token, &crate::classify(&watch, &token))
            .unwrap_or_else(|| panic!("the token is followed"));
        assert_eq!(found.account, "444455556666");
        assert_eq!(found.until, token.event_timestamp + 43_200 + GRACE_SECONDS);
        // A failed assumption issues nothing.
        let denied = record(include_str!(
            "../tests/fixtures/16-assume-break-glass-role-access-denied.json"
        ));
        assert!(follows(&denied, &crate::classify(&watch, &denied)).is_none());
    }

    fn followed(key: &str, event: Value) -> Followed {
        serde_json::from_value(
            json!({FOLLOW_KEY: {"access_key": key, "rule": "glasswatch-follow-x"}, "event": event}),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_followed_record_is_break_glass_activity_and_a_further_hop_chains() {
        let watch = watch();
        let mut event: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/61-negative-alice-describe-instances.json"
        ))
        .unwrap_or_default();
        if event.get("detail").is_some() {
            event["detail"]["userIdentity"]["accessKeyId"] = "ASIAFOLLOWEDKEY00001".into();
        } else {
            event["userIdentity"]["accessKeyId"] = "ASIAFOLLOWEDKEY00001".into();
        }
        let wrapped = followed("ASIAFOLLOWEDKEY00001", event.clone());
        let parsed = Record::from_value(&wrapped.event).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            crate::classify(&watch, &parsed).is_empty(),
            "alice is not watched"
        );
        let found = classify_followed(&watch, &wrapped, &parsed).unwrap_or_default();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, DetectionKind::SessionActivity);
        assert!(
            found[0]
                .keys
                .iter()
                .any(|k| k.to_string() == "key:ASIAFOLLOWEDKEY00001")
        );
        // The wrapper cannot name another key than the record's.
        let other = followed("ASIAOTHERKEY00000001", event);
        assert!(classify_followed(&watch, &other, &parsed).is_err());
    }
}
