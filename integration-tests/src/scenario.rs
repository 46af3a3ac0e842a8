//! The scripted break-glass incident, played through the pipeline by the
//! end-to-end tests and by `cargo xtask demo`.
//!
//! In an [`Org`] of five accounts and two regions:
//! 1. **root sign-in**: the root user of `prod` signs in to the console;
//! 2. **break-glass chain**: IAM user `break-glass-1` signs in to the
//!    console of `shared-services`, lists buckets, assumes `BreakGlassRole`
//!    in `prod` (logged in both accounts), terminates an instance there,
//!    chains into `BreakGlassRole` in `dev` (logged in both again), and
//!    looks around `dev` in both regions: one session across three
//!    accounts;
//! 3. **Identity Center**: `emergency.admin` gets `BreakGlassAdmin`
//!    credentials for `prod` from the management account's Identity
//!    Center, and the `AWSReservedSSO_BreakGlassAdmin_*` role acts in
//!    `prod`;
//! 4. **tamper**: `platform-admin/deploy-bot` stops the organization trail;
//! 5. **noise** that must not alert: `alice` signing in, a deploy role
//!    reading and assuming a read-only role, a `DisableRule` on someone
//!    else's rule, Identity Center read-only credentials.
//!
//! Records come from the JSON templates in `tests/fixtures/incident/`,
//! with accounts, ids and times filled in. Event ids are UUIDv5 of a salt
//! and the step's label, so one salt always gives the same events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use glasswatch_core::DetectionKind;
use glasswatch_core::session::session_id;
use serde_json::{Value, json};

use crate::org::Org;

/// 2026-11-20T09:00:00Z: when the scripted incident starts by default.
pub const INCIDENT_START: i64 = 1_795_165_200;

const TEMPLATES: [(&str, &str); 8] = [
    (
        "root-console-login",
        include_str!("../tests/fixtures/incident/root-console-login.json"),
    ),
    (
        "user-console-login",
        include_str!("../tests/fixtures/incident/user-console-login.json"),
    ),
    (
        "user-console-call",
        include_str!("../tests/fixtures/incident/user-console-call.json"),
    ),
    (
        "role-call",
        include_str!("../tests/fixtures/incident/role-call.json"),
    ),
    (
        "assume-role-by-console-user",
        include_str!("../tests/fixtures/incident/assume-role-by-console-user.json"),
    ),
    (
        "assume-role-by-role",
        include_str!("../tests/fixtures/incident/assume-role-by-role.json"),
    ),
    (
        "assume-role-owner-copy",
        include_str!("../tests/fixtures/incident/assume-role-owner-copy.json"),
    ),
    (
        "sso-get-role-credentials",
        include_str!("../tests/fixtures/incident/sso-get-role-credentials.json"),
    ),
];

const UUID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x2f0b_55d6_94a1_4e3c_8b7e_c1d2_e3f4_a5b6);

/// Session names of the incident.
pub const ROOT: &str = "root sign-in";
pub const CHAIN: &str = "break-glass chain";
pub const SSO: &str = "Identity Center break-glass";
pub const TAMPER: &str = "trail stopped";
/// [`Scenario::role_chain_out`]'s session.
pub const CHAIN_OUT: &str = "role chain out of the session";

/// One CloudTrail event of the scenario, as EventBridge hands it to the
/// agent of its account and region.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioEvent {
    pub label: &'static str,
    /// The account and region whose default bus delivers it.
    pub account: String,
    pub region: String,
    pub event_id: String,
    pub time: i64,
    /// The EventBridge envelope (`detail` is the CloudTrail record).
    pub envelope: Value,
    /// The session it belongs to; `None` for noise, which must not alert.
    pub session: Option<&'static str>,
}

impl ScenarioEvent {
    pub fn record(&self) -> &Value {
        &self.envelope["detail"]
    }
}

/// What one session must look like once every event is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedSession {
    pub name: &'static str,
    /// Named after its earliest event.
    pub session_id: String,
    pub event_ids: BTreeSet<String>,
    pub accounts: BTreeSet<String>,
    pub regions: BTreeSet<String>,
    pub kinds: BTreeSet<DetectionKind>,
    /// A part of the anchor principal.
    pub principal_contains: &'static str,
}

