//! Detection: classify one CloudTrail record into zero or more detections.
//!
//! This is the precise second filter after the coarse EventBridge patterns
//! (see `patterns`). It is pure: the watch list and the record in, the
//! detections out.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::{IdentityType, Record};
use crate::watch::{WatchList, parse_iam_arn, sso_permission_set};

/// What kind of break-glass use a detection is. DESIGN.md §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionKind {
    RootSignIn,
    BreakGlassSignIn,
    FailedSignIn,
    BreakGlassRoleAssumed,
    /// A break-glass session took credentials for another role (any role,
    /// any account): the chain goes on, and so does the session.
    BreakGlassRoleChained,
    BreakGlassSso,
    BreakGlassCredentialChange,
    MonitoringTamper,
    SessionActivity,
}

impl DetectionKind {
    pub const ALL: [DetectionKind; 9] = [
        Self::RootSignIn,
        Self::BreakGlassSignIn,
        Self::FailedSignIn,
        Self::BreakGlassRoleAssumed,
        Self::BreakGlassRoleChained,
        Self::BreakGlassSso,
        Self::BreakGlassCredentialChange,
        Self::MonitoringTamper,
        Self::SessionActivity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RootSignIn => "root_sign_in",
            Self::BreakGlassSignIn => "break_glass_sign_in",
            Self::FailedSignIn => "failed_sign_in",
            Self::BreakGlassRoleAssumed => "break_glass_role_assumed",
            Self::BreakGlassRoleChained => "break_glass_role_chained",
            Self::BreakGlassSso => "break_glass_sso",
            Self::BreakGlassCredentialChange => "break_glass_credential_change",
            Self::MonitoringTamper => "monitoring_tamper",
            Self::SessionActivity => "session_activity",
        }
    }

    pub fn default_severity(self) -> Severity {
        match self {
            Self::RootSignIn
            | Self::BreakGlassSignIn
            | Self::BreakGlassRoleAssumed
            | Self::BreakGlassSso
            | Self::MonitoringTamper => Severity::Critical,
            Self::FailedSignIn | Self::BreakGlassCredentialChange | Self::BreakGlassRoleChained => {
                Severity::High
            }
            Self::SessionActivity => Severity::Info,
        }
    }
}

impl fmt::Display for DetectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether multi-factor authentication was used, as far as the record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mfa {
    Yes,
    No,
    Unknown,
}

/// A key that links events of one break-glass session. DESIGN.md §2.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum CorrelationKey {
    /// An IAM user console session: `account|user ARN|creationDate`.
    ConsoleSession(String),
    /// A temporary (`ASIA…`) access key id, used or issued.
    AccessKey(String),
    /// A role session ARN (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`),
    /// as issued by `AssumeRole` or seen acting.
    RoleSession(String),
    /// `sourceIdentity`, carried through role chains.
    SourceIdentity(String),
    /// Identity Center: `account|permission set|user`, shared by
    /// `GetRoleCredentials` and the `AWSReservedSSO_<set>_*` role session.
    SsoSession(String),
    /// A federated user (`arn:aws:sts::ACCOUNT:federated-user/NAME`), as
    /// `GetFederationToken` issued it or as it acts.
    FederatedUser(String),
}

impl fmt::Display for CorrelationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, value) = match self {
            Self::ConsoleSession(v) => ("console", v),
            Self::AccessKey(v) => ("key", v),
            Self::RoleSession(v) => ("role-session", v),
            Self::SourceIdentity(v) => ("source-identity", v),
            Self::SsoSession(v) => ("sso", v),
            Self::FederatedUser(v) => ("federated", v),
        };
        write!(f, "{kind}:{value}")
    }
}

/// One detection on one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    pub kind: DetectionKind,
    pub severity: Severity,
    /// One line on what happened, for people.
    pub summary: String,
    pub event_id: String,
    pub event_time: String,
    pub event_source: String,
    pub event_name: String,
    pub account: String,
    pub region: String,
    /// Who acted: an ARN where the record has one.
    pub principal: String,
    pub principal_type: String,
    /// What was acted on, where that matters (the role assumed, the user
    /// changed, the trail stopped).
    pub target: Option<String>,
    pub source_ip: Option<String>,
    pub mfa: Mfa,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    pub keys: Vec<CorrelationKey>,
}

/// STS calls that take a role's credentials.
pub const ROLE_ASSUMPTIONS: [&str; 3] = [
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
];

/// `sts:AssumeRoot` (centralized root access): root credentials for a
/// member account, without its password.
pub const ASSUME_ROOT: &str = "AssumeRoot";

/// STS calls that issue temporary credentials of the caller's own
/// (`federated-user/NAME`, or an MFA session).
pub const STS_CREDENTIAL_ISSUE: [&str; 2] = ["GetFederationToken", "GetSessionToken"];

