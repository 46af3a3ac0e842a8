//! The table's schema, as the audit stack's template declares it: for
//! local emulation and tests (deploy creates the table from the template).

use aws_sdk_dynamodb::Client;

use super::StoreError;
use super::keys::INDEXES;

/// Create the table with its indexes, TTL and point-in-time recovery, as
/// the audit stack's template declares it. For local emulation and tests;
/// deploy creates it from the template.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
        SseSpecification, TimeToLiveSpecification,
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt {
        key: table.to_owned(),
        reason: e.to_string(),
    };
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash).map_err(invalid)?)
        .key_schema(key("sk", KeyType::Range).map_err(invalid)?)
        .attribute_definitions(attr("pk").map_err(invalid)?)
        .attribute_definitions(attr("sk").map_err(invalid)?)
        .attribute_definitions(attr("gsi_sk").map_err(invalid)?)
        .sse_specification(SseSpecification::builder().enabled(true).build());
    for (name, pk, sk) in INDEXES {
        create = create
            .attribute_definitions(attr(pk).map_err(invalid)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .key_schema(key(pk, KeyType::Hash).map_err(invalid)?)
                    .key_schema(key(sk, KeyType::Range).map_err(invalid)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(invalid)?,
            );
    }
    create
        .send()
        .await
        .map_err(|e| StoreError::sdk("CreateTable", e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .map_err(|e| StoreError::sdk("UpdateTimeToLive", e))?;
    client
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .map_err(|e| StoreError::sdk("UpdateContinuousBackups", e))?;
    Ok(())
}
