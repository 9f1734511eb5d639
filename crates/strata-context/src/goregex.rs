//! Reading a Go (RE2, `regexp.Compile`) expression and writing the same
//! language as a Rust `regex-automata` expression.
//!
//! moby/patternmatcher turns a pattern into a Go regular expression text and
//! matches with that. Some pattern characters pass through unchanged (`[`,
//! `]`, `^`, anything after `\`), so what a pattern means is what Go's
//! regexp parser makes of that text, quirks included (`[*]` becomes the Go
//! class `[[^/]` followed by `*]`; `a\d` matches `a7`). Handing the text to
//! the Rust engine directly would parse some of it differently (nested
//! classes, set operators, Unicode `\d`), so it is parsed here with Go's
//! rules, and every construct is re-emitted in an unambiguous form.

use std::fmt::Write as _;

/// Why Go's `regexp.Compile` rejects an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoRegexError(pub(crate) String);

type Res<T> = Result<T, GoRegexError>;

fn err<T>(msg: impl Into<String>) -> Res<T> {
    Err(GoRegexError(msg.into()))
}

#[derive(Debug, Clone)]
enum Node {
    Lit(char),
    AnyNotNl,
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
    BeginText,
    EndText,
    WordBoundary(bool),
    Group(Vec<Node>),
    Repeat(Box<Node>, RepeatOp),
}

#[derive(Debug, Clone, Copy)]
enum RepeatOp {
    Star,
    Plus,
    Quest,
}