/// IAM calls that change a watched user's way in, or take it away. Without
/// `userName` they act on the caller itself (root's own credentials, a
/// user's own password).
pub const USER_CREDENTIAL_CHANGES: [&str; 26] = [
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "DeleteLoginProfile",
    "ChangePassword",
    "CreateVirtualMFADevice",
    "DeactivateMFADevice",
    "EnableMFADevice",
    "ResyncMFADevice",
    "DeleteVirtualMFADevice",
    "AttachUserPolicy",
    "DetachUserPolicy",
    "PutUserPolicy",
    "DeleteUserPolicy",
    "PutUserPermissionsBoundary",
    "DeleteUserPermissionsBoundary",
    "AddUserToGroup",
    "RemoveUserFromGroup",
    "UpdateUser",
    "DeleteUser",
    "CreateServiceSpecificCredential",
    "UploadSSHPublicKey",
    "UploadSigningCertificate",
    "UpdateSigningCertificate",
];

/// IAM calls that change who may assume, or what may do, a watched role
/// (or, on Glasswatch's own roles, what Glasswatch may do).
pub const ROLE_CREDENTIAL_CHANGES: [&str; 10] = [
    "UpdateAssumeRolePolicy",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "PutRolePolicy",
    "DeleteRolePolicy",
    "PutRolePermissionsBoundary",
    "DeleteRolePermissionsBoundary",
    "UpdateRole",
    "DeleteRole",
    "UpdateRoleDescription",
];

/// IAM calls that make or widen a way in. From inside a break-glass
/// session they are how access outlives the emergency, whoever they are
/// for.
pub const NEW_WAYS_IN: [&str; 14] = [
    "CreateUser",
    "CreateRole",
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "CreateAccessKey",
    "AttachUserPolicy",
    "PutUserPolicy",
    "AttachRolePolicy",
    "PutRolePolicy",
    "UpdateAssumeRolePolicy",
    "AddUserToGroup",
    "CreateServiceSpecificCredential",
    "CreateSAMLProvider",
    "CreateOpenIDConnectProvider",
];

/// Sign-in events for root's password (`signin.amazonaws.com`).
pub const ROOT_PASSWORD_EVENTS: [&str; 3] = [
    "PasswordUpdated",
    "PasswordRecoveryRequested",
    "PasswordRecoveryCompleted",
];

pub const SSO_EVENTS: [&str; 3] = ["Federate", "GetRoleCredentials", "CreateToken"];

/// Event sources, as CloudTrail writes them.
pub mod source {
    pub const SIGNIN: &str = "signin.amazonaws.com";
    pub const STS: &str = "sts.amazonaws.com";
    pub const SSO: &str = "sso.amazonaws.com";
    pub const SSO_OAUTH: &str = "sso-oauth.amazonaws.com";
    pub const IAM: &str = "iam.amazonaws.com";
    pub const CLOUDTRAIL: &str = "cloudtrail.amazonaws.com";
    pub const EVENTS: &str = "events.amazonaws.com";
    pub const LAMBDA: &str = "lambda.amazonaws.com";
    pub const CLOUDFORMATION: &str = "cloudformation.amazonaws.com";
    pub const SQS: &str = "sqs.amazonaws.com";
    pub const SECRETS_MANAGER: &str = "secretsmanager.amazonaws.com";
    pub const DYNAMODB: &str = "dynamodb.amazonaws.com";
    pub const ORGANIZATIONS: &str = "organizations.amazonaws.com";
    pub const ACCOUNT: &str = "account.amazonaws.com";
}

/// Where a call names the resource it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameField {
    /// `requestParameters.<field>`.
    Request(&'static str),
    /// `responseElements.<field>`: for calls whose request holds only an
    /// id (`DeleteEventSourceMapping` names its function in the answer).
    Response(&'static str),
}

/// One kind of tampering: calls of one service, on Glasswatch's own
/// resources (named by one of `fields`) unless `owned_only` is off, when
/// every such call is tampering (a trail stopped, an SCP attached). The
/// detector and the EventBridge patterns both read [`TAMPER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TamperFamily {
    /// The rule id: `tamper-<what>`.
    pub id: &'static str,
    pub source: &'static str,
    pub events: &'static [&'static str],
    pub fields: &'static [NameField],
    pub owned_only: bool,
    /// Event names carry an API-version suffix (`UpdateFunctionCode20150331v2`).
    pub versioned_names: bool,
}

const fn family(
    id: &'static str,
    source: &'static str,
    events: &'static [&'static str],
    fields: &'static [NameField],
    owned_only: bool,
) -> TamperFamily {
    TamperFamily {
        id,
        source,
        events,
        fields,
        owned_only,
        versioned_names: false,
    }
}

