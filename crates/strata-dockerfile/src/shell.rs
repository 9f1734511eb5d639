//! Shell-word expansion with BuildKit's lexer semantics (`shell/lex.go`):
//! quotes, the active escape character, `$V`, `${V}`, `${V:-x}`, `${V-x}`,
//! `${V:+x}`, `${V+x}`, `${V:?msg}`, `${V?msg}`, `${V#pat}`, `${V##pat}`,
//! `${V%pat}`, `${V%%pat}`, `${V/a/b}`, `${V//a/b}`, and word splitting.
//!
//! ```
//! use strata_dockerfile::shell::Lexer;
//!
//! let env = [("NAME", "web"), ("EMPTY", "")];
//! let lex = Lexer::new('\\');
//! let out = lex.process_word("/srv/${NAME:-x}/'$HOME'", &env[..]).unwrap();
//! assert_eq!(out.value, "/srv/web/$HOME");
//! assert!(out.used.contains("NAME"));
//! assert_eq!(lex.process_words("a \"b c\" $NAME", &env[..]).unwrap(), ["a", "b c", "web"]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::go;

/// Where variable values come from. Implemented for slices and vectors of
/// `(name, value)` pairs (the last pair for a name wins, like BuildKit's
/// environment lists), for hash and B-tree maps, and for closures
/// `Fn(&str) -> Option<String>`.
pub trait Env {
    /// The value of `name`, or `None` when it is not set.
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Env for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expanded {
    /// The expanded text.
    pub value: String,
    /// Names the word referenced that were set (BuildKit's "matched").
    pub used: BTreeSet<String>,
    /// Names the word referenced that were not set.
    pub unset: BTreeSet<String>,
}

/// Why a word could not be expanded. The message matches BuildKit's
/// (`failed to process "WORD": REASON`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {}: {reason}", go::quote(word))]
pub struct ExpandError {
    /// The word being expanded.
    pub word: String,
    /// Byte offset in `word` where the problem was noticed.
    pub offset: usize,
    /// What went wrong, e.g. `syntax error: missing '}'`.
    pub reason: String,
}

/// Nesting limit for `${...}` inside `${...}` (BuildKit has none; this keeps
/// hostile input from exhausting the stack).
const MAX_NESTING: usize = 200;

/// BuildKit's shell lexer: expands variables and splits words.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
}

