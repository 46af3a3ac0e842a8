//! An AWS Organization in moto, the shape deploy and the pipeline meet in
//! real life: a fresh management account of its own (so tests sharing one
//! moto never share an organization), an OU tree two levels deep, and
//! member accounts created through Organizations (so `ListAccounts`, which
//! the aggregator's membership check reads, knows every one of them).
//!
//! ```text
//! root ─ management
//!  ├─ Security ─ audit
//!  └─ Workloads ─ shared-services
//!      └─ Apps ─ prod, dev
//! ```
//!
//! moto gives created accounts random ids; everything else takes them
//! from here.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_organizations::types::OrganizationFeatureSet;

use crate::account_config;

/// The audit region of [`Org`]s created here; the other region is
/// [`OTHER_REGION`].
pub const AUDIT_REGION: &str = "eu-west-1";
pub const OTHER_REGION: &str = "us-east-1";

/// The trail [`Org::start_trails`] makes in every account and region; the
/// scenario's `StopLogging` names it too.
pub const TRAIL: &str = "org-trail";

/// The organization of the incident scenario and of deploy: five accounts
/// in two regions.
#[derive(Debug, Clone)]
pub struct Org {
    pub management: String,
    /// Credentials of the management account (in [`OTHER_REGION`]).
    pub management_config: SdkConfig,
    pub organization_id: String,
    pub root: String,
    /// OU name → id.
    pub ous: BTreeMap<&'static str, String>,
    /// Where the central bus, queue, table and aggregator live.
    pub audit: String,
    pub prod: String,
    /// The identity account where the break-glass IAM user lives.
    pub shared: String,
    pub dev: String,
    /// Account id → name, as Organizations lists them.
    pub names: BTreeMap<String, String>,
    /// The audit region first.
    pub regions: Vec<String>,
}

impl Org {
    /// Create a new organization in moto. Its management account is a
    /// fresh random id, so each call gets its own organization even on a
    /// shared moto.
    pub async fn create() -> Result<Self> {
        let management = format!("9{:011}", fastrand::u64(..100_000_000_000));
        let (management_config, _) = account_config(&management, OTHER_REGION).await?;
        let orgs = aws_sdk_organizations::Client::new(&management_config);
        let org = orgs
            .create_organization()
            .feature_set(OrganizationFeatureSet::All)
            .send()
            .await
            .with_context(|| format!("create an organization in {management}"))?
            .organization
            .context("CreateOrganization returned no organization")?;
        let root = orgs
            .list_roots()
            .send()
            .await
            .context("list roots")?
            .roots()
            .first()
            .and_then(|r| r.id())
            .context("no root")?
            .to_owned();
        let mut ous: BTreeMap<&'static str, String> = BTreeMap::new();
        for (name, parent) in [
            ("Security", None),
            ("Workloads", None),
            ("Apps", Some("Workloads")),
        ] {
            let parent_id = parent.map_or_else(|| root.clone(), |p| ous[p].clone());
            let id = orgs
                .create_organizational_unit()
                .parent_id(parent_id)
                .name(name)
                .send()
                .await
                .with_context(|| format!("create OU {name}"))?
                .organizational_unit
                .and_then(|o| o.id)
                .context("CreateOrganizationalUnit returned no id")?;
            ous.insert(name, id);
        }
        let mut names = BTreeMap::from([(management.clone(), "management".to_owned())]);
        let mut ids = Vec::new();
        for (name, ou) in [
            ("audit", "Security"),
            ("prod", "Apps"),
            ("shared-services", "Workloads"),
            ("dev", "Apps"),
        ] {
            let created = orgs
                .create_account()
                .account_name(name)
                .email(format!("aws+{name}-{management}@example.com"))
                .send()
                .await
                .with_context(|| format!("create account {name}"))?;
            let id = created
                .create_account_status
                .and_then(|s| s.account_id)
                .context("CreateAccount returned no account id")?;
            orgs.move_account()
                .account_id(&id)
                .source_parent_id(&root)
                .destination_parent_id(&ous[ou])
                .send()
                .await
                .with_context(|| format!("move account {name} to {ou}"))?;
            names.insert(id.clone(), name.to_owned());
            ids.push(id);
        }
        // moto names the management account "master"; use what it lists.
        let listed = orgs.list_accounts().send().await.context("list accounts")?;
        for account in listed.accounts() {
            if let (Some(id), Some(name)) = (account.id(), account.name()) {
                names.insert(id.to_owned(), name.to_owned());
            }
        }
        let [audit, prod, shared, dev] = <[String; 4]>::try_from(ids)
            .map_err(|_| anyhow::anyhow!("expected four created accounts"))?;
        Ok(Self {
            management,
            management_config,
            organization_id: org.id.unwrap_or_default(),
            root,
            ous,
            audit,
            prod,
            shared,
            dev,
            names,
            regions: vec![AUDIT_REGION.to_owned(), OTHER_REGION.to_owned()],
        })
    }