/// Every kind of tampering with what Glasswatch relies on.
pub const TAMPER: [TamperFamily; 10] = [
    family(
        "tamper-trail",
        source::CLOUDTRAIL,
        &[
            "StopLogging",
            "DeleteTrail",
            "UpdateTrail",
            "PutEventSelectors",
            "DeleteEventDataStore",
        ],
        &[NameField::Request("name"), NameField::Request("trailName")],
        false,
    ),
    family(
        "tamper-events",
        source::EVENTS,
        &[
            "DisableRule",
            "DeleteRule",
            "RemoveTargets",
            "PutRule",
            "PutTargets",
            "DeleteEventBus",
            "PutPermission",
            "RemovePermission",
        ],
        &[
            NameField::Request("name"),
            NameField::Request("rule"),
            NameField::Request("eventBusName"),
        ],
        true,
    ),
    TamperFamily {
        id: "tamper-lambda",
        source: source::LAMBDA,
        events: &[
            "DeleteFunction",
            "UpdateFunctionCode",
            "UpdateFunctionConfiguration",
            "RemovePermission",
            "PutFunctionConcurrency",
            "DeleteFunctionConcurrency",
            "DeleteEventSourceMapping",
            "UpdateEventSourceMapping",
        ],
        fields: &[
            NameField::Request("functionName"),
            NameField::Response("functionArn"),
        ],
        owned_only: true,
        versioned_names: true,
    },
    family(
        "tamper-stack",
        source::CLOUDFORMATION,
        &[
            "DeleteStack",
            "UpdateStack",
            "DeleteStackInstances",
            "DeleteStackSet",
            "UpdateStackSet",
            "UpdateStackInstances",
            "CreateChangeSet",
            "ExecuteChangeSet",
        ],
        &[
            NameField::Request("stackName"),
            NameField::Request("stackSetName"),
        ],
        true,
    ),
    family(
        "tamper-iam",
        source::IAM,
        &ROLE_CREDENTIAL_CHANGES,
        &[NameField::Request("roleName")],
        true,
    ),
    family(
        "tamper-sqs",
        source::SQS,
        &["DeleteQueue", "SetQueueAttributes", "PurgeQueue"],
        &[NameField::Request("queueUrl")],
        true,
    ),
    family(
        "tamper-secret",
        source::SECRETS_MANAGER,
        &[
            "PutSecretValue",
            "UpdateSecret",
            "DeleteSecret",
            "RotateSecret",
            "PutResourcePolicy",
            "DeleteResourcePolicy",
        ],
        &[NameField::Request("secretId")],
        true,
    ),
    family(
        "tamper-dynamodb",
        source::DYNAMODB,
        &[
            "UpdateTable",
            "DeleteTable",
            "UpdateTimeToLive",
            "UpdateContinuousBackups",
            "PutResourcePolicy",
            "DeleteResourcePolicy",
        ],
        &[
            NameField::Request("tableName"),
            NameField::Request("resourceArn"),
        ],
        true,
    ),
    family(
        "tamper-org",
        source::ORGANIZATIONS,
        &[
            "AttachPolicy",
            "DetachPolicy",
            "UpdatePolicy",
            "CreatePolicy",
            "DeletePolicy",
            "PutResourcePolicy",
            "DeleteResourcePolicy",
            "RemoveAccountFromOrganization",
            "LeaveOrganization",
            "DisableAWSServiceAccess",
            "DeregisterDelegatedAdministrator",
            "MoveAccount",
        ],
        &[],
        false,
    ),
    family(
        "tamper-account",
        source::ACCOUNT,
        &["EnableRegion", "DisableRegion"],
        &[],
        false,
    ),
];

/// A Lambda event name without its API-version suffix.
pub fn lambda_operation(event_name: &str) -> &str {
    let digits = event_name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(event_name.len());
    &event_name[..digits]
}

/// What one rule found, before the record's context is attached.
struct Finding {
    kind: DetectionKind,
    summary: String,
    target: Option<String>,
}

impl Finding {
    fn new(kind: DetectionKind, summary: String, target: Option<&str>) -> Self {
        Self {
            kind,
            summary,
            target: target.map(str::to_owned),
        }
    }
}

/// Classify one record. Returns no detection for ordinary activity.
pub fn classify(watch: &WatchList, record: &Record) -> Vec<Detection> {
    let mut findings = Vec::new();
    match record.event_source.as_str() {
        source::SIGNIN => sign_in(watch, record, &mut findings),
        source::STS => sts(watch, record, &mut findings),
        source::SSO | source::SSO_OAUTH => sso(watch, record, &mut findings),
        source::IAM => credential_change(watch, record, &mut findings),
        _ => {}
    }
    tamper(watch, record, &mut findings);
    if findings.is_empty() && is_break_glass_principal(watch, record) {
        findings.push(Finding::new(
            DetectionKind::SessionActivity,
            format!(
                "{} called {}:{}{}",
                display_principal(record),
                short_source(&record.event_source),
                record.event_name,
                record
                    .error_code
                    .as_deref()
                    .map(|e| format!(" (failed: {e})"))
                    .unwrap_or_default()
            ),
            None,
        ));
    }
    if findings.is_empty() {
        return Vec::new();
    }
    let keys = correlation_keys(record);
    findings
        .into_iter()
        .map(|f| detection_with_keys(watch, record, f.kind, f.summary, f.target, keys.clone()))
        .collect()
}