/// The incident: its organization and events in the order they happened.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub org: Org,
    pub events: Vec<ScenarioEvent>,
    expected: Vec<(&'static str, &'static str, Vec<DetectionKind>)>,
}

/// One step: a template and what to fill in.
struct Step {
    label: &'static str,
    template: &'static str,
    account: String,
    region: &'static str,
    offset: i64,
    session: Option<&'static str>,
    vars: Vec<(&'static str, String)>,
}

/// A [`Step`] from its parts, in the order the scenario lists them.
fn step(
    label: &'static str,
    template: &'static str,
    account: &str,
    region: &'static str,
    offset: i64,
    session: Option<&'static str>,
    vars: Vec<(&'static str, String)>,
) -> Step {
    Step {
        label,
        template,
        account: account.to_owned(),
        region,
        offset,
        session,
        vars,
    }
}

impl Step {
    /// The event: its template filled in, in its EventBridge envelope.
    fn build(self, start: i64, salt: &str) -> Result<ScenarioEvent> {
        let time = start + self.offset;
        let event_id =
            uuid::Uuid::new_v5(&UUID_NAMESPACE, format!("{salt}/{}", self.label).as_bytes())
                .to_string();
        let mut vars: BTreeMap<&str, String> = BTreeMap::from([
            ("account", self.account.clone()),
            ("region", self.region.to_owned()),
            ("time", rfc3339(time)?),
            ("event_id", event_id.clone()),
            ("ip", RESPONDER_IP.to_owned()),
            ("user_agent", CLI.to_owned()),
        ]);
        vars.extend(self.vars);
        let template = TEMPLATES
            .iter()
            .find(|(name, _)| *name == self.template)
            .map(|(_, text)| *text)
            .with_context(|| format!("no template {}", self.template))?;
        let record = fill(self.template, template, &vars)?;
        Ok(ScenarioEvent {
            label: self.label,
            envelope: envelope(record, &self.account, self.region, &rfc3339(time)?),
            account: self.account,
            region: self.region.to_owned(),
            event_id,
            time,
            session: self.session,
        })
    }
}

fn rfc3339(time: i64) -> Result<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(time)
        .with_context(|| format!("time {time} out of range"))?;
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// Fill a template's `{{name}}` placeholders (JSON-escaped inside strings)
/// and `"{{json:name}}"` ones (raw JSON, quotes included).
pub fn fill(name: &str, template: &str, vars: &BTreeMap<&str, String>) -> Result<Value> {
    let mut text = template.to_owned();
    for (key, value) in vars {
        text = text.replace(&format!("\"{{{{json:{key}}}}}\""), value);
        let escaped = serde_json::to_string(value)?;
        text = text.replace(&format!("{{{{{key}}}}}"), &escaped[1..escaped.len() - 1]);
    }
    if let Some(start) = text.find("{{") {
        let rest = &text[start..];
        let end = rest.find("}}").map_or(rest.len(), |e| e + 2);
        bail!("template {name}: no value for {}", &rest[..end]);
    }
    serde_json::from_str(&text).with_context(|| format!("template {name} is not JSON once filled"))
}

/// The EventBridge envelope CloudTrail events arrive in.
fn envelope(record: Value, account: &str, region: &str, time: &str) -> Value {
    let source = record["eventSource"].as_str().unwrap_or_default();
    let service = source.strip_suffix(".amazonaws.com").unwrap_or(source);
    let detail_type = if service == "signin" {
        "AWS Console Sign In via CloudTrail"
    } else {
        "AWS API Call via CloudTrail"
    };
    let event_id = record["eventID"].as_str().unwrap_or_default();
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v5(&UUID_NAMESPACE, format!("envelope/{event_id}").as_bytes()).to_string(),
        "detail-type": detail_type,
        "source": format!("aws.{service}"),
        "account": account,
        "time": time,
        "region": region,
        "resources": [],
        "detail": record,
    })
}

