//! `.dockerignore` patterns and the matcher, with moby/patternmatcher's
//! semantics (`New`, `MatchesOrParentMatches`).

use std::path::PathBuf;
use std::sync::Arc;

use regex_automata::hybrid::dfa::DFA;
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

use crate::error::{PatternError, PatternErrorKind, SourceText};
use crate::gopath::{clean, dir, go_match};
use crate::goregex::translate;

/// How one pattern matches, as patternmatcher's `compile` decides.
#[derive(Debug)]
enum Kind {
    /// The path equals the pattern.
    Exact,
    /// `literal**`: the path starts with `literal`.
    Prefix,
    /// `**literal`: the path ends with `literal` (or is it without its `/`).
    Suffix,
    /// Anything else: a Go regular expression.
    Regex {
        go: String,
        re: Regex,
        dfa: Box<DFA>,
    },
    /// The Go regular expression does not compile: every match attempt
    /// fails, as `regexp.Compile` does each time in Go.
    Broken { go: String, reason: String },
}

/// One pattern of a `.dockerignore` (or of `COPY --exclude`).
#[derive(Debug)]
pub struct Pattern {
    text: String,
    exception: bool,
    line: Option<usize>,
    kind: Kind,
}

impl Pattern {
    /// The cleaned pattern, without its leading `!`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` exception (it re-includes what it matches).
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    /// The line of the ignore file it came from, when it came from one.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The Go regular expression patternmatcher matches with, when the
    /// pattern is not a plain exact, prefix or suffix comparison.
    pub fn go_regex(&self) -> Option<&str> {
        match &self.kind {
            Kind::Regex { go, .. } | Kind::Broken { go, .. } => Some(go),
            _ => None,
        }
    }

    /// patternmatcher's `Pattern.match`: `Err` when the regular expression
    /// does not compile.
    fn match_path(&self, path: &str) -> Result<bool, &str> {
        let t = self.text.as_bytes();
        let p = path.as_bytes();
        match &self.kind {
            Kind::Exact => Ok(p == t),
            Kind::Prefix => Ok(p.starts_with(&t[..t.len().saturating_sub(2)])),
            Kind::Suffix => {
                let suffix = t.get(2..).unwrap_or_default();
                if p.ends_with(suffix) {
                    return Ok(true);
                }
                Ok(suffix.first() == Some(&b'/') && p == &suffix[1..])
            }
            Kind::Regex { re, .. } => Ok(re.is_match(path)),
            Kind::Broken { reason, .. } => Err(reason),
        }
    }

    /// Whether this pattern could match some path strictly below `dir`
    /// (`true` when unsure). Used to prune excluded directories.
    fn could_match_below(&self, dir: &str) -> bool {
        let under = format!("{dir}/");
        let t = self.text.as_bytes();
        match &self.kind {
            Kind::Exact => t.starts_with(under.as_bytes()),
            Kind::Prefix => {
                let lit = &t[..t.len().saturating_sub(2)];
                lit.starts_with(under.as_bytes()) || under.as_bytes().starts_with(lit)
            }
            Kind::Suffix | Kind::Broken { .. } => true,
            Kind::Regex { dfa, .. } => dfa_can_continue(dfa, under.as_bytes()),
        }
    }
}

/// Whether the anchored DFA, fed `prefix`, is not yet dead (some
/// continuation may still match).
fn dfa_can_continue(dfa: &DFA, prefix: &[u8]) -> bool {
    let mut cache = dfa.create_cache();
    let input = Input::new(prefix).anchored(Anchored::Yes);
    let Ok(mut sid) = dfa.start_state_forward(&mut cache, &input) else {
        return true;
    };
    for &b in prefix {
        match dfa.next_state(&mut cache, sid, b) {
            Ok(next) => sid = next,
            Err(_) => return true,
        }
        if sid.is_dead() {
            return false;
        }
        if sid.is_quit() {
            return true;
        }
    }
    true
}

