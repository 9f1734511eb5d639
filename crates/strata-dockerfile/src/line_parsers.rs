//! Per-instruction argument parsing (BuildKit's `line_parsers.go` and
//! `split_command.go`). Every function works on sub-slices of one logical
//! line and records where each piece came from (byte positions in it).

use crate::error::ParseErrorKind;
use crate::go;
use crate::json::{self, JsonError};

/// A piece of a logical line: its value and its byte range in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawArg {
    pub value: String,
    pub start: usize,
    pub end: usize,
}

/// An instruction before positions are mapped to the source.
#[derive(Debug, Clone)]
pub(crate) struct RawNode {
    pub keyword: String,
    pub kw_start: usize,
    pub kw_end: usize,
    pub flags: Vec<RawArg>,
    pub args: Vec<RawArg>,
    pub child: Option<Box<RawNode>>,
    pub json: bool,
}

/// A parse failure and the logical range it concerns.
pub(crate) type LineError = (ParseErrorKind, usize, usize);

struct Parsed {
    args: Vec<RawArg>,
    child: Option<Box<RawNode>>,
    json: bool,
}

impl Parsed {
    fn none() -> Self {
        Parsed {
            args: Vec::new(),
            child: None,
            json: false,
        }
    }

    fn args(args: Vec<RawArg>) -> Self {
        Parsed {
            args,
            child: None,
            json: false,
        }
    }
}

fn arg(line: &str, piece: &str) -> RawArg {
    let start = go::offset_in(line, piece);
    RawArg {
        value: piece.to_string(),
        start,
        end: start + piece.len(),
    }
}

/// The part of `s` from byte `pos`, moved forward to a character boundary
/// (BuildKit slices bytes; a split inside a character cannot be kept).
fn tail(s: &str, mut pos: usize) -> &str {
    while pos < s.len() && !s.is_char_boundary(pos) {
        pos += 1;
    }
    &s[pos.min(s.len())..]
}

/// BuildKit's `newNodeFromLine`: keyword, flags, then the instruction's
/// argument parser. `sub` is a sub-slice of `line` (the whole logical line,
/// or an `ONBUILD` trigger).
pub(crate) fn node_from_line(
    line: &str,
    sub: &str,
    esc: char,
    depth: usize,
) -> Result<RawNode, LineError> {
    let t = go::trim_space(sub);
    let parts = go::split_ws(t, 2);
    let cmd = parts.first().copied().unwrap_or(t);
    let kw_start = go::offset_in(line, cmd);
    let (flags, rest) = match parts.get(1) {
        Some(after) => extract_flags(line, after),
        None => (Vec::new(), &t[t.len()..]),
    };
    let rest = go::trim_space(rest);
    let parsed = dispatch(&go::to_lower(cmd), line, rest, esc, depth)?;
    Ok(RawNode {
        keyword: cmd.to_string(),
        kw_start,
        kw_end: kw_start + cmd.len(),
        flags,
        args: parsed.args,
        child: parsed.child,
        json: parsed.json,
    })
}

fn dispatch(
    cmd: &str,
    line: &str,
    rest: &str,
    esc: char,
    depth: usize,
) -> Result<Parsed, LineError> {
    match cmd {
        "add" | "copy" | "volume" => maybe_json_to_list(line, rest),
        "arg" => Ok(Parsed::args(parse_words(line, rest, esc))),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(line, rest),
        "env" => name_val(line, rest, "ENV", esc),
        "label" => name_val(line, rest, "LABEL", esc),
        "expose" | "from" => Ok(Parsed::args(strings_ws(line, rest))),
        "healthcheck" => health_config(line, rest),
        "maintainer" | "stopsignal" | "user" | "workdir" => Ok(if rest.is_empty() {
            Parsed::none()
        } else {
            Parsed::args(vec![arg(line, rest)])
        }),
        "onbuild" => {
            if rest.is_empty() {
                return Ok(Parsed::none());
            }
            // BuildKit recurses without bound; so deep a chain of ONBUILDs
            // is refused by the typed layer anyway, so stop here.
            if depth > 64 {
                return Ok(Parsed::args(vec![arg(line, rest)]));
            }
            let child = node_from_line(line, rest, esc, depth + 1)?;
            Ok(Parsed {
                args: Vec::new(),
                child: Some(Box::new(child)),
                json: false,
            })
        }
        // Unknown instructions keep an empty argument (BuildKit's parseIgnore).
        _ => {
            let at = go::offset_in(line, rest) + rest.len();
            Ok(Parsed::args(vec![RawArg {
                value: String::new(),
                start: at,
                end: at,
            }]))
        }
    }
}

