//! The commands of a RUN (or CMD/ENTRYPOINT), split into simple commands
//! whose words carry their exact source offsets.
//!
//! Handles continuation lines (and the comment lines BuildKit drops between
//! them), quotes, `$(...)`, `&&`/`||`/`;`/`|`/`&`/newlines, redirections,
//! `sudo`/`env`/`VAR=x` prefixes, `sh -c "..."`, exec form and here-document
//! scripts. Variables the Dockerfile defines (ARG/ENV) are expanded; others
//! are left as written.

use strata_dockerfile::shell::Lexer;

/// What follows a simple command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sep {
    /// `&&`
    And,
    /// `||`
    Or,
    /// `;`, a newline, a subshell parenthesis or the end.
    Semi,
    /// `|`
    Pipe,
    /// `&`
    Background,
}

/// A word: its text (quotes removed, known variables expanded) and where
/// it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

impl Word {
    /// The text in lower case, for case-insensitive matching.
    pub fn lower(&self) -> String {
        self.text.to_ascii_lowercase()
    }
}

/// A simple command, prefixes (`sudo`, `env`, `VAR=x`) removed.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    /// The words, program first.
    pub words: Vec<Word>,
    /// What follows it.
    pub sep: Sep,
    /// Where the command (including removed prefixes) starts and ends.
    pub start: usize,
    pub end: usize,
    /// Assignments written before it (`VAR=x cmd`).
    pub assigns: Vec<String>,
}

impl Command {
    /// The program's base name in lower case (`apt-get` for
    /// `/usr/bin/APT-GET`).
    pub fn program(&self) -> String {
        self.words
            .first()
            .map(|w| {
                let l = w.lower();
                l.rsplit('/').next().unwrap_or("").to_string()
            })
            .unwrap_or_default()
    }

    /// The arguments (everything after the program).
    pub fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// Whether an argument equals `flag` (case-insensitive), also as
    /// `flag=value`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.args().iter().any(|w| {
            let l = w.lower();
            l == flag || l.strip_prefix(flag).is_some_and(|r| r.starts_with('='))
        })
    }

    /// Whether a short-option cluster (`-qy`) contains `c`.
    pub fn has_short(&self, c: char) -> bool {
        self.args().iter().any(|w| {
            w.text.starts_with('-') && !w.text.starts_with("--") && w.text[1..].contains(c)
        })
    }

    /// The arguments that are not options, lower-cased.
    pub fn operands(&self) -> Vec<&Word> {
        self.args()
            .iter()
            .filter(|w| !w.text.starts_with('-'))
            .collect()
    }

    /// The first operand (subcommand), lower-cased, skipping options and
    /// the values of the options listed in `with_value`.
    pub fn subcommand(&self, with_value: &[&str]) -> Option<(usize, String)> {
        let args = self.args();
        let mut i = 0;
        while i < args.len() {
            let l = args[i].lower();
            if l.starts_with('-') {
                if with_value.contains(&l.as_str()) {
                    i += 1;
                }
                i += 1;
                continue;
            }
            return Some((i + 1, l));
        }
        None
    }
}

/// Source text between `start` and `end` as the shell reads it: the
/// logical text and, for each of its bytes, the source offset.
pub(crate) struct Logical {
    pub text: String,
    pub map: Vec<usize>,
}

/// Joins continuation lines (`escape` + newline). With `dockerfile`, blank
/// and comment lines after a continuation are dropped as BuildKit does.
pub(crate) fn logical(
    src: &str,
    start: usize,
    end: usize,
    escape: char,
    dockerfile: bool,
) -> Logical {
    let end = end.min(src.len());
    let start = start.min(end);
    let mut text = String::new();
    let mut map = Vec::new();
    let s = &src[start..end];
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < s.len() {
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        if c == escape {
            // escape, optional spaces, newline?
            let mut j = i + c.len_utf8();
            while j < s.len() && (bytes[j] == b' ' || bytes[j] == b'\t' || bytes[j] == b'\r') {
                j += 1;
            }
            if j < s.len() && bytes[j] == b'\n' {
                j += 1;
                if dockerfile {
                    // Drop blank and comment lines.
                    loop {
                        let rest = &s[j..];
                        let line_end = rest.find('\n').map(|k| j + k + 1).unwrap_or(s.len());
                        let line = s[j..line_end].trim();
                        if (line.is_empty() || line.starts_with('#'))
                            && line_end > j
                            && line_end < s.len()
                        {
                            j = line_end;
                        } else if line.starts_with('#') && line_end >= s.len() {
                            j = s.len();
                            break;
                        } else {
                            break;
                        }
                    }
                }
                i = j;
                continue;
            }
            if j >= s.len() {
                // Trailing escape at the very end.
                break;
            }
        }
        for k in 0..c.len_utf8() {
            map.push(start + i + k);
        }
        text.push(c);
        i += c.len_utf8();
    }
    Logical { text, map }
}

