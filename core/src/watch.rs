//! The compiled watch list: the one place that decides whether a name, ARN,
//! permission set or resource is watched. The detector and the EventBridge
//! pattern generator both read it, so they cannot disagree.
//!
//! Matching rules:
//! - exact IAM user and role names match case-insensitively (IAM names are
//!   unique regardless of case), in any account and under any IAM path;
//! - entries with `*` are globs and match case-sensitively, because
//!   EventBridge's `wildcard` operator is case-sensitive;
//! - an ARN entry pins the account too (the account part may be `*`);
//! - Glasswatch's own resources are those whose name starts with
//!   `name_prefix`, or `StackSet-<name_prefix>` for StackSet instances, and
//!   the few named elsewhere in `glasswatch.toml` (the Slack secret);
//! - a `sourceIdentity` is watched when it matches `source_identities`, or
//!   names a watched IAM user or Identity Center user (case-insensitively,
//!   for exact names).

use std::collections::BTreeMap;

use crate::config::{WatchConfig, is_account_id};
use crate::detect::{DetectionKind, Severity};

/// How a watched name is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// Case-insensitive equality. Holds the name as written.
    Exact(String),
    /// Case-sensitive `*` glob.
    Glob(String),
}

impl NamePattern {
    fn parse(name: &str) -> Self {
        if name.contains('*') {
            Self::Glob(name.to_owned())
        } else {
            Self::Exact(name.to_owned())
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(want) => want.eq_ignore_ascii_case(name),
            Self::Glob(pattern) => glob_match(pattern, name),
        }
    }
}

/// One watched IAM user or role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `None`: any account.
    pub account: Option<NamePattern>,
    pub name: NamePattern,
    /// As written in the configuration.
    pub written: String,
}

impl Entry {
    pub fn matches(&self, account: Option<&str>, name: &str) -> bool {
        let account_ok = match (&self.account, account) {
            (None, _) => true,
            (Some(want), Some(got)) => want.matches(got),
            // The record does not say which account: judge by the name.
            (Some(_), None) => true,
        };
        account_ok && self.name.matches(name)
    }
}

/// A problem with one watch-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchListError {
    pub key: &'static str,
    pub index: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

/// The watch list, compiled for matching.
#[derive(Debug, Clone)]
pub struct WatchList {
    users: Vec<Entry>,
    roles: Vec<Entry>,
    permission_sets: Vec<String>,
    sso_users: Vec<String>,
    sso_accounts: Vec<String>,
    root: bool,
    name_prefix: String,
    severity: BTreeMap<DetectionKind, Severity>,
    source_identities: Vec<NamePattern>,
    /// Glasswatch's own resources named outside the prefix (the Slack
    /// secret).
    owned_names: Vec<String>,
    /// The OUs deploy targets; empty: the organization root.
    target_ous: Vec<String>,
}

/// The prefix of the IAM roles that Identity Center creates for permission
/// sets: `AWSReservedSSO_<PermissionSet>_<suffix>`.
pub const SSO_ROLE_PREFIX: &str = "AWSReservedSSO_";