#[derive(Debug, Clone)]
enum ClassItem {
    Range(u32, u32),
    /// `[:alpha:]`, possibly `[:^alpha:]`.
    Posix(&'static str, bool),
    /// `\d`, `\s`, `\w` (ASCII in Go), possibly negated.
    Perl(char, bool),
    /// `\p{Greek}`, `\PL` etc.
    Unicode(String, bool),
}

const POSIX: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

const CATEGORIES: [&str; 38] = [
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs", "LC", "Any",
];

struct Parser<'a> {
    s: &'a str,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.s.chars().next()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.s.chars().next()?;
        self.s = &self.s[c.len_utf8()..];
        Some(c)
    }
    fn starts(&self, p: &str) -> bool {
        self.s.starts_with(p)
    }

    /// A sequence until end of text or an unmatched `)`.
    fn parse_seq(&mut self, depth: usize) -> Res<Vec<Node>> {
        let mut seq: Vec<Node> = Vec::new();
        let mut last_repeat = false;
        while let Some(c) = self.peek() {
            let mut repeat = false;
            match c {
                '(' => {
                    self.next();
                    if self.peek() == Some('?') {
                        // Flags and named groups never come out of a pattern
                        // (patternmatcher escapes `(`); refuse rather than guess.
                        return err("unsupported group syntax");
                    }
                    let inner = self.parse_seq(depth + 1)?;
                    if self.next() != Some(')') {
                        return err("missing closing )");
                    }
                    seq.push(Node::Group(inner));
                }
                ')' => {
                    if depth == 0 {
                        return err("unexpected )");
                    }
                    return Ok(seq);
                }
                '|' => return err("alternation is not supported here"),
                '^' => {
                    self.next();
                    seq.push(Node::BeginText);
                }
                '$' => {
                    self.next();
                    seq.push(Node::EndText);
                }
                '.' => {
                    self.next();
                    seq.push(Node::AnyNotNl);
                }
                '[' => {
                    let class = self.parse_class()?;
                    seq.push(class);
                }
                '*' | '+' | '?' => {
                    self.next();
                    let op = match c {
                        '*' => RepeatOp::Star,
                        '+' => RepeatOp::Plus,
                        _ => RepeatOp::Quest,
                    };
                    // A `?` right after a repetition makes it non-greedy,
                    // which does not change what matches.
                    if self.peek() == Some('?') {
                        self.next();
                    }
                    if last_repeat {
                        return err(format!("invalid nested repetition operator: `{c}`"));
                    }
                    let Some(sub) = seq.pop() else {
                        return err(format!("missing argument to repetition operator: `{c}`"));
                    };
                    seq.push(Node::Repeat(Box::new(sub), op));
                    repeat = true;
                }
                '\\' => self.parse_backslash(&mut seq)?,
                _ => {
                    self.next();
                    seq.push(Node::Lit(c));
                }
            }
            last_repeat = repeat;
        }
        Ok(seq)
    }

    fn parse_backslash(&mut self, seq: &mut Vec<Node>) -> Res<()> {
        let mut it = self.s.chars();
        it.next();
        match it.next() {
            Some('A') => {
                self.s = &self.s[2..];
                seq.push(Node::BeginText);
                return Ok(());
            }
            Some('z') => {
                self.s = &self.s[2..];
                seq.push(Node::EndText);
                return Ok(());
            }
            Some('b') => {
                self.s = &self.s[2..];
                seq.push(Node::WordBoundary(true));
                return Ok(());
            }
            Some('B') => {
                self.s = &self.s[2..];
                seq.push(Node::WordBoundary(false));
                return Ok(());
            }
            Some('C') => return err("invalid escape sequence: `\\C`"),
            Some('Q') => {
                let rest = &self.s[2..];
                let (lit, after) = match rest.find("\\E") {
                    Some(i) => (&rest[..i], &rest[i + 2..]),
                    None => (rest, ""),
                };
                seq.extend(lit.chars().map(Node::Lit));
                self.s = after;
                return Ok(());
            }
            _ => {}
        }
        if let Some(item) = self.parse_unicode_class()? {
            seq.push(Node::Class {
                negated: false,
                items: vec![item],
            });
            return Ok(());
        }
        if let Some(item) = self.parse_perl_class() {
            seq.push(Node::Class {
                negated: false,
                items: vec![item],
            });
            return Ok(());
        }
        let c = self.parse_escape()?;
        seq.push(Node::Lit(c));
        Ok(())
    }

    /// `\d \D \s \S \w \W`.
    fn parse_perl_class(&mut self) -> Option<ClassItem> {
        let b = self.s.as_bytes();
        if b.len() < 2 || b[0] != b'\\' {
            return None;
        }
        let (kind, neg) = match b[1] {
            b'd' => ('d', false),
            b'D' => ('d', true),
            b's' => ('s', false),
            b'S' => ('s', true),
            b'w' => ('w', false),
            b'W' => ('w', true),
            _ => return None,
        };
        self.s = &self.s[2..];
        Some(ClassItem::Perl(kind, neg))
    }

    /// `\pN`, `\p{Name}`, `\PN`, `\P{^Name}`.
    fn parse_unicode_class(&mut self) -> Res<Option<ClassItem>> {
        let b = self.s.as_bytes();
        if b.len() < 2 || b[0] != b'\\' || (b[1] != b'p' && b[1] != b'P') {
            return Ok(None);
        }
        let mut negated = b[1] == b'P';
        let t = &self.s[2..];
        let Some(c) = t.chars().next() else {
            return err("invalid character class range: `\\p`");
        };
        let (mut name, rest) = if c != '{' {
            (&t[..c.len_utf8()], &t[c.len_utf8()..])
        } else {
            let Some(end) = t.find('}') else {
                return err(format!("invalid character class range: `{}`", self.s));
            };
            (&t[1..end], &t[end + 1..])
        };
        if let Some(n) = name.strip_prefix('^') {
            negated = !negated;
            name = n;
        }
        let script_like = name.split('_').all(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && w.chars().skip(1).all(|c| c.is_ascii_lowercase())
        });
        if !(CATEGORIES.contains(&name) || script_like) {
            return err(format!("invalid character class range: `\\p{{{name}}}`"));
        }
        // Validate against the Rust engine's tables too (a Go script name
        // it does not know would otherwise fail later, less clearly).
        if regex_automata::meta::Regex::new(&format!("\\p{{{name}}}")).is_err() {
            return err(format!("invalid character class range: `\\p{{{name}}}`"));
        }
        let name = name.to_owned();
        self.s = rest;
        Ok(Some(ClassItem::Unicode(name, negated)))
    }

    /// Go's `parseEscape`, for a `\` at the start of the input.
    fn parse_escape(&mut self) -> Res<char> {
        let start = self.s;
        self.next(); // the backslash
        let Some(c) = self.next() else {
            return err("trailing backslash at end of expression");
        };
        let invalid = |s: &str, rest: &str| {
            GoRegexError(format!(
                "invalid escape sequence: `{}`",
                &s[..s.len() - rest.len()]
            ))
        };
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            return Ok(c);
        }
        match c {
            '1'..='7' | '0' => {
                let next_is_octal = matches!(self.peek(), Some('0'..='7'));
                if c != '0' && !next_is_octal {
                    return Err(invalid(start, self.s));
                }
                let mut r = c as u32 - '0' as u32;
                for _ in 1..3 {
                    match self.peek() {
                        Some(d @ '0'..='7') => {
                            r = r * 8 + (d as u32 - '0' as u32);
                            self.next();
                        }
                        _ => break,
                    }
                }
                char::from_u32(r).ok_or_else(|| invalid(start, self.s))
            }
            'x' => {
                let Some(c) = self.next() else {
                    return Err(invalid(start, self.s));
                };
                if c == '{' {
                    let mut r: u32 = 0;
                    let mut nhex = 0;
                    loop {
                        let Some(c) = self.next() else {
                            return Err(invalid(start, self.s));
                        };
                        if c == '}' {
                            break;
                        }
                        let Some(v) = c.to_digit(16) else {
                            return Err(invalid(start, self.s));
                        };
                        r = r * 16 + v;
                        if r > 0x10FFFF {
                            return Err(invalid(start, self.s));
                        }
                        nhex += 1;
                    }
                    if nhex == 0 {
                        return Err(invalid(start, self.s));
                    }
                    return Ok(char::from_u32(r).unwrap_or('\u{FFFD}'));
                }
                let x = c.to_digit(16);
                let y = self.next().and_then(|c| c.to_digit(16));
                match (x, y) {
                    (Some(x), Some(y)) => Ok(char::from_u32(x * 16 + y).unwrap_or('\u{FFFD}')),
                    _ => Err(invalid(start, self.s)),
                }
            }
            'a' => Ok('\u{7}'),
            'f' => Ok('\u{c}'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\u{b}'),
            _ => Err(invalid(start, self.s)),
        }
    }

    fn parse_class_char(&mut self) -> Res<char> {
        match self.peek() {
            None => err("missing closing ]"),
            Some('\\') => self.parse_escape(),
            Some(c) => {
                self.next();
                Ok(c)
            }
        }
    }

    /// Go's `parseClass`, at a `[`.
    fn parse_class(&mut self) -> Res<Node> {
        self.next(); // [
        let mut negated = false;
        if self.peek() == Some('^') {
            self.next();
            negated = true;
        }
        let mut items = Vec::new();
        let mut first = true;
        while self.peek() != Some(']') || first {
            if self.s.is_empty() {
                return err("missing closing ]");
            }
            first = false;
            // POSIX class [:alnum:]
            if self.s.len() > 2 && self.starts("[:") {
                if let Some(i) = self.s[2..].find(":]") {
                    let whole = &self.s[..i + 4];
                    let mut name = &self.s[2..i + 2];
                    let mut neg = false;
                    if let Some(n) = name.strip_prefix('^') {
                        neg = true;
                        name = n;
                    }
                    match POSIX.iter().find(|p| **p == name) {
                        Some(p) => {
                            items.push(ClassItem::Posix(p, neg));
                            self.s = &self.s[whole.len()..];
                            continue;
                        }
                        None => return err(format!("invalid character class range: `{whole}`")),
                    }
                }
            }
            if let Some(item) = self.parse_unicode_class()? {
                items.push(item);
                continue;
            }
            if let Some(item) = self.parse_perl_class() {
                items.push(item);
                continue;
            }
            let lo = self.parse_class_char()?;
            let mut hi = lo;
            let b = self.s.as_bytes();
            if b.len() >= 2 && b[0] == b'-' && b[1] != b']' {
                self.next();
                hi = self.parse_class_char()?;
                if hi < lo {
                    return err(format!("invalid character class range: `{lo}-{hi}`"));
                }
            }
            items.push(ClassItem::Range(lo as u32, hi as u32));
        }
        self.next(); // ]
        Ok(Node::Class { negated, items })
    }
}

