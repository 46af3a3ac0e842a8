//! EventBridge patterns generated from the watch list: the cheap first
//! filter in front of the agent. Every pattern is a superset of what the
//! detector flags (`detect`), built from the same watch list and the same
//! event-name lists, so the two cannot drift apart.
//!
//! Patterns respect EventBridge's default limit of 2048 characters; a rule
//! whose alternatives do not fit is split into several rules.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::detect::{
    ASSUME_ROOT, NameField, ROLE_ASSUMPTIONS, ROLE_CREDENTIAL_CHANGES, ROOT_PASSWORD_EVENTS,
    SSO_EVENTS, TAMPER, USER_CREDENTIAL_CHANGES, source,
};
use crate::watch::{Entry, NamePattern, SSO_ROLE_PREFIX, WatchList};

/// EventBridge's default maximum event pattern size, in characters.
pub const MAX_PATTERN_CHARS: usize = 2048;
/// EventBridge rule names are at most 64 characters.
pub const MAX_RULE_NAME: usize = 64;

/// One EventBridge rule's pattern.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulePattern {
    /// Rule name: `<name_prefix>-<id>`.
    pub name: String,
    /// Short id, e.g. `assume-role` or `activity-2`.
    pub id: String,
    pub pattern: Value,
}

impl RulePattern {
    pub fn pattern_json(&self) -> String {
        self.pattern.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "rule `{rule}`: one watch entry alone makes a {size}-character pattern, over EventBridge's {MAX_PATTERN_CHARS}"
    )]
    TooLarge { rule: String, size: usize },
    #[error("rule name `{0}` is longer than {MAX_RULE_NAME} characters; shorten `name_prefix`")]
    NameTooLong(String),
}

/// Where in the event a filter applies, e.g. `detail.requestParameters.name`.
type Path = Vec<&'static str>;