impl WatchList {
    pub fn compile(
        config: &WatchConfig,
        name_prefix: &str,
        severity: &BTreeMap<DetectionKind, Severity>,
    ) -> Result<Self, Vec<WatchListError>> {
        let mut errors = Vec::new();
        let users = compile_entries(&config.iam_users, "iam_users", "user", &mut errors);
        let roles = compile_entries(&config.roles, "roles", "role", &mut errors);
        for (i, set) in config.sso_permission_sets.iter().enumerate() {
            if !(1..=32).contains(&set.len()) || !set.chars().all(is_iam_name_char) {
                errors.push(WatchListError {
                    key: "sso_permission_sets",
                    index: Some(i),
                    message: format!("`{set}` is not a permission set name"),
                    hint: Some(
                        "permission set names are 1-32 letters, digits or +=,.@_- (no wildcards)"
                            .into(),
                    ),
                });
            }
        }
        for (i, user) in config.sso_users.iter().enumerate() {
            if user.trim().is_empty() || user.len() > 128 || user.chars().any(char::is_whitespace) {
                errors.push(WatchListError {
                    key: "sso_users",
                    index: Some(i),
                    message: format!("`{user}` is not an Identity Center user name"),
                    hint: Some(
                        "use the user name as shown in Identity Center, e.g. \"emergency.admin\""
                            .into(),
                    ),
                });
            }
        }
        for (i, value) in config.source_identities.iter().enumerate() {
            if value.is_empty() || value.len() > 64 || value.chars().any(char::is_whitespace) {
                errors.push(WatchListError {
                    key: "source_identities",
                    index: Some(i),
                    message: format!("`{value}` is not a source identity"),
                    hint: Some(
                        "a source identity is 2-64 characters without spaces; `*` is a wildcard"
                            .into(),
                    ),
                });
            }
        }
        for (i, account) in config.sso_accounts.iter().enumerate() {
            if !is_account_id(account) {
                errors.push(WatchListError {
                    key: "sso_accounts",
                    index: Some(i),
                    message: format!("`{account}` is not an AWS account id"),
                    hint: Some("an account id is 12 digits, written as a string".into()),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            users,
            roles,
            permission_sets: config.sso_permission_sets.clone(),
            sso_users: config.sso_users.clone(),
            sso_accounts: config.sso_accounts.clone(),
            root: config.root_sign_in,
            name_prefix: name_prefix.to_owned(),
            severity: severity.clone(),
            source_identities: config
                .source_identities
                .iter()
                .map(|v| NamePattern::parse(v))
                .collect(),
            owned_names: Vec::new(),
            target_ous: Vec::new(),
        })
    }

    /// The same list, also owning these resource names (the Slack secret).
    #[must_use]
    pub fn with_owned_names(mut self, names: &[String]) -> Self {
        self.owned_names = names.iter().filter(|n| !n.is_empty()).cloned().collect();
        self
    }

    /// The same list, knowing the OUs deploy targets (empty: the root).
    #[must_use]
    pub fn with_target_ous(mut self, ous: &[String]) -> Self {
        self.target_ous = ous.to_vec();
        self
    }

    pub fn owned_names(&self) -> &[String] {
        &self.owned_names
    }

    pub fn target_ous(&self) -> &[String] {
        &self.target_ous
    }

    pub fn source_identities(&self) -> &[NamePattern] {
        &self.source_identities
    }

    /// Is this `sourceIdentity` a break-glass one?
    pub fn source_identity_watched(&self, value: &str) -> bool {
        self.source_identities.iter().any(|p| p.matches(value))
            || self
                .users
                .iter()
                .any(|e| matches!(&e.name, NamePattern::Exact(n) if n.eq_ignore_ascii_case(value)))
            || self.sso_user_watched(value)
    }

    pub fn users(&self) -> &[Entry] {
        &self.users
    }
    pub fn roles(&self) -> &[Entry] {
        &self.roles
    }
    pub fn permission_sets(&self) -> &[String] {
        &self.permission_sets
    }
    pub fn sso_users(&self) -> &[String] {
        &self.sso_users
    }
    pub fn sso_accounts(&self) -> &[String] {
        &self.sso_accounts
    }
    pub fn root(&self) -> bool {
        self.root
    }
    pub fn name_prefix(&self) -> &str {
        &self.name_prefix
    }
    pub fn watches_sso(&self) -> bool {
        !(self.permission_sets.is_empty()
            && self.sso_users.is_empty()
            && self.sso_accounts.is_empty())
    }

    /// The severity for a kind, honouring `[severity]` overrides.
    pub fn severity_of(&self, kind: DetectionKind) -> Severity {
        self.severity
            .get(&kind)
            .copied()
            .unwrap_or_else(|| kind.default_severity())
    }

    pub fn user_watched(&self, account: Option<&str>, name: &str) -> bool {
        self.users.iter().any(|e| e.matches(account, name))
    }

    /// `arn:aws:iam::ACCOUNT:user/path/name`.
    pub fn user_arn_watched(&self, arn: &str) -> bool {
        parse_iam_arn(arn, "user")
            .is_some_and(|(account, name)| self.user_watched(Some(account), name))
    }

    pub fn role_watched(&self, account: Option<&str>, name: &str) -> bool {
        self.roles.iter().any(|e| e.matches(account, name))
    }

    /// `arn:aws:iam::ACCOUNT:role/path/name`.
    pub fn role_arn_watched(&self, arn: &str) -> bool {
        parse_iam_arn(arn, "role")
            .is_some_and(|(account, name)| self.role_watched(Some(account), name))
    }

    pub fn permission_set_watched(&self, set: &str) -> bool {
        self.permission_sets
            .iter()
            .any(|s| s.eq_ignore_ascii_case(set))
    }

    /// An Identity Center user, by user name or by identity-store user id
    /// (`onBehalfOf.userId`, the only identifier in newer records).
    pub fn sso_user_watched(&self, user: &str) -> bool {
        self.sso_users.iter().any(|u| u.eq_ignore_ascii_case(user))
    }

    pub fn sso_account_watched(&self, account: &str) -> bool {
        self.sso_accounts.iter().any(|a| a == account)
    }

    /// Is an Identity Center role (`AWSReservedSSO_<set>_<suffix>`) in
    /// `account` a break-glass role?
    pub fn sso_role_watched(&self, account: Option<&str>, role_name: &str) -> bool {
        sso_permission_set(role_name).is_some_and(|set| {
            self.permission_sets.iter().any(|s| s == set)
                || account.is_some_and(|a| self.sso_account_watched(a))
        })
    }

    /// Role matching by name with exact case, for places where EventBridge
    /// can only match case-sensitively (a role name inside a session ARN).
    pub fn role_watched_exact_case(&self, account: Option<&str>, name: &str) -> bool {
        self.roles.iter().any(|e| {
            e.matches(account, name)
                && match &e.name {
                    NamePattern::Exact(want) => want == name,
                    NamePattern::Glob(_) => true,
                }
        })
    }

    /// Is this resource name one of Glasswatch's own?
    pub fn owns(&self, name: &str) -> bool {
        name.starts_with(&self.name_prefix)
            || name
                .strip_prefix("StackSet-")
                .is_some_and(|rest| rest.starts_with(&self.name_prefix))
            || self.owned_names.iter().any(|n| n == name)
    }
}

/// The permission set name inside `AWSReservedSSO_<set>_<suffix>`. AWS
/// writes these names itself, so the match is case-sensitive.
pub fn sso_permission_set(role_name: &str) -> Option<&str> {
    let rest = role_name.strip_prefix(SSO_ROLE_PREFIX)?;
    let (set, suffix) = rest.rsplit_once('_')?;
    (!set.is_empty() && !suffix.is_empty()).then_some(set)
}

/// Split `arn:PARTITION:iam::ACCOUNT:KIND/path/name` into account and name.
pub fn parse_iam_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    if parts.next()? != "iam" {
        return None;
    }
    let _region = parts.next()?;
    let account = parts.next()?;
    let resource = parts.next()?;
    let path_and_name = resource.strip_prefix(kind)?.strip_prefix('/')?;
    let name = path_and_name.rsplit('/').next()?;
    (!name.is_empty()).then_some((account, name))
}

fn is_iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

fn compile_entries(
    written: &[String],
    key: &'static str,
    kind: &str,
    errors: &mut Vec<WatchListError>,
) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, raw) in written.iter().enumerate() {
        let bad = |message: String, hint: &str| WatchListError {
            key,
            index: Some(i),
            message,
            hint: Some(hint.to_owned()),
        };
        if raw.starts_with("arn:") {
            let glob_arn = raw.replace('*', "x");
            match parse_iam_arn(raw, kind).zip(parse_iam_arn(&glob_arn, kind)) {
                Some(((account, name), _)) if valid_name(name) && (account == "*" || is_account_id(account) || account.contains('*')) => {
                    out.push(Entry {
                        account: (account != "*").then(|| NamePattern::parse(account)),
                        name: NamePattern::parse(name),
                        written: raw.clone(),
                    });
                }
                _ => errors.push(bad(
                    format!("`{raw}` is not an IAM {kind} ARN"),
                    &format!("write arn:aws:iam::123456789012:{kind}/NAME (a path before NAME is allowed, `*` too)"),
                )),
            }
        } else if valid_name(raw) {
            out.push(Entry {
                account: None,
                name: NamePattern::parse(raw),
                written: raw.clone(),
            });
        } else {
            errors.push(bad(
                format!("`{raw}` is not an IAM {kind} name"),
                "IAM names are 1-64 letters, digits or +=,.@_- ; `*` is a wildcard; or give a full ARN",
            ));
        }
    }
    out
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| is_iam_name_char(c) || c == '*')
        && name.chars().any(|c| c != '*')
}