fn emit_range(out: &mut String, lo: u32, hi: u32) {
    // Surrogates are runes in Go but never occur in UTF-8 text.
    let mut parts = Vec::new();
    if lo <= 0xD7FF {
        parts.push((lo, hi.min(0xD7FF)));
    }
    if hi >= 0xE000 {
        parts.push((lo.max(0xE000), hi));
    }
    for (a, b) in parts {
        if a <= b {
            let _ = write!(out, "\\x{{{a:X}}}-\\x{{{b:X}}}");
        }
    }
}

fn emit_item(out: &mut String, item: &ClassItem) {
    match item {
        ClassItem::Range(lo, hi) => emit_range(out, *lo, *hi),
        ClassItem::Posix(name, neg) => {
            let _ = write!(out, "[[:{}{name}:]]", if *neg { "^" } else { "" });
        }
        ClassItem::Perl(kind, neg) => {
            let set = match kind {
                'd' => "0-9",
                's' => "\\t\\n\\f\\r ",
                _ => "0-9A-Za-z_",
            };
            let _ = write!(out, "[{}{set}]", if *neg { "^" } else { "" });
        }
        ClassItem::Unicode(name, neg) => {
            let _ = write!(out, "\\{}{{{name}}}", if *neg { "P" } else { "p" });
        }
    }
}

