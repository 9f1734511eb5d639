//! BuildKit's line-level parser (`parser.go`): directives, comments, line
//! continuations, instruction nodes and here-documents.

use std::sync::Arc;

use serde::Serialize;

use crate::ast::{Arg, Directive, Flag, Heredoc, Node, Warning};
use crate::error::{ParseError, ParseErrorKind};
use crate::go;
use crate::line_parsers::{node_from_line, RawArg, RawNode};
use crate::shell::{Lexer, NoEnv};
use crate::span::{LineIndex, LineMap, Span};

/// Longest physical line BuildKit's scanner accepts (without its newline).
const MAX_LINE: usize = 64 * 1024 - 1;

/// A parsed Dockerfile: directives, one [`Node`] per instruction, warnings.
#[derive(Debug, Clone, Serialize)]
pub struct Dockerfile {
    /// The file name used in errors.
    pub name: String,
    /// Parser directives from the top of the file.
    pub directives: Vec<Directive>,
    /// The instructions, in order.
    pub nodes: Vec<Node>,
    /// What BuildKit would warn about (not printed).
    pub warnings: Vec<Warning>,
    /// The escape character (`\`, or `` ` `` after `# escape=``).
    pub escape: char,
    #[serde(skip)]
    pub(crate) source: Arc<str>,
    #[serde(skip)]
    pub(crate) lines: LineIndex,
}

impl Dockerfile {
    /// BuildKit's `Node.Dump()` of the whole file: one instruction a line,
    /// without a trailing newline.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push('(');
            out.push_str(&n.dump());
            out.push_str(")\n");
        }
        go::trim_space(&out).to_string()
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The source text of `span` (e.g. an instruction exactly as written).
    pub fn text(&self, span: Span) -> &str {
        self.source.get(span.range()).unwrap_or("")
    }

    /// The value of a parser directive (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        self.lines.span(&self.source, start, end)
    }
}

/// Parses `source` (named `Dockerfile` in errors).
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    parse_named("Dockerfile", source)
}

/// Parses `source`; errors name the file `name`.
pub fn parse_named(name: &str, source: &str) -> Result<Dockerfile, ParseError> {
    Parser::new(name, source).run()
}

/// Directive state (BuildKit's `directives` and `DirectiveParser`).
struct Directives {
    escape: char,
    done: bool,
    seen: Vec<Directive>,
}

/// One physical line: where it starts, its text without the line ending.
#[derive(Clone, Copy)]
struct Line<'a> {
    start: usize,
    raw: &'a str,
    /// `raw` without trailing `\r` and `\n` characters.
    text: &'a str,
}

struct Parser<'a> {
    name: &'a str,
    src: &'a str,
    arc: Arc<str>,
    idx: LineIndex,
    pos: usize,
    /// 1-based line number of a line that is too long, once reached.
    too_long: Option<usize>,
    line_no: usize,
}

impl<'a> Parser<'a> {
    fn new(name: &'a str, src: &'a str) -> Self {
        Parser {
            name,
            src,
            arc: Arc::from(src),
            idx: LineIndex::new(src),
            pos: 0,
            too_long: None,
            line_no: 0,
        }
    }

