//! The templates, embedded, and everything pure about a deployment: the
//! agent template with its generated rules, stack parameters, names, and the
//! content-addressed artifact keys.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use glasswatch_core::config::{Config, LambdaArchitecture};
use glasswatch_core::patterns::{PatternError, RulePattern, event_patterns};
use sha2::{Digest, Sha256};

/// The agent template as written; [`agent_template`] adds the rules.
pub const AGENT_TEMPLATE: &str = include_str!("../templates/agent.yaml");
/// The audit stack's template.
pub const AUDIT_TEMPLATE: &str = include_str!("../templates/audit.yaml");

/// Where the generated rules go in [`AGENT_TEMPLATE`].
const RULES_MARKER: &str = "  # glasswatch:rules\n";

/// CloudFormation's limit for a template passed in the request body.
pub const MAX_TEMPLATE_BODY: usize = 51_200;

/// Where the audit account's own tamper rules go in [`AUDIT_TEMPLATE`].
const AUDIT_RULES_MARKER: &str = "  # glasswatch:audit-tamper-rules\n";

/// Rules whose events must not depend on the agent: tampering with
/// Glasswatch itself (the agent may be the thing tampered with).
pub fn is_tamper_rule(rule: &RulePattern) -> bool {
    rule.id.starts_with("tamper-")
}

/// The agent template with one rule per generated event pattern. A tamper
/// rule sends its events to the central bus itself (no agent in the path,
/// so stopping or rewriting the agent cannot hide its own tampering); every
/// other rule invokes the agent, with an invoke permission.
pub fn agent_template(rules: &[RulePattern]) -> String {
    let mut generated = String::new();
    for rule in rules {
        let logical = logical_id(&rule.id);
        // JSON is YAML's flow style, so the pattern goes in as it is.
        let head = format!(
            "  Rule{logical}:
    Type: AWS::Events::Rule
    Properties:
      Name: !Sub \"${{NamePrefix}}-{id}\"
      Description: Glasswatch watch-list events ({id}) to the {to}.
      EventBusName: default
      State: ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS
      EventPattern: {pattern}
",
            id = rule.id,
            pattern = rule.pattern_json(),
            to = if is_tamper_rule(rule) {
                "central bus directly"
            } else {
                "agent"
            },
        );
        generated.push_str(&head);
        if is_tamper_rule(rule) {
            generated.push_str(
                "      Targets:
        - Id: central-bus
          Arn: !Ref CentralBusArn
          RoleArn: !GetAtt TamperForwardRole.Arn
          DeadLetterConfig:
            Arn: !GetAtt AgentDeadLetterQueue.Arn
          RetryPolicy:
            MaximumEventAgeInSeconds: 86400
            MaximumRetryAttempts: 185

",
            );
        } else {
            let _ = write!(
                generated,
                "      Targets:
        - Id: agent
          Arn: !GetAtt AgentFunction.Arn
          DeadLetterConfig:
            Arn: !GetAtt AgentDeadLetterQueue.Arn
          RetryPolicy:
            MaximumEventAgeInSeconds: 86400
            MaximumRetryAttempts: 185

  Rule{logical}Permission:
    Type: AWS::Lambda::Permission
    Properties:
      FunctionName: !Ref AgentFunction
      Action: lambda:InvokeFunction
      Principal: events.amazonaws.com
      SourceArn: !GetAtt Rule{logical}.Arn

"
            );
        }
    }
    AGENT_TEMPLATE.replacen(RULES_MARKER, &generated, 1)
}