/// A class that can never match (Rust has no empty `[]`).
const NOTHING: &str = "[a&&b]";

fn emit(out: &mut String, nodes: &[Node]) {
    for node in nodes {
        match node {
            Node::Lit(c) => {
                let c = *c as u32;
                if (0xD800..=0xDFFF).contains(&c) {
                    out.push_str(NOTHING);
                } else {
                    let _ = write!(out, "\\x{{{c:X}}}");
                }
            }
            Node::AnyNotNl => out.push_str("[^\\n]"),
            Node::Class { negated, items } => {
                // A union of the items, each in its own bracket so nothing
                // can be read as a set operator; negation around the union.
                out.push('[');
                if *negated {
                    out.push('^');
                }
                if items.is_empty() {
                    out.push_str(NOTHING);
                }
                for item in items {
                    out.push('[');
                    emit_item(out, item);
                    out.push_str(NOTHING);
                    out.push(']');
                }
                out.push(']');
            }
            Node::BeginText => out.push_str("\\A"),
            Node::EndText => out.push_str("\\z"),
            Node::WordBoundary(true) => out.push_str("(?-u:\\b)"),
            Node::WordBoundary(false) => out.push_str("(?-u:\\B)"),
            Node::Group(inner) => {
                out.push_str("(?:");
                emit(out, inner);
                out.push(')');
            }
            Node::Repeat(sub, op) => {
                out.push_str("(?:");
                emit(out, std::slice::from_ref(sub));
                out.push(')');
                out.push(match op {
                    RepeatOp::Star => '*',
                    RepeatOp::Plus => '+',
                    RepeatOp::Quest => '?',
                });
            }
        }
    }
}

/// Parse `go_re` with Go's syntax and return an equivalent expression for
/// `regex-automata` (Unicode mode, no flags).
pub(crate) fn translate(go_re: &str) -> Result<String, GoRegexError> {
    let mut p = Parser { s: go_re };
    let seq = p.parse_seq(0)?;
    if !p.s.is_empty() {
        return err("unexpected )");
    }
    let mut out = String::with_capacity(go_re.len() * 4);
    emit(&mut out, &seq);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::meta::Regex;

    fn go_matches(go_re: &str, s: &str) -> Result<bool, GoRegexError> {
        let rust = translate(go_re)?;
        let re = Regex::new(&rust).map_err(|e| GoRegexError(e.to_string()))?;
        Ok(re.is_match(s))
    }

    #[test]
    fn go_syntax_quirks() {
        let cases: &[(&str, &str, bool)] = &[
            ("^a[b-d]e$", "ace", true),
            ("^a[^b-d]e$", "aze", true),
            ("^a[^b-d]e$", "ace", false),
            // `[` inside a class is a plain character in Go.
            ("^[[^/]*]$", "[^]", true),
            ("^[[^/]*]$", "x]", false),
            ("^[[^/]]$", "/]", true),
            ("^a\\d$", "a7", true),
            ("^a\\d$", "ad", false),
            ("^[\\]a]$", "]", true),
            ("^[x\\-]$", "-", true),
            ("^[[:alpha:]]$", "q", true),
            ("^[[:^alpha:]]$", "q", false),
            ("^\\pL$", "é", true),
            ("^\\p{Greek}$", "α", true),
            ("^a^b$", "a^b", false),
            ("^^a$", "a", true),
            ("^a]$", "a]", true),
            ("^\\Qa.*\\E$", "a.*", true),
            ("^(.*/)?[^/]*\\.txt$", "a/b/c.txt", true),
            ("^(.*/)?[^/]*\\.txt$", "c.txt", true),
            ("^(.*/)?[^/]*\\.txt$", "c.txt2", false),
            ("^[^/]$", "☺", true),
            ("^\\x41\\x{263a}\\101$", "A☺A", true),
            ("^[a&&b]$", "&", true),
            ("^[a-]$", "-", true),
            ("^[^a-]$", "b", true),
            ("^[a~~b]$", "~", true),
        ];
        for (re, s, want) in cases {
            assert_eq!(
                go_matches(re, s),
                Ok(*want),
                "{re} on {s:?} ({:?})",
                translate(re)
            );
        }
    }

    #[test]
    fn go_syntax_errors() {
        for bad in [
            "^[l-O]$",
            "^[a--b]$",
            "^a\\y$",
            "^\\8$",
            "^[[:foo:]]$",
            "^\\C$",
            "^a**$",
            "^[a$",
            "^\\p{Nope}$",
            "*",
            "^a\\",
        ] {
            assert!(translate(bad).is_err(), "{bad} accepted");
        }
    }
}
