//! The syntax tree: one [`Node`] per instruction, as BuildKit's parser
//! builds it, with a [`Span`] on every instruction, flag and argument.

use serde::Serialize;

use crate::go;
use crate::span::Span;

/// A parser directive from the top of the file (`# syntax=`, `# escape=`,
/// `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, as written (trimmed).
    pub value: String,
    /// The whole directive line.
    pub span: Span,
}

/// Something BuildKit reports without failing (e.g. an empty continuation
/// line), collected instead of printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Short rule name, e.g. `NoEmptyContinuation`.
    pub rule: &'static str,
    /// What was found.
    pub message: String,
    /// Why it matters.
    pub detail: &'static str,
    /// Where (the instruction it belongs to).
    pub span: Span,
}

/// A `--flag` or `--flag=value` before the arguments, with quotes and
/// backslash escapes already removed (as BuildKit does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The flag as BuildKit keeps it, e.g. `--mount=type=cache,target=/x`.
    pub text: String,
    /// Where it is written.
    pub span: Span,
}

impl Flag {
    /// The name without dashes: `mount` for `--mount=...`.
    pub fn name(&self) -> &str {
        let t = self.text.strip_prefix("--").unwrap_or(&self.text);
        t.split_once('=').map(|(n, _)| n).unwrap_or(t)
    }

    /// The value after `=`, if there is one.
    pub fn value(&self) -> Option<&str> {
        self.text.split_once('=').map(|(_, v)| v)
    }
}

/// One argument of an instruction (BuildKit's `Node.Next` chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// The value, as BuildKit stores it (unexpanded; quotes kept except in
    /// the JSON form, which is decoded).
    pub value: String,
    /// Where it is written (for a JSON element: the quoted string).
    pub span: Span,
}

/// A here-document attached to a `RUN`, `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<'EOF'`).
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub fd: u64,
    /// Whether variables are expanded in the content (delimiter not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the content.
    pub chomp: bool,
    /// The lines between the instruction and the delimiter, newlines
    /// included, as written (tabs not yet stripped).
    pub content: String,
    /// From the first content line to the end of the delimiter line.
    pub span: Span,
}

/// One instruction (BuildKit's `Node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The instruction keyword as written (`RUN`, `run`, ...).
    pub keyword: String,
    /// Where the keyword is.
    pub keyword_span: Span,
    /// Flags before the arguments.
    pub flags: Vec<Flag>,
    /// The arguments, in BuildKit's shape for this instruction.
    pub args: Vec<Arg>,
    /// The trigger of an `ONBUILD`.
    pub child: Option<Box<Node>>,
    /// The arguments were written in JSON (exec) form.
    pub json: bool,
    /// Here-documents read after the instruction.
    pub heredocs: Vec<Heredoc>,
    /// The logical line: physical lines joined, continuation characters and
    /// interleaved comments removed (BuildKit's `Node.Original`).
    pub original: String,
    /// Comment lines directly above the instruction, without `#`.
    pub comments: Vec<String>,
    /// From the keyword to the end of the instruction's last line
    /// (continuation lines and here-documents included).
    pub span: Span,
    /// 1-based first line.
    pub start_line: usize,
    /// 1-based last line (here-documents included).
    pub end_line: usize,
}

impl Node {
    /// The keyword in lower case (`run`), as BuildKit dispatches on it.
    pub fn instruction(&self) -> String {
        go::to_lower(&self.keyword)
    }

    /// BuildKit's `Node.Dump()` for this node.
    pub fn dump(&self) -> String {
        let mut s = go::to_lower(&self.keyword);
        if !self.flags.is_empty() {
            s.push(' ');
            s.push_str(&go::quote_list(self.flags.iter().map(|f| f.text.as_str())));
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go::quote(&a.value));
        }
        if let Some(child) = &self.child {
            // The trigger sits in a wrapper node whose dump is "(child)\n",
            // trimmed.
            s.push_str(" (");
            s.push_str(&child.dump());
            s.push(')');
        }
        go::trim_space(&s).to_string()
    }
}