/// A detection of `kind` on `record`, with the record's context and
/// correlation keys.
pub fn detection_of(
    watch: &WatchList,
    record: &Record,
    kind: DetectionKind,
    summary: String,
    target: Option<&str>,
) -> Detection {
    let keys = correlation_keys(record);
    detection_with_keys(
        watch,
        record,
        kind,
        summary,
        target.map(str::to_owned),
        keys,
    )
}

/// [`detection_of`] with the record's keys already computed (once per
/// record, whatever the number of findings).
fn detection_with_keys(
    watch: &WatchList,
    record: &Record,
    kind: DetectionKind,
    summary: String,
    target: Option<String>,
    keys: Vec<CorrelationKey>,
) -> Detection {
    Detection {
        kind,
        severity: watch.severity_of(kind),
        summary,
        event_id: record.event_id.clone(),
        event_time: record.event_time.clone(),
        event_source: record.event_source.clone(),
        event_name: record.event_name.clone(),
        account: record.account.clone(),
        region: record.region.clone(),
        principal: display_principal(record),
        principal_type: record.identity.kind.as_str().to_owned(),
        target,
        source_ip: record.source_ip.clone(),
        mfa: mfa(record),
        user_agent: record.user_agent.clone(),
        error_code: record.error_code.clone(),
        keys,
    }
}

fn short_source(event_source: &str) -> &str {
    event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source)
}

/// Did the call fail? CloudTrail sets `errorCode`, and sign-in events say
/// `Failure` in their response.
fn outcome_failed(record: &Record, response_key: &str) -> bool {
    record.error_code.is_some()
        || record
            .response_str(&[response_key])
            .is_some_and(|v| !v.eq_ignore_ascii_case("Success"))
}

fn sign_in(watch: &WatchList, record: &Record, out: &mut Vec<Finding>) {
    let who = display_principal(record);
    match record.event_name.as_str() {
        "ConsoleLogin" => {
            let failed = outcome_failed(record, "ConsoleLogin");
            if record.identity.kind == IdentityType::Root {
                if watch.root() {
                    out.push(if failed {
                        Finding::new(
                            DetectionKind::FailedSignIn,
                            format!("failed root sign-in to account {}", record.account),
                            None,
                        )
                    } else {
                        Finding::new(
                            DetectionKind::RootSignIn,
                            format!("root signed in to account {}", record.account),
                            None,
                        )
                    });
                }
            } else if is_break_glass_principal(watch, record) {
                // A watched IAM user, or a federated user (a console
                // session through the federation endpoint) whose issuer is.
                out.push(if failed {
                    Finding::new(
                        DetectionKind::FailedSignIn,
                        format!("failed console sign-in as {who}"),
                        None,
                    )
                } else {
                    Finding::new(
                        DetectionKind::BreakGlassSignIn,
                        format!("{who} signed in to the console"),
                        None,
                    )
                });
            }
        }
        name if ROOT_PASSWORD_EVENTS.contains(&name)
            && record.identity.kind == IdentityType::Root
            && watch.root() =>
        {
            out.push(Finding::new(
                DetectionKind::BreakGlassCredentialChange,
                format!(
                    "root's password in account {}: {name}{}",
                    record.account,
                    failed_note(record)
                ),
                Some("root"),
            ));
        }
        "SwitchRole" => {
            // The target is in `SwitchTo`; some records omit it, and then a
            // successful switch already acts as the new role session.
            let issuer_arn = record
                .identity
                .session_issuer
                .as_ref()
                .and_then(|i| i.arn.as_deref());
            let Some(role) = record.additional_str("SwitchTo").or(issuer_arn) else {
                return;
            };
            if watch.role_arn_watched(role) {
                let failed = outcome_failed(record, "SwitchRole");
                out.push(if failed {
                    Finding::new(
                        DetectionKind::FailedSignIn,
                        format!("{who} failed to switch to role {role}"),
                        Some(role),
                    )
                } else {
                    Finding::new(
                        DetectionKind::BreakGlassRoleAssumed,
                        format!("{who} switched to role {role} in the console"),
                        Some(role),
                    )
                });
            }
        }
        _ => {}
    }
}

