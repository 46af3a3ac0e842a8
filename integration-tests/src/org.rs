//! A fresh AWS Organization in moto, the shape deploy meets in real life:
//! a management account of its own (so tests sharing one moto never share
//! an organization), an OU tree two levels deep, and member accounts,
//! one of them the audit account.
//!
//! ```text
//! root ─ management account
//!  ├─ Security ─ audit
//!  └─ Workloads ─ app
//!      └─ Prod ─ prod-1, prod-2
//! ```

use std::collections::BTreeMap;

use anyhow::Context;
use aws_config::SdkConfig;
use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::OrganizationFeatureSet;

use crate::account_config;

/// A built organization; maps are keyed by the names in the diagram.
#[derive(Debug, Clone)]
pub struct TestOrg {
    pub management: String,
    /// Credentials of the management account, in the region asked for.
    pub management_config: SdkConfig,
    pub organization_id: String,
    pub root: String,
    pub ous: BTreeMap<&'static str, String>,
    pub accounts: BTreeMap<&'static str, String>,
}

impl TestOrg {
    pub fn account(&self, name: &str) -> &str {
        self.accounts
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    pub fn ou(&self, name: &str) -> &str {
        self.ous.get(name).map(String::as_str).unwrap_or_default()
    }

    /// The member accounts, audit account included.
    pub fn members(&self) -> Vec<String> {
        self.accounts.values().cloned().collect()
    }
}

/// A management account id no other test uses: moto keeps one
/// organization per account.
fn fresh_account_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mixed = nanos ^ (u128::from(std::process::id()) << 40);
    format!("9{:011}", mixed % 100_000_000_000)
}

pub async fn build(region: &str) -> anyhow::Result<TestOrg> {
    let management = fresh_account_id();
    let (management_config, _) = account_config(&management, region).await?;
    let orgs = Client::new(&management_config);
    let org = orgs
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .context("moto CreateOrganization")?
        .organization
        .context("no organization")?;
    let root = orgs
        .list_roots()
        .send()
        .await
        .context("moto ListRoots")?
        .roots()
        .first()
        .and_then(|r| r.id())
        .context("no root")?
        .to_owned();
    let mut ous: BTreeMap<&'static str, String> = BTreeMap::new();
    for (name, parent) in [
        ("Security", None),
        ("Workloads", None),
        ("Prod", Some("Workloads")),
    ] {
        let parent_id = parent.map_or(root.clone(), |p: &str| ous[p].clone());
        let ou = orgs
            .create_organizational_unit()
            .parent_id(parent_id)
            .name(name)
            .send()
            .await
            .with_context(|| format!("moto CreateOrganizationalUnit {name}"))?;
        let id = ou
            .organizational_unit
            .and_then(|o| o.id)
            .context("no OU id")?;
        ous.insert(name, id);
    }
    let mut accounts = BTreeMap::new();
    for (name, ou) in [
        ("audit", "Security"),
        ("app", "Workloads"),
        ("prod-1", "Prod"),
        ("prod-2", "Prod"),
    ] {
        let created = orgs
            .create_account()
            .account_name(name)
            .email(format!("{name}-{management}@example.com"))
            .send()
            .await
            .with_context(|| format!("moto CreateAccount {name}"))?;
        let id = created
            .create_account_status
            .and_then(|s| s.account_id)
            .context("no account id")?;
        orgs.move_account()
            .account_id(&id)
            .source_parent_id(&root)
            .destination_parent_id(&ous[ou])
            .send()
            .await
            .with_context(|| format!("moto MoveAccount {name}"))?;
        accounts.insert(name, id);
    }
    Ok(TestOrg {
        management,
        management_config,
        organization_id: org.id.unwrap_or_default(),
        root,
        ous,
        accounts,
    })
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
