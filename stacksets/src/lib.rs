//! # glasswatch-stacksets
//!
//! The CloudFormation side of Glasswatch. Templates (arriving with the
//! deployment issue) are embedded with `include_str!`; this crate also turns
//! the watch list into the rule patterns those templates take, so the
//! patterns come from one source: `glasswatch_core::patterns`.

use glasswatch_core::WatchList;
use glasswatch_core::patterns::{PatternError, RulePattern, event_patterns};

/// The agent's EventBridge rules, as (rule name, pattern JSON) pairs.
pub fn agent_rules(watch: &WatchList) -> Result<Vec<(String, String)>, PatternError> {
    Ok(event_patterns(watch)?
        .iter()
        .map(|p: &RulePattern| (p.name.clone(), p.pattern_json()))
        .collect())
}
