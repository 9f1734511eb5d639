//! Any bytes through the parser, the dump, the JSON form and the typed
//! instructions: nothing may panic, and every span must lie in the source.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_dockerfile::{parse_named, Node};

fn check(df: &strata_dockerfile::Dockerfile, n: &Node, len: usize) {
    for s in [n.span, n.keyword_span] {
        assert!(s.end() <= len && s.line >= 1 && s.column >= 1, "{s:?}");
        let _ = df.text(s);
    }
    for f in &n.flags {
        assert!(f.span.end() <= len);
        let _ = df.text(f.span);
    }
    for a in &n.args {
        assert!(a.span.end() <= len);
        let _ = df.text(a.span);
    }
    for h in &n.heredocs {
        assert!(h.span.end() <= len);
    }
    assert!(n.start_line <= n.end_line);
    if let Some(c) = &n.child {
        check(df, c, len);
    }
}

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    match parse_named("Dockerfile", &src) {
        Ok(df) => {
            let dump = df.dump();
            assert_eq!(dump.lines().count() >= df.nodes.len(), true);
            for n in &df.nodes {
                check(&df, n, src.len());
            }
            let _ = serde_json::to_string(&df);
            match df.stages() {
                Ok(stages) => {
                    let _ = serde_json::to_string(&stages);
                }
                Err(e) => {
                    assert!(e.span.end() <= src.len());
                    let _ = e.to_string();
                }
            }
        }
        Err(e) => {
            assert!(e.span.end() <= src.len() && e.line() >= 1);
            let _ = e.to_string();
        }
    }
});
