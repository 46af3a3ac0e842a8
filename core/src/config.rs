//! `glasswatch.toml`: typed configuration, validation, and errors that name
//! the file, the line, the key and a hint.
//!
//! Parsing is pure: the caller reads the file and passes its text and name.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::detect::{DetectionKind, Severity};
use crate::trail::TrailConfig;
use crate::watch::{WatchList, WatchListError};

/// The whole `glasswatch.toml`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub organization: Organization,
    pub watch: WatchConfig,
    pub slack: SlackConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub deploy: DeployConfig,
    /// Optional per-kind severity overrides, e.g. `session_activity = "medium"`.
    #[serde(default)]
    pub severity: BTreeMap<DetectionKind, Severity>,
    /// The organization trail's log files, for the durable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trail: Option<TrailConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    pub management_account: String,
    pub audit_account: String,
    pub audit_region: String,
    /// Empty means the organization root.
    #[serde(default)]
    pub target_ous: Vec<String>,
    /// Empty means every enabled region.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// The `[watch]` table: who and what counts as break-glass.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// IAM user names (any account) or full user ARNs; `*` wildcards allowed.
    #[serde(default)]
    pub iam_users: Vec<String>,
    /// IAM role names or ARNs; `*` wildcards allowed.
    #[serde(default)]
    pub roles: Vec<String>,
    /// IAM Identity Center permission set names.
    #[serde(default)]
    pub sso_permission_sets: Vec<String>,
    /// IAM Identity Center user names whose every sign-in counts.
    #[serde(default)]
    pub sso_users: Vec<String>,
    /// Accounts where any Identity Center access counts (e.g. a dedicated
    /// break-glass account).
    #[serde(default)]
    pub sso_accounts: Vec<String>,
    /// Alert on every root sign-in and treat root activity as a session.
    #[serde(default = "default_true")]
    pub root_sign_in: bool,
    /// `sourceIdentity` values (or `*` globs) that mark a break-glass
    /// session wherever it goes: source identity survives every role hop,
    /// so a session that chains into any role in any account stays
    /// watched. Watched IAM user and Identity Center user names count too.
    #[serde(default)]
    pub source_identities: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    Bot,
    Webhook,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub mode: SlackMode,
    #[serde(default)]
    pub channel: String,
    pub secret_name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default = "default_quiet")]
    pub quiet_minutes: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            quiet_minutes: default_quiet(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_retention")]
    pub retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            retention_days: default_retention(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum LambdaArchitecture {
    #[serde(rename = "arm64")]
    Arm64,
    #[serde(rename = "x86_64")]
    X86_64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    #[serde(default = "default_prefix")]
    pub name_prefix: String,
    #[serde(default = "default_arch")]
    pub lambda_architecture: LambdaArchitecture,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_minutes: u32,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            name_prefix: default_prefix(),
            lambda_architecture: default_arch(),
            heartbeat_minutes: default_heartbeat(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_quiet() -> u32 {
    60
}
fn default_retention() -> u32 {
    2555
}
/// `name_prefix` when none is given.
pub const DEFAULT_NAME_PREFIX: &str = "glasswatch";

fn default_prefix() -> String {
    DEFAULT_NAME_PREFIX.to_owned()
}
fn default_arch() -> LambdaArchitecture {
    LambdaArchitecture::Arm64
}
fn default_heartbeat() -> u32 {
    15
}

/// One problem in a configuration file, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `watch.roles`.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one file (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_all(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn render_all(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A validation problem before it is located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path segments, e.g. `["watch", "roles", "1"]`.
    pub path: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(path: &[&str], message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            message: message.into(),
            hint,
        }
    }
}

impl Config {
    /// Parse and validate the text of a `glasswatch.toml`. `file` is only used
    /// in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigErrors> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let span = e.span();
            let (key, line) = match &span {
                Some(span) => (key_at(text, span.start), Some(line_of(text, span.start))),
                None => (None, None),
            };
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                line,
                key,
                message: e.message().trim().to_owned(),
                hint: hint_for_serde(e.message()),
            }])
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            return Ok(config);
        }
        // Parse the spans once for every problem.
        let spans = DeTable::parse(text).ok();
        let table = spans.as_ref().map(|t| t.get_ref());
        Err(ConfigErrors(
            problems
                .into_iter()
                .map(|p| locate(text, table, file, p))
                .collect(),
        ))
    }

    /// Every validation problem; empty when the configuration is usable.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let org = &self.organization;
        for (key, value) in [
            ("management_account", &org.management_account),
            ("audit_account", &org.audit_account),
        ] {
            if !is_account_id(value) {
                out.push(Problem::new(
                    &["organization", key],
                    format!("`{value}` is not an AWS account id"),
                    Some(
                        "an account id is 12 digits, written as a string: \"123456789012\"".into(),
                    ),
                ));
            }
        }
        if !is_region(&org.audit_region) {
            out.push(region_problem(
                &["organization", "audit_region"],
                &org.audit_region,
            ));
        }
        for (i, ou) in org.target_ous.iter().enumerate() {
            if !is_ou_or_root(ou) {
                out.push(Problem::new(
                    &["organization", "target_ous", &i.to_string()],
                    format!("`{ou}` is not an organizational unit or root id"),
                    Some("use ids like \"ou-ab12-cd34ef56\" or \"r-ab12\"; leave the list empty for the whole organization".into()),
                ));
            }
        }
        for (i, region) in org.regions.iter().enumerate() {
            if !is_region(region) {
                out.push(region_problem(
                    &["organization", "regions", &i.to_string()],
                    region,
                ));
            } else if org.regions[..i].contains(region) {
                out.push(Problem::new(
                    &["organization", "regions", &i.to_string()],
                    format!("region `{region}` is listed twice"),
                    None,
                ));
            }
        }
        if !org.regions.is_empty() && !org.regions.contains(&org.audit_region) {
            out.push(Problem::new(
                &["organization", "regions"],
                format!(
                    "the audit region `{}` is not among the monitored regions",
                    org.audit_region
                ),
                Some(
                    "add it to `regions`, or leave `regions` empty for every enabled region".into(),
                ),
            ));
        }

        let global = global_events_region(&org.audit_region);
        if !org.regions.is_empty()
            && is_region(&org.audit_region)
            && !org.regions.iter().any(|r| r == global)
        {
            out.push(Problem::new(
                &["organization", "regions"],
                format!(
                    "`{global}` is not among the monitored regions: CloudTrail delivers IAM, global STS, Organizations and root sign-in events only in {global}, so without it a break-glass user could change credentials and sign in unseen"
                ),
                Some(format!(
                    "add \"{global}\" to `regions`, or leave `regions` empty for every enabled region"
                )),
            ));
        }

        out.extend(self.watch.problems());
        if let Some(trail) = &self.trail {
            out.extend(trail.problems());
        }

        if self.slack.mode == SlackMode::Bot && self.slack.channel.trim().is_empty() {
            out.push(Problem::new(
                &["slack", "channel"],
                "bot mode needs a channel",
                Some(
                    "set `channel = \"#break-glass\"` or a channel id such as \"C0123456789\""
                        .into(),
                ),
            ));
        }
        if self.slack.secret_name.trim().is_empty() {
            out.push(Problem::new(
                &["slack", "secret_name"],
                "the Secrets Manager secret name is empty",
                Some("name the secret that holds the bot token or webhook URL, e.g. \"glasswatch/slack\"".into()),
            ));
        }
        range_check(
            &mut out,
            &["session", "quiet_minutes"],
            self.session.quiet_minutes,
            1..=1440,
        );
        range_check(
            &mut out,
            &["store", "retention_days"],
            self.store.retention_days,
            1..=36500,
        );
        range_check(
            &mut out,
            &["deploy", "heartbeat_minutes"],
            self.deploy.heartbeat_minutes,
            1..=1440,
        );
        if !is_name_prefix(&self.deploy.name_prefix) {
            out.push(Problem::new(
                &["deploy", "name_prefix"],
                format!("`{}` cannot prefix AWS resource names", self.deploy.name_prefix),
                Some("use 1 to 20 characters: a lowercase letter, then lowercase letters, digits or `-`".into()),
            ));
        }
        out
    }

    /// The compiled watch list, ready for the detector. `parse` has already
    /// validated the entries; a hand-built `Config` may still fail here.
    /// Besides `[watch]`, it knows Glasswatch's own Slack secret (tampering
    /// with it is tampering with Glasswatch), the target OUs (moving an
    /// account out of them takes it out of coverage) and the severities.
    pub fn watch_list(&self) -> Result<WatchList, Vec<WatchListError>> {
        Ok(
            WatchList::compile(&self.watch, &self.deploy.name_prefix, &self.severity)?
                .with_owned_names(std::slice::from_ref(&self.slack.secret_name))
                .with_target_ous(&self.organization.target_ous),
        )
    }

    /// The watch list as the Lambdas get it (`GLASSWATCH_WATCH`): what
    /// [`watch_list`](Self::watch_list) is made of, as JSON.
    pub fn watch_env_json(&self) -> String {
        let mut value = serde_json::to_value(&self.watch).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("name_prefix".into(), self.deploy.name_prefix.clone().into());
            map.insert(
                "owned_names".into(),
                vec![self.slack.secret_name.clone()].into(),
            );
            map.insert(
                "target_ous".into(),
                self.organization.target_ous.clone().into(),
            );
            if !self.severity.is_empty() {
                map.insert(
                    "severity".into(),
                    serde_json::to_value(&self.severity).unwrap_or_default(),
                );
            }
        }
        value.to_string()
    }
}