/// A raw word during tokenising: logical range and the unquoted text.
struct Raw {
    start: usize,
    end: usize,
    raw: String,
    text: String,
}

/// Splits logical shell text into simple commands.
pub(crate) fn parse_script(lg: &Logical, lexer: &Lexer, env: &[(String, String)]) -> Vec<Command> {
    let t = lg.text.as_str();
    let b = t.as_bytes();
    let mut cmds: Vec<(Vec<Raw>, Sep)> = Vec::new();
    let mut cur: Vec<Raw> = Vec::new();
    let mut word: Option<Raw> = None;
    let mut i = 0;
    let push_word = |word: &mut Option<Raw>, cur: &mut Vec<Raw>| {
        if let Some(w) = word.take() {
            cur.push(w);
        }
    };
    let end_cmd = |cur: &mut Vec<Raw>, sep: Sep, cmds: &mut Vec<(Vec<Raw>, Sep)>| {
        if !cur.is_empty() {
            cmds.push((std::mem::take(cur), sep));
        } else if let Some(last) = cmds.last_mut() {
            if sep != Sep::Semi {
                last.1 = sep;
            }
        }
    };
    while i < t.len() {
        let Some(c) = t[i..].chars().next() else {
            break;
        };
        let cl = c.len_utf8();
        match c {
            ' ' | '\t' | '\r' => {
                push_word(&mut word, &mut cur);
                i += 1;
            }
            '\n' => {
                push_word(&mut word, &mut cur);
                end_cmd(&mut cur, Sep::Semi, &mut cmds);
                i += 1;
            }
            '#' if word.is_none() => {
                while i < t.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            '&' | '|' | ';' | '(' | ')' => {
                // `2>&1`, `>&2`, `&>file`, `|&`
                let prev = word.as_ref().and_then(|w| w.raw.chars().last());
                if c == '&'
                    && (matches!(prev, Some('>') | Some('<')) || t[i + 1..].starts_with('>'))
                {
                    let w = word.get_or_insert(Raw {
                        start: i,
                        end: i,
                        raw: String::new(),
                        text: String::new(),
                    });
                    w.raw.push(c);
                    w.text.push(c);
                    w.end = i + 1;
                    i += 1;
                    continue;
                }
                if let (true, Some(w)) = (c == '(', word.as_mut()) {
                    // `f()`: part of the word.
                    w.raw.push(c);
                    w.text.push(c);
                    w.end = i + 1;
                    i += 1;
                    continue;
                }
                push_word(&mut word, &mut cur);
                let two = t.get(i..i + 2).unwrap_or("");
                let (sep, n) = match (c, two) {
                    (_, "&&") => (Sep::And, 2),
                    (_, "||") => (Sep::Or, 2),
                    (_, "|&") => (Sep::Pipe, 2),
                    (_, ";;") => (Sep::Semi, 2),
                    ('&', _) => (Sep::Background, 1),
                    ('|', _) => (Sep::Pipe, 1),
                    _ => (Sep::Semi, 1),
                };
                end_cmd(&mut cur, sep, &mut cmds);
                i += n;
            }
            _ => {
                let w = word.get_or_insert(Raw {
                    start: i,
                    end: i,
                    raw: String::new(),
                    text: String::new(),
                });
                let j = scan_piece(t, i, w);
                w.end = j;
                i = j.max(i + cl);
            }
        }
    }
    push_word(&mut word, &mut cur);
    end_cmd(&mut cur, Sep::Semi, &mut cmds);

    // Shell variables assigned in the script (`deps='a b'; apt-get install $deps`)
    // are known to the commands after them.
    let mut local: Vec<(String, String)> = env.to_vec();
    let mut out = Vec::new();
    for (raws, sep) in cmds {
        if let Some(c) = build_command(raws, sep, lg, lexer, &local) {
            if c.words.is_empty() {
                for a in &c.assigns {
                    if let Some((k, v)) = a.split_once('=') {
                        local.push((k.to_string(), v.trim().to_string()));
                    }
                }
            }
            out.push(c);
        } else if sep != Sep::Semi {
            // The end of a group (`{ a; b; } | c`): what follows it
            // follows the group's last command.
            if let Some(last) = out.last_mut() {
                last.sep = sep;
            }
        }
    }
    // Nested `sh -c "script"`.
    let mut nested = Vec::new();
    for c in &out {
        let p = c.program();
        if matches!(p.as_str(), "sh" | "bash" | "ash" | "dash" | "zsh") {
            let args = c.args();
            if let Some(k) = args.iter().position(|w| {
                w.text.starts_with('-') && !w.text.starts_with("--") && w.text.contains('c')
            }) {
                if let Some(script) = args.get(k + 1) {
                    let inner = Logical {
                        text: script.text.clone(),
                        map: vec![script.start; script.text.len()],
                    };
                    let mut sub = parse_script(&inner, lexer, env);
                    for s in &mut sub {
                        s.start = script.start;
                        s.end = script.end;
                        for w in &mut s.words {
                            w.start = script.start;
                            w.end = script.end;
                        }
                    }
                    nested.extend(sub);
                }
            }
        }
    }
    out.extend(nested);
    out
}

/// Reads one piece of a word starting at `i` (a quoted string, an
/// expansion, an escape or one plain character); returns the next index.
fn scan_piece(t: &str, i: usize, w: &mut Raw) -> usize {
    let b = t.as_bytes();
    let c = b[i];
    match c {
        b'\'' => {
            let end = t[i + 1..].find('\'').map(|k| i + 1 + k).unwrap_or(t.len());
            w.raw.push_str(&t[i..(end + 1).min(t.len())]);
            w.text.push_str(&t[i + 1..end]);
            (end + 1).min(t.len())
        }
        b'"' => {
            let mut j = i + 1;
            let mut text = String::new();
            while j < t.len() {
                let ch = t[j..].chars().next().unwrap_or('"');
                if ch == '\\' && j + 1 < t.len() {
                    let nx = t[j + 1..].chars().next().unwrap_or(' ');
                    if matches!(nx, '"' | '\\' | '$' | '`') {
                        text.push(nx);
                    } else {
                        text.push('\\');
                        text.push(nx);
                    }
                    j += 1 + nx.len_utf8();
                    continue;
                }
                if ch == '"' {
                    break;
                }
                if ch == '$' && t[j..].starts_with("$(") {
                    let e = balanced(t, j + 1);
                    text.push_str(&t[j..e]);
                    j = e;
                    continue;
                }
                text.push(ch);
                j += ch.len_utf8();
            }
            let end = (j + 1).min(t.len());
            w.raw.push_str(&t[i..end]);
            w.text.push_str(&text);
            end
        }
        b'\\' => {
            let nx = t[i + 1..].chars().next();
            match nx {
                Some(nx) => {
                    w.raw.push('\\');
                    w.raw.push(nx);
                    w.text.push(nx);
                    i + 1 + nx.len_utf8()
                }
                None => i + 1,
            }
        }
        b'$' if t[i..].starts_with("$(") || t[i..].starts_with("${") => {
            let e = if t[i..].starts_with("$(") {
                balanced(t, i + 1)
            } else {
                t[i..].find('}').map(|k| i + k + 1).unwrap_or(t.len())
            };
            w.raw.push_str(&t[i..e]);
            w.text.push_str(&t[i..e]);
            e
        }
        b'`' => {
            let e = t[i + 1..].find('`').map(|k| i + k + 2).unwrap_or(t.len());
            w.raw.push_str(&t[i..e]);
            w.text.push_str(&t[i..e]);
            e
        }
        _ => {
            let ch = t[i..].chars().next().unwrap_or(' ');
            w.raw.push(ch);
            w.text.push(ch);
            i + ch.len_utf8()
        }
    }
}

/// Index just past the `)` matching the `(` at `open`.
fn balanced(t: &str, open: usize) -> usize {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (k, ch) in t[open..].char_indices() {
        let pos = open + k;
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'') | (None, '"') => quote = Some(ch),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return pos + 1;
                }
            }
            _ => {}
        }
    }
    t.len()
}

