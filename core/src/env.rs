//! Lambda configuration from environment variables, through a lookup
//! function so that reading stays pure and testable. Every error names
//! the variable.

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A variable that must be set and not empty.
pub fn required(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, EnvError> {
    get(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or(EnvError::Missing(name))
}

/// An optional number within `range`, else `default`.
pub fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, EnvError>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(text) = get(name) else {
        return Ok(default);
    };
    match text.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(EnvError::Invalid {
            name,
            reason: format!(
                "`{text}` is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

/// The watch list a Lambda receives as JSON (`Config::watch_env_json`),
/// compiled; the agent and the aggregator read it the same way.
pub fn watch_list(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<crate::WatchList, EnvError> {
    let json = required(get, name)?;
    crate::config::watch_list_from_env_json(&json)
        .map_err(|reason| EnvError::Invalid { name, reason })
}

/// An optional comma-separated list; empty items are dropped.
pub fn list(get: &impl Fn(&str) -> Option<String>, name: &'static str) -> Vec<String> {
    get(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable() {
        let get = |n: &str| (n == "N").then(|| "x".to_owned());
        assert_eq!(
            required(&get, "MISSING").unwrap_err().to_string(),
            "environment variable MISSING is not set"
        );
        let e = number(&get, "N", 5u32, 1..=10).unwrap_err().to_string();
        assert!(e.contains("N is invalid") && e.contains("1 to 10"), "{e}");
        assert_eq!(number(&get, "OTHER", 5u32, 1..=10), Ok(5));
        let get = |_: &str| Some("11".to_owned());
        assert!(number(&get, "N", 5u32, 1..=10).is_err());
    }
}