    /// The next physical line, like BuildKit's scanner (which stops at a
    /// line of 64 KiB or more).
    fn next_line(&mut self) -> Option<Line<'a>> {
        if self.pos >= self.src.len() || self.too_long.is_some() {
            return None;
        }
        let rest = &self.src[self.pos..];
        let len = rest.find('\n').map(|i| i + 1).unwrap_or(rest.len());
        let raw = &rest[..len];
        let content_len = raw.strip_suffix('\n').unwrap_or(raw).len();
        if content_len > MAX_LINE {
            self.too_long = Some(self.line_no + 1);
            return None;
        }
        let start = self.pos;
        self.pos += len;
        self.line_no += 1;
        Some(Line {
            start,
            raw,
            text: raw.trim_end_matches(['\r', '\n']),
        })
    }

    fn span(&self, start: usize, end: usize) -> Span {
        self.idx.span(self.src, start, end)
    }

    fn error(&self, kind: ParseErrorKind, start: usize, end: usize) -> ParseError {
        ParseError::new(kind, self.name, &self.arc, self.span(start, end))
    }

    fn run(mut self) -> Result<Dockerfile, ParseError> {
        let mut d = Directives {
            escape: '\\',
            done: false,
            seen: Vec::new(),
        };
        let mut nodes: Vec<Node> = Vec::new();
        let mut warnings = Vec::new();
        let mut comments: Vec<String> = Vec::new();
        let mut first = true;

        while let Some(mut line) = self.next_line() {
            if first {
                first = false;
                if let Some(t) = line.text.strip_prefix('\u{feff}') {
                    line.start += 3;
                    line.raw = &line.raw[3..];
                    line.text = t;
                }
            }
            if is_comment(line.raw) {
                let body = line.raw.get(1..).unwrap_or("");
                let c = go::trim_space(body);
                if c.is_empty() {
                    comments.clear();
                } else {
                    comments.push(c.to_string());
                }
            }
            let (content, directive) = self.process_line(&mut d, line, true)?;
            if directive && !comments.is_empty() {
                comments.pop();
            }
            let start_line = self.line_no;
            let (piece, mut at_end) = trim_continuation(content, d.escape);
            if at_end && piece.is_empty() {
                continue;
            }
            let content_off = go::offset_in(self.src, content);
            let mut map = LineMap::new(content_off);
            let mut logical = String::from(piece);
            map.push(0, content_off, piece.len());
            let mut last_end = line.start + line.text.len();
            let mut empty_continuation = false;
            while !at_end {
                let Some(next) = self.next_line() else {
                    break;
                };
                let (content, _) = self.process_line(&mut d, next, false)?;
                last_end = next.start + next.text.len();
                if is_comment(next.raw) {
                    continue;
                }
                if content.trim_start_matches(go::is_space).is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (piece, e) = trim_continuation(content, d.escape);
                at_end = e;
                map.push(logical.len(), go::offset_in(self.src, piece), piece.len());
                logical.push_str(piece);
            }

            let raw = node_from_line(&logical, &logical, d.escape, 0).map_err(|(kind, s, e)| {
                let (s, e) = map.range(s, e);
                self.error(kind, s, e)
            })?;

            let mut heredocs = Vec::new();
            if can_contain_heredoc(&raw) && logical.contains("<<") {
                for h in heredocs_from_line(&logical).map_err(|msg| {
                    let (s, e) = map.range(0, logical.len());
                    self.error(ParseErrorKind::BadHeredoc(msg), s, e)
                })? {
                    let mut content = String::new();
                    let mut doc_start = None;
                    let mut terminated = false;
                    while let Some(l) = self.next_line() {
                        doc_start.get_or_insert(l.start);
                        last_end = l.start + l.text.len();
                        let candidate = if h.chomp {
                            l.text.trim_start_matches('\t')
                        } else {
                            l.text
                        };
                        if candidate == h.name {
                            terminated = true;
                            break;
                        }
                        content.push_str(l.raw);
                    }
                    if !terminated {
                        let (s, e) = map.range(0, logical.len());
                        return Err(self.error(ParseErrorKind::UnterminatedHeredoc(h.name), s, e));
                    }
                    let doc_start = doc_start.unwrap_or(last_end);
                    heredocs.push(Heredoc {
                        name: h.name,
                        fd: h.fd,
                        expand: h.expand,
                        chomp: h.chomp,
                        content,
                        span: self.span(doc_start, last_end),
                    });
                }
            }

            let node = self.finish_node(
                raw,
                &map,
                &logical,
                last_end,
                start_line,
                std::mem::take(&mut comments),
                heredocs,
            );
            if empty_continuation {
                warnings.push(Warning {
                    rule: "NoEmptyContinuation",
                    message: format!("Empty continuation line found in: {logical}"),
                    detail: "Empty continuation lines will become errors in a future release",
                    span: node.span,
                });
            }
            nodes.push(node);
        }

        let end = self.src.len();
        if nodes.is_empty() {
            let line = self.line_no.max(1);
            let start = self.line_start(line);
            return Err(self.error(ParseErrorKind::NoInstructions, start, start));
        }
        if let Some(line) = self.too_long {
            let start = self.line_start(line);
            return Err(self.error(ParseErrorKind::LineTooLong, start, end.min(start + 1)));
        }
        Ok(Dockerfile {
            name: self.name.to_string(),
            directives: d.seen,
            nodes,
            warnings,
            escape: d.escape,
            source: self.arc,
            lines: self.idx,
        })
    }

    fn line_start(&self, line: usize) -> usize {
        // The byte offset where 1-based `line` starts (or the end).
        let mut n = 1;
        for (i, b) in self.src.bytes().enumerate() {
            if n == line {
                return i;
            }
            if b == b'\n' {
                n += 1;
            }
        }
        self.src.len()
    }

    /// BuildKit's `processLine`: drop the line ending (and leading
    /// whitespace for the first line of an instruction), look for a parser
    /// directive, and blank out comments. Returns the content (a sub-slice
    /// of the source) and whether the line was a directive.
    fn process_line(
        &self,
        d: &mut Directives,
        line: Line<'a>,
        strip_left: bool,
    ) -> Result<(&'a str, bool), ParseError> {
        let token = if strip_left {
            line.text.trim_start_matches(go::is_space)
        } else {
            line.text
        };
        let directive = self.possible_directive(d, token)?;
        let content = if is_comment(token) {
            &token[token.len()..]
        } else {
            token
        };
        Ok((content, directive))
    }

    fn possible_directive(&self, d: &mut Directives, token: &str) -> Result<bool, ParseError> {
        if d.done {
            return Ok(false);
        }
        let Some((name, value)) = match_directive(token) else {
            d.done = true;
            return Ok(false);
        };
        let key = go::to_lower(name);
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            d.done = true;
            return Ok(false);
        }
        let start = go::offset_in(self.src, token);
        let end = start + token.len();
        if d.seen.iter().any(|x| x.name == key) {
            return Err(self.error(ParseErrorKind::RepeatedDirective(key), start, end));
        }
        if key == "escape" {
            match value {
                "\\" => d.escape = '\\',
                "`" => d.escape = '`',
                other => {
                    let vs = go::offset_in(self.src, other);
                    return Err(self.error(
                        ParseErrorKind::InvalidEscape(other.to_string()),
                        vs,
                        vs + other.len(),
                    ));
                }
            }
        }
        d.seen.push(Directive {
            name: key,
            value: value.to_string(),
            span: self.span(start, end),
        });
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_node(
        &self,
        raw: RawNode,
        map: &LineMap,
        logical: &str,
        last_end: usize,
        start_line: usize,
        comments: Vec<String>,
        heredocs: Vec<Heredoc>,
    ) -> Node {
        let (kw_s, _) = map.range(raw.kw_start, raw.kw_end);
        let span = self.span(kw_s, last_end.max(kw_s));
        let end_line = self.idx.line_of(last_end.max(kw_s));
        let mut node = self.convert(raw, map, last_end);
        node.original = logical.to_string();
        node.comments = comments;
        node.heredocs = heredocs;
        node.span = span;
        node.start_line = start_line;
        node.end_line = end_line.max(start_line);
        node
    }

    fn convert(&self, raw: RawNode, map: &LineMap, last_end: usize) -> Node {
        let mapped = |a: &RawArg| {
            let (s, e) = map.range(a.start, a.end);
            self.span(s, e)
        };
        let (kw_s, kw_e) = map.range(raw.kw_start, raw.kw_end);
        let keyword_span = self.span(kw_s, kw_e);
        let span = self.span(kw_s, last_end.max(kw_s));
        Node {
            keyword: raw.keyword,
            keyword_span,
            flags: raw
                .flags
                .iter()
                .map(|f| Flag {
                    text: f.value.clone(),
                    span: mapped(f),
                })
                .collect(),
            args: raw
                .args
                .iter()
                .map(|a| Arg {
                    value: a.value.clone(),
                    span: mapped(a),
                })
                .collect(),
            child: raw.child.map(|c| Box::new(self.convert(*c, map, last_end))),
            json: raw.json,
            heredocs: Vec::new(),
            original: String::new(),
            comments: Vec::new(),
            span,
            start_line: span.line,
            end_line: self.idx.line_of(span.end()),
        }
    }
}

