//! `--flag` parsing for instructions (BuildKit's `bflag.go`): allowed
//! names and types per instruction, duplicates and missing values refused.

use std::collections::HashMap;

use super::{IResult, Spanned};
use crate::ast::Flag;
use crate::error::InstructionErrorKind;
use crate::go;
use crate::parser::Dockerfile;
use crate::span::Span;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum FlagType {
    Bool,
    Str,
    Strings,
}

/// Parsed flags (BuildKit's `BFlags`).
pub(super) struct Flags {
    used: HashMap<&'static str, Vec<(Option<String>, Span)>>,
}

impl Flags {
    pub(super) fn parse(
        df: &Dockerfile,
        instruction: &str,
        flags: &[Flag],
        allowed: &[(&'static str, FlagType)],
    ) -> IResult<Flags> {
        let mut used: HashMap<&'static str, Vec<(Option<String>, Span)>> = HashMap::new();
        for f in flags {
            if f.text == "--" {
                break;
            }
            let body = f.text.strip_prefix("--").unwrap_or(&f.text);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, ty)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err((
                    InstructionErrorKind::UnknownFlag {
                        instruction: go::to_upper(instruction),
                        flag: name.to_string(),
                        allowed: allowed.iter().map(|(n, _)| *n).collect(),
                    },
                    f.span,
                ));
            };
            let entry = used.entry(key).or_default();
            if !entry.is_empty() && ty != FlagType::Strings {
                return Err((
                    InstructionErrorKind::DuplicateFlag(name.to_string()),
                    f.span,
                ));
            }
            let value_span = value_span(df, f);
            let v = match ty {
                FlagType::Bool => {
                    if value == Some("") {
                        return Err((InstructionErrorKind::MissingFlagValue(name.into()), f.span));
                    }
                    let lower = value.map(go::to_lower).unwrap_or_default();
                    match lower.as_str() {
                        "" => "true".to_string(),
                        "true" | "false" => lower,
                        _ => {
                            return Err((
                                InstructionErrorKind::NotABool {
                                    flag: name.into(),
                                    value: value.unwrap_or_default().into(),
                                },
                                value_span,
                            ))
                        }
                    }
                }
                FlagType::Str | FlagType::Strings => match value {
                    Some(v) => v.to_string(),
                    None => {
                        return Err((InstructionErrorKind::MissingFlagValue(name.into()), f.span))
                    }
                },
            };
            entry.push((Some(v), value_span));
        }
        Ok(Flags { used })
    }

    pub(super) fn string(&self, name: &str) -> Option<Spanned<String>> {
        let (v, span) = self.used.get(name)?.first()?;
        Some(Spanned::new(v.clone().unwrap_or_default(), *span))
    }

    pub(super) fn strings(&self, name: &str) -> Vec<Spanned<String>> {
        self.used
            .get(name)
            .map(|vs| {
                vs.iter()
                    .map(|(v, s)| Spanned::new(v.clone().unwrap_or_default(), *s))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|s| s.value == "true")
    }
}

/// The span of a flag's value when the flag is written plainly (no quotes
/// or escapes), else the whole flag.
fn value_span(df: &Dockerfile, f: &Flag) -> Span {
    let text = df.text(f.span);
    match (text == f.text, f.text.find('=')) {
        (true, Some(eq)) => df.span(f.span.offset + eq + 1, f.span.end()),
        _ => f.span,
    }
}