/// `*` matches any run of characters, everything else itself (case-sensitive).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(users: &[&str], roles: &[&str]) -> WatchList {
        let config = WatchConfig {
            iam_users: users.iter().map(|s| (*s).to_owned()).collect(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            sso_permission_sets: vec!["BreakGlassAdmin".into()],
            sso_users: vec![],
            sso_accounts: vec!["999988887777".into()],
            root_sign_in: true,
            source_identities: vec!["bg-*".into()],
        };
        WatchList::compile(&config, "glasswatch", &BTreeMap::new()).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_match("Emergency*", "EmergencyAccess"));
        assert!(glob_match("*Glass*", "BreakGlassRole"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(!glob_match("Emergency*", "emergencyAccess"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn names_are_case_insensitive_and_exact() {
        let w = list(&["break-glass-1"], &["BreakGlassRole"]);
        assert!(w.user_watched(Some("111122223333"), "Break-Glass-1"));
        assert!(!w.user_watched(Some("111122223333"), "break-glass-10"));
        assert!(w.role_arn_watched("arn:aws:iam::111122223333:role/emergency/breakglassrole"));
        assert!(!w.role_arn_watched("arn:aws:iam::111122223333:role/BreakGlassRoleReadOnly"));
        assert!(!w.role_arn_watched("arn:aws:iam::111122223333:user/BreakGlassRole"));
    }

    #[test]
    fn arn_entries_pin_the_account() {
        let w = list(
            &["arn:aws:iam::444455556666:user/emergency/bg-admin"],
            &["arn:aws:iam::*:role/Emergency*"],
        );
        assert!(w.user_arn_watched("arn:aws:iam::444455556666:user/emergency/bg-admin"));
        assert!(!w.user_arn_watched("arn:aws:iam::111122223333:user/bg-admin"));
        assert!(w.role_arn_watched("arn:aws-us-gov:iam::111122223333:role/EmergencyAccess"));
        assert!(!w.role_arn_watched("arn:aws:iam::111122223333:role/emergencyaccess"));
    }

    #[test]
    fn sso_reserved_roles() {
        let w = list(&[], &[]);
        assert_eq!(
            sso_permission_set("AWSReservedSSO_Break_Glass_0123abcd"),
            Some("Break_Glass")
        );
        assert_eq!(sso_permission_set("AWSReservedSSO_"), None);
        assert!(w.sso_role_watched(Some("1"), "AWSReservedSSO_BreakGlassAdmin_0123456789abcdef"));
        assert!(!w.sso_role_watched(Some("1"), "AWSReservedSSO_ReadOnly_0123456789abcdef"));
        assert!(w.sso_role_watched(
            Some("999988887777"),
            "AWSReservedSSO_ReadOnly_0123456789abcdef"
        ));
    }

    #[test]
    fn own_resources() {
        let w = list(&[], &["x"]).with_owned_names(&["security/slack-token".into()]);
        assert!(w.owns("glasswatch-agent"));
        assert!(w.owns("StackSet-glasswatch-agent-1234"));
        assert!(!w.owns("payments-glasswatch"));
        assert!(w.owns("security/slack-token"));
        assert!(!w.owns("security/slack-token-2"));
    }

    #[test]
    fn source_identities() {
        let w = list(&["break-glass-1"], &["x"]);
        assert!(w.source_identity_watched("bg-alice"));
        assert!(w.source_identity_watched("Break-Glass-1"));
        assert!(!w.source_identity_watched("alice"));
    }

    #[test]
    fn bad_entries_are_reported_by_index() {
        let config = WatchConfig {
            iam_users: vec!["ok".into(), "has space".into()],
            roles: vec!["arn:aws:iam::12:role/X".into()],
            sso_permission_sets: vec!["way-too-long-permission-set-name-xxxx".into()],
            ..WatchConfig::default()
        };
        let errors = WatchList::compile(&config, "g", &BTreeMap::new()).unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| (e.key, e.index)).collect();
        assert_eq!(
            keys,
            [
                ("iam_users", Some(1)),
                ("roles", Some(0)),
                ("sso_permission_sets", Some(0))
            ]
        );
    }
}
