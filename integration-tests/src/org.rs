//! An AWS Organization in moto: a fresh management account, and member
//! accounts created through Organizations (so `ListAccounts`, which the
//! aggregator's membership check reads, knows every one of them). moto
//! gives created accounts random ids; everything else takes them from
//! here.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_organizations::types::OrganizationFeatureSet;

use crate::account_config;

/// The organization of the incident scenario: five accounts in two
/// regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub management: String,
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

/// The audit region of [`Org`]s created here; the other region is
/// [`OTHER_REGION`].
pub const AUDIT_REGION: &str = "eu-west-1";
pub const OTHER_REGION: &str = "us-east-1";

impl Org {
    /// Create a new organization in moto. Its management account is a
    /// fresh random id, so each call gets its own organization even on a
    /// shared moto.
    pub async fn create() -> Result<Self> {
        let management = format!("9{:011}", fastrand::u64(..100_000_000_000));
        let (config, _) = account_config(&management, OTHER_REGION).await?;
        let orgs = aws_sdk_organizations::Client::new(&config);
        orgs.create_organization()
            .feature_set(OrganizationFeatureSet::All)
            .send()
            .await
            .with_context(|| format!("create an organization in {management}"))?;
        let mut names = BTreeMap::from([(management.clone(), "management".to_owned())]);
        let mut ids = Vec::new();
        for name in ["audit", "prod", "shared-services", "dev"] {
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
}
