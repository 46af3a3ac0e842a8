//! `cargo xtask status` against a moto organization deployed by the deploy
//! library: every account × region is listed, a gap (no heartbeat yet)
//! exits 1, and once every agent has reported with its trail logging, it
//! exits 0.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use glasswatch_core::Config;
use glasswatch_core::signal::TrailStatus;
use glasswatch_stacksets::aws::{Silent, Waiting, assume_role, in_region};
use glasswatch_stacksets::deploy::{Access, Options, Zips, deploy, plan};
use glasswatch_stacksets::render::Blueprint;
use serde_json::Value;
use test_support::org::{Org, stub_zip};
use test_support::{account_config, moto_endpoint, workspace_root};

const AUDIT_REGION: &str = "eu-west-1";

fn run_status(config: &Path, env: &[(&str, String)]) -> Result<(i32, Vec<Value>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(workspace_root())
        .args(["status", "--format", "json", "--config"])
        .arg(config)
        .env_remove("AWS_PROFILE")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .context("run xtask status")?;
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "status printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code().unwrap_or(-1), rows))
}

#[tokio::test]
async fn status_lists_every_account_and_region_and_exits_1_on_a_gap() -> Result<()> {
    let org = Org::create().await?;
    let text = org.glasswatch_toml()?;
    let config = Config::parse(&text, "status-test.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = std::env::temp_dir().join(test_support::unique("gw-status"));
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("glasswatch.toml");
    std::fs::write(&config_path, &text)?;

    let blueprint = Blueprint::of(&config)?;
    let deployer = org.management_config.clone();
    let audit = assume_role(&deployer, &org.audit, "OrganizationAccountAccessRole").await?;
    aws_sdk_secretsmanager::Client::new(&in_region(&audit, AUDIT_REGION))
        .create_secret()
        .name(&config.slack.secret_name)
        .secret_string(r#"{"token":"xoxb-test"}"#)
        .send()
        .await?;
    let access = Access {
        deployer: deployer.clone(),
        audit: audit.clone(),
        management: Some(deployer),
    };
    let zips = Zips {
        agent: stub_zip("agent"),
        aggregator: stub_zip("aggregator"),
    };
    let planned = plan(&access, &config, &blueprint, Some(&zips), &Silent).await?;
    let options = Options {
        waiting: Waiting {
            poll: Duration::from_millis(20),
            timeout: Duration::from_secs(60),
        },
        delegate_list_accounts: false,
    };
    let report = deploy(
        &access, &config, &blueprint, &planned, &zips, options, &Silent,
    )
    .await?;

    let (_, credentials) = account_config(&org.management, AUDIT_REGION).await?;
    let env = vec![
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_REGION", AUDIT_REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id().to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            credentials.secret_access_key().to_owned(),
        ),
        (
            "AWS_SESSION_TOKEN",
            credentials.session_token().unwrap_or_default().to_owned(),
        ),
    ];
    let (code, rows) = run_status(&config_path, &env)?;
    assert_eq!(code, 1, "no heartbeat yet is a gap");
    assert_eq!(
        rows.len(),
        5 * 2,
        "5 accounts (management included) x 2 regions"
    );
    assert!(rows.iter().all(|r| r["gap"] == true));
    assert!(
        rows.iter()
            .filter(|r| r["account"] != org.management.as_str())
            .all(|r| r["stack"] != "MISSING"),
        "every member has its StackSet instance: {rows:#?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r["account"] == org.management.as_str())
            .all(|r| r["stack"] == "CREATE_COMPLETE"),
        "{rows:#?}"
    );

    // Every agent reports, its trail logging: no gap.
    let store = glasswatch_aggregator::store::Store::new(
        aws_sdk_dynamodb::Client::new(&in_region(&audit, AUDIT_REGION)),
        report.table.clone(),
        3600,
        30,
    );
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    for row in &rows {
        let (account, region) = (
            row["account"].as_str().unwrap_or_default(),
            row["region"].as_str().unwrap_or_default(),
        );
        store
            .record_heartbeat(&glasswatch_aggregator::store::coverage::Beat {
                account,
                region,
                trail: TrailStatus::Logging,
                agent_version: "0.1.0",
                dead_letters: Some(0),
                at: now,
            })
            .await?;
    }
    let (code, rows) = run_status(&config_path, &env)?;
    assert!(rows.iter().all(|r| r["gap"] == false), "{rows:#?}");
    assert_eq!(code, 0);
    Ok(())
}