/// patternmatcher's `compile`: the match kind, and for regular
/// expressions the Go expression text.
fn compile(text: &str) -> (Option<String>, u8) {
    const EXACT: u8 = 0;
    const PREFIX: u8 = 1;
    const SUFFIX: u8 = 2;
    const REGEX: u8 = 3;
    let mut chars: Vec<char> = text.chars().collect();
    // Go's text/scanner skips a byte order mark at the very start.
    if chars.first() == Some(&'\u{FEFF}') {
        chars.remove(0);
    }
    let mut re = String::from("^");
    let mut kind = EXACT;
    let mut pos = 0;
    let mut iteration = 0;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        match ch {
            '*' if chars.get(pos) == Some(&'*') => {
                pos += 1;
                // `**/` is `**`.
                if chars.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos >= chars.len() {
                    if kind == EXACT {
                        kind = PREFIX;
                    } else {
                        re.push_str(".*");
                        kind = REGEX;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = REGEX;
                }
                if iteration == 0 {
                    kind = SUFFIX;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = REGEX;
            }
            '?' => {
                re.push_str("[^/]");
                kind = REGEX;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                if pos < chars.len() {
                    re.push('\\');
                    re.push(chars[pos]);
                    pos += 1;
                    kind = REGEX;
                } else {
                    re.push('\\');
                }
            }
            '[' | ']' => {
                re.push(ch);
                kind = REGEX;
            }
            _ => re.push(ch),
        }
        iteration += 1;
    }
    if kind == REGEX {
        re.push('$');
        (Some(re), kind)
    } else {
        (None, kind)
    }
}

fn build_kind(text: &str) -> Kind {
    match compile(text) {
        (None, 1) => Kind::Prefix,
        (None, 2) => Kind::Suffix,
        (None, _) => Kind::Exact,
        (Some(go), _) => {
            let built = translate(&go).map_err(|e| e.0).and_then(|rust| {
                let re = Regex::new(&rust).map_err(|e| e.to_string())?;
                let dfa = DFA::new(&rust).map_err(|e| e.to_string())?;
                Ok((re, dfa))
            });
            match built {
                Ok((re, dfa)) => Kind::Regex {
                    go,
                    re,
                    dfa: Box::new(dfa),
                },
                Err(reason) => Kind::Broken { go, reason },
            }
        }
    }
}

/// Go's `strings.TrimSpace` (Unicode white space, as `str::trim`).
fn trim_space(s: &str) -> &str {
    s.trim()
}

/// Where patterns came from, for error messages.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub(crate) file: Option<PathBuf>,
    pub(crate) src: Option<Arc<miette::NamedSource<String>>>,
}

/// A compiled list of `.dockerignore` patterns.
///
/// A path is excluded when the last pattern that matches it, or matches one
/// of its parent directories, is not a `!` exception (patternmatcher's
/// `MatchesOrParentMatches`).
#[derive(Debug)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exceptions: bool,
    origin: Origin,
}

