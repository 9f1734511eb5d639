//! Reading `.dockerignore` files as moby/patternmatcher's
//! `ignorefile.ReadAll` does.

use crate::error::{PatternError, PatternErrorKind};
use crate::gopath::clean;

/// One pattern of an ignore file, after `ReadAll`'s normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreLine {
    /// The pattern (`!` kept in front of exceptions).
    pub pattern: String,
    /// Its 1-based line in the file.
    pub line: usize,
}

/// bufio.Scanner's default token limit: a longer line fails the read.
const MAX_LINE: usize = 64 * 1024;

/// Split an ignore file into patterns exactly as Docker does:
///
/// - a UTF-8 byte order mark at the start of the file is dropped;
/// - lines end at `\n`, and one `\r` before it is dropped (CRLF files);
/// - a line whose first character is `#` is a comment (a `#` after
///   leading spaces is not: `  #x` is the pattern `#x`);
/// - surrounding white space is trimmed and empty lines are skipped;
/// - a leading `!` marks an exception (white space after it is trimmed);
/// - the rest is `filepath.Clean`ed and one leading `/` is removed, so
///   `/foo` and `foo` are the same (but `/` alone stays `/`);
/// - a lone `!` stays `!` (the matcher then rejects it);
/// - a line of 64 KiB or more is an error (Go's `bufio.Scanner` limit).
///
/// ```
/// let lines = strata_context::read_ignore_file(b"\xEF\xBB\xBF# c\r\n/a/../b\r\n! /c\n").unwrap();
/// let patterns: Vec<_> = lines.iter().map(|l| l.pattern.as_str()).collect();
/// assert_eq!(patterns, ["b", "!c"]);
/// assert_eq!(lines[1].line, 3);
/// ```
pub fn read_ignore_file(data: &[u8]) -> Result<Vec<IgnoreLine>, PatternError> {
    read_all(data)
}

pub(crate) fn read_all(data: &[u8]) -> Result<Vec<IgnoreLine>, PatternError> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut line_no = 0;
    while !rest.is_empty() {
        let (mut line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        line_no += 1;
        if line.len() >= MAX_LINE {
            return Err(PatternError {
                pattern: String::from_utf8_lossy(&line[..40]).into_owned() + "...",
                line: Some(line_no),
                kind: PatternErrorKind::LineTooLong,
                origin: None,
            });
        }
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        if line_no == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.first() == Some(&b'#') {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        let mut pattern = text.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut pattern = pattern.to_owned();
        if !pattern.is_empty() {
            pattern = clean(&pattern);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
        }
        if invert {
            pattern.insert(0, '!');
        }
        out.push(IgnoreLine {
            pattern,
            line: line_no,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(data: &[u8]) -> Vec<String> {
        read_all(data)
            .unwrap()
            .into_iter()
            .map(|l| l.pattern)
            .collect()
    }

    #[test]
    fn docker_rules() {
        assert_eq!(patterns(b""), Vec::<String>::new());
        assert_eq!(patterns(b"a\r\nb\r\n"), ["a", "b"]);
        assert_eq!(
            patterns(b"\xEF\xBB\xBFa\n\xEF\xBB\xBFb"),
            ["a", "\u{feff}b"]
        );
        assert_eq!(
            patterns(b"  # not a comment\n# comment\n"),
            ["# not a comment"]
        );
        assert_eq!(patterns(b"/\n//a//b/\n./c\n!/\n"), ["/", "a/b", "c", "!/"]);
        assert_eq!(patterns(b"\t x \t\n"), ["x"]);
        let long = vec![b'a'; MAX_LINE];
        assert!(read_all(&long).is_err());
        assert_eq!(patterns(&long[1..]).len(), 1);
    }
}