fn sts(watch: &WatchList, record: &Record, out: &mut Vec<Finding>) {
    let name = record.event_name.as_str();
    let who = display_principal(record);
    let ok = record.error_code.is_none();
    if name == ASSUME_ROOT && watch.root() {
        let account = record.request_str("targetPrincipal").unwrap_or("?");
        out.push(if ok {
            Finding::new(
                DetectionKind::RootSignIn,
                format!("{who} took root credentials for account {account} (sts:AssumeRoot)"),
                Some(account),
            )
        } else {
            Finding::new(
                DetectionKind::FailedSignIn,
                format!(
                    "{who} failed to take root credentials for account {account}{}",
                    failed_note(record)
                ),
                Some(account),
            )
        });
        return;
    }
    if STS_CREDENTIAL_ISSUE.contains(&name) && is_break_glass_principal(watch, record) {
        out.push(Finding::new(
            DetectionKind::BreakGlassCredentialChange,
            format!(
                "{who} issued itself temporary credentials ({name}){}",
                failed_note(record)
            ),
            record.response_str(&["federatedUser", "arn"]),
        ));
        return;
    }
    if !ROLE_ASSUMPTIONS.contains(&name) {
        return;
    }
    let Some(role) = record.request_str("roleArn") else {
        return;
    };
    let session = record.request_str("roleSessionName").unwrap_or("?");
    if watch.role_arn_watched(role) {
        out.push(if ok {
            Finding::new(
                DetectionKind::BreakGlassRoleAssumed,
                format!("{who} assumed {role} as session {session}"),
                Some(role),
            )
        } else {
            Finding::new(
                DetectionKind::FailedSignIn,
                format!(
                    "{who} failed to assume {role} ({})",
                    record.error_code.as_deref().unwrap_or_default()
                ),
                Some(role),
            )
        });
    } else if ok && is_break_glass_principal(watch, record) {
        // The credentials a break-glass session takes are break-glass,
        // whatever role they are for: the issued key and role session are
        // this event's correlation keys, so their use joins the session.
        out.push(Finding::new(
            DetectionKind::BreakGlassRoleChained,
            format!("{who} (break-glass) went on to assume {role} as session {session}"),
            Some(role),
        ));
    }
}

/// The permission set and account of an Identity Center federation.
fn sso_target(record: &Record) -> (Option<&str>, Option<&str>) {
    let set = record
        .request_str("roleName")
        .or_else(|| record.service_detail_str("role_name"))
        .or_else(|| record.service_detail_str("roleName"));
    let account = record
        .request_str("accountId")
        .or_else(|| record.service_detail_str("account_id"))
        .or_else(|| record.service_detail_str("accountId"));
    (set, account)
}

fn sso(watch: &WatchList, record: &Record, out: &mut Vec<Finding>) {
    if !SSO_EVENTS.contains(&record.event_name.as_str()) || !watch.watches_sso() {
        return;
    }
    let (set, account) = sso_target(record);
    let user = sso_user(record);
    let watched = set.is_some_and(|s| watch.permission_set_watched(s))
        || account.is_some_and(|a| watch.sso_account_watched(a))
        || sso_user_is_watched(watch, record);
    if !watched {
        return;
    }
    let who = user.unwrap_or("an Identity Center user");
    let target = match (set, account) {
        (Some(s), Some(a)) => Some(format!("{s} in {a}")),
        (Some(s), None) => Some(s.to_owned()),
        (None, Some(a)) => Some(a.to_owned()),
        (None, None) => None,
    };
    let what = target.as_deref().unwrap_or("Identity Center");
    out.push(if record.error_code.is_some() {
        Finding::new(
            DetectionKind::FailedSignIn,
            format!("{who} failed {} for {what}", record.event_name),
            target.as_deref(),
        )
    } else {
        Finding::new(
            DetectionKind::BreakGlassSso,
            format!("{who}: Identity Center {} for {what}", record.event_name),
            target.as_deref(),
        )
    });
}

/// The Identity Center user of a record: its user name where the record
/// has one, else the identity-store user id.
fn sso_user(record: &Record) -> Option<&str> {
    record
        .identity
        .user_name
        .as_deref()
        .or_else(|| record.additional_str("UserName"))
        .or(record.identity.on_behalf_of.as_deref())
}

/// Watched by user name or by identity-store user id.
fn sso_user_is_watched(watch: &WatchList, record: &Record) -> bool {
    [
        record.identity.user_name.as_deref(),
        record.additional_str("UserName"),
        record.identity.on_behalf_of.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|u| watch.sso_user_watched(u))
}