impl Matcher {
    /// Compile `patterns` as patternmatcher's `New` does: each is trimmed,
    /// empty ones are skipped, `filepath.Clean`ed, a leading `!` makes an
    /// exception, and a pattern `filepath.Match` rejects is an error.
    ///
    /// ```
    /// use strata_context::Matcher;
    /// let m = Matcher::new(["docs", "!docs/README.md", "*.log"]).unwrap();
    /// assert!(m.matches("docs/guide.md"));
    /// assert!(!m.matches("docs/README.md"));
    /// assert!(m.matches("debug.log"));
    /// assert!(!m.matches("src/debug.log"));
    /// ```
    pub fn new<I, S>(patterns: I) -> Result<Matcher, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Matcher::build(
            patterns.into_iter().map(|p| (p.as_ref().to_owned(), None)),
            Origin::default(),
        )
    }

    /// Read an ignore file's bytes (see [`read_ignore_file`](crate::read_ignore_file))
    /// and compile its patterns; errors name `file` and the line.
    pub fn from_ignore_file(
        file: impl Into<PathBuf>,
        data: &[u8],
    ) -> Result<Matcher, PatternError> {
        let file = file.into();
        let text = String::from_utf8_lossy(data).into_owned();
        let src = Arc::new(miette::NamedSource::new(file.display().to_string(), text));
        let origin = Origin {
            file: Some(file),
            src: Some(src),
        };
        let lines = crate::ignorefile::read_all(data).map_err(|mut e| {
            e.origin = Some(origin_source(&origin));
            e
        })?;
        Matcher::build(lines.into_iter().map(|l| (l.pattern, Some(l.line))), origin)
    }

    pub(crate) fn build(
        patterns: impl Iterator<Item = (String, Option<usize>)>,
        origin: Origin,
    ) -> Result<Matcher, PatternError> {
        let mut out = Vec::new();
        let mut exceptions = false;
        for (raw, line) in patterns {
            let trimmed = trim_space(&raw);
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = clean(trimmed);
            let fail = |kind| PatternError {
                pattern: raw.clone(),
                line,
                kind,
                origin: origin.file.as_ref().map(|_| origin_source(&origin)),
            };
            let (exception, text) = match cleaned.strip_prefix('!') {
                Some("") => return Err(fail(PatternErrorKind::LoneExclamation)),
                Some(rest) => (true, rest.to_owned()),
                None => (false, cleaned.clone()),
            };
            exceptions |= exception;
            if go_match(&text, ".").is_err() {
                return Err(fail(PatternErrorKind::Syntax));
            }
            let kind = build_kind(&text);
            out.push(Pattern {
                text,
                exception,
                line,
                kind,
            });
        }
        Ok(Matcher {
            patterns: out,
            exceptions,
            origin,
        })
    }

    /// A matcher with no patterns (nothing is excluded).
    pub fn empty() -> Matcher {
        Matcher {
            patterns: Vec::new(),
            exceptions: false,
            origin: Origin::default(),
        }
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.exceptions
    }

    /// Whether `path` (slash-separated, relative to the context root) is
    /// excluded. A pattern whose regular expression Go would refuse counts
    /// as not matching here; [`try_matches`](Matcher::try_matches) reports it.
    pub fn matches(&self, path: &str) -> bool {
        self.try_matches(path).unwrap_or(false)
    }

    /// patternmatcher's `MatchesOrParentMatches(path, patterns)`, errors
    /// included: the path is cleaned, `.` never matches, and a pattern
    /// whose regular expression does not compile fails when it is tried.
    pub fn try_matches(&self, path: &str) -> Result<bool, PatternError> {
        let file = clean(path);
        if file == "." {
            return Ok(false);
        }
        let parent = dir(&file);
        let mut matched = false;
        for p in &self.patterns {
            if p.exception != matched {
                continue;
            }
            let mut m = p.match_path(&file).map_err(|r| self.regex_error(p, r))?;
            if !m && parent != "." {
                let b = parent.as_bytes();
                let mut ends: Vec<usize> = (0..b.len()).filter(|&i| b[i] == b'/').collect();
                ends.push(b.len());
                for end in ends {
                    if p.match_path(&parent[..end]).unwrap_or(false) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exception;
            }
        }
        Ok(matched)
    }

    /// Check every pattern's regular expression now, rather than when a
    /// path first needs it (for callers that prefer to fail early).
    pub fn check_all(&self) -> Result<(), PatternError> {
        for p in &self.patterns {
            if let Kind::Broken { reason, .. } = &p.kind {
                return Err(self.regex_error(p, reason));
            }
        }
        Ok(())
    }

    fn regex_error(&self, p: &Pattern, reason: &str) -> PatternError {
        PatternError {
            pattern: if p.exception {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            },
            line: p.line,
            kind: PatternErrorKind::Regex(reason.to_owned()),
            origin: self
                .origin
                .file
                .as_ref()
                .map(|_| origin_source(&self.origin)),
        }
    }

    /// For the walk: decide `path` given which patterns matched its parent
    /// or an ancestor (`parent_hits`), with patternmatcher's evaluation
    /// order (so errors surface exactly when Go's would). When `hits` is
    /// given, it receives which patterns match `path` or an ancestor.
    pub(crate) fn decide(
        &self,
        path: &str,
        parent_hits: &[bool],
        hits: Option<&mut Vec<bool>>,
    ) -> Result<bool, PatternError> {
        let mut matched = false;
        for (i, p) in self.patterns.iter().enumerate() {
            if p.exception != matched {
                continue;
            }
            let m = p.match_path(path).map_err(|r| self.regex_error(p, r))? || parent_hits[i];
            if m {
                matched = !p.exception;
            }
        }
        if let Some(hits) = hits {
            hits.clear();
            hits.extend(
                self.patterns
                    .iter()
                    .enumerate()
                    .map(|(i, p)| parent_hits[i] || p.match_path(path).unwrap_or(false)),
            );
        }
        Ok(matched)
    }

    /// Whether some exception could re-include a path below the excluded
    /// directory `dir` (so the walk must look inside it).
    pub(crate) fn may_reinclude_below(&self, dir: &str) -> bool {
        self.exceptions
            && self
                .patterns
                .iter()
                .any(|p| p.exception && p.could_match_below(dir))
    }
}