// Temporary access keys of the incident's sessions.
const KEY_CONSOLE: &str = "ASIAGWSCN0BG1CONSOLE";
const KEY_PROD_ROLE: &str = "ASIAGWSCN1BGROLEPROD";
const KEY_DEV_ROLE: &str = "ASIAGWSCN2BGROLEDEV0";
const KEY_SSO: &str = "ASIAGWSCN3SSOADMIN00";
const KEY_DEPLOY_BOT: &str = "ASIAGWSCN4DEPLOYBOT0";
const KEY_APP_DEPLOY: &str = "ASIAGWSCN5APPDEPLOY0";
const KEY_CHAIN_ROLE: &str = "ASIAGWSCN6BGCHAINOUT";
const KEY_ONWARD: &str = "ASIAGWSCN7ONWARDHOP0";
const KEY_UNFOLLOWED: &str = "ASIAGWSCN8UNFOLLOWED";
/// An unwatched role a break-glass session chains into.
const ONWARD_ROLE: &str = "OrganizationAccountAccessRole";

const BG_USER: &str = "break-glass-1";
const BG_USER_ID: &str = "AIDAGWSCENARIOBG1USR";
const BG_ROLE: &str = "BreakGlassRole";
const BG_SESSION: &str = "break-glass-1-incident";
const SSO_ROLE: &str = "AWSReservedSSO_BreakGlassAdmin_0123456789abcdef";
const SSO_ROLE_PATH: &str = "aws-reserved/sso.amazonaws.com/eu-west-1/";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
const CLI: &str = "aws-cli/2.31.18 md/awscrt#0.27.6 ua/2.1 os/linux#6.8.0 md/arch#x86_64";
const RESPONDER_IP: &str = "198.51.100.140";