/// `# key = value` at the top of the file: BuildKit's directive regexp
/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (`\s` = `[\t\n\f\r ]`).
fn match_directive(token: &str) -> Option<(&str, &str)> {
    let is_s = |c: char| matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ');
    let rest = token.strip_prefix('#')?.trim_start_matches(is_s);
    let name_len = rest
        .char_indices()
        .take_while(|&(i, c)| {
            if i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &rest[..name_len];
    let rest = rest[name_len..]
        .trim_start_matches(is_s)
        .strip_prefix('=')?;
    if rest.is_empty() {
        return None;
    }
    let value = rest.trim_start_matches(is_s);
    if value.is_empty() {
        // `.+?` takes one whitespace character when nothing else is left.
        let last = rest.char_indices().last().map(|(i, _)| i).unwrap_or(0);
        return Some((name, &rest[last..]));
    }
    Some((name, value.trim_end_matches(is_s)))
}

/// BuildKit's `isComment`: first non-space character is `#`.
fn is_comment(line: &str) -> bool {
    line.trim_start_matches(go::is_space).starts_with('#')
}

/// BuildKit's line continuation regexp: the escape character, then only
/// spaces and tabs, not itself escaped. Returns the line without it and
/// whether the logical line ends here.
fn trim_continuation(line: &str, esc: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(esc) {
        if before.is_empty() {
            return (before, false);
        }
        if !before.ends_with(esc) {
            return (before, false);
        }
    }
    (line, true)
}

fn can_contain_heredoc(node: &RawNode) -> bool {
    let mut n = node;
    if go::to_lower(&n.keyword) == "onbuild" {
        if let Some(c) = &n.child {
            n = c;
        }
    }
    matches!(go::to_lower(&n.keyword).as_str(), "add" | "copy" | "run") && !n.json
}

/// A here-document delimiter found on an instruction line.
pub(crate) struct HeredocHead {
    pub name: String,
    pub fd: u64,
    pub expand: bool,
    pub chomp: bool,
}

/// BuildKit's `heredocsFromLine`: the line's words (quotes and escapes
/// kept), each checked for `<<WORD`.
fn heredocs_from_line(line: &str) -> Result<Vec<HeredocHead>, String> {
    let lex = Lexer::new('\\')
        .raw_quotes(true)
        .raw_escapes(true)
        .skip_unset_env(true);
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}

/// BuildKit's `ParseHeredoc`: `[fd]<<[-]WORD` where WORD may be quoted
/// (which turns expansion off). `Ok(None)` when `src` is not a heredoc.
pub(crate) fn parse_heredoc(src: &str) -> Result<Option<HeredocHead>, String> {
    let digits = src.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = src[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = src[..digits].bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    let lex = Lexer::new('\\').skip_unset_env(true);
    let words = lex.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = lex
        .raw_quotes(true)
        .process_words(rest, &NoEnv)
        .map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let word = words.into_iter().next().unwrap_or_default();
    let expand = quotes(&word) == quotes(&raw[0]);
    Ok(Some(HeredocHead {
        name: word,
        fd,
        expand,
        chomp,
    }))
}

/// Strips leading tabs from every line (`<<-`): BuildKit's
/// `ChompHeredocContent`.
pub fn chomp_heredoc_content(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    for l in content.split_inclusive('\n') {
        out.push_str(l.trim_start_matches('\t'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(src: &str) -> String {
        match parse(src) {
            Ok(d) => d.dump(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn directives_only_at_the_top() {
        let df =
            parse("# syntax=docker/dockerfile:1\n# check=skip=all\n#escape=`\nFROM a `\n  b\n")
                .unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.directive("check"), Some("skip=all"));
        assert_eq!(df.dump(), "(from \"a\" \"b\")");
        // After a blank line, an instruction or a comment: just comments.
        let df = parse("\n# escape=`\nFROM a \\\n b").unwrap();
        assert_eq!(df.escape, '\\');
        assert!(df.directives.is_empty());
        assert_eq!(
            dump("# escape=x\nFROM a"),
            "error: Dockerfile:1:10: invalid escape token 'x' does not match ` or \\"
        );
        assert!(dump("# syntax=a\n# syntax=b\nFROM a").contains("only one syntax parser directive"));
    }

    #[test]
    fn continuation_with_comments_and_blank_lines() {
        let df = parse("RUN a \\\n# c\n\n  b \\\n\n c\n").unwrap();
        assert_eq!(df.dump(), "(run \"a   b  c\")");
        assert_eq!(df.warnings.len(), 1);
        assert_eq!(df.nodes[0].end_line, 6);
        assert_eq!(
            df.text(df.nodes[0].args[0].span),
            "a \\\n# c\n\n  b \\\n\n c"
        );
    }

    #[test]
    fn heredocs() {
        let src = "FROM a\nRUN <<EOF bash\necho $X\nEOF\nCOPY <<-\"A\" <<B /d\n\tone\n\tA\ntwo\nB\nRUN [\"<<EOF\"]\n";
        let df = parse(src).unwrap();
        let run = &df.nodes[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].content, "echo $X\n");
        assert!(run.heredocs[0].expand);
        let copy = &df.nodes[2];
        assert_eq!(copy.heredocs.len(), 2);
        assert_eq!(
            (
                copy.heredocs[0].name.as_str(),
                copy.heredocs[0].expand,
                copy.heredocs[0].chomp
            ),
            ("A", false, true)
        );
        assert_eq!(copy.heredocs[1].content, "two\n");
        assert_eq!(df.nodes[3].heredocs.len(), 0);
        assert_eq!(copy.end_line, 9);
        assert!(dump("FROM a\nRUN <<EOF\nx\n").contains("unterminated heredoc"));
    }

    #[test]
    fn heredoc_heads() {
        for s in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "3<<EOF",
        ] {
            assert_eq!(
                parse_heredoc(s).ok().flatten().map(|h| h.name),
                Some("EOF".to_string()),
                "{s}"
            );
        }
        for s in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF"] {
            assert!(matches!(parse_heredoc(s), Ok(None)), "{s}");
        }
        for s in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(s).is_err(), "{s}");
        }
        assert_eq!(chomp_heredoc_content("\ta\n\t\tb\nc"), "a\nb\nc");
    }

    #[test]
    fn spans_point_at_the_source() {
        let src = "FROM alpine\nCOPY --chown=1:1 a \\\n   b /dst\n";
        let df = parse(src).unwrap();
        let copy = &df.nodes[1];
        assert_eq!(df.text(copy.keyword_span), "COPY");
        assert_eq!(df.text(copy.flags[0].span), "--chown=1:1");
        assert_eq!((copy.args[1].span.line, copy.args[1].span.column), (3, 4));
        assert_eq!(df.text(copy.args[2].span), "/dst");
        assert_eq!(df.text(copy.span), "COPY --chown=1:1 a \\\n   b /dst");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_named("x.Dockerfile", "FROM a\n\nENV PATH\n").unwrap_err();
        assert_eq!((e.line(), e.column(), e.file()), (3, 5, "x.Dockerfile"));
        assert_eq!(
            e.to_string(),
            "x.Dockerfile:3:5: ENV must have two arguments"
        );
        assert!(dump("").contains("file with no instructions"));
        assert!(dump("# only\n\n").contains("file with no instructions"));
        assert!(dump("CMD [\"a\", [1]]").contains("arrays must be comprised of strings only"));
        let long = format!("FROM a\nRUN {}\n", "x".repeat(70_000));
        assert!(dump(&long).contains("max allowed size"));
    }

    #[test]
    fn bom_crlf_and_odd_lines() {
        assert_eq!(
            dump("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n"),
            "(from \"a\")\n(run \"b  c\")"
        );
        assert_eq!(dump("\\\n"), "(\"\")");
        assert_eq!(
            dump("FOO bar\nONBUILD\nONBUILD RUN --x=1 y"),
            "(foo \"\")\n(onbuild)\n(onbuild (run [\"--x=1\"] \"y\"))"
        );
    }
}
