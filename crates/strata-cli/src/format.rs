//! Listings as docker prints them: tables aligned as Go's `text/tabwriter`
//! with docker's settings (minimum width 10, padding 3, spaces), cells
//! measured in terminal columns (a wide character takes two), and
//! `--format` as docker takes it: `table`, `json` (one object a line),
//! `table TEMPLATE` or a bare `TEMPLATE` with Go-template fields
//! (`{{.Repository}}:{{.Tag}}`, `{{.ID}}`, `{{json .}}`, `{{upper .X}}`,
//! `{{lower .X}}`, `{{truncate .X N}}`, `{{join .X ","}}`).

use std::io::{self, Write};

use serde_json::{Map, Value};
use unicode_width::UnicodeWidthStr;

/// docker's tabwriter settings (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`).
const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Writes `rows` (cells of each row; the first row is usually the header)
/// aligned as Go's tabwriter does with docker's settings: every cell but
/// the last of its row is padded to its column's width (the widest cell in
/// the column plus 3, at least 10). As in Go, a column's width is computed
/// over the run of consecutive rows that have a cell in it.
pub fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
    let widths = column_widths(rows);
    for (r, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let w = widths[r][c];
                line.push_str(&" ".repeat(w.saturating_sub(cell.width())));
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Per row and column (all but the last cell), the width the cell is padded
/// to: Go's tabwriter column blocks.
fn column_widths(rows: &[Vec<String>]) -> Vec<Vec<usize>> {
    let mut widths: Vec<Vec<usize>> = rows
        .iter()
        .map(|r| vec![0; r.len().saturating_sub(1)])
        .collect();
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    for c in 0..cols.saturating_sub(1) {
        let mut r = 0;
        while r < rows.len() {
            if rows[r].len() <= c + 1 {
                r += 1;
                continue;
            }
            // A block: consecutive rows with a cell in column c (not last).
            let start = r;
            let mut w = MIN_WIDTH;
            while r < rows.len() && rows[r].len() > c + 1 {
                w = w.max(rows[r][c].width() + PADDING);
                r += 1;
            }
            for row in widths.iter_mut().take(r).skip(start) {
                row[c] = w;
            }
        }
    }
    widths
}

/// A parsed `--format` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// The command's default table.
    Table,
    /// One JSON object a line.
    Json,
    /// A template; `table` when it started with `table ` (a header row and
    /// tabwriter alignment).
    Template {
        /// Rows as a table (header from the fields).
        table: bool,
        /// The template.
        template: Template,
    },
}

impl Format {
    /// Parses `--format`: empty or `table` is the default table.
    pub fn parse(spec: Option<&str>) -> Result<Format, String> {
        let spec = spec.unwrap_or("").trim();
        match spec {
            "" | "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            _ => {
                let (table, text) = match spec.strip_prefix("table ") {
                    Some(t) => (true, t),
                    None => (false, spec),
                };
                // As docker: `\t` and `\n` typed in the shell are a tab and
                // a newline.
                let text = text.replace("\\t", "\t").replace("\\n", "\n");
                Ok(Format::Template {
                    table,
                    template: Template::parse(&text)?,
                })
            }
        }
    }
}

/// Prints `items` (one JSON object each, with docker's field names) in
/// `format`, the default table being `default` (header and fields).
pub fn print_items(
    out: &mut impl Write,
    format: &Format,
    default: &[(&str, &str)],
    items: &[Value],
) -> io::Result<()> {
    match format {
        Format::Json => {
            for it in items {
                serde_json::to_writer(&mut *out, it)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        Format::Table => {
            let mut rows = vec![default.iter().map(|(h, _)| h.to_string()).collect()];
            for it in items {
                rows.push(
                    default
                        .iter()
                        .map(|(_, f)| text(it.get(*f).unwrap_or(&Value::Null)))
                        .collect(),
                );
            }
            write_table(out, &rows)
        }
        Format::Template { table, template } => {
            if *table {
                let header: Vec<String> = template
                    .render_cells(&Value::Null, |f| header_of(default, f))
                    .into_iter()
                    .collect();
                let mut rows = vec![header];
                for it in items {
                    rows.push(template.render_cells(it, |_| None));
                }
                write_table(out, &rows)
            } else {
                for it in items {
                    let mut line = template.render_cells(it, |_| None).join("\t");
                    line.push('\n');
                    out.write_all(line.as_bytes())?;
                }
                Ok(())
            }
        }
    }
}

/// The header docker prints for a field (`ID` -> `IMAGE ID` where the
/// default table says so), else the field in upper case with spaces
/// between words (`CreatedAt` -> `CREATED AT`).
fn header_of(default: &[(&str, &str)], field: &str) -> Option<String> {
    if let Some((h, _)) = default.iter().find(|(_, f)| *f == field) {
        return Some(h.to_string());
    }
    let mut h = String::new();
    for (i, ch) in field.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            h.push(' ');
        }
        h.extend(ch.to_uppercase());
    }
    Some(h)
}