/// The watch list from its JSON form ([`Config::watch_env_json`]), compiled.
pub fn watch_list_from_env_json(json: &str) -> Result<WatchList, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let map = value
        .as_object_mut()
        .ok_or_else(|| "must be a JSON object like {\"iam_users\":[...]}".to_owned())?;
    let strings =
        |map: &mut serde_json::Map<String, serde_json::Value>, key: &str| match map.remove(key) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value::<Vec<String>>(v)
                .map_err(|_| format!("`{key}` must be a list of strings")),
        };
    let owned = strings(map, "owned_names")?;
    let target_ous = strings(map, "target_ous")?;
    let severity: BTreeMap<DetectionKind, Severity> = match map.remove("severity") {
        None | Some(serde_json::Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value(v).map_err(|e| format!("`severity`: {e}"))?,
    };
    let (watch, prefix) = WatchConfig::from_env_json(&value.to_string())?;
    let prefix = prefix.unwrap_or_else(|| DEFAULT_NAME_PREFIX.to_owned());
    WatchList::compile(&watch, &prefix, &severity)
        .map(|w| w.with_owned_names(&owned).with_target_ous(&target_ous))
        .map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
}

impl WatchConfig {
    /// Validation problems of the `[watch]` table, with paths under `watch`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match WatchList::compile(self, "glasswatch", &BTreeMap::new()) {
            Ok(_) => {}
            Err(errors) => {
                for WatchListError {
                    key,
                    index,
                    message,
                    hint,
                } in errors
                {
                    let idx = index.map(|i| i.to_string());
                    let mut path = vec!["watch", key];
                    if let Some(idx) = &idx {
                        path.push(idx);
                    }
                    out.push(Problem::new(&path, message, hint));
                }
            }
        }
        if self.iam_users.is_empty()
            && self.roles.is_empty()
            && self.sso_permission_sets.is_empty()
            && self.sso_users.is_empty()
            && self.sso_accounts.is_empty()
            && !self.root_sign_in
        {
            out.push(Problem::new(
                &["watch"],
                "the watch list watches nothing",
                Some("name at least one IAM user, role or permission set, or set `root_sign_in = true`".into()),
            ));
        }
        out
    }

    /// Parse the agent's `GLASSWATCH_WATCH` JSON: the `[watch]` table with the
    /// same keys, plus an optional `name_prefix`.
    pub fn from_env_json(json: &str) -> Result<(WatchConfig, Option<String>), String> {
        let mut value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
        let map = value
            .as_object_mut()
            .ok_or_else(|| "must be a JSON object like {\"iam_users\":[...]}".to_owned())?;
        let prefix = match map.remove("name_prefix") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => return Err(format!("`name_prefix` must be a string, not {other}")),
        };
        let watch: WatchConfig =
            serde_json::from_value(value).map_err(|e| format!("invalid watch list: {e}"))?;
        if let Some(problem) = watch.problems().into_iter().next() {
            return Err(format!(
                "`{}`: {}",
                problem.path[1..].join("."),
                problem.message
            ));
        }
        Ok((watch, prefix))
    }
}