fn origin_source(origin: &Origin) -> SourceText {
    SourceText {
        file: origin.file.clone().unwrap_or_default(),
        src: origin
            .src
            .clone()
            .unwrap_or_else(|| Arc::new(miette::NamedSource::new("", String::new()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_like_patternmatcher() {
        // patternmatcher's compileTests (slash separator).
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("*", "regex", Some("^[^/]*$")),
            ("file*", "regex", Some("^file[^/]*$")),
            ("*file", "regex", Some("^[^/]*file$")),
            ("a*/b", "regex", Some("^a[^/]*/b$")),
            ("**", "suffix", None),
            ("**/**", "regex", Some("^(.*/)?.*$")),
            ("dir/**", "prefix", None),
            ("**/dir", "suffix", None),
            ("**/dir2/*", "regex", Some("^(.*/)?dir2/[^/]*$")),
            ("**/dir2/**", "regex", Some("^(.*/)?dir2/.*$")),
            ("**file", "suffix", None),
            ("**/file*txt", "regex", Some("^(.*/)?file[^/]*txt$")),
            ("**/**/*.txt", "regex", Some("^(.*/)?(.*/)?[^/]*\\.txt$")),
            ("a[b-d]e", "regex", Some("^a[b-d]e$")),
            (".*", "regex", Some("^\\.[^/]*$")),
            ("abc.def", "exact", None),
            ("abc?def", "regex", Some("^abc[^/]def$")),
            ("**/foo/bar", "suffix", None),
            ("a(b)c/def", "exact", None),
            ("a.|)$(}+{bc", "exact", None),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "exact",
                None,
            ),
        ];
        for (pattern, kind, go) in cases {
            let (re, k) = compile(&clean(pattern));
            let name = ["exact", "prefix", "suffix", "regex"][k as usize];
            assert_eq!(name, *kind, "{pattern}");
            assert_eq!(re.as_deref(), *go, "{pattern}");
        }
    }

    #[test]
    fn errors_when_tried() {
        // `[Local-Only]` passes filepath.Match but Go's regexp refuses the
        // range `l-O`: New succeeds, matching fails.
        let m = Matcher::new(["[Local-Only]/"]).unwrap();
        assert!(m.try_matches("x").is_err());
        assert!(m.check_all().is_err());
        // Never tried: an inclusion after the path already matched.
        let m = Matcher::new(["*", "[Local-Only]"]).unwrap();
        assert!(m.try_matches("x").unwrap());
        assert!(Matcher::new(["!"]).is_err());
        assert!(Matcher::new(["a/["]).is_err());
    }

    #[test]
    fn pruning_is_sound_and_useful() {
        let m = Matcher::new([
            "node_modules",
            "!node_modules/keep/*.js",
            "vendor",
            "!**/LICENSE",
        ])
        .unwrap();
        assert!(m.may_reinclude_below("node_modules"));
        assert!(m.may_reinclude_below("node_modules/keep"));
        assert!(m.may_reinclude_below("vendor"));
        let m = Matcher::new(["node_modules", "!src/*.js", "!docs/README.md", "!lib**"]).unwrap();
        assert!(!m.may_reinclude_below("node_modules"));
        assert!(m.may_reinclude_below("docs"));
        assert!(m.may_reinclude_below("lib"));
        assert!(m.may_reinclude_below("library"));
        assert!(!m.may_reinclude_below("build"));
        let m = Matcher::new(["*", "!*/keep"]).unwrap();
        assert!(m.may_reinclude_below("anything"));
        assert!(!m.may_reinclude_below("any/deeper"));
    }
}
