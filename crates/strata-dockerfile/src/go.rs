//! Small pieces of Go's standard library whose exact behaviour BuildKit's
//! output depends on: `strconv.Quote`, `strings.ToLower`, `unicode.IsLetter`
//! / `IsDigit` / `IsSpace`, `strings.TrimSpace` and `regexp.Split` for the
//! whitespace class BuildKit uses.

use crate::unicode_tables::{DIGIT, LETTER, PRINTABLE};

fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// `strconv.IsPrint`.
pub(crate) fn is_print(c: char) -> bool {
    if (c as u32) < 0x80 {
        return (0x20..0x7f).contains(&(c as u32));
    }
    in_table(PRINTABLE, c)
}

/// `unicode.IsLetter`.
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    in_table(LETTER, c)
}

/// `unicode.IsDigit`.
pub(crate) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    in_table(DIGIT, c)
}

/// `unicode.IsSpace` (the Unicode White_Space property, same as Rust's).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// `unicode.IsSpace(rune(b))` applied to a single byte, as BuildKit does in
/// a few byte-oriented loops: bytes 0x85 and 0xA0 count as spaces there.
pub(crate) fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

/// `strings.TrimSpace`.
pub(crate) fn trim_space(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `strings.ToLower`: one rune maps to one rune (U+0130 maps to `i`).
pub(crate) fn to_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// `strings.ToUpper`, rune by rune.
pub(crate) fn to_upper(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// `strconv.Quote`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out.push('"');
    out
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    if c == '"' || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\u{07}' => out.push_str("\\a"),
        '\u{08}' => out.push_str("\\b"),
        '\u{0c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{0b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Go's `fmt.Sprintf("%q", []string{...})`: `["a" "b"]`.
pub(crate) fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote(item));
    }
    out.push(']');
    out
}

/// The whitespace class `[\t\v\f\r ]` of BuildKit's `reWhitespace`.
pub(crate) fn is_ws_class(b: u8) -> bool {
    matches!(b, b'\t' | 0x0b | 0x0c | b'\r' | b' ')
}

/// Go's `regexp.MustCompile(`[\t\v\f\r ]+`).Split(s, n)`, returning
/// sub-slices of `s` (n < 0: all pieces).
pub(crate) fn split_ws(s: &str, n: isize) -> Vec<&str> {
    if n == 0 {
        return Vec::new();
    }
    if s.is_empty() {
        return vec![""];
    }
    let bytes = s.as_bytes();
    // All matches (leftmost, longest runs), at most n of them when n > 0.
    let mut matches: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if n > 0 && matches.len() as isize >= n {
            break;
        }
        if is_ws_class(bytes[i]) {
            let start = i;
            while i < bytes.len() && is_ws_class(bytes[i]) {
                i += 1;
            }
            matches.push((start, i));
        } else {
            i += 1;
        }
    }
    let mut pieces = Vec::new();
    let mut beg = 0;
    let mut end = 0;
    for (m0, m1) in matches {
        if n > 0 && pieces.len() as isize == n - 1 {
            break;
        }
        end = m0;
        if m1 != 0 {
            pieces.push(&s[beg..end]);
        }
        beg = m1;
    }
    if end != s.len() {
        pieces.push(&s[beg..]);
    }
    pieces
}

/// Byte offset of `sub` inside `parent`; `sub` must be a sub-slice of it.
pub(crate) fn offset_in(parent: &str, sub: &str) -> usize {
    (sub.as_ptr() as usize).saturating_sub(parent.as_ptr() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_go() {
        let cases = [
            ("", r#""""#),
            ("a b", r#""a b""#),
            (
                "\" \\ / \u{8} \u{c} \n \r \t \0",
                r#""\" \\ / \b \f \n \r \t \x00""#,
            ),
            ("♥☃", "\"♥☃\""),
            ("\u{7f}\u{a0}\u{200b}", r#""\x7f\u00a0\u200b""#),
            ("\u{e0001}", r#""\U000e0001""#),
            ("한국어", "\"한국어\""),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), want, "{input:?}");
        }
        assert_eq!(quote_list(["--a=b", "--c"]), r#"["--a=b" "--c"]"#);
    }

    #[test]
    fn split_like_go() {
        let cases: [(&str, isize, &[&str]); 7] = [
            ("a b  c", -1, &["a", "b", "c"]),
            ("a b  c", 2, &["a", "b  c"]),
            (" a", -1, &["", "a"]),
            ("a ", -1, &["a", ""]),
            ("", -1, &[""]),
            ("abc", 2, &["abc"]),
            ("a\u{a0}b c", -1, &["a\u{a0}b", "c"]),
        ];
        for (s, n, want) in cases {
            assert_eq!(split_ws(s, n), want, "{s:?} {n}");
        }
    }

    #[test]
    fn classes() {
        assert!(is_letter('é') && is_letter('한') && !is_letter('1') && !is_letter('_'));
        assert!(is_digit('٣') && !is_digit('Ⅷ') && !is_digit('a'));
        assert!(is_print(' ') && !is_print('\u{a0}') && is_print('\u{fffd}'));
        assert_eq!(to_lower("RUN"), "run");
        assert_eq!(to_lower("İX"), "ix");
        assert_eq!(trim_space("\u{a0} a \t"), "a");
    }
}