fn v(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Scenario {
    /// The incident in `org`, starting at `start` (Unix seconds), with
    /// event ids derived from `salt`.
    pub fn incident(org: &Org, start: i64, salt: &str) -> Result<Self> {
        let us = crate::org::OTHER_REGION;
        let eu = crate::org::AUDIT_REGION;
        let (prod, shared, dev, mgmt) = (&org.prod, &org.shared, &org.dev, &org.management);
        let login_time = rfc3339(start + 120)?;
        let bg_created = login_time.clone();
        let prod_role_created = rfc3339(start + 180)?;
        let dev_role_created = rfc3339(start + 300)?;
        let sso_created = rfc3339(start + 640)?;
        let role_call = |role: &str,
                         session: &str,
                         key: &str,
                         created: &str,
                         source: &str,
                         name: &str,
                         read_only: bool,
                         request: Value| {
            let mut vars = v(&[
                ("role", role),
                ("role_path", ""),
                ("session", session),
                ("key", key),
                ("created", created),
                ("event_source", source),
                ("event_name", name),
                ("user_agent", CLI),
            ]);
            vars.push(("read_only", read_only.to_string()));
            vars.push(("request", request.to_string()));
            vars
        };
        // A cross-account AssumeRole of BreakGlassRole is logged twice: in
        // the caller's account with the caller's identity, and in the
        // role's account with the caller as an `AWSAccount`.
        let cross_account_assume = |labels: [&'static str; 2],
                                    caller_template: &'static str,
                                    caller: &String,
                                    caller_vars: Vec<(&'static str, String)>,
                                    caller_principal_id: &str,
                                    (key, created): (&str, &str),
                                    target: &String,
                                    issued: &str,
                                    offset: i64|
         -> Result<[Step; 2]> {
            let shared_id = uuid::Uuid::new_v5(
                &UUID_NAMESPACE,
                format!("{salt}/shared/{}", labels[0]).as_bytes(),
            )
            .to_string();
            let common = v(&[
                ("key", key),
                ("created", created),
                ("target_account", target),
                ("target_role", BG_ROLE),
                ("target_session", BG_SESSION),
                ("issued_key", issued),
                ("user_agent", CLI),
                ("shared_event_id", &shared_id),
                ("expiration", &rfc3339(start + offset + 3600)?),
            ]);
            let mut in_caller = common.clone();
            in_caller.extend(caller_vars);
            let mut in_target = common;
            in_target.extend(v(&[
                ("caller_account", caller),
                ("caller_principal_id", caller_principal_id),
            ]));
            Ok([
                step(
                    labels[0],
                    caller_template,
                    caller,
                    us,
                    offset,
                    Some(CHAIN),
                    in_caller,
                ),
                step(
                    labels[1],
                    "assume-role-owner-copy",
                    target,
                    us,
                    offset,
                    Some(CHAIN),
                    in_target,
                ),
            ])
        };
        let sso_call = |label, region, offset, source: &str, name: &str| {
            let mut vars = role_call(
                SSO_ROLE,
                "emergency.admin",
                KEY_SSO,
                &sso_created,
                source,
                name,
                true,
                Value::Null,
            );
            vars.retain(|(k, _)| *k != "role_path");
            vars.push(("role_path", SSO_ROLE_PATH.to_owned()));
            step(label, "role-call", prod, region, offset, Some(SSO), vars)
        };
        let sso_list = sso_call(
            "sso-prod-list-users",
            us,
            660,
            "iam.amazonaws.com",
            "ListUsers",
        );
        let sso_describe = sso_call(
            "sso-prod-describe-instances",
            eu,
            720,
            "ec2.amazonaws.com",
            "DescribeInstances",
        );
        let mut steps = vec![
            // 1. Root signs in to prod.
            step(
                "root-login-prod",
                "root-console-login",
                prod,
                us,
                0,
                Some(ROOT),
                v(&[
                    ("mfa", "Yes"),
                    ("user_agent", BROWSER),
                    ("ip", "203.0.113.7"),
                ]),
            ),
            // Noise: alice signs in to prod.
            step(
                "noise-alice-login",
                "user-console-login",
                prod,
                us,
                30,
                None,
                v(&[
                    ("user", "alice"),
                    ("principal_id", "AIDAGWSCENARIOALICE1"),
                    ("mfa", "Yes"),
                    ("user_agent", BROWSER),
                ]),
            ),
            // 2. The break-glass chain.
            step(
                "bg-login-shared",
                "user-console-login",
                shared,
                us,
                120,
                Some(CHAIN),
                v(&[
                    ("user", BG_USER),
                    ("principal_id", BG_USER_ID),
                    ("mfa", "Yes"),
                    ("user_agent", BROWSER),
                ]),
            ),
            step(
                "bg-shared-list-buckets",
                "user-console-call",
                shared,
                us,
                150,
                Some(CHAIN),
                {
                    let mut vars = v(&[
                        ("user", BG_USER),
                        ("principal_id", BG_USER_ID),
                        ("key", KEY_CONSOLE),
                        ("created", &bg_created),
                        ("event_source", "s3.amazonaws.com"),
                        ("event_name", "ListBuckets"),
                    ]);
                    vars.push(("read_only", "true".into()));
                    vars.push(("request", r#"{"Host":"s3.us-east-1.amazonaws.com"}"#.into()));
                    vars
                },
            ),
        ];
        steps.extend(cross_account_assume(
            ["bg-assume-prod", "bg-assume-prod-owner-copy"],
            "assume-role-by-console-user",
            shared,
            v(&[("user", BG_USER), ("principal_id", BG_USER_ID)]),
            BG_USER_ID,
            (KEY_CONSOLE, &bg_created),
            prod,
            KEY_PROD_ROLE,
            180,
        )?);
        steps.push(step(
            "bg-prod-terminate-instances",
            "role-call",
            prod,
            eu,
            240,
            Some(CHAIN),
            role_call(
                BG_ROLE,
                BG_SESSION,
                KEY_PROD_ROLE,
                &prod_role_created,
                "ec2.amazonaws.com",
                "TerminateInstances",
                false,
                json!({"instancesSet": {"items": [{"instanceId": "i-0c4e6a8b0d2f41357"}]}}),
            ),
        ));
        steps.extend(cross_account_assume(
            ["bg-assume-dev", "bg-assume-dev-owner-copy"],
            "assume-role-by-role",
            prod,
            v(&[("role", BG_ROLE), ("session", BG_SESSION)]),
            "AROAGWSCENARIOROLE01:break-glass-1-incident",
            (KEY_PROD_ROLE, &prod_role_created),
            dev,
            KEY_DEV_ROLE,
            300,
        )?);
        steps.extend([
            step(
                "bg-dev-list-users",
                "role-call",
                dev,
                us,
                360,
                Some(CHAIN),
                role_call(
                    BG_ROLE,
                    BG_SESSION,
                    KEY_DEV_ROLE,
                    &dev_role_created,
                    "iam.amazonaws.com",
                    "ListUsers",
                    true,
                    Value::Null,
                ),
            ),
            step(
                "bg-dev-describe-instances",
                "role-call",
                dev,
                eu,
                420,
                Some(CHAIN),
                role_call(
                    BG_ROLE,
                    BG_SESSION,
                    KEY_DEV_ROLE,
                    &dev_role_created,
                    "ec2.amazonaws.com",
                    "DescribeInstances",
                    true,
                    json!({"filterSet": {}}),
                ),
            ),
            // Noise: a deploy role reads, and assumes a read-only role.
            step(
                "noise-deploy-describe",
                "role-call",
                shared,
                eu,
                450,
                None,
                role_call(
                    "AppDeploy",
                    "ci-4711",
                    KEY_APP_DEPLOY,
                    &login_time,
                    "ec2.amazonaws.com",
                    "DescribeInstances",
                    true,
                    json!({"filterSet": {}}),
                ),
            ),
            step(
                "noise-deploy-assume-readonly",
                "assume-role-by-role",
                shared,
                us,
                480,
                None,
                {
                    let mut vars = v(&[
                        ("key", KEY_APP_DEPLOY),
                        ("created", &login_time),
                        ("target_account", dev),
                        ("target_role", "ReadOnly"),
                        ("target_session", "ci-4711"),
                        ("issued_key", "ASIAGWSCN6READONLY00"),
                        ("user_agent", CLI),
                        ("shared_event_id", "noise"),
                        ("role", "AppDeploy"),
                        ("session", "ci-4711"),
                    ]);
                    vars.push(("expiration", rfc3339(start + 4080)?));
                    vars
                },
            ),
            // 3. Identity Center break-glass federation.
            step(
                "sso-get-role-credentials",
                "sso-get-role-credentials",
                mgmt,
                eu,
                600,
                Some(SSO),
                v(&[
                    ("user", "emergency.admin"),
                    ("user_id", "e4a8b1c2-70d1-7045-9f3e-5a6b7c8d9e01"),
                    ("identity_store_id", "d-9067a1b2c3"),
                    ("permission_set", "BreakGlassAdmin"),
                    ("target_account", prod),
                    ("user_agent", BROWSER),
                ]),
            ),
            sso_list,
            sso_describe,
            // Noise: Identity Center read-only access, someone else's rule.
            step(
                "noise-sso-readonly",
                "sso-get-role-credentials",
                mgmt,
                eu,
                780,
                None,
                v(&[
                    ("user", "alice"),
                    ("user_id", "0a1b2c3d-0000-4000-8000-a11ce0000001"),
                    ("identity_store_id", "d-9067a1b2c3"),
                    ("permission_set", "ReadOnly"),
                    ("target_account", dev),
                    ("user_agent", BROWSER),
                ]),
            ),
            step(
                "noise-disable-payments-rule",
                "role-call",
                prod,
                eu,
                840,
                None,
                role_call(
                    "AppDeploy",
                    "ci-4712",
                    KEY_APP_DEPLOY,
                    &login_time,
                    "events.amazonaws.com",
                    "DisableRule",
                    false,
                    json!({"name": "payments-nightly"}),
                ),
            ),
            // 4. The organization trail is stopped.
            step(
                "tamper-stop-logging",
                "role-call",
                mgmt,
                us,
                900,
                Some(TAMPER),
                role_call(
                    "platform-admin",
                    "deploy-bot",
                    KEY_DEPLOY_BOT,
                    &rfc3339(start + 860)?,
                    "cloudtrail.amazonaws.com",
                    "StopLogging",
                    false,
                    json!({"name": format!("arn:aws:cloudtrail:{us}:{mgmt}:trail/{}", crate::org::TRAIL)}),
                ),
            ),
        ]);
        let events = steps
            .into_iter()
            .map(|s| s.build(start, salt))
            .collect::<Result<Vec<_>>>()?;
        use DetectionKind::*;
        let expected = vec![
            (ROOT, ":root", vec![RootSignIn]),
            (
                CHAIN,
                "user/break-glass-1",
                vec![BreakGlassSignIn, SessionActivity, BreakGlassRoleAssumed],
            ),
            (SSO, "emergency.admin", vec![BreakGlassSso, SessionActivity]),
            (TAMPER, "platform-admin/deploy-bot", vec![MonitoringTamper]),
        ];
        Ok(Self {
            org: org.clone(),
            events,
            expected,
        })
    }

    /// The event labelled `label`.
    ///
    /// # Panics
    /// When there is none: labels are fixed in this module.
    pub fn event(&self, label: &str) -> &ScenarioEvent {
        self.events
            .iter()
            .find(|e| e.label == label)
            .unwrap_or_else(|| panic!("no scenario event {label}"))
    }

    /// Events that must alert.
    pub fn detections(&self) -> impl Iterator<Item = &ScenarioEvent> {
        self.events.iter().filter(|e| e.session.is_some())
    }

    /// Events that must not.
    pub fn noise(&self) -> impl Iterator<Item = &ScenarioEvent> {
        self.events.iter().filter(|e| e.session.is_none())
    }

    /// The sessions the incident must leave in the store.
    pub fn expected_sessions(&self) -> Vec<ExpectedSession> {
        self.expected
            .iter()
            .map(|(name, principal, kinds)| {
                let events: Vec<&ScenarioEvent> = self
                    .events
                    .iter()
                    .filter(|e| e.session == Some(*name))
                    .collect();
                let anchor = events
                    .iter()
                    .min_by(|a, b| (a.time, &a.event_id).cmp(&(b.time, &b.event_id)))
                    .map(|e| e.event_id.as_str())
                    .unwrap_or_default();
                ExpectedSession {
                    name,
                    session_id: session_id(anchor),
                    event_ids: events.iter().map(|e| e.event_id.clone()).collect(),
                    accounts: events.iter().map(|e| e.account.clone()).collect(),
                    regions: events.iter().map(|e| e.region.clone()).collect(),
                    kinds: kinds.iter().copied().collect(),
                    principal_contains: principal,
                }
            })
            .collect()
    }

    /// A record of activity in `prod` with the chain's `prod` credentials,
    /// at `offset` seconds into the incident: what a compromised account
    /// would forge to pin activity on `prod`'s break-glass session.
    pub fn forged_prod_activity(&self, start: i64, salt: &str) -> Result<ScenarioEvent> {
        let vars = v(&[
            ("role", BG_ROLE),
            ("role_path", ""),
            ("session", BG_SESSION),
            ("key", KEY_PROD_ROLE),
            ("created", &rfc3339(start + 180)?),
            ("event_source", "iam.amazonaws.com"),
            ("event_name", "CreateAccessKey"),
            ("read_only", "false"),
            ("request", r#"{"userName":"backdoor"}"#),
        ]);
        Step {
            label: "forged-prod-activity",
            template: "role-call",
            account: self.org.prod.clone(),
            region: crate::org::OTHER_REGION,
            offset: 500,
            session: None,
            vars,
        }
        .build(start, salt)
    }

    /// A break-glass role leaving its session by a role chain: in `prod`,
    /// `BreakGlassRole` assumes `OrganizationAccountAccessRole` in `dev`
    /// (an unwatched role), and that role lists IAM users in one region
    /// and describes instances in the other; last, noise: an unrelated
    /// session of the same role in `dev`, which nothing follows.
    pub fn role_chain_out(org: &Org, start: i64, salt: &str) -> Result<Vec<ScenarioEvent>> {
        let (us, eu) = (crate::org::OTHER_REGION, crate::org::AUDIT_REGION);
        let created = rfc3339(start)?;
        let hop_created = rfc3339(start + 60)?;
        let expiration = rfc3339(start + 60 + 3600)?;
        let onward = |key: &str, source: &str, name: &str| {
            v(&[
                ("role", ONWARD_ROLE),
                ("role_path", ""),
                ("session", "break-glass-hop"),
                ("key", key),
                ("created", &hop_created),
                ("event_source", source),
                ("event_name", name),
                ("read_only", "true"),
                ("request", "null"),
            ])
        };
        [
            step(
                "chain-out-assume",
                "assume-role-by-role",
                &org.prod,
                us,
                60,
                Some(CHAIN_OUT),
                v(&[
                    ("role", BG_ROLE),
                    ("session", BG_SESSION),
                    ("key", KEY_CHAIN_ROLE),
                    ("created", &created),
                    ("target_account", &org.dev),
                    ("target_role", ONWARD_ROLE),
                    ("target_session", "break-glass-hop"),
                    ("issued_key", KEY_ONWARD),
                    ("shared_event_id", &format!("{salt}-chain-out-shared")),
                    ("expiration", &expiration),
                ]),
            ),
            step(
                "chain-out-list-users",
                "role-call",
                &org.dev,
                us,
                120,
                Some(CHAIN_OUT),
                onward(KEY_ONWARD, "iam.amazonaws.com", "ListUsers"),
            ),
            step(
                "chain-out-describe-instances",
                "role-call",
                &org.dev,
                eu,
                180,
                Some(CHAIN_OUT),
                onward(KEY_ONWARD, "ec2.amazonaws.com", "DescribeInstances"),
            ),
            step(
                "noise-unfollowed-session",
                "role-call",
                &org.dev,
                us,
                200,
                None,
                onward(KEY_UNFOLLOWED, "iam.amazonaws.com", "ListUsers"),
            ),
        ]
        .into_iter()
        .map(|s| s.build(start, salt))
        .collect()
    }

    /// Compare stored sessions with [`expected_sessions`](Self::expected_sessions):
    /// exactly these, each with exactly its events. Returns every
    /// difference.
    pub fn check_sessions(&self, stored: &[crate::pipeline::StoredSession]) -> Result<(), String> {
        let mut problems = String::new();
        let expected = self.expected_sessions();
        for want in &expected {
            let Some(got) = stored
                .iter()
                .find(|s| s.item.session.session_id == want.session_id)
            else {
                let _ = writeln!(
                    problems,
                    "session {:?} ({}) was not stored",
                    want.name, want.session_id
                );
                continue;
            };
            let s = &got.item.session;
            let fields = [
                (
                    "events",
                    format!("{:?}", got.event_ids),
                    format!("{:?}", want.event_ids),
                ),
                (
                    "event_count",
                    s.event_count.to_string(),
                    want.event_ids.len().to_string(),
                ),
                (
                    "accounts",
                    format!("{:?}", s.accounts),
                    format!("{:?}", want.accounts),
                ),
                (
                    "regions",
                    format!("{:?}", s.regions),
                    format!("{:?}", want.regions),
                ),
                (
                    "kinds",
                    format!("{:?}", s.kinds),
                    format!("{:?}", want.kinds),
                ),
            ];
            for (what, got, expected) in fields {
                if got != expected {
                    let _ = writeln!(
                        problems,
                        "session {:?}: {what} is {got}, expected {expected}",
                        want.name
                    );
                }
            }
            if !s.principal.contains(want.principal_contains) {
                let _ = writeln!(
                    problems,
                    "session {:?}: principal {} lacks {}",
                    want.name, s.principal, want.principal_contains
                );
            }
        }
        for got in stored {
            if !expected
                .iter()
                .any(|e| e.session_id == got.item.session.session_id)
            {
                let _ = writeln!(
                    problems,
                    "unexpected session {} ({}) with events {:?}",
                    got.item.session.session_id, got.item.session.summary, got.event_ids
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