/// BuildKit's `extractBuilderFlags`: leading `--words`, unquoted, with `\`
/// escapes. Works on bytes, and (like BuildKit) turns each byte of a flag
/// into the character with that code (Latin-1).
pub(crate) fn extract_flags<'a>(line: &str, s: &'a str) -> (Vec<RawArg>, &'a str) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let base = go::offset_in(line, s);
    let b = s.as_bytes();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut wstart = 0;
    let mut pos = 0;
    let mut ch = 0u8;
    while pos <= b.len() {
        if pos != b.len() {
            ch = b[pos];
        }
        if phase == Phase::Spaces {
            if pos == b.len() {
                break;
            }
            if go::is_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                return (words, tail(s, pos));
            }
            phase = Phase::Word;
            wstart = pos;
        }
        if pos == b.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(RawArg {
                    value: std::mem::take(&mut word),
                    start: base + wstart,
                    end: base + pos,
                });
            }
            break;
        }
        if phase == Phase::Word {
            if go::is_space_byte(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (words, tail(s, pos));
                }
                if blank_ok || !word.is_empty() {
                    words.push(RawArg {
                        value: std::mem::take(&mut word),
                        start: base + wstart,
                        end: base + pos,
                    });
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == b'\\' {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = b[pos];
            }
            word.push(ch as char);
            pos += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == b'\\' {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = b[pos];
        }
        word.push(ch as char);
        pos += 1;
    }
    (words, &s[s.len()..])
}

/// BuildKit's `parseWords`: words on whitespace, quotes and escapes kept.
fn parse_words(line: &str, rest: &str, esc: char) -> Vec<RawArg> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let base = go::offset_in(line, rest);
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut buf = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut wstart = 0;
    let mut i = 0;
    let pos = |i: usize| chars.get(i).map(|c| c.0).unwrap_or(rest.len());
    while i <= n {
        let at_end = i == n;
        let mut ch = chars.get(i).map(|c| c.1).unwrap_or('\0');
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if go::is_space(ch) {
                i += 1;
                continue;
            }
            phase = Phase::Word;
            wstart = pos(i);
        }
        if at_end {
            if blank_ok || !buf.is_empty() {
                words.push(RawArg {
                    value: std::mem::take(&mut buf),
                    start: base + wstart,
                    end: base + rest.len(),
                });
            }
            break;
        }
        if phase == Phase::Word {
            if go::is_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || !buf.is_empty() {
                    words.push(RawArg {
                        value: std::mem::take(&mut buf),
                        start: base + wstart,
                        end: base + pos(i),
                    });
                }
                buf.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == esc {
                if i + 1 == n {
                    i += 1;
                    continue;
                }
                buf.push(ch);
                i += 1;
                ch = chars[i].1;
            }
            buf.push(ch);
            i += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == esc && quote != '\'' {
            if i + 1 == n {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            buf.push(ch);
            ch = chars[i].1;
        }
        buf.push(ch);
        i += 1;
    }
    words
}