/// A value as a template prints it: strings bare, null as empty, others as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// A Go-template subset: literal text and `{{ ... }}` actions on fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action {
        func: Func,
        /// `.A.B` as `[A, B]`; `None` for `.` itself.
        field: Option<Vec<String>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Func {
    Field,
    Json,
    Upper,
    Lower,
    Title,
    Truncate(usize),
    Join(String),
}

impl Template {
    /// Parses the template text.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template: unclosed action in {text:?}"))?;
            parts.push(parse_action(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Renders against `item`, split into cells at tabs. `header` gives the
    /// text for a field instead of its value (for a table's header row).
    fn render_cells(&self, item: &Value, header: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Action { func, field } => {
                    if let Some(h) = field
                        .as_ref()
                        .filter(|f| f.len() == 1)
                        .and_then(|f| header(&f[0]))
                    {
                        s.push_str(&h);
                        continue;
                    }
                    let mut v = item;
                    for name in field.iter().flatten() {
                        v = v.get(name.as_str()).unwrap_or(&Value::Null);
                    }
                    let v = v.clone();
                    s.push_str(&apply(func, &v));
                }
            }
        }
        s.split('\t').map(str::to_owned).collect()
    }
}

fn apply(func: &Func, v: &Value) -> String {
    match func {
        Func::Field => text(v),
        Func::Json => v.to_string(),
        Func::Upper => text(v).to_uppercase(),
        Func::Lower => text(v).to_lowercase(),
        Func::Title => {
            let t = text(v);
            let mut c = t.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => t,
            }
        }
        Func::Truncate(n) => text(v).chars().take(*n).collect(),
        Func::Join(sep) => match v {
            Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(sep),
            other => text(other),
        },
    }
}

/// `.Field`, `json .Field`, `json .`, `upper .F`, `truncate .F 12`, `join .F ","`.
fn parse_action(a: &str) -> Result<Part, String> {
    let words = split_words(a)?;
    let field = |w: &str| -> Result<Option<Vec<String>>, String> {
        if w == "." {
            return Ok(None);
        }
        let path: Vec<String> = w
            .strip_prefix('.')
            .unwrap_or("")
            .split('.')
            .map(str::to_owned)
            .collect();
        if !w.starts_with('.')
            || path
                .iter()
                .any(|f| f.is_empty() || !f.chars().all(|c| c.is_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "template: {w:?} is not a field (like .ID or .Config.Env)"
            ));
        }
        Ok(Some(path))
    };
    let arg = |i: usize| -> Result<&str, String> {
        words
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("template: {a:?} needs an argument"))
    };
    let (func, f) = match words.first().map(String::as_str) {
        Some(w) if w.starts_with('.') => (Func::Field, field(w)?),
        Some("json") => (Func::Json, field(arg(1)?)?),
        Some("upper") => (Func::Upper, field(arg(1)?)?),
        Some("lower") => (Func::Lower, field(arg(1)?)?),
        Some("title") => (Func::Title, field(arg(1)?)?),
        Some("truncate") => {
            let n = arg(2)?
                .parse()
                .map_err(|_| format!("template: truncate needs a length in {a:?}"))?;
            (Func::Truncate(n), field(arg(1)?)?)
        }
        Some("join") => (Func::Join(arg(2)?.to_owned()), field(arg(1)?)?),
        _ => return Err(format!("template: unsupported action {{{{{a}}}}}")),
    };
    Ok(Part::Action { func, field: f })
}

/// Words of an action; a double-quoted word may hold spaces.
fn split_words(a: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = a.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut w = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('t') => w.push('\t'),
                        Some('n') => w.push('\n'),
                        Some(x) => w.push(x),
                        None => return Err(format!("template: unterminated string in {a:?}")),
                    },
                    Some(x) => w.push(x),
                    None => return Err(format!("template: unterminated string in {a:?}")),
                }
            }
            words.push(w);
        } else {
            let mut w = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() {
                    break;
                }
                w.push(x);
                chars.next();
            }
            words.push(w);
        }
    }
    Ok(words)
}