fn is_assignment(s: &str) -> bool {
    match s.split_once('=') {
        Some((k, _)) => {
            !k.is_empty()
                && k.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// `>`, `2>`, `>>`, `<`, `&>`, `2>&1`...: (is a redirection, takes the
/// next word as its target).
fn redirection(s: &str) -> Option<bool> {
    let rest = s.trim_start_matches(|c: char| c.is_ascii_digit());
    let ops = [
        ">>", "&>>", "&>", ">&", "<&", "<>", "<<<", "<<-", "<<", ">|", ">", "<",
    ];
    for op in ops {
        if let Some(r) = rest.strip_prefix(op) {
            return Some(r.is_empty());
        }
    }
    None
}

fn build_command(
    raws: Vec<Raw>,
    sep: Sep,
    lg: &Logical,
    lexer: &Lexer,
    env: &[(String, String)],
) -> Option<Command> {
    let src_start = |l: usize| {
        lg.map
            .get(l)
            .copied()
            .unwrap_or_else(|| lg.map.last().map(|x| x + 1).unwrap_or(0))
    };
    let src_end = |l: usize| {
        if l == 0 {
            return src_start(0);
        }
        lg.map
            .get(l - 1)
            .map(|x| x + utf8_len(&lg.text, l - 1))
            .unwrap_or(0)
    };
    let start = raws.first().map(|r| src_start(r.start))?;
    let end = raws.last().map(|r| src_end(r.end))?;
    let mut words = Vec::new();
    let mut skip_next = false;
    for r in raws {
        if skip_next {
            skip_next = false;
            continue;
        }
        if !r.raw.starts_with(['"', '\'']) {
            if let Some(takes) = redirection(&r.raw) {
                skip_next = takes;
                continue;
            }
        }
        if r.raw == "{" || r.raw == "}" || r.raw == "!" {
            continue;
        }
        let (s, e) = (src_start(r.start), src_end(r.end));
        let substitution = r.raw.contains("$(") || r.raw.contains('`');
        if r.raw.contains('$') && !substitution && is_assignment(&r.raw) {
            if let Ok(x) = lexer.skip_unset_env(true).process_word(&r.raw, env) {
                words.push(Word {
                    text: x.value,
                    start: s,
                    end: e,
                });
                continue;
            }
        }
        if r.raw.contains('$') && !substitution {
            let lx = lexer.skip_unset_env(true);
            match lx.process_words(&r.raw, env) {
                Ok(ws) if !ws.is_empty() => {
                    for t in ws {
                        words.push(Word {
                            text: t,
                            start: s,
                            end: e,
                        });
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(_) => {}
            }
        }
        words.push(Word {
            text: r.text,
            start: s,
            end: e,
        });
    }
    // Prefixes.
    let mut assigns = Vec::new();
    while let Some(first) = words.first() {
        let l = first.lower();
        let base = l.rsplit('/').next().unwrap_or("").to_string();
        if matches!(
            l.as_str(),
            "if" | "then" | "else" | "elif" | "do" | "while" | "until" | "!"
        ) && words.len() > 1
        {
            words.remove(0);
        } else if is_assignment(&first.text) {
            assigns.push(first.text.clone());
            words.remove(0);
        } else if matches!(base.as_str(), "sudo" | "doas") {
            words.remove(0);
            // sudo options; -u/-g take a value.
            while let Some(w) = words.first() {
                if w.text == "--" {
                    words.remove(0);
                    break;
                }
                if !w.text.starts_with('-') {
                    break;
                }
                let takes = matches!(
                    w.text.as_str(),
                    "-u" | "-g" | "-h" | "-p" | "-C" | "-U" | "-r" | "-t"
                );
                words.remove(0);
                if takes && !words.is_empty() {
                    words.remove(0);
                }
            }
        } else if matches!(
            base.as_str(),
            "env"
                | "exec"
                | "time"
                | "nice"
                | "nohup"
                | "command"
                | "eatmydata"
                | "xargs"
                | "gosu"
                | "su-exec"
                | "tini"
                | "dumb-init"
        ) {
            let takes_user = matches!(base.as_str(), "gosu" | "su-exec");
            words.remove(0);
            if takes_user && !words.is_empty() {
                words.remove(0);
            }
            while words.first().is_some_and(|w| w.text.starts_with('-')) {
                let w = words.remove(0);
                if w.text == "--" {
                    break;
                }
            }
        } else {
            break;
        }
    }
    if words.is_empty() && assigns.is_empty() {
        return None;
    }
    Some(Command {
        words,
        sep,
        start,
        end,
        assigns,
    })
}

fn utf8_len(s: &str, i: usize) -> usize {
    // Length of the char ending at byte i (i is the last byte index of a char start).
    let mut k = i;
    while k > 0 && !s.is_char_boundary(k) {
        k -= 1;
    }
    s[k..].chars().next().map(|c| c.len_utf8()).unwrap_or(1) - (i - k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmds(src: &str) -> Vec<Vec<String>> {
        let lg = logical(src, 0, src.len(), '\\', true);
        let env = vec![("PKGS".to_string(), "curl git".to_string())];
        parse_script(&lg, &Lexer::new('\\'), &env)
            .into_iter()
            .map(|c| c.words.into_iter().map(|w| w.text).collect())
            .collect()
    }

    #[test]
    fn splits_operators_quotes_and_prefixes() {
        let cases: &[(&str, &[&[&str]])] = &[
            (
                "a && b || c; d | e & f",
                &[&["a"], &["b"], &["c"], &["d"], &["e"], &["f"]],
            ),
            (
                "sudo -E apt-get install -y 'x y' \"z\"",
                &[&["apt-get", "install", "-y", "x y", "z"]],
            ),
            (
                "DEBIAN_FRONTEND=noninteractive apt-get -qq update",
                &[&["apt-get", "-qq", "update"]],
            ),
            (
                "apt-get install \\\n  # comment\n  curl",
                &[&["apt-get", "install", "curl"]],
            ),
            (
                "apt-get install $PKGS >/dev/null 2>&1",
                &[&["apt-get", "install", "curl", "git"]],
            ),
            ("echo $(date && true) > f", &[&["echo", "$(date && true)"]]),
            (
                "sh -c 'cd /x && make'",
                &[&["sh", "-c", "cd /x && make"], &["cd", "/x"], &["make"]],
            ),
            ("echo $HOME", &[&["echo", "$HOME"]]),
            (
                "deps='a b'; apt-get install $deps",
                &[&[], &["apt-get", "install", "a", "b"]],
            ),
            (
                "if true; then cd /x; fi",
                &[&["true"], &["cd", "/x"], &["fi"]],
            ),
            (
                "{ echo a; echo b; } | tee f",
                &[&["echo", "a"], &["echo", "b"], &["tee", "f"]],
            ),
        ];
        for (src, want) in cases {
            let got = cmds(src);
            let want: Vec<Vec<String>> = want
                .iter()
                .map(|c| c.iter().map(|s| s.to_string()).collect())
                .collect();
            assert_eq!(got, want, "{src}");
        }
    }

    #[test]
    fn a_group_passes_its_pipe_on() {
        let src = "{ echo a; echo b; } | tee f && true";
        let lg = logical(src, 0, src.len(), '\\', true);
        let seps: Vec<Sep> = parse_script(&lg, &Lexer::new('\\'), &[])
            .iter()
            .map(|c| c.sep)
            .collect();
        assert_eq!(seps, [Sep::Semi, Sep::Pipe, Sep::And, Sep::Semi]);
    }

    #[test]
    fn words_keep_source_offsets_across_continuations() {
        let src = "RUN apt-get update \\\n && apt-get install curl";
        let lg = logical(src, 4, src.len(), '\\', true);
        let c = parse_script(&lg, &Lexer::new('\\'), &[]);
        assert_eq!(c.len(), 2);
        let w = &c[1].words[2];
        assert_eq!(&src[w.start..w.end], "curl");
        assert_eq!(&src[c[1].start..c[1].end], "apt-get install curl");
        assert_eq!(c[0].sep, Sep::And);
    }
}