fn path(parts: &[&'static str]) -> Path {
    parts.to_vec()
}

/// `detail.requestParameters.<field>`, for the request fields `detect`
/// reads resource names from.
fn request_path(field: &'static str) -> Path {
    path(&["detail", "requestParameters", field])
}

/// Where in the event a [`NameField`] is.
fn name_path(field: NameField) -> Path {
    match field {
        NameField::Request(f) => request_path(f),
        NameField::Response(f) => path(&["detail", "responseElements", f]),
    }
}

/// A rule before rendering: fixed conditions, and alternatives of which
/// one must hold.
struct Logical {
    id: &'static str,
    base: Vec<(Path, Vec<Value>)>,
    alternatives: Vec<(Path, Vec<Value>)>,
}

fn strings(values: &[&str]) -> Vec<Value> {
    values.iter().map(|v| Value::from(*v)).collect()
}

fn equals_ci(v: &str) -> Value {
    json!({ "equals-ignore-case": v })
}

fn suffix_ci(v: &str) -> Value {
    json!({ "suffix": { "equals-ignore-case": v } })
}

fn prefix(v: &str) -> Value {
    json!({ "prefix": v })
}

/// Escape `*` and `\` for EventBridge's `wildcard` operator.
fn wildcard_literal(v: &str) -> String {
    v.replace('\\', "\\\\").replace('*', "\\*")
}

fn wildcard(v: String) -> Value {
    json!({ "wildcard": v })
}

/// Filters for a field holding a bare IAM name.
fn name_filters(entries: &[Entry]) -> Vec<Value> {
    entries
        .iter()
        .map(|e| match &e.name {
            NamePattern::Exact(n) => equals_ci(n),
            NamePattern::Glob(g) => wildcard(g.clone()),
        })
        .collect()
}

/// Filters for a field holding an ARN that ends in `/<name>`.
fn arn_filters(entries: &[Entry]) -> Vec<Value> {
    entries
        .iter()
        .map(|e| match &e.name {
            NamePattern::Exact(n) => suffix_ci(&format!("/{n}")),
            NamePattern::Glob(g) => wildcard(format!("*/{g}")),
        })
        .collect()
}

fn insert_path(root: &mut Map<String, Value>, path: &[&str], filters: Vec<Value>) {
    let (last, parents) = path.split_last().expect("paths are never empty");
    let mut node = root;
    for key in parents {
        node = node
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("pattern paths never end where others continue");
    }
    node.insert((*last).to_owned(), Value::Array(filters));
}

fn render(base: &[(Path, Vec<Value>)], alternatives: &[(Path, Vec<Value>)]) -> Value {
    let mut root = Map::new();
    for (path, filters) in base {
        insert_path(&mut root, path, filters.clone());
    }
    match alternatives {
        [] => {}
        [(path, filters)] => insert_path(&mut root, path, filters.clone()),
        many => {
            // `$or` sits beside the base conditions inside `detail`.
            let branches: Vec<Value> = many
                .iter()
                .map(|(path, filters)| {
                    let mut branch = Map::new();
                    insert_path(&mut branch, &path[1..], filters.clone());
                    Value::Object(branch)
                })
                .collect();
            let detail = root
                .entry("detail")
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("detail is an object");
            detail.insert("$or".into(), Value::Array(branches));
        }
    }
    Value::Object(root)
}

/// Group (path, filter) atoms back into per-path filter lists, keeping order.
fn regroup(atoms: &[(Path, Value)]) -> Vec<(Path, Vec<Value>)> {
    let mut out: Vec<(Path, Vec<Value>)> = Vec::new();
    for (path, filter) in atoms {
        match out.iter_mut().find(|(p, _)| p == path) {
            Some((_, filters)) => filters.push(filter.clone()),
            None => out.push((path.clone(), vec![filter.clone()])),
        }
    }
    out
}

fn size(v: &Value) -> usize {
    v.to_string().len()
}

/// Render a logical rule into one or more patterns that each fit.
fn split(prefix_name: &str, rule: Logical) -> Result<Vec<RulePattern>, PatternError> {
    let whole = render(&rule.base, &rule.alternatives);
    let name = |id: String| format!("{prefix_name}-{id}");
    if size(&whole) <= MAX_PATTERN_CHARS {
        return Ok(vec![RulePattern {
            name: name(rule.id.to_owned()),
            id: rule.id.to_owned(),
            pattern: whole,
        }]);
    }
    let atoms: Vec<(Path, Value)> = rule
        .alternatives
        .iter()
        .flat_map(|(path, filters)| filters.iter().map(move |f| (path.clone(), f.clone())))
        .collect();
    let mut groups: Vec<Vec<(Path, Value)>> = Vec::new();
    let mut current: Vec<(Path, Value)> = Vec::new();
    for atom in atoms {
        current.push(atom);
        if size(&render(&rule.base, &regroup(&current))) > MAX_PATTERN_CHARS {
            let atom = current.pop().expect("just pushed");
            if current.is_empty() {
                let alone = render(&rule.base, &regroup(std::slice::from_ref(&atom)));
                return Err(PatternError::TooLarge {
                    rule: rule.id.to_owned(),
                    size: size(&alone),
                });
            }
            groups.push(std::mem::take(&mut current));
            current.push(atom);
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    Ok(groups
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let id = format!("{}-{}", rule.id, i + 1);
            RulePattern {
                name: name(id.clone()),
                id,
                pattern: render(&rule.base, &regroup(group)),
            }
        })
        .collect())
}

const EVENT_SOURCE: &[&str] = &["detail", "eventSource"];
/// `detail.userIdentity.sessionContext.sessionIssuer.<field>`.
fn issuer_path(field: &'static str) -> Path {
    path(&[
        "detail",
        "userIdentity",
        "sessionContext",
        "sessionIssuer",
        field,
    ])
}
const EVENT_NAME: &[&str] = &["detail", "eventName"];

/// Every rule pattern for this watch list.
pub fn event_patterns(watch: &WatchList) -> Result<Vec<RulePattern>, PatternError> {
    let p = watch.name_prefix();
    let users = watch.users();
    let roles = watch.roles();
    let mut signin_events = vec!["ConsoleLogin", "SwitchRole"];
    if watch.root() {
        signin_events.extend(ROOT_PASSWORD_EVENTS);
    }
    let mut rules = vec![Logical {
        id: "signin",
        base: vec![
            (path(EVENT_SOURCE), strings(&[source::SIGNIN])),
            (path(EVENT_NAME), strings(&signin_events)),
        ],
        alternatives: vec![],
    }];
    if !roles.is_empty() {
        rules.push(Logical {
            id: "assume-role",
            base: vec![
                (path(EVENT_SOURCE), strings(&[source::STS])),
                (path(EVENT_NAME), strings(&ROLE_ASSUMPTIONS)),
            ],
            alternatives: vec![(request_path("roleArn"), arn_filters(roles))],
        });
    }
    if watch.root() {
        rules.push(Logical {
            id: "assume-root",
            base: vec![
                (path(EVENT_SOURCE), strings(&[source::STS])),
                (path(EVENT_NAME), strings(&[ASSUME_ROOT])),
            ],
            alternatives: vec![],
        });
    }
    if watch.watches_sso() {
        rules.push(Logical {
            id: "sso",
            base: vec![
                (
                    path(EVENT_SOURCE),
                    strings(&[source::SSO, source::SSO_OAUTH]),
                ),
                (path(EVENT_NAME), strings(&SSO_EVENTS)),
            ],
            alternatives: vec![],
        });
    }
    if !users.is_empty() {
        rules.push(Logical {
            id: "user-change",
            base: vec![
                (path(EVENT_SOURCE), strings(&[source::IAM])),
                (path(EVENT_NAME), strings(&USER_CREDENTIAL_CHANGES)),
            ],
            alternatives: vec![
                (request_path("userName"), name_filters(users)),
                (request_path("serialNumber"), arn_filters(users)),
            ],
        });
    }
    if !roles.is_empty() {
        rules.push(Logical {
            id: "role-change",
            base: vec![
                (path(EVENT_SOURCE), strings(&[source::IAM])),
                (path(EVENT_NAME), strings(&ROLE_CREDENTIAL_CHANGES)),
            ],
            alternatives: vec![(request_path("roleName"), name_filters(roles))],
        });
    }
    // Tampering: the families `detect` reads. Own resources: any name field
    // that contains the prefix (names, `StackSet-<prefix>…` instances, full
    // or partial ARNs and URLs), or one of the names owned outside it.
    let owned = || {
        let mut filters = vec![wildcard(format!("*{}*", wildcard_literal(p)))];
        filters.extend(
            watch
                .owned_names()
                .iter()
                .map(|n| wildcard(format!("*{}*", wildcard_literal(n)))),
        );
        filters
    };
    for family in &TAMPER {
        let names = if family.versioned_names {
            // CloudTrail appends an API version: `UpdateFunctionCode20150331v2`.
            family.events.iter().map(|n| prefix(n)).collect()
        } else {
            strings(family.events)
        };
        rules.push(Logical {
            id: family.id,
            base: vec![
                (path(EVENT_SOURCE), strings(&[family.source])),
                (path(EVENT_NAME), names),
            ],
            alternatives: if family.owned_only {
                family
                    .fields
                    .iter()
                    .map(|f| (name_path(*f), owned()))
                    .collect()
            } else {
                vec![]
            },
        });
    }

    // Anything a break-glass principal does.
    let mut activity: Vec<(Path, Vec<Value>)> = Vec::new();
    if watch.root() {
        activity.push((
            path(&["detail", "userIdentity", "type"]),
            strings(&["Root"]),
        ));
    }
    let mut user_names = name_filters(users);
    user_names.extend(watch.sso_users().iter().map(|u| equals_ci(u)));
    activity.push((path(&["detail", "userIdentity", "userName"]), user_names));
    activity.push((path(&["detail", "userIdentity", "arn"]), arn_filters(users)));
    if !watch.sso_users().is_empty() {
        let sso_users = || watch.sso_users().iter().map(|u| equals_ci(u)).collect();
        activity.push((
            path(&["detail", "additionalEventData", "UserName"]),
            sso_users(),
        ));
        activity.push((
            path(&["detail", "userIdentity", "onBehalfOf", "userId"]),
            sso_users(),
        ));
    }
    let mut sso_prefixes: Vec<String> = watch
        .permission_sets()
        .iter()
        .map(|s| format!("{SSO_ROLE_PREFIX}{s}_"))
        .collect();
    if !watch.sso_accounts().is_empty() {
        sso_prefixes = vec![SSO_ROLE_PREFIX.to_owned()];
    }
    // Role sessions by their issuing role; federated users
    // (`GetFederationToken`) by their issuing user, or root.
    let mut issuer_names = name_filters(roles);
    issuer_names.extend(name_filters(users));
    issuer_names.extend(sso_prefixes.iter().map(|s| prefix(s)));
    if watch.root() {
        activity.push((issuer_path("type"), strings(&["Root"])));
    }
    // A break-glass source identity, through any chain of roles.
    let mut identities: Vec<Value> = watch
        .source_identities()
        .iter()
        .map(|p| match p {
            NamePattern::Exact(n) => equals_ci(n),
            NamePattern::Glob(g) => wildcard(g.clone()),
        })
        .collect();
    identities.extend(users.iter().filter_map(|e| match &e.name {
        NamePattern::Exact(n) => Some(equals_ci(n)),
        NamePattern::Glob(_) => None,
    }));
    identities.extend(watch.sso_users().iter().map(|u| equals_ci(u)));
    activity.push((
        path(&["detail", "userIdentity", "sessionContext", "sourceIdentity"]),
        identities,
    ));
    activity.push((issuer_path("userName"), issuer_names));
    let mut issuer_arns = arn_filters(roles);
    issuer_arns.extend(arn_filters(users));
    issuer_arns.extend(
        sso_prefixes
            .iter()
            .map(|s| wildcard(format!("*/{}*", wildcard_literal(s)))),
    );
    activity.push((issuer_path("arn"), issuer_arns));
    // Role sessions without an issuer: the role inside the session ARN.
    let mut session_arns: Vec<Value> = roles
        .iter()
        .map(|e| {
            let role = match &e.name {
                NamePattern::Exact(n) => wildcard_literal(n),
                NamePattern::Glob(g) => g.clone(),
            };
            wildcard(format!("*:assumed-role/{role}/*"))
        })
        .collect();
    session_arns.extend(
        sso_prefixes
            .iter()
            .map(|s| wildcard(format!("*:assumed-role/{}*", wildcard_literal(s)))),
    );
    if !session_arns.is_empty() {
        match activity
            .iter_mut()
            .find(|(path, _)| *path == ["detail", "userIdentity", "arn"])
        {
            Some((_, filters)) => filters.extend(session_arns),
            None => activity.push((path(&["detail", "userIdentity", "arn"]), session_arns)),
        }
    }
    activity.retain(|(_, filters)| !filters.is_empty());
    rules.push(Logical {
        id: "activity",
        base: vec![],
        alternatives: activity,
    });

    let mut out = Vec::new();
    for mut rule in rules {
        // Only AWS services put `aws.*` events: no one can feed the agent
        // an event of their own made to look like CloudTrail.
        rule.base
            .insert(0, (path(&["source"]), vec![prefix("aws.")]));
        for pattern in split(p, rule)? {
            if pattern.name.len() > MAX_RULE_NAME {
                return Err(PatternError::NameTooLong(pattern.name));
            }
            out.push(pattern);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::WatchConfig;

    fn watch(users: usize) -> WatchList {
        let config = WatchConfig {
            iam_users: (0..users)
                .map(|i| format!("break-glass-user-number-{i}"))
                .collect(),
            roles: vec!["BreakGlassRole".into(), "Emergency*".into()],
            sso_permission_sets: vec!["BreakGlassAdmin".into()],
            sso_users: vec![],
            sso_accounts: vec![],
            root_sign_in: true,
            source_identities: vec![],
        };
        WatchList::compile(&config, "glasswatch", &BTreeMap::new()).unwrap()
    }

    #[test]
    fn every_pattern_fits_and_is_named() {
        for users in [1, 5, 200] {
            let patterns = event_patterns(&watch(users)).unwrap();
            for p in &patterns {
                assert!(
                    p.pattern_json().len() <= MAX_PATTERN_CHARS,
                    "{} too big",
                    p.name
                );
                assert!(p.name.starts_with("glasswatch-"));
            }
            let ids: Vec<&str> = patterns.iter().map(|p| p.id.as_str()).collect();
            assert!(ids.contains(&"signin"));
            assert!(ids.contains(&"tamper-trail"));
            if users == 200 {
                assert!(
                    ids.iter().filter(|id| id.starts_with("activity-")).count() > 1,
                    "{ids:?}"
                );
                assert!(
                    ids.iter().any(|id| id.starts_with("user-change-")),
                    "{ids:?}"
                );
            }
        }
    }

    /// Every rule requires an AWS source: a principal's own events on the
    /// default bus, shaped like CloudTrail, never reach the agent.
    #[test]
    fn every_rule_requires_an_aws_source() {
        for p in event_patterns(&watch(3)).unwrap() {
            assert_eq!(
                p.pattern["source"],
                json!([{"prefix": "aws."}]),
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn split_rules_keep_every_user() {
        let patterns = event_patterns(&watch(200)).unwrap();
        let all: String = patterns
            .iter()
            .filter(|p| p.id.starts_with("activity"))
            .map(RulePattern::pattern_json)
            .collect();
        for i in 0..200 {
            let needle = format!("\"break-glass-user-number-{i}\"");
            assert!(all.contains(&needle), "user {i} lost in split");
        }
    }

    #[test]
    fn assume_role_pattern_shape() {
        let patterns = event_patterns(&watch(1)).unwrap();
        let p = patterns.iter().find(|p| p.id == "assume-role").unwrap();
        assert_eq!(
            p.pattern,
            json!({"source": [{"prefix": "aws."}], "detail": {
                "eventSource": ["sts.amazonaws.com"],
                "eventName": ["AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"],
                "requestParameters": {"roleArn": [
                    {"suffix": {"equals-ignore-case": "/BreakGlassRole"}},
                    {"wildcard": "*/Emergency*"}
                ]}
            }})
        );
    }
}