/// Renders `template` against one item, as `inspect --format` does (tabs
/// kept as typed).
pub fn render(template: &Template, item: &Value) -> String {
    template.render_cells(item, |_| None).join("\t")
}

/// An object from field/value pairs, in order.
pub fn object(fields: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert(k.to_owned(), v);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(rows: &[&[&str]]) -> String {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect();
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Byte for byte what `docker images` prints for the same cells (Go's
    /// tabwriter, minwidth 10, padding 3).
    #[test]
    fn aligned_as_docker() {
        let got = table(&[
            &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
            &["busybox", "latest", "a416a98b71e2", "2 weeks ago", "4.26MB"],
            &["app", "1.0", "0b7c62cd2f0a", "56 years ago", "12MB"],
        ]);
        assert_eq!(
            got,
            "REPOSITORY   TAG       IMAGE ID       CREATED        SIZE\n\
             busybox      latest    a416a98b71e2   2 weeks ago    4.26MB\n\
             app          1.0       0b7c62cd2f0a   56 years ago   12MB\n"
        );
    }

    #[test]
    fn wide_characters_take_two_columns_and_empty_last_cells_keep_padding() {
        let got = table(&[&["NAME", "X"], &["日本", ""], &["ab", "y"]]);
        // 日本 is 4 columns wide: the column is 10 (minimum) wide.
        assert_eq!(got, "NAME      X\n日本      \nab        y\n");
    }

    #[test]
    fn column_blocks_as_go_tabwriter() {
        // A row with fewer cells ends a column block.
        let got = table(&[&["aaaaaaaaaaaaaa", "b"], &["c"], &["d", "e"]]);
        assert_eq!(got, "aaaaaaaaaaaaaa   b\nc\nd         e\n");
    }

    #[test]
    fn templates_render_fields_and_functions() {
        let item = json!({"Repository": "app", "Tag": "1.0", "ID": "abc", "Labels": ["a", "b"]});
        let f = Format::parse(Some("{{.Repository}}:{{.Tag}}")).unwrap();
        let mut out = Vec::new();
        print_items(&mut out, &f, &[], std::slice::from_ref(&item)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "app:1.0\n");
        let f = Format::parse(Some(
            r#"{{upper .Repository}} {{truncate .ID 2}} {{join .Labels ","}} {{json .Tag}}"#,
        ))
        .unwrap();
        let mut out = Vec::new();
        print_items(&mut out, &f, &[], std::slice::from_ref(&item)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "APP ab a,b \"1.0\"\n");
        let f = Format::parse(Some("{{json .}}")).unwrap();
        let mut out = Vec::new();
        print_items(&mut out, &f, &[], std::slice::from_ref(&item)).unwrap();
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, item);
    }

    #[test]
    fn nested_fields() {
        let item = json!({"Config": {"Env": ["A=1", "B=2"], "User": "app"}});
        let t =
            Template::parse(r#"{{.Config.User}} {{join .Config.Env ";"}} {{json .Config.Env}}"#)
                .unwrap();
        assert_eq!(
            t.render_cells(&item, |_| None),
            ["app A=1;B=2 [\"A=1\",\"B=2\"]"]
        );
        assert!(Template::parse("{{.Config..X}}").is_err());
    }

    #[test]
    fn table_templates_get_docker_headers() {
        let items = [json!({"ID": "abc", "CreatedAt": "now"})];
        let f = Format::parse(Some(r"table {{.ID}}\t{{.CreatedAt}}")).unwrap();
        let mut out = Vec::new();
        print_items(&mut out, &f, &[("IMAGE ID", "ID")], &items).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "IMAGE ID   CREATED AT\nabc        now\n"
        );
    }

    #[test]
    fn json_is_one_object_a_line_and_bad_templates_are_refused() {
        let items = [json!({"A": 1}), json!({"A": 2})];
        let mut out = Vec::new();
        print_items(&mut out, &Format::Json, &[], &items).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"A\":1}\n{\"A\":2}\n");
        assert!(Format::parse(Some("{{.ID")).is_err());
        assert!(Format::parse(Some("{{range .X}}")).is_err());
        assert!(Format::parse(Some("{{truncate .X}}")).is_err());
    }
}
