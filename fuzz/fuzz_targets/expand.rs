//! Any word through the shell lexer (both escape characters, every mode),
//! plus the RUN --mount and duration parsers: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_dockerfile::shell::Lexer;
use strata_dockerfile::{parse_go_duration, MountSpec};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // "word\0NAME=value\0NAME=value..." : the word, then the environment.
    let mut parts = text.split('\0');
    let word = parts.next().unwrap_or("");
    let env: Vec<(String, String)> = parts
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect();
    let escape = if mode & 1 == 0 { '\\' } else { '`' };
    let lex = Lexer::new(escape)
        .raw_quotes(mode & 2 != 0)
        .raw_escapes(mode & 4 != 0)
        .skip_unset_env(mode & 8 != 0)
        .skip_process_quotes(mode & 16 != 0);
    if let Ok(out) = lex.process_word(word, env.as_slice()) {
        for name in out.used.iter() {
            assert!(env.iter().any(|(k, _)| k == name));
        }
    }
    let _ = lex.process_words(word, env.as_slice());
    if mode & 32 != 0 {
        let _ = MountSpec::parse(word, None);
        let exp = |s: &str| {
            lex.process_word(s, env.as_slice())
                .map(|e| e.value)
                .map_err(|e| e.to_string())
        };
        let _ = MountSpec::parse(word, Some(&exp));
    }
    if mode & 64 != 0 {
        let _ = parse_go_duration(word);
    }
});
