//! `.strata-lint.toml`: severities and ignores.
//!
//! ```toml
//! # rules never reported (ids, names or aliases such as DL3008)
//! ignore = ["SL001", "DL3008"]
//!
//! [severity]
//! SL108 = "warning"                 # info | warning | error | off
//! apt-lists-not-removed = "error"
//! ```

use std::path::{Path, PathBuf};

use super::findings::Severity;

/// Lint configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Rules (ids, names or aliases) never reported.
    pub ignore: Vec<String>,
    /// Severity overrides; `None` turns the rule off.
    pub severity: Vec<(String, Option<Severity>)>,
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or values.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    severity: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses config text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Config, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        let mut severity = Vec::new();
        for (k, v) in raw.severity {
            if super::rules::find(&k).is_none() && !is_alias(&k) {
                return Err(format!("unknown rule `{k}` in [severity]"));
            }
            let s = if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("none") {
                None
            } else {
                Some(Severity::parse(&v).ok_or_else(|| {
                    format!("severity of `{k}` must be info, warning, error or off, not `{v}`")
                })?)
            };
            severity.push((k, s));
        }
        Ok(Config {
            ignore: raw.ignore,
            severity,
        })
    }

    /// Merges `other` after `self` (its settings win).
    pub fn merge(mut self, other: Config) -> Config {
        self.ignore.extend(other.ignore);
        self.severity.extend(other.severity);
        self
    }
}

fn is_alias(k: &str) -> bool {
    super::rules::ALL
        .iter()
        .any(|r| r.aliases.iter().any(|a| a.eq_ignore_ascii_case(k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ignores_and_severities() {
        let c = Config::parse(
            "ignore = [\"SL001\"]\n[severity]\nSL108 = \"warning\"\nDL3009 = \"off\"\n",
        )
        .unwrap();
        assert_eq!(c.ignore, ["SL001"]);
        assert_eq!(
            c.severity,
            [
                ("DL3009".to_string(), None),
                ("SL108".to_string(), Some(Severity::Warning))
            ]
        );
    }

    #[test]
    fn rejects_unknown_rules_and_keys() {
        assert!(Config::parse("[severity]\nSL777 = \"info\"\n")
            .unwrap_err()
            .contains("SL777"));
        assert!(Config::parse("[severity]\nSL001 = \"loud\"\n")
            .unwrap_err()
            .contains("loud"));
        assert!(Config::parse("ignores = []\n").is_err());
    }
}