    pub fn audit_region(&self) -> &str {
        &self.regions[0]
    }

    /// Every account, management first.
    pub fn accounts(&self) -> Vec<&str> {
        vec![
            &self.management,
            &self.audit,
            &self.prod,
            &self.shared,
            &self.dev,
        ]
    }

    /// The member accounts, audit account included.
    pub fn members(&self) -> Vec<String> {
        vec![
            self.audit.clone(),
            self.prod.clone(),
            self.shared.clone(),
            self.dev.clone(),
        ]
    }

    /// Start a logging trail `org-trail` in every account and region, as
    /// an organization trail shows in each (moto has no organization
    /// trails): what the agents' heartbeats report.
    pub async fn start_trails(&self) -> Result<()> {
        for account in self.accounts() {
            for region in &self.regions {
                let (config, _) = account_config(account, region).await?;
                let bucket = format!("gw-trail-{account}-{region}");
                let mut create = aws_sdk_s3::Client::new(&config)
                    .create_bucket()
                    .bucket(&bucket);
                if region != "us-east-1" {
                    create = create.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(region.as_str().into())
                            .build(),
                    );
                }
                create
                    .send()
                    .await
                    .with_context(|| format!("create bucket {bucket}"))?;
                let trails = aws_sdk_cloudtrail::Client::new(&config);
                trails
                    .create_trail()
                    .name(TRAIL)
                    .s3_bucket_name(&bucket)
                    .send()
                    .await
                    .with_context(|| format!("create the trail of {account}/{region}"))?;
                trails
                    .start_logging()
                    .name(TRAIL)
                    .send()
                    .await
                    .with_context(|| format!("start the trail of {account}/{region}"))?;
            }
        }
        Ok(())
    }

    /// Stop the trail [`start_trails`](Self::start_trails) started in
    /// `account` and `region`.
    pub async fn stop_trail(&self, account: &str, region: &str) -> Result<()> {
        let (config, _) = account_config(account, region).await?;
        aws_sdk_cloudtrail::Client::new(&config)
            .stop_logging()
            .name(TRAIL)
            .send()
            .await
            .with_context(|| format!("stop the trail of {account}/{region}"))?;
        Ok(())
    }

    pub fn ou(&self, name: &str) -> &str {
        self.ous.get(name).map(String::as_str).unwrap_or_default()
    }

    /// The repository's `glasswatch.toml` (its watch list, audit region
    /// and regions) made this organization's: its management and audit
    /// accounts, the `Security` and `Workloads` OUs as targets (every
    /// member account), the Slack stand-in's channel, and x86_64 Lambdas
    /// (the only target this machine builds).
    pub fn glasswatch_toml(&self) -> Result<String> {
        let path = crate::workspace_root().join("glasswatch.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let replacements = [
            ("\"210987654321\"", format!("\"{}\"", self.management)),
            ("\"310987654321\"", format!("\"{}\"", self.audit)),
            (
                "target_ous = []",
                format!(
                    "target_ous = [\"{}\", \"{}\"]",
                    self.ou("Security"),
                    self.ou("Workloads")
                ),
            ),
            (
                "lambda_architecture = \"arm64\"",
                "lambda_architecture = \"x86_64\"".to_owned(),
            ),
        ];
        replacements.into_iter().try_fold(text, |text, (from, to)| {
            if text.contains(from) {
                Ok(text.replace(from, &to))
            } else {
                anyhow::bail!("{} no longer has {from}", path.display())
            }
        })
    }
}

/// A minimal valid zip (an empty archive) whose comment makes its content,
/// and so its artifact key, differ by `label`.
pub fn stub_zip(label: &str) -> Vec<u8> {
    let comment = label.as_bytes();
    let mut zip = vec![
        0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let len = u16::try_from(comment.len()).unwrap_or(u16::MAX);
    zip.extend_from_slice(&len.to_le_bytes());
    zip.extend_from_slice(&comment[..usize::from(len)]);
    zip
}