fn credential_change(watch: &WatchList, record: &Record, out: &mut Vec<Finding>) {
    let name = record.event_name.as_str();
    let account = Some(record.account.as_str());
    let who = display_principal(record);
    let id = &record.identity;
    if USER_CREDENTIAL_CHANGES.contains(&name) {
        match record.request_str("userName") {
            Some(user) if watch.user_watched(account, user) => {
                out.push(Finding::new(
                    DetectionKind::BreakGlassCredentialChange,
                    format!(
                        "{who} called {name} on break-glass user {user}{}",
                        failed_note(record)
                    ),
                    Some(user),
                ));
            }
            Some(_) => {}
            // No `userName`: the call acts on the caller itself (or, for an
            // MFA device, names it by serial number).
            None => {
                let device_user = record
                    .request_str("serialNumber")
                    .and_then(|s| s.rsplit('/').next())
                    .filter(|u| watch.user_watched(account, u));
                if let Some(user) = device_user {
                    out.push(Finding::new(
                        DetectionKind::BreakGlassCredentialChange,
                        format!(
                            "{who} called {name} on break-glass user {user}{}",
                            failed_note(record)
                        ),
                        Some(user),
                    ));
                } else if id.kind == IdentityType::Root && watch.root() {
                    out.push(Finding::new(
                        DetectionKind::BreakGlassCredentialChange,
                        format!(
                            "root called {name} on its own credentials in account {}{}",
                            record.account,
                            failed_note(record)
                        ),
                        Some("root"),
                    ));
                } else if id.kind == IdentityType::IAMUser
                    && is_break_glass_principal(watch, record)
                {
                    let user = id.user_name.as_deref().unwrap_or("?");
                    out.push(Finding::new(
                        DetectionKind::BreakGlassCredentialChange,
                        format!(
                            "break-glass user {user} called {name} on its own credentials{}",
                            failed_note(record)
                        ),
                        Some(user),
                    ));
                }
            }
        }
    } else if ROLE_CREDENTIAL_CHANGES.contains(&name)
        && let Some(role) = record
            .request_str("roleName")
            .filter(|r| watch.role_watched(account, r))
    {
        out.push(Finding::new(
            DetectionKind::BreakGlassCredentialChange,
            format!(
                "{who} called {name} on break-glass role {role}{}",
                failed_note(record)
            ),
            Some(role),
        ));
    }
    // From inside a break-glass session, a new way in for anyone is how
    // access outlives the emergency.
    if out.is_empty() && NEW_WAYS_IN.contains(&name) && is_break_glass_principal(watch, record) {
        let target = record
            .request_str("userName")
            .or_else(|| record.request_str("roleName"))
            .or_else(|| record.request_str("groupName"))
            .or_else(|| record.request_str("name"));
        let on = target.map(|t| format!(" for {t}")).unwrap_or_default();
        out.push(Finding::new(
            DetectionKind::BreakGlassCredentialChange,
            format!(
                "{who} (break-glass) called {name}{on}: a new way in{}",
                failed_note(record)
            ),
            target,
        ));
    }
}

fn failed_note(record: &Record) -> String {
    record
        .error_code
        .as_deref()
        .map(|e| format!(" (failed: {e})"))
        .unwrap_or_default()
}

/// The name inside a name, ARN or URL: `function:NAME[:qualifier]`,
/// `stack/NAME/id`, `rule/NAME`, `table/NAME`, `secret:NAME-XXXXXX`, or
/// a queue URL's last segment.
fn resource_name(value: &str) -> &str {
    if let Some(rest) = value.split_once(":function:").map(|(_, r)| r) {
        return rest.split(':').next().unwrap_or(rest);
    }
    if let Some(rest) = value.split_once(":stack/").map(|(_, r)| r) {
        return rest.split('/').next().unwrap_or(rest);
    }
    if let Some(rest) = value.split_once(":stackset/").map(|(_, r)| r) {
        return rest.split(':').next().unwrap_or(rest);
    }
    if let Some(rest) = value.split_once(":rule/").map(|(_, r)| r) {
        return rest.rsplit('/').next().unwrap_or(rest);
    }
    if let Some(rest) = value.split_once(":event-bus/").map(|(_, r)| r) {
        return rest;
    }
    if let Some(rest) = value.split_once(":table/").map(|(_, r)| r) {
        return rest.split('/').next().unwrap_or(rest);
    }
    if let Some(rest) = value.split_once(":secret:").map(|(_, r)| r) {
        // Secrets Manager appends `-` and six characters to the name.
        return rest
            .rsplit_once('-')
            .filter(|(_, suffix)| suffix.len() == 6)
            .map_or(rest, |(name, _)| name);
    }
    if value.starts_with("https://") {
        return value
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(value);
    }
    value
}

fn name_field(record: &Record, field: NameField) -> Option<&str> {
    match field {
        NameField::Request(key) => record.request_str(key),
        NameField::Response(key) => record.response_str(&[key]),
    }
}

