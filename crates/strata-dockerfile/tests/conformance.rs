//! BuildKit's own test data (../shared/conformance), read in place: the
//! parser's dump, the negative cases, 203 real Dockerfiles, and the shell
//! lexer's envVarTest and wordsTest tables.

use std::fs;
use std::path::{Path, PathBuf};

use strata_dockerfile::shell::Lexer;
use strata_dockerfile::{parse_named, Dockerfile};

fn conformance() -> Option<PathBuf> {
    strata_testkit::conformance_dir()
}

fn read(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn dump(name: &str, src: &str) -> Result<String, String> {
    parse_named(name, src)
        .map(|d| d.dump() + "\n")
        .map_err(|e| e.to_string())
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.map(|e| e.path()).unwrap_or_default())
        .collect();
    v.sort();
    v
}

#[test]
fn buildkit_parser_testfiles_dump_byte_for_byte() {
    let Some(c) = conformance() else { return };
    let cases = sorted_dirs(&c.join("buildkit-parser"));
    let mut failures = Vec::new();
    for case in &cases {
        let src = read(&case.join("Dockerfile"));
        let want = read(&case.join("result"));
        match dump("Dockerfile", &src) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!(
                "{}:\n--- want\n{want}--- got\n{got}",
                case.display()
            )),
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    eprintln!(
        "buildkit-parser: {}/{} pass",
        cases.len() - failures.len(),
        cases.len()
    );
    assert_eq!(cases.len(), 33, "expected the 33 BuildKit parser cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn buildkit_parser_negative_cases_fail_naming_file_and_line() {
    let Some(c) = conformance() else { return };
    let cases = sorted_dirs(&c.join("buildkit-parser-negative"));
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let src = read(&case.join("Dockerfile"));
        let name = case.join("Dockerfile").display().to_string();
        let err = match parse_named(&name, &src) {
            Ok(d) => panic!("{} parsed: {}", case.display(), d.dump()),
            Err(e) => e,
        };
        assert!(err.line() >= 1, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{name}:{}:", err.line())),
            "{err}"
        );
    }
}

#[test]
fn real_dockerfiles_dump_byte_for_byte_and_convert_to_stages() {
    let Some(c) = conformance() else { return };
    let dir = c.join("real-dockerfiles");
    let mut files: Vec<PathBuf> = sorted_dirs(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut stage_failures = Vec::new();
    for file in &files {
        let src = read(file);
        let want = read(&file.with_extension("result"));
        let name = file.display().to_string();
        match parse_named(&name, &src) {
            Ok(df) => {
                let got = df.dump() + "\n";
                if got != want {
                    failures.push(first_difference(&name, &want, &got));
                }
                check_spans(&df);
                if let Err(e) = df.stages() {
                    stage_failures.push(e.to_string());
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    eprintln!(
        "real-dockerfiles: {}/{} pass",
        files.len() - failures.len(),
        files.len()
    );
    assert_eq!(files.len(), 203, "expected 203 real Dockerfiles");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(stage_failures.is_empty(), "{}", stage_failures.join("\n"));
}

/// Every span lies inside the source, and plain arguments are found
/// verbatim where their span says.
fn check_spans(df: &Dockerfile) {
    let len = df.source().len();
    for n in &df.nodes {
        assert!(n.span.end() <= len && n.keyword_span.end() <= len);
        assert_eq!(df.text(n.keyword_span), n.keyword);
        assert!(n.start_line <= n.end_line);
        for f in &n.flags {
            assert!(df.text(f.span).starts_with("--"), "{:?}", f);
        }
        for a in &n.args {
            assert!(a.span.end() <= len);
            if !n.json && !a.value.is_empty() && !df.text(a.span).contains('\n') {
                // Single-line, non-JSON arguments are verbatim source text.
                assert_eq!(df.text(a.span), a.value, "{}", n.original);
            }
        }
    }
}

fn first_difference(name: &str, want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("{name} line {}:\n  want {w}\n  got  {g}", i + 1);
        }
    }
    format!(
        "{name}: {} lines wanted, {} got",
        want.lines().count(),
        got.lines().count()
    )
}

const ENV_VAR_ENV: [(&str, &str); 4] = [
    ("PWD", "/home"),
    ("SHELL", "bash"),
    ("KOREAN", "한국어"),
    ("NULL", ""),
];

#[test]
fn shell_env_var_test_all_and_unix_rows() {
    let Some(c) = conformance() else { return };
    let text = read(&c.join("buildkit-shell/envVarTest"));
    let lex = Lexer::new('\\');
    let mut rows = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "line {}: {line}", i + 1);
        let (platform, input, want) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform != "A" && platform != "U" {
            continue;
        }
        rows += 1;
        let got = lex.process_word(input, &ENV_VAR_ENV[..]);
        let ok = match (&got, want) {
            (Err(_), "error") => true,
            (Ok(g), w) => w != "error" && g.value == w,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {input:?} want {want:?} got {got:?}",
                i + 1
            ));
        }
    }
    eprintln!("envVarTest A+U rows: {}/{rows} pass", rows - failures.len());
    assert!(rows > 200, "only {rows} rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shell_words_test() {
    let Some(c) = conformance() else { return };
    let text = read(&c.join("buildkit-shell/wordsTest"));
    let lex = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut cases = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let kv = rest.trim_start_matches(' ');
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}: {line}", i + 1);
        let input = parts[0].trim();
        let want: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        cases += 1;
        let got = lex
            .process_words(input, env.as_slice())
            .unwrap_or_else(|_| vec!["error".to_string()]);
        if got != want {
            failures.push(format!(
                "line {}: {input:?} want {want:?} got {got:?}",
                i + 1
            ));
        }
    }
    eprintln!("wordsTest: {}/{cases} pass", cases - failures.len());
    assert!(cases >= 20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
