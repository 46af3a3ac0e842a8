//! Trust checks on what reaches the aggregator. DESIGN.md §3.
//!
//! EventBridge sets an envelope's `account` to the sender, which cannot be
//! forged; the CloudTrail record inside a signal names the account it
//! happened in (`recipientAccountId`). A member account can send anything
//! it likes, so the two must agree, and both must be in the organization.

use serde::{Deserialize, Serialize};

/// The verdict on one signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The sender is the account the record claims, and it is a member.
    Verified,
    /// The envelope had no `account`, so the sender could not be checked.
    /// EventBridge always sets it; a message without one did not come
    /// through the central bus as an agent sent it, so it is not trusted.
    /// (moto's SQS delivery omits it: the local pipeline puts it back.)
    Unverified,
    /// The sender is not the account the record claims.
    Spoofed { sender: String, claimed: String },
    /// The sender (or, unverified, the claimed account) is outside the
    /// organization.
    OutsideOrganization { account: String },
    /// A record in the organization trail's log file of one account and
    /// region that names another: CloudTrail writes each account's and
    /// region's records to their own files, so someone else wrote it.
    Misplaced {
        log_file: String,
        file_account: String,
        file_region: String,
    },
}

impl Verdict {
    /// Whether the signal's events may join sessions: only a verified
    /// sender's.
    pub fn trusted(&self) -> bool {
        matches!(self, Self::Verified)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Unverified => "unverified",
            Self::Spoofed { .. } => "spoofed",
            Self::OutsideOrganization { .. } => "outside_organization",
            Self::Misplaced { .. } => "misplaced",
        }
    }
}

/// Check a signal's sender against the account its record claims.
/// `member` says whether an account is in the organization.
pub fn verify(sender: Option<&str>, claimed: &str, member: impl Fn(&str) -> bool) -> Verdict {
    match sender {
        Some(sender) if !member(sender) => Verdict::OutsideOrganization {
            account: sender.to_owned(),
        },
        Some(sender) if sender != claimed => Verdict::Spoofed {
            sender: sender.to_owned(),
            claimed: claimed.to_owned(),
        },
        Some(_) => Verdict::Verified,
        None if !member(claimed) => Verdict::OutsideOrganization {
            account: claimed.to_owned(),
        },
        None => Verdict::Unverified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: [&str; 2] = ["111122223333", "444455556666"];
    fn member(a: &str) -> bool {
        ORG.contains(&a)
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            verify(Some("111122223333"), "111122223333", member),
            Verdict::Verified
        );
        assert_eq!(verify(None, "111122223333", member), Verdict::Unverified);
        assert_eq!(
            verify(Some("444455556666"), "111122223333", member),
            Verdict::Spoofed {
                sender: "444455556666".into(),
                claimed: "111122223333".into()
            }
        );
        assert_eq!(
            verify(Some("999999999999"), "111122223333", member),
            Verdict::OutsideOrganization {
                account: "999999999999".into()
            }
        );
        assert_eq!(
            verify(None, "999999999999", member),
            Verdict::OutsideOrganization {
                account: "999999999999".into()
            }
        );
        assert!(!verify(Some("444455556666"), "111122223333", member).trusted());
        // No sender: never trusted, whatever the record claims.
        assert!(!verify(None, "111122223333", member).trusted());
        assert!(verify(Some("111122223333"), "111122223333", member).trusted());
    }
}