/// The audit template with the audit account's own tamper rules: on its
/// default bus, straight into the aggregator's queue, so tampering with
/// the central bus or its rule (disabling, deleting, changing its policy)
/// still reaches the aggregator.
pub fn audit_template(rules: &[RulePattern]) -> String {
    let mut generated = String::new();
    for rule in rules.iter().filter(|r| is_tamper_rule(r)) {
        let _ = write!(
            generated,
            "  AuditRule{logical}:
    Type: AWS::Events::Rule
    Properties:
      Name: !Sub \"${{NamePrefix}}-audit-{id}\"
      Description: Tampering with Glasswatch in the audit account ({id}), straight to the aggregator's queue.
      EventBusName: default
      State: ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS
      EventPattern: {pattern}
      Targets:
        - Id: aggregator-queue
          Arn: !GetAtt SignalQueue.Arn
          DeadLetterConfig:
            Arn: !GetAtt SignalDeadLetterQueue.Arn
          RetryPolicy:
            MaximumEventAgeInSeconds: 86400
            MaximumRetryAttempts: 185

",
            logical = logical_id(&rule.id),
            id = rule.id,
            pattern = rule.pattern_json(),
        );
    }
    AUDIT_TEMPLATE.replacen(AUDIT_RULES_MARKER, &generated, 1)
}

/// `assume-role-2` → `AssumeRole2`: a CloudFormation logical id.
fn logical_id(id: &str) -> String {
    id.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// What a deployment is made of, derived from the configuration alone.
#[derive(Debug, Clone)]
pub struct Blueprint {
    pub name_prefix: String,
    pub rules: Vec<RulePattern>,
    pub agent_template: String,
    pub audit_template: String,
    pub watch_json: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BlueprintError {
    #[error("the watch list does not compile: {0}")]
    Watch(String),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error(
        "a template with its {rules} generated rules is {size} bytes, over CloudFormation's {MAX_TEMPLATE_BODY}; shorten the watch list (fewer or wildcard entries)"
    )]
    TooLarge { rules: usize, size: usize },
    #[error("the template has no single `S3Key: !Ref {0}` under Resources to pin its version to")]
    Unpinnable(String),
}

impl Blueprint {
    pub fn of(config: &Config) -> Result<Self, BlueprintError> {
        let watch = config
            .watch_list()
            .map_err(|errors| BlueprintError::Watch(format!("{errors:?}")))?;
        let rules = event_patterns(&watch)?;
        let agent_template = agent_template(&rules);
        let audit_template = audit_template(&rules);
        for template in [&agent_template, &audit_template] {
            if template.len() > MAX_TEMPLATE_BODY {
                return Err(BlueprintError::TooLarge {
                    rules: rules.len(),
                    size: template.len(),
                });
            }
        }
        Ok(Self {
            name_prefix: config.deploy.name_prefix.clone(),
            watch_json: config.watch_env_json(),
            rules,
            agent_template,
            audit_template,
        })
    }

    /// The audit stack, in the audit account and region.
    pub fn audit_stack(&self) -> String {
        format!("{}-audit", self.name_prefix)
    }

    /// The StackSet, and the management account's plain stacks.
    pub fn agent_stack(&self) -> String {
        format!("{}-agent", self.name_prefix)
    }

    /// Artifact buckets are `<prefix>-<region>`, in the deploying account.
    pub fn artifact_bucket_prefix(&self, deployer_account: &str) -> String {
        format!("{}-artifacts-{deployer_account}", self.name_prefix)
    }
}

/// The artifact bucket of one region.
pub fn artifact_bucket(bucket_prefix: &str, region: &str) -> String {
    format!("{bucket_prefix}-{region}")
}

/// The template with the code version each region runs pinned: a
/// `CodeVersions` mapping (region to S3 object version) and an
/// `S3ObjectVersion` beside the `S3Key` taken from `key_parameter`. A
/// replaced object is then a new version the stacks do not run until
/// deploy pins it.
pub fn pin_code_versions(
    template: &str,
    key_parameter: &str,
    versions: &BTreeMap<String, String>,
) -> Result<String, BlueprintError> {
    let key_line = format!("        S3Key: !Ref {key_parameter}\n");
    if template.matches(&key_line).count() != 1 || template.matches("\nResources:\n").count() != 1 {
        return Err(BlueprintError::Unpinnable(key_parameter.to_owned()));
    }
    let mut mapping = String::from("Mappings:\n  CodeVersions:\n");
    for (region, version) in versions {
        // JSON strings are YAML double-quoted scalars.
        let quoted = serde_json::Value::from(version.as_str()).to_string();
        let _ = write!(mapping, "    {region}:\n      Version: {quoted}\n");
    }
    Ok(template
        .replacen("\nResources:\n", &format!("\n{mapping}\nResources:\n"), 1)
        .replacen(
            &key_line,
            &format!(
                "{key_line}        S3ObjectVersion: !FindInMap [CodeVersions, !Ref \"AWS::Region\", Version]\n"
            ),
            1,
        ))
}

/// The content-addressed key of a Lambda zip: a changed zip is a new key,
/// which is what rolls new code out through the StackSet.
pub fn artifact_key(function: &str, zip: &[u8]) -> String {
    format!("{function}/{}.zip", sha256_hex(zip))
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(data) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

pub fn architecture_name(arch: LambdaArchitecture) -> &'static str {
    match arch {
        LambdaArchitecture::Arm64 => "arm64",
        LambdaArchitecture::X86_64 => "x86_64",
    }
}

/// An EventBridge schedule for every `minutes`.
pub fn every_minutes(minutes: u32) -> String {
    if minutes == 1 {
        "rate(1 minute)".to_owned()
    } else {
        format!("rate({minutes} minutes)")
    }
}

/// Stack parameters, sorted by key so that equal sets compare equal.
pub type Parameters = Vec<(String, String)>;

fn sorted(mut params: Parameters) -> Parameters {
    params.sort();
    params
}

/// Where the code of both functions lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    pub bucket_prefix: String,
    pub agent_key: String,
    pub aggregator_key: String,
}

