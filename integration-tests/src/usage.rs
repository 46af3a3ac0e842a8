//! What a DynamoDB client did, counted by an SDK interceptor on it: the
//! requests per operation (each execution once, whatever its retries),
//! the items they wrote, and the items they read. The bench reports these
//! figures, and tests hold the store to them (reads per ingest bounded
//! whatever a key's history).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use serde::Serialize;

/// What a DynamoDB operation does to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Write,
    Read,
    /// Table management and the like.
    Other,
}

/// Classify a DynamoDB operation by name.
pub fn access(operation: &str) -> Access {
    match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "BatchWriteItem" => {
            Access::Write
        }
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems" => Access::Read,
        _ => Access::Other,
    }
}

/// Requests per operation and the items they wrote and read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub requests: BTreeMap<String, u64>,
    /// Items written: one per single-item write, every item of a
    /// transaction or batch.
    pub items_written: u64,
    /// Items read: those a `GetItem` found, a `Query` returned, a
    /// `BatchGetItem` answered.
    #[serde(default)]
    pub items_read: u64,
    /// The most items one write request carried (DynamoDB allows 100 in
    /// a transaction).
    #[serde(default)]
    pub largest_write: u64,
}

impl Counts {
    pub fn record(&mut self, operation: &str, items: u64) {
        *self.requests.entry(operation.to_owned()).or_default() += 1;
        if access(operation) == Access::Write {
            self.items_written += items;
            self.largest_write = self.largest_write.max(items);
        }
    }

    fn total(&self, kind: Access) -> u64 {
        self.requests
            .iter()
            .filter(|(op, _)| access(op) == kind)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn writes(&self) -> u64 {
        self.total(Access::Write)
    }

    pub fn reads(&self) -> u64 {
        self.total(Access::Read)
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            requests: self
                .requests
                .iter()
                .map(|(op, n)| {
                    let before = earlier.requests.get(op).copied().unwrap_or(0);
                    (op.clone(), n.saturating_sub(before))
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            items_written: self.items_written.saturating_sub(earlier.items_written),
            items_read: self.items_read.saturating_sub(earlier.items_read),
            largest_write: self.largest_write,
        }
    }
}

/// An SDK interceptor counting every DynamoDB request a client makes
/// (each execution once, whatever its retries), by the operation name the
/// SDK puts in the config bag (`Metadata`).
#[derive(Debug, Clone, Default)]
pub struct CountRequests(Arc<Mutex<Counts>>);

impl CountRequests {
    pub fn snapshot(&self) -> Counts {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    // Not `read_before_execution`: a client's interceptors run that before
    // the operation's configuration, `Metadata` included, is in the bag.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", Metadata::name)
            .to_owned();
        let input = context.input();
        let items = if let Some(t) = input.downcast_ref::<TransactWriteItemsInput>() {
            t.transact_items().len()
        } else if let Some(b) = input.downcast_ref::<BatchWriteItemInput>() {
            b.request_items()
                .map_or(0, |tables| tables.values().map(Vec::len).sum())
        } else {
            1
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(&operation, items as u64);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error() else {
            return Ok(());
        };
        let read = if let Some(q) = output.downcast_ref::<QueryOutput>() {
            q.items().len()
        } else if let Some(g) = output.downcast_ref::<GetItemOutput>() {
            usize::from(g.item().is_some())
        } else if let Some(b) = output.downcast_ref::<BatchGetItemOutput>() {
            b.responses()
                .map_or(0, |tables| tables.values().map(Vec::len).sum())
        } else {
            0
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .items_read += read as u64;
        Ok(())
    }
}