fn tamper(watch: &WatchList, record: &Record, out: &mut Vec<Finding>) {
    let name = record.event_name.as_str();
    for family in TAMPER.iter().filter(|f| f.source == record.event_source) {
        let operation = if family.versioned_names {
            lambda_operation(name)
        } else {
            name
        };
        if !family.events.contains(&operation) {
            continue;
        }
        let resource = family
            .fields
            .iter()
            .find_map(|f| name_field(record, *f))
            .map(resource_name);
        if family.owned_only && !resource.is_some_and(|r| watch.owns(r)) {
            continue;
        }
        // The agents install and remove the rules that follow a session's
        // credentials themselves (`crate::follow`); that is not tampering.
        if family.source == source::EVENTS
            && resource.is_some_and(|r| crate::follow::is_follow_rule(watch.name_prefix(), r))
            && is_own_agent(watch, record)
        {
            continue;
        }
        if operation == "MoveAccount" && !moves_out_of_targets(watch, record) {
            continue;
        }
        let who = display_principal(record);
        let on = match (resource, operation) {
            (Some(r), _) => format!(" on {r}"),
            (None, "MoveAccount") => format!(
                " for account {} to {}, outside the OUs Glasswatch covers",
                record.request_str("accountId").unwrap_or("?"),
                record.request_str("destinationParentId").unwrap_or("?")
            ),
            (None, "EnableRegion" | "DisableRegion") => format!(
                " for {} (Glasswatch's coverage of regions changes with it)",
                record.request_str("regionName").unwrap_or("?")
            ),
            (None, _) => String::new(),
        };
        out.push(Finding::new(
            DetectionKind::MonitoringTamper,
            format!("{who} called {operation}{on}{}", failed_note(record)),
            resource,
        ));
        return;
    }
}

/// Is the caller Glasswatch's own agent (its role `<prefix>-agent-<region>`)?
fn is_own_agent(watch: &WatchList, record: &Record) -> bool {
    let own = format!("{}-agent-", watch.name_prefix());
    record.identity.kind == IdentityType::AssumedRole
        && record
            .identity
            .session_issuer
            .as_ref()
            .and_then(|i| i.user_name.as_deref())
            .is_some_and(|role| role.starts_with(&own))
}

/// `MoveAccount` to a parent that is not one of the target OUs. With the
/// root as the target (no OUs listed) no move leaves coverage. The
/// detector does not know the OU tree, so a move into a child OU of a
/// target OU counts as leaving it too: it is rare, and better asked about.
fn moves_out_of_targets(watch: &WatchList, record: &Record) -> bool {
    let targets = watch.target_ous();
    !targets.is_empty()
        && record
            .request_str("destinationParentId")
            .is_none_or(|to| !targets.iter().any(|t| t == to))
}

/// Is the acting identity itself a break-glass principal?
pub fn is_break_glass_principal(watch: &WatchList, record: &Record) -> bool {
    let id = &record.identity;
    let account = id.account_id.as_deref().or(Some(record.account.as_str()));
    // A break-glass source identity survives every role hop.
    if id
        .source_identity
        .as_deref()
        .is_some_and(|v| watch.source_identity_watched(v))
    {
        return true;
    }
    match &id.kind {
        IdentityType::Root => watch.root(),
        IdentityType::IAMUser => {
            if let Some(arn) = id.arn.as_deref()
                && parse_iam_arn(arn, "user").is_some()
            {
                return watch.user_arn_watched(arn);
            }
            id.user_name
                .as_deref()
                .is_some_and(|u| watch.user_watched(account, u))
        }
        IdentityType::AssumedRole | IdentityType::Role => {
            let Some(issuer) = &id.session_issuer else {
                // No issuer: judge by the role inside the session ARN, with
                // exact case, as the EventBridge pattern can.
                return assumed_role_name(id.arn.as_deref()).is_some_and(|role| {
                    watch.role_watched_exact_case(account, role)
                        || watch.sso_role_watched(account, role)
                });
            };
            let issuer_account = issuer.account_id.as_deref().or(account);
            if let Some(arn) = issuer.arn.as_deref()
                && let Some((issuer_account, role)) = parse_iam_arn(arn, "role")
            {
                return watch.role_arn_watched(arn)
                    || watch.sso_role_watched(Some(issuer_account), role);
            }
            issuer.user_name.as_deref().is_some_and(|role| {
                watch.role_watched(issuer_account, role)
                    || watch.sso_role_watched(issuer_account, role)
            })
        }
        // `GetFederationToken` by a watched user or by root: the
        // federated user's issuer is that user, or root.
        IdentityType::FederatedUser => {
            id.session_issuer
                .as_ref()
                .is_some_and(|issuer| match issuer.kind.as_deref() {
                    Some("Root") => watch.root(),
                    _ => {
                        issuer
                            .arn
                            .as_deref()
                            .is_some_and(|arn| watch.user_arn_watched(arn))
                            || issuer.user_name.as_deref().is_some_and(|u| {
                                watch.user_watched(issuer.account_id.as_deref().or(account), u)
                            })
                    }
                })
        }
        IdentityType::Unknown | IdentityType::IdentityCenterUser => {
            sso_user_is_watched(watch, record)
        }
        _ => false,
    }
}

/// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` → `ROLE`.
fn assumed_role_name(arn: Option<&str>) -> Option<&str> {
    let rest = arn?.split_once(":assumed-role/")?.1;
    rest.split('/').next()
}

/// The session part of `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
fn assumed_role_session(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.split_once(":assumed-role/")?.1;
    rest.split_once('/')
}

/// Who acted, for display: an ARN where there is one.
pub fn display_principal(record: &Record) -> String {
    let id = &record.identity;
    if id.kind == IdentityType::Root {
        return id
            .arn
            .clone()
            .unwrap_or_else(|| format!("arn:aws:iam::{}:root", record.account));
    }
    id.arn
        .clone()
        .or_else(|| id.user_name.clone())
        .or_else(|| id.on_behalf_of.clone())
        .or_else(|| id.principal_id.clone())
        .or_else(|| id.invoked_by.clone())
        .unwrap_or_else(|| "unknown principal".to_owned())
}

fn mfa(record: &Record) -> Mfa {
    if let Some(used) = record.additional_str("MFAUsed") {
        return if used.eq_ignore_ascii_case("Yes") {
            Mfa::Yes
        } else {
            Mfa::No
        };
    }
    match record.identity.mfa_authenticated {
        Some(true) => Mfa::Yes,
        Some(false) => Mfa::No,
        None => Mfa::Unknown,
    }
}

/// A temporary (STS-issued) access key: `ASIA…`.
pub(crate) fn temporary_key(key: Option<&str>) -> Option<&str> {
    key.filter(|k| k.starts_with("ASIA"))
}

/// The keys that link this record to others of the same session.
pub fn correlation_keys(record: &Record) -> Vec<CorrelationKey> {
    let id = &record.identity;
    let mut keys = Vec::new();
    if let Some(key) = temporary_key(id.access_key_id.as_deref()) {
        keys.push(CorrelationKey::AccessKey(key.to_owned()));
    }
    if let Some(issued) = temporary_key(record.response_str(&["credentials", "accessKeyId"])) {
        keys.push(CorrelationKey::AccessKey(issued.to_owned()));
    }
    if let Some(arn) = record.response_str(&["assumedRoleUser", "arn"]) {
        keys.push(CorrelationKey::RoleSession(arn.to_owned()));
    }
    if let Some(arn) = record.response_str(&["federatedUser", "arn"]) {
        keys.push(CorrelationKey::FederatedUser(arn.to_owned()));
    }
    if let Some(source_identity) = id
        .source_identity
        .as_deref()
        .or_else(|| record.request_str("sourceIdentity"))
    {
        keys.push(CorrelationKey::SourceIdentity(source_identity.to_owned()));
    }
    match id.kind {
        IdentityType::IAMUser => {
            // A successful console sign-in starts the console session whose
            // calls carry `creationDate` = the sign-in time, so the sign-in
            // shares their key.
            let created = id.session_created.as_deref().or_else(|| {
                (record.event_source == source::SIGNIN
                    && record.event_name == "ConsoleLogin"
                    && !outcome_failed(record, "ConsoleLogin"))
                .then_some(record.event_time.as_str())
            });
            if let (Some(arn), Some(created)) = (id.arn.as_deref(), created) {
                keys.push(CorrelationKey::ConsoleSession(format!(
                    "{}|{arn}|{created}",
                    record.account
                )));
            }
        }
        IdentityType::FederatedUser => {
            if let Some(arn) = id.arn.as_deref() {
                keys.push(CorrelationKey::FederatedUser(arn.to_owned()));
            }
        }
        IdentityType::AssumedRole => {
            if let Some(arn) = id.arn.as_deref() {
                keys.push(CorrelationKey::RoleSession(arn.to_owned()));
                if let Some((role, session)) = assumed_role_session(arn)
                    && let Some(set) = sso_permission_set(role)
                {
                    keys.push(sso_key(&record.account, set, session));
                }
            }
        }
        _ => {}
    }
    if record.event_source == source::SSO
        && record.event_name == "GetRoleCredentials"
        && let ((Some(set), Some(account)), Some(user)) = (sso_target(record), sso_user(record))
    {
        keys.push(sso_key(account, set, user));
    }
    keys.sort();
    keys.dedup();
    keys
}

fn sso_key(account: &str, set: &str, user: &str) -> CorrelationKey {
    CorrelationKey::SsoSession(format!(
        "{account}|{}|{}",
        set.to_ascii_lowercase(),
        user.to_ascii_lowercase()
    ))
}