fn range_check(
    out: &mut Vec<Problem>,
    path: &[&str],
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) {
    if !range.contains(&value) {
        out.push(Problem::new(
            path,
            format!("{value} is out of range"),
            Some(format!(
                "use a whole number from {} to {}",
                range.start(),
                range.end()
            )),
        ));
    }
}

fn region_problem(path: &[&str], region: &str) -> Problem {
    Problem::new(
        path,
        format!("`{region}` is not an AWS region name"),
        Some("region names look like \"eu-west-1\" or \"us-gov-west-1\"".into()),
    )
}

pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The region where CloudTrail delivers the global services' events (IAM,
/// global STS, Organizations, console sign-in) in `region`'s partition.
pub fn global_events_region(region: &str) -> &'static str {
    if region.starts_with("us-gov-") {
        "us-gov-west-1"
    } else if region.starts_with("cn-") {
        "cn-north-1"
    } else {
        "us-east-1"
    }
}

/// `xx-name-N` or `xx-partition-name-N`.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0)
}

fn is_ou_or_root(s: &str) -> bool {
    let ok = |part: &str, min: usize, max: usize| {
        (min..=max).contains(&part.len())
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if let Some(rest) = s.strip_prefix("ou-") {
        rest.split_once('-')
            .is_some_and(|(a, b)| ok(a, 4, 32) && ok(b, 8, 32))
    } else if let Some(rest) = s.strip_prefix("r-") {
        ok(rest, 4, 32)
    } else {
        false
    }
}

fn is_name_prefix(s: &str) -> bool {
    (1..=20).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn hint_for_serde(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, rest) = rest.split_once('`')?;
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let best = expected
            .iter()
            .min_by_key(|cand| edit_distance(field, cand))?;
        if edit_distance(field, best) <= 3 {
            return Some(format!("did you mean `{best}`?"));
        }
        return Some(format!("valid keys here: {}", expected.join(", ")));
    }
    if message.starts_with("missing field") {
        return Some("see glasswatch.example.toml for every key and its meaning".into());
    }
    if message.contains("invalid type") {
        return Some("check the value's type against glasswatch.example.toml (strings are quoted, lists use [ ])".into());
    }
    if message.contains("unknown variant") {
        return Some("use one of the values listed above".into());
    }
    None
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

type DeTable<'a> = toml::de::DeTable<'a>;
type DeValue<'a> = toml::de::DeValue<'a>;

/// The dotted key path of the innermost key or value whose span holds `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk_key_at(table.get_ref(), offset, &mut path);
    (!path.is_empty()).then(|| path.join("."))
}