/// `ENV` / `LABEL`: `NAME VALUE` (legacy) or `NAME=VALUE ...`, each pair
/// followed by a separator node (`=` or empty) as BuildKit builds them.
fn name_val(line: &str, rest: &str, key: &'static str, esc: char) -> Result<Parsed, LineError> {
    let words = parse_words(line, rest, esc);
    let Some(first) = words.first() else {
        return Ok(Parsed::none());
    };
    if !first.value.contains('=') {
        let parts = go::split_ws(rest, 2);
        if parts.len() < 2 {
            let start = go::offset_in(line, rest);
            return Err((ParseErrorKind::MissingValue(key), start, start + rest.len()));
        }
        let k = arg(line, parts[0]);
        let v = arg(line, parts[1]);
        let sep = RawArg {
            value: String::new(),
            start: k.end,
            end: k.end,
        };
        return Ok(Parsed::args(vec![k, v, sep]));
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for w in words {
        let Some(eq) = w.value.find('=') else {
            return Err((ParseErrorKind::MissingEquals(w.value), w.start, w.end));
        };
        let k_end = w.start + eq;
        args.push(RawArg {
            value: w.value[..eq].to_string(),
            start: w.start,
            end: k_end,
        });
        args.push(RawArg {
            value: w.value[eq + 1..].to_string(),
            start: k_end + 1,
            end: w.end.max(k_end + 1),
        });
        args.push(RawArg {
            value: "=".to_string(),
            start: k_end,
            end: k_end + 1,
        });
    }
    Ok(Parsed::args(args))
}

/// Whitespace-separated words (BuildKit's `parseStringsWhitespaceDelimited`).
fn strings_ws(line: &str, rest: &str) -> Vec<RawArg> {
    if rest.is_empty() {
        return Vec::new();
    }
    go::split_ws(rest, -1)
        .into_iter()
        .map(|p| arg(line, p))
        .collect()
}

fn parse_json(line: &str, rest: &str) -> Result<Vec<RawArg>, JsonError> {
    let t = rest.trim_start_matches(go::is_space);
    let base = go::offset_in(line, t);
    let items = json::parse_string_array(t)?;
    Ok(items
        .into_iter()
        .map(|j| RawArg {
            value: j.value,
            start: base + j.start,
            end: base + j.end,
        })
        .collect())
}

fn not_strings(line: &str, rest: &str) -> LineError {
    let start = go::offset_in(line, rest);
    (ParseErrorKind::JsonNotStrings, start, start + rest.len())
}

/// JSON form, or the whole text as one argument.
fn maybe_json(line: &str, rest: &str) -> Result<Parsed, LineError> {
    if rest.is_empty() {
        return Ok(Parsed::none());
    }
    match parse_json(line, rest) {
        Ok(args) => Ok(Parsed {
            args,
            child: None,
            json: true,
        }),
        Err(JsonError::NotStringArray) => Err(not_strings(line, rest)),
        Err(_) => Ok(Parsed::args(vec![arg(line, rest)])),
    }
}

/// JSON form, or whitespace-separated words.
fn maybe_json_to_list(line: &str, rest: &str) -> Result<Parsed, LineError> {
    match parse_json(line, rest) {
        Ok(args) => Ok(Parsed {
            args,
            child: None,
            json: true,
        }),
        Err(JsonError::NotStringArray) => Err(not_strings(line, rest)),
        Err(_) => Ok(Parsed::args(strings_ws(line, rest))),
    }
}

/// `HEALTHCHECK TYPE CMD...`: the type word, then like [`maybe_json`].
fn health_config(line: &str, rest: &str) -> Result<Parsed, LineError> {
    let b = rest.as_bytes();
    let sep = b
        .iter()
        .position(|&c| go::is_space_byte(c))
        .unwrap_or(b.len());
    let next = b[sep..]
        .iter()
        .position(|&c| !go::is_space_byte(c))
        .map(|p| sep + p)
        .unwrap_or(b.len());
    if sep == 0 {
        return Ok(Parsed::none());
    }
    let base = go::offset_in(line, rest);
    let typ = RawArg {
        value: String::from_utf8_lossy(&b[..sep]).into_owned(),
        start: base,
        end: base + sep,
    };
    let cmd = maybe_json(line, tail(rest, next))?;
    let mut args = vec![typ];
    args.extend(cmd.args);
    Ok(Parsed {
        args,
        child: None,
        json: cmd.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[RawArg]) -> Vec<&str> {
        v.iter().map(|a| a.value.as_str()).collect()
    }

    #[test]
    fn flags_are_unquoted_and_positioned() {
        let line = r#"--a=1 --b="x y" --c=é -- rest"#;
        let (flags, rest) = extract_flags(line, line);
        assert_eq!(values(&flags), ["--a=1", "--b=x y", "--c=Ã©"]);
        assert_eq!(rest.trim(), "rest");
        assert_eq!((flags[1].start, flags[1].end), (6, 15));
        let (flags, rest) = extract_flags(line, "-x --y");
        assert!(flags.is_empty());
        assert_eq!(rest, "-x --y");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let line = r#"a="b c" d\ e 'f\'"#;
        let w = parse_words(line, line, '\\');
        assert_eq!(values(&w), [r#"a="b c""#, r"d\ e", r"'f\'"]);
        assert_eq!((w[1].start, w[1].end), (8, 12));
    }

    #[test]
    fn name_val_forms() {
        let p = name_val("a b c", "a b c", "ENV", '\\').map(|p| p.args);
        assert_eq!(p.as_deref().map(values), Ok(vec!["a", "b c", ""]));
        let p = name_val("a=1 b=", "a=1 b=", "ENV", '\\').map(|p| p.args);
        assert_eq!(
            p.as_deref().map(values),
            Ok(vec!["a", "1", "=", "b", "", "="])
        );
        assert!(matches!(
            name_val("a", "a", "ENV", '\\'),
            Err((ParseErrorKind::MissingValue("ENV"), 0, 1))
        ));
        assert!(matches!(
            name_val("a=1 b", "a=1 b", "ENV", '\\'),
            Err((ParseErrorKind::MissingEquals(_), 4, 5))
        ));
    }
}
