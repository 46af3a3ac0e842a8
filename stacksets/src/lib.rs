//! # glasswatch-stacksets
//!
//! The CloudFormation side of Glasswatch: the two templates, embedded with
//! `include_str!`, and the code that deploys, inspects and removes them
//! across an organization. `xtask` is only the command line around it.
//!
//! Layout:
//! - `render`: pure; the templates, the agent's generated rules, stack
//!   parameters, names and content-addressed artifact keys;
//! - `error`: every failure with what to do about it;
//! - `aws`: per-region clients, `AssumeRole`, progress reporting;
//! - `buckets`: the per-region artifact buckets;
//! - `stacks`: plain stacks and the StackSet, compare-then-write;
//! - `deploy`, `destroy`: the two operations, step by step;
//! - `status`: pure; coverage rows, account × region, with their gaps.

pub mod aws;
pub mod buckets;
pub mod deploy;
pub mod destroy;
pub mod error;
pub mod render;
pub mod stacks;
pub mod status;

pub use error::DeployError;