fn walk_key_at(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) {
    for (key, value) in table {
        let in_key = key.span().contains(&offset);
        let in_value = value.span().contains(&offset);
        if in_key || in_value {
            path.push(key.get_ref().to_string());
            if in_value && let DeValue::Table(inner) = value.get_ref() {
                walk_key_at(inner, offset, path);
            }
            return;
        }
    }
    // Header-style tables (`[watch]`) span only their header; look inside
    // each table for a key that holds the offset.
    for (key, value) in table {
        if let DeValue::Table(inner) = value.get_ref() {
            let before = path.len();
            path.push(key.get_ref().to_string());
            walk_key_at(inner, offset, path);
            if path.len() > before + 1 {
                return;
            }
            path.truncate(before);
        }
    }
}

/// The span of a key path in the file: the value's span, else the nearest
/// enclosing key's.
fn span_of(table: &DeTable<'_>, path: &[String]) -> Option<std::ops::Range<usize>> {
    let mut best = None;
    let mut current: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut table_ref: &DeTable<'_> = table;
    for segment in path {
        if let Some(value) = current {
            match value.get_ref() {
                DeValue::Table(t) => table_ref = t,
                DeValue::Array(items) => {
                    let item = segment.parse::<usize>().ok().and_then(|i| items.get(i));
                    match item {
                        Some(item) => {
                            best = Some(item.span());
                            current = Some(item);
                            continue;
                        }
                        None => break,
                    }
                }
                _ => break,
            }
        }
        let Some((key, value)) = table_ref
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == segment.as_str())
        else {
            break;
        };
        best = Some(if value.get_ref().as_table().is_some() {
            key.span()
        } else {
            value.span()
        });
        current = Some(value);
    }
    best
}

