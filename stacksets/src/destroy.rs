//! `destroy`: the reverse of deploy, in an order that never leaves an agent
//! pointing at a bus that is gone while it could still be stopped first:
//! StackSet instances and the StackSet, the management account's stacks,
//! the audit stack, then the artifact buckets. The audit table survives
//! (its stack retains it) unless the operator asks for the audit data to go.

use aws_config::SdkConfig;
use glasswatch_core::Config;

use crate::aws::{Progress, Waiting, cloudformation, in_region, s3};
use crate::buckets::delete_bucket;
use crate::deploy::{Access, Change, identify, regions};
use crate::error::{DeployError, aws, code_of};
use crate::render::{Blueprint, artifact_bucket};
use crate::stacks::{Outcome, Place, delete_stack, delete_stack_set};

pub async fn destroy(
    access: &Access,
    config: &Config,
    blueprint: &Blueprint,
    delete_audit_data: bool,
    waiting: Waiting,
    progress: &dyn Progress,
) -> Result<Vec<Change>, DeployError> {
    let identity = identify(&access.deployer).await?;
    let org = &config.organization;
    let regions = regions(&access.deployer, config, &identity.account, progress).await?;
    let target_ous = if org.target_ous.is_empty() {
        vec![identity.root_id.clone()]
    } else {
        org.target_ous.clone()
    };
    let mut changes = Vec::new();

    progress.start("StackSet", 1);
    let cf = cloudformation(&in_region(&access.deployer, &org.audit_region));
    let outcome = delete_stack_set(
        &cf,
        &blueprint.agent_stack(),
        identity.caller,
        &target_ous,
        waiting,
    )
    .await?;
    changes.push(Change {
        what: format!("StackSet {} and its instances", blueprint.agent_stack()),
        outcome,
    });
    progress.advance(&blueprint.agent_stack());
    progress.finish(&outcome.to_string());

    if let Some(management) = &access.management {
        progress.start("management account stacks", regions.len() as u64);
        for region in &regions {
            let place = Place {
                account: identity.management_account.clone(),
                region: region.clone(),
            };
            let outcome = delete_stack(
                &cloudformation(&in_region(management, region)),
                &blueprint.agent_stack(),
                &place,
                waiting,
            )
            .await?;
            changes.push(Change {
                what: format!(
                    "agent stack {} ({} {region})",
                    blueprint.agent_stack(),
                    place.account
                ),
                outcome,
            });
            progress.advance(region);
        }
        progress.finish("done");
    }

    progress.start("audit stack", 1);
    let audit = in_region(&access.audit, &org.audit_region);
    let place = Place {
        account: org.audit_account.clone(),
        region: org.audit_region.clone(),
    };
    let outcome = delete_stack(
        &cloudformation(&audit),
        &blueprint.audit_stack(),
        &place,
        waiting,
    )
    .await?;
    changes.push(Change {
        what: format!("audit stack {}", blueprint.audit_stack()),
        outcome,
    });
    let table = format!("{}-audit", blueprint.name_prefix);
    let outcome = if delete_audit_data {
        delete_table(&audit, &table).await?
    } else {
        progress.note(&format!(
            "kept the audit table {table} in {} {} (audit evidence); pass --delete-audit-data to delete it",
            org.audit_account, org.audit_region
        ));
        Outcome::Unchanged
    };
    changes.push(Change {
        what: format!("audit table {table}"),
        outcome,
    });
    progress.advance(&blueprint.audit_stack());
    progress.finish("done");

    progress.start("artifact buckets", regions.len() as u64);
    let prefix = blueprint.artifact_bucket_prefix(&identity.account);
    for region in &regions {
        let bucket = artifact_bucket(&prefix, region);
        let outcome = delete_bucket(&s3(&in_region(&access.deployer, region)), &bucket).await?;
        changes.push(Change {
            what: format!("bucket {bucket}"),
            outcome,
        });
        progress.advance(region);
    }
    progress.finish("done");
    Ok(changes)
}

/// Turn off deletion protection, then delete the table.
async fn delete_table(sdk: &SdkConfig, table: &str) -> Result<Outcome, DeployError> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    match client
        .update_table()
        .table_name(table)
        .deletion_protection_enabled(false)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => return Ok(Outcome::Absent),
        Err(e) => return Err(aws("dynamodb:UpdateTable", e)),
    }
    client
        .delete_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| aws("dynamodb:DeleteTable", e))?;
    Ok(Outcome::Deleted)
}