impl Lexer {
    /// A lexer whose escape character is `escape` (`\` or `` ` ``, from the
    /// Dockerfile's `# escape=` directive).
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Keep quote characters in the output (BuildKit's `RawQuotes`).
    pub fn raw_quotes(mut self, yes: bool) -> Self {
        self.raw_quotes = yes;
        self
    }

    /// Keep escape characters in the output (BuildKit's `RawEscapes`).
    pub fn raw_escapes(mut self, yes: bool) -> Self {
        self.raw_escapes = yes;
        self
    }

    /// Treat quotes as ordinary characters (BuildKit's `SkipProcessQuotes`).
    pub fn skip_process_quotes(mut self, yes: bool) -> Self {
        self.skip_process_quotes = yes;
        self
    }

    /// Leave references to unset variables as written (BuildKit's
    /// `SkipUnsetEnv`).
    pub fn skip_unset_env(mut self, yes: bool) -> Self {
        self.skip_unset_env = yes;
        self
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` as one word (spaces kept), like BuildKit's
    /// `ProcessWord`, and reports which variables it referenced.
    pub fn process_word<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Expanded, ExpandError> {
        let mut st = State::new(self, word, env);
        let (value, _) = st.process()?;
        Ok(Expanded {
            value,
            used: st.used,
            unset: st.unset,
        })
    }

    /// Expands `word` and splits the result into words on unquoted
    /// whitespace (expansions are split, quoted parts are not), like
    /// BuildKit's `ProcessWords`.
    pub fn process_words<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Vec<String>, ExpandError> {
        let mut st = State::new(self, word, env);
        let (_, words) = st.process()?;
        Ok(words)
    }
}

/// Word splitting state (BuildKit's `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if go::is_space(c) && self.in_word {
            if !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else if !go::is_space(c) {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct State<'a, E: Env + ?Sized> {
    lex: &'a Lexer,
    src: &'a str,
    pos: usize,
    env: &'a E,
    raw_escapes: bool,
    depth: usize,
    used: BTreeSet<String>,
    unset: BTreeSet<String>,
}

type R<T> = Result<T, String>;

impl<'a, E: Env + ?Sized> State<'a, E> {
    fn new(lex: &'a Lexer, src: &'a str, env: &'a E) -> Self {
        // Go's text/scanner skips a byte order mark at the very start.
        let pos = if src.starts_with('\u{feff}') { 3 } else { 0 };
        State {
            lex,
            src,
            pos,
            env,
            raw_escapes: lex.raw_escapes,
            depth: 0,
            used: BTreeSet::new(),
            unset: BTreeSet::new(),
        }
    }

    fn process(&mut self) -> Result<(String, Vec<String>), ExpandError> {
        let raw = self.raw_escapes;
        self.stop_on(None, raw).map_err(|reason| ExpandError {
            word: self.src.to_string(),
            offset: self.pos.min(self.src.len()),
            reason,
        })
    }

    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn getenv(&mut self, name: &str) -> (String, bool) {
        match self.env.get(name) {
            Some(v) => {
                self.used.insert(name.to_string());
                (v, true)
            }
            None => {
                self.unset.insert(name.to_string());
                (String::new(), false)
            }
        }
    }

    /// BuildKit's `processStopOn`: process until `stop` (consumed) or the end.
    fn stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> R<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> R<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        let esc = self.lex.escape;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '\'' | '"' if !self.lex.skip_process_quotes => {
                    let tmp = if ch == '\'' {
                        self.single_quote()?
                    } else {
                        self.double_quote()?
                    };
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == esc {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => {
                                words.add_raw_char(c);
                                result.push(c);
                            }
                        }
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> R<String> {
        let mut out = String::new();
        let q = self.next();
        if self.lex.raw_quotes {
            out.extend(q);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> R<String> {
        let mut out = String::new();
        let esc = self.lex.escape;
        let q = self.next();
        if self.lex.raw_quotes {
            out.extend(q);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or(esc);
                    if ch == esc {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == esc => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn dollar(&mut self) -> R<String> {
        if self.depth >= MAX_NESTING {
            return Err("syntax error: substitutions nested too deeply".into());
        }
        self.depth += 1;
        let r = self.dollar_inner();
        self.depth -= 1;
        r
    }

    fn dollar_inner(&mut self) -> R<String> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            let (value, set) = self.getenv(&name);
            if !set && self.lex.skip_unset_env {
                return Ok(format!("${name}"));
            }
            return Ok(value);
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let first = self.next();
        let mut chs = go_rune_str(first);
        let mut null_is_unset = false;
        let modifier = match first {
            Some('}') => {
                let (value, set) = self.getenv(&name);
                if !set && self.lex.skip_unset_env {
                    return Ok(format!("${{{name}}}"));
                }
                return Ok(value);
            }
            Some(':') => {
                null_is_unset = true;
                let m = self.next();
                chs.push_str(&go_rune_str(m));
                m
            }
            Some('+' | '-' | '?' | '#' | '%') => first,
            Some('/') => return self.replace(&name),
            _ => return Err(format!("unsupported modifier ({chs}) in substitution")),
        };
        let raw = matches!(modifier, Some('#' | '%'));
        if null_is_unset && raw {
            return Err(format!("unsupported modifier ({chs}) in substitution"));
        }
        let (word, _) = self
            .stop_on(Some('}'), raw)
            .map_err(|e| self.missing('}', e))?;
        let (value, set) = self.getenv(&name);
        if self.lex.skip_unset_env && !set {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let empty = !set || (null_is_unset && value.is_empty());
        match modifier {
            Some('-') => Ok(if empty { word } else { value }),
            Some('+') => Ok(if empty { String::new() } else { word }),
            Some('?') => {
                if !set {
                    let msg = if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    };
                    return Err(format!("{name}: {msg}"));
                }
                if null_is_unset && value.is_empty() {
                    let msg = if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    };
                    return Err(format!("{name}: {msg}"));
                }
                Ok(value)
            }
            Some(m @ ('%' | '#')) => {
                let (pattern, greedy) = match word.strip_prefix(m) {
                    Some(rest) => (rest.to_string(), true),
                    None => (word, false),
                };
                if m == '%' {
                    trim_suffix(&pattern, &value, greedy)
                } else {
                    trim_prefix(&pattern, &value, greedy)
                }
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn missing(&self, c: char, err: String) -> String {
        if self.peek().is_none() {
            if c == '}' {
                "syntax error: missing '}'".into()
            } else {
                format!("syntax error: missing '{c}' in ${{}}")
            }
        } else {
            err
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: &str) -> R<String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let (pattern, _) = self
            .stop_on(Some('/'), true)
            .map_err(|e| self.missing('/', e))?;
        let (replacement, _) = self
            .stop_on(Some('}'), true)
            .map_err(|e| self.missing('}', e))?;
        let (value, set) = self.getenv(name);
        if self.lex.skip_unset_env && !set {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let re = shell_pattern_regex(&pattern, true, false)
            .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
        if all {
            Ok(replace_all_go(&re, &value, &replacement))
        } else {
            Ok(match re.find(&value) {
                Some(m) => format!(
                    "{}{}{}",
                    &value[..m.start()],
                    replacement,
                    &value[m.end()..]
                ),
                None => value,
            })
        }
    }

    /// BuildKit's `processName`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && go::is_digit(ch) {
                while let Some(c) = self.peek().filter(|c| go::is_digit(*c)) {
                    self.next();
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !go::is_letter(ch) && !go::is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

/// `string(rune)` in Go, where end of input (-1) becomes U+FFFD.
fn go_rune_str(c: Option<char>) -> String {
    c.unwrap_or('\u{fffd}').to_string()
}

/// BuildKit's `convertShellPatternToRegex`: `*` is any string (greedy or
/// not), `?` any one character, `\` escapes `*`, `?` and `\` (and is dropped
/// before `}` and `/`); no bracket expressions.
fn shell_pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> R<regex::Regex> {
    let mut chars = pattern
        .strip_prefix('\u{feff}')
        .unwrap_or(pattern)
        .chars()
        .peekable();
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut buf = [0u8; 4];
    while let Some(tok) = chars.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(t @ ('*' | '?' | '\\')) => {
                        out.push_str(&regex::escape(t.encode_utf8(&mut buf)))
                    }
                    t => return Err(format!("invalid escape '\\{}'", go_rune_str(t))),
                }
            }
            t => out.push_str(&regex::escape(t.encode_utf8(&mut buf))),
        }
    }
    regex::RegexBuilder::new(&out)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| e.to_string())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> R<String> {
    let re = shell_pattern_regex(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> R<String> {
    // Regular expressions cannot find the shortest rightmost match, so
    // reverse both and trim a prefix (escapes keep their order).
    let p = reverse_pattern(pattern);
    let v: String = value.chars().rev().collect();
    let t = trim_prefix(&p, &v, greedy)?;
    Ok(t.chars().rev().collect())
}

/// Reverses a pattern but keeps `\x` pairs in order (BuildKit's `reversePattern`).
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; p.len()];
    let last = p.len().saturating_sub(1);
    let mut i = 0;
    while i < p.len() {
        let o = last - i;
        if p[i] == '\\' && i != last {
            out[o - 1] = '\\';
            out[o] = p[i + 1];
            i += 2;
        } else {
            out[o] = p[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// Go's `Regexp.ReplaceAllString`: the replacement is a template where
/// `$0`/`${0}` is the match and `$$` a dollar sign.
fn replace_all_go(re: &regex::Regex, src: &str, template: &str) -> String {
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= src.len() {
        let Some(m) = re.find_at(src, search) else {
            break;
        };
        out.push_str(&src[last_end..m.start()]);
        if m.end() > last_end || m.start() == 0 {
            expand_template(&mut out, template, m.as_str());
        }
        last_end = m.end();
        let width = src[search..]
            .chars()
            .next()
            .map(char::len_utf8)
            .unwrap_or(0);
        if search + width > m.end() {
            search += width;
        } else if search + 1 > m.end() {
            search += 1;
        } else {
            search = m.end();
        }
    }
    out.push_str(&src[last_end.min(src.len())..]);
    out
}

/// Go's `Regexp.Expand` for a regex whose only group is the whole match.
fn expand_template(out: &mut String, mut template: &str, whole: &str) {
    while let Some(i) = template.find('$') {
        out.push_str(&template[..i]);
        template = &template[i + 1..];
        if let Some(rest) = template.strip_prefix('$') {
            out.push('$');
            template = rest;
            continue;
        }
        let (brace, body) = match template.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, template),
        };
        let name_len: usize = body
            .chars()
            .take_while(|&c| go::is_letter(c) || go::is_digit(c) || c == '_')
            .map(char::len_utf8)
            .sum();
        if name_len == 0 || (brace && !body[name_len..].starts_with('}')) {
            out.push('$');
            continue;
        }
        let name = &body[..name_len];
        template = &body[name_len + usize::from(brace)..];
        // The only group is the whole match: `$0` (Go rejects leading zeros).
        let is_zero = name == "0";
        if is_zero {
            out.push_str(whole);
        }
    }
    out.push_str(template);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("NULL", ""),
            ("V", "aXbXc"),
            ("P", "/a/b.tar.gz"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn word(s: &str) -> Result<String, ExpandError> {
        Lexer::new('\\')
            .process_word(s, env().as_slice())
            .map(|e| e.value)
    }

    #[test]
    fn modifiers() {
        let ok = [
            ("${P#*/}", "a/b.tar.gz"),
            ("${P##*/}", "b.tar.gz"),
            ("${P%.*}", "/a/b.tar"),
            ("${P%%.*}", "/a/b"),
            ("${P#nomatch}", "/a/b.tar.gz"),
            ("${V/X/-}", "a-bXc"),
            ("${V//X/-}", "a-b-c"),
            ("${V//X/$$}", "abc"),
            ("${V//X/\\$}", "a\\$b\\$c"),
            ("${V//?/<>}", "<><><><><>"),
            ("${V/#a/}", "aXbXc"),
            ("${XX-def}", "def"),
            ("${NULL-def}", ""),
            ("${NULL:-def}", "def"),
            ("${NULL+set}", "set"),
            ("${NULL:+set}", ""),
            ("${P#\\/}", "a/b.tar.gz"),
            ("${P%\\*}", "/a/b.tar.gz"),
            ("${UNSET%x}", ""),
        ];
        for (input, want) in ok {
            assert_eq!(word(input).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "${P:#x}",
            "${P:%x}",
            "${P#\\x}",
            "${V/a",
            "${NULL:?}",
            "${XX?custom}",
        ] {
            assert!(word(bad).is_err(), "{bad}");
        }
        let e = word("${XX:?must be set}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to process \"${XX:?must be set}\": XX: must be set"
        );
    }

    #[test]
    fn used_and_unset_names() {
        let out = Lexer::new('\\')
            .process_word("$PWD ${NOPE:-$SHELL} '$SKIPPED'", env().as_slice())
            .unwrap_or_default();
        assert_eq!(out.value, "/home bash $SKIPPED");
        assert_eq!(out.used.iter().collect::<Vec<_>>(), ["PWD", "SHELL"]);
        assert_eq!(out.unset.iter().collect::<Vec<_>>(), ["NOPE"]);
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        let got = lex
            .process_word(r"C:\path`$PWD `\", env().as_slice())
            .map(|e| e.value);
        assert_eq!(got.as_deref(), Ok(r"C:\path$PWD \"));
    }

    #[test]
    fn raw_and_skip_modes() {
        let lex = Lexer::new('\\')
            .raw_quotes(true)
            .raw_escapes(true)
            .skip_unset_env(true);
        let words = lex
            .process_words(r#"RUN <<'EOF' "a b" \x $U ${U:-d}"#, &NoEnv)
            .unwrap_or_default();
        assert_eq!(words, ["RUN", "<<'EOF'", "\"a b\"", r"\x", "$U", "${U:-d}"]);
    }

    #[test]
    fn word_splitting_keeps_prefix_before_modifier() {
        let got = Lexer::new('\\')
            .process_words("ab${X:-c}d e", &NoEnv)
            .unwrap_or_default();
        assert_eq!(got, ["abcd", "e"]);
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let deep = "${A:-".repeat(5000) + &"}".repeat(5000);
        assert!(word(&deep).is_err());
        let ok = "${A:-".repeat(50) + "x" + &"}".repeat(50);
        assert_eq!(word(&ok).as_deref(), Ok("x"));
    }

    #[test]
    fn closures_and_maps_are_envs() {
        let f = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(
            Lexer::new('\\')
                .process_word("$A$B", &f)
                .map(|e| e.value)
                .as_deref(),
            Ok("1")
        );
        let m: HashMap<String, String> = [("B".to_string(), "2".to_string())].into_iter().collect();
        assert_eq!(
            Lexer::new('\\')
                .process_word("$A$B", &m)
                .map(|e| e.value)
                .as_deref(),
            Ok("2")
        );
    }
}