fn locate(text: &str, table: Option<&DeTable<'_>>, file: &str, problem: Problem) -> ConfigError {
    let line = table
        .and_then(|t| span_of(t, &problem.path))
        .map(|span| line_of(text, span.start));
    // Report the key without list indices; the line points at the entry.
    let key = problem
        .path
        .iter()
        .filter(|seg| seg.parse::<usize>().is_err())
        .cloned()
        .collect::<Vec<_>>()
        .join(".");
    ConfigError {
        file: file.to_owned(),
        line,
        key: (!key.is_empty()).then_some(key),
        message: problem.message,
        hint: problem.hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r##"
[organization]
management_account = "210987654321"
audit_account = "310987654321"
audit_region = "eu-west-1"
target_ous = []
regions = []
[watch]
iam_users = ["break-glass-1"]
roles = ["BreakGlassRole"]
sso_permission_sets = ["BreakGlassAdmin"]
root_sign_in = true
[slack]
mode = "bot"
channel = "#break-glass"
secret_name = "glasswatch/slack"
[session]
quiet_minutes = 60
[store]
retention_days = 2555
[deploy]
name_prefix = "glasswatch"
lambda_architecture = "arm64"
heartbeat_minutes = 15
"##;

    #[test]
    fn parses_the_documented_shape() {
        let config = Config::parse(GOOD, "glasswatch.toml").unwrap();
        assert_eq!(config.watch.iam_users, ["break-glass-1"]);
        assert_eq!(config.deploy.lambda_architecture, LambdaArchitecture::Arm64);
        assert_eq!(config.slack.mode, SlackMode::Bot);
        assert!(config.organization.regions.is_empty());
    }

    #[test]
    fn unknown_key_names_file_line_key_and_suggests() {
        let text = GOOD.replace("iam_users =", "iam_user =");
        let err = Config::parse(&text, "cfg/glasswatch.toml").unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.file, "cfg/glasswatch.toml");
        assert_eq!(e.line, Some(9));
        assert_eq!(e.key.as_deref(), Some("watch.iam_user"));
        assert!(e.message.contains("unknown field"), "{e}");
        assert_eq!(e.hint.as_deref(), Some("did you mean `iam_users`?"));
        let shown = err.to_string();
        assert!(
            shown.starts_with("cfg/glasswatch.toml:9: `watch.iam_user`: unknown field"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_section_is_an_error() {
        let text = format!("{GOOD}\n[wach]\nroles = []\n");
        let err = Config::parse(&text, "g.toml").unwrap_err();
        assert!(err.to_string().contains("unknown field `wach`"), "{err}");
        assert!(err.to_string().contains("did you mean `watch`?"), "{err}");
    }

    #[test]
    fn wrong_type_is_located() {
        let text = GOOD.replace("quiet_minutes = 60", "quiet_minutes = \"sixty\"");
        let err = Config::parse(&text, "g.toml").unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.line, Some(18));
        assert_eq!(e.key.as_deref(), Some("session.quiet_minutes"));
        assert!(e.hint.is_some());
    }

    #[test]
    fn bad_values_are_each_reported_with_line() {
        let text = GOOD
            .replace("\"310987654321\"", "\"31098765432\"")
            .replace(
                "roles = [\"BreakGlassRole\"]",
                "roles = [\"BreakGlassRole\", \"bad role\"]",
            )
            .replace("heartbeat_minutes = 15", "heartbeat_minutes = 0")
            .replace("regions = []", "regions = [\"eu-west-1\", \"mars-1\"]");
        let err = Config::parse(&text, "g.toml").unwrap_err();
        let by_key: Vec<(Option<usize>, Option<&str>)> =
            err.0.iter().map(|e| (e.line, e.key.as_deref())).collect();
        assert!(
            by_key.contains(&(Some(4), Some("organization.audit_account"))),
            "{err}"
        );
        assert!(
            by_key.contains(&(Some(7), Some("organization.regions"))),
            "{err}"
        );
        assert!(by_key.contains(&(Some(10), Some("watch.roles"))), "{err}");
        assert!(
            by_key.contains(&(Some(24), Some("deploy.heartbeat_minutes"))),
            "{err}"
        );
        assert!(err.0.iter().all(|e| e.hint.is_some()), "{err}");
    }

    #[test]
    fn a_region_list_without_the_global_events_region_is_refused_with_the_reason() {
        let text = GOOD.replace("regions = []", "regions = [\"eu-west-1\"]");
        let err = Config::parse(&text, "g.toml").unwrap_err();
        let problem = err
            .0
            .iter()
            .find(|e| e.key.as_deref() == Some("organization.regions"))
            .unwrap_or_else(|| panic!("{err}"));
        assert_eq!(problem.line, Some(7), "{err}");
        assert!(problem.message.contains("us-east-1"), "{err}");
        assert!(problem.message.contains("IAM"), "{err}");
        assert!(problem.hint.as_deref().unwrap().contains("us-east-1"));
        let with = GOOD.replace("regions = []", "regions = [\"eu-west-1\", \"us-east-1\"]");
        assert!(Config::parse(&with, "g.toml").is_ok());
        assert_eq!(global_events_region("us-gov-east-1"), "us-gov-west-1");
        assert_eq!(global_events_region("cn-northwest-1"), "cn-north-1");
    }

    #[test]
    fn empty_watch_list_is_refused() {
        let text = GOOD
            .replace("iam_users = [\"break-glass-1\"]", "")
            .replace("roles = [\"BreakGlassRole\"]", "")
            .replace("sso_permission_sets = [\"BreakGlassAdmin\"]", "")
            .replace("root_sign_in = true", "root_sign_in = false");
        let err = Config::parse(&text, "g.toml").unwrap_err();
        assert!(err.to_string().contains("watches nothing"), "{err}");
    }

    #[test]
    fn env_json_round_trips_with_prefix() {
        let text = format!("{GOOD}\n[severity]\nsession_activity = \"medium\"\n")
            .replace("name_prefix = \"glasswatch\"", "name_prefix = \"gw\"");
        let config = Config::parse(&text, "g.toml").unwrap();
        let json = config.watch_env_json();
        let (watch, prefix) =
            WatchConfig::from_env_json(&serde_json::to_string(&config.watch).unwrap()).unwrap();
        assert_eq!(watch, config.watch);
        assert_eq!(prefix, None);
        // What the Lambdas get compiles to the same watch list, severity
        // overrides and Glasswatch's own secret included.
        let from_env = watch_list_from_env_json(&json).unwrap();
        assert_eq!(from_env.name_prefix(), "gw");
        assert_eq!(
            from_env.severity_of(DetectionKind::SessionActivity),
            Severity::Medium
        );
        assert!(from_env.owns(&config.slack.secret_name));
        assert_eq!(
            format!("{from_env:?}"),
            format!("{:?}", config.watch_list().unwrap())
        );
        let err = WatchConfig::from_env_json(r#"{"iam_user":["x"]}"#).unwrap_err();
        assert!(err.contains("unknown field `iam_user`"), "{err}");
    }

    #[test]
    fn severity_overrides_parse() {
        let text = format!("{GOOD}\n[severity]\nsession_activity = \"medium\"\n");
        let config = Config::parse(&text, "g.toml").unwrap();
        assert_eq!(
            config.severity.get(&DetectionKind::SessionActivity),
            Some(&Severity::Medium)
        );
    }

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../../glasswatch.example.toml");
        Config::parse(text, "glasswatch.example.toml").unwrap();
        let text = include_str!("../../glasswatch.toml");
        Config::parse(text, "glasswatch.toml").unwrap();
    }
}