pub fn audit_parameters(
    config: &Config,
    organization_id: &str,
    regions: &[String],
    artifacts: &Artifacts,
) -> Parameters {
    let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    sorted(vec![
        p("NamePrefix", &config.deploy.name_prefix),
        p("WatchJson", &config.watch_env_json()),
        p("OrganizationId", organization_id),
        p("TargetRegions", &regions.join(",")),
        p("ArtifactBucketPrefix", &artifacts.bucket_prefix),
        p("AggregatorCodeKey", &artifacts.aggregator_key),
        p(
            "LambdaArchitecture",
            architecture_name(config.deploy.lambda_architecture),
        ),
        p(
            "SlackMode",
            match config.slack.mode {
                glasswatch_core::config::SlackMode::Bot => "bot",
                glasswatch_core::config::SlackMode::Webhook => "webhook",
            },
        ),
        p("SlackSecretName", &config.slack.secret_name),
        p("SlackChannel", &config.slack.channel),
        p("QuietMinutes", &config.session.quiet_minutes.to_string()),
        p("RetentionDays", &config.store.retention_days.to_string()),
        p(
            "HeartbeatMinutes",
            &config.deploy.heartbeat_minutes.to_string(),
        ),
    ])
}

pub fn agent_parameters(
    config: &Config,
    blueprint: &Blueprint,
    bus_arn: &str,
    follow_topic_arn: &str,
    artifacts: &Artifacts,
) -> Parameters {
    let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    sorted(vec![
        p("NamePrefix", &blueprint.name_prefix),
        p("CentralBusArn", bus_arn),
        p("FollowTopicArn", follow_topic_arn),
        p("WatchJson", &blueprint.watch_json),
        p("ArtifactBucketPrefix", &artifacts.bucket_prefix),
        p("AgentCodeKey", &artifacts.agent_key),
        p(
            "LambdaArchitecture",
            architecture_name(config.deploy.lambda_architecture),
        ),
        p(
            "HeartbeatRate",
            &every_minutes(config.deploy.heartbeat_minutes),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_ids_are_alphanumeric_camel_case() {
        assert_eq!(logical_id("assume-role"), "AssumeRole");
        assert_eq!(logical_id("activity-2"), "Activity2");
        assert_eq!(logical_id("sign_in"), "SignIn");
    }

    #[test]
    fn artifact_keys_follow_the_content() {
        let a = artifact_key("agent", b"one");
        assert_eq!(a, artifact_key("agent", b"one"));
        assert_ne!(a, artifact_key("agent", b"two"));
        assert!(a.starts_with("agent/") && a.ends_with(".zip") && a.len() == 6 + 64 + 4);
    }

    fn demo_config() -> Config {
        let text = include_str!("../../glasswatch.toml");
        Config::parse(text, "glasswatch.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_generated_rule_lands_in_the_agent_template_with_its_permission() {
        let blueprint = Blueprint::of(&demo_config()).unwrap_or_else(|e| panic!("{e}"));
        let t = &blueprint.agent_template;
        assert!(!blueprint.rules.is_empty());
        assert!(!t.contains("glasswatch:rules"), "the marker is replaced");
        assert_eq!(
            t.matches("State: ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")
                .count(),
            blueprint.rules.len()
        );
        for rule in &blueprint.rules {
            assert!(t.contains(&format!("EventPattern: {}", rule.pattern_json())));
            assert!(t.contains(&format!("Name: !Sub \"${{NamePrefix}}-{}\"", rule.id)));
            let logical = logical_id(&rule.id);
            // Tamper rules reach the central bus without the agent.
            assert_eq!(
                t.contains(&format!("SourceArn: !GetAtt Rule{logical}.Arn")),
                !is_tamper_rule(rule),
                "{}",
                rule.id
            );
        }
        let tamper = blueprint.rules.iter().filter(|r| is_tamper_rule(r)).count();
        assert!(tamper >= 4);
        assert_eq!(
            t.matches("RoleArn: !GetAtt TamperForwardRole.Arn").count(),
            tamper
        );
        let audit = &blueprint.audit_template;
        assert!(!audit.contains("glasswatch:audit-tamper-rules"));
        assert_eq!(audit.matches("- Id: aggregator-queue").count(), tamper + 2);
    }

    #[test]
    fn only_the_organization_may_put_events_on_the_central_bus() {
        let config = demo_config();
        assert!(AUDIT_TEMPLATE.contains("aws:PrincipalOrgID: !Ref OrganizationId"));
        let artifacts = Artifacts {
            bucket_prefix: "b".into(),
            agent_key: "a".into(),
            aggregator_key: "g".into(),
        };
        let params = audit_parameters(
            &config,
            "o-abcdefghij",
            &["us-east-1".into(), "eu-west-1".into()],
            &artifacts,
        );
        assert!(params.contains(&("TargetRegions".into(), "us-east-1,eu-west-1".into())));
        assert!(params.contains(&("OrganizationId".into(), "o-abcdefghij".into())));
        assert!(
            !params.iter().any(|(_, v)| v.contains("xoxb")),
            "the Slack secret is referenced by name"
        );
    }

    #[test]
    fn code_versions_are_pinned_per_region() {
        let blueprint = Blueprint::of(&demo_config()).unwrap_or_else(|e| panic!("{e}"));
        let versions = BTreeMap::from([
            ("eu-west-1".to_owned(), "v1.eu".to_owned()),
            ("us-east-1".to_owned(), "v2_us".to_owned()),
        ]);
        let pinned = pin_code_versions(&blueprint.agent_template, "AgentCodeKey", &versions)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(pinned.contains("Mappings:\n  CodeVersions:\n    eu-west-1:\n      Version: \"v1.eu\"\n    us-east-1:\n      Version: \"v2_us\"\n"), "{pinned}");
        assert!(pinned.contains("        S3Key: !Ref AgentCodeKey\n        S3ObjectVersion: !FindInMap [CodeVersions, !Ref \"AWS::Region\", Version]\n"));
        assert!(pin_code_versions(&blueprint.agent_template, "NoSuchKey", &versions).is_err());
    }

    #[test]
    fn schedules_say_minute_for_one() {
        assert_eq!(every_minutes(1), "rate(1 minute)");
        assert_eq!(every_minutes(15), "rate(15 minutes)");
    }
}
