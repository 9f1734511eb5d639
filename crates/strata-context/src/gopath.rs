//! Go's `path/filepath` functions that Docker's matching depends on, with
//! their exact (Unix) behaviour: `Clean`, `Dir` and `Match`.

/// `filepath.Clean`: the shortest equivalent path by lexical processing
/// (no `.` elements, `..` folded where it can be, no doubled or trailing
/// slashes; `""` becomes `"."`).
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let p = path.as_bytes();
    let n = p.len();
    let rooted = p[0] == b'/';
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0usize, 0usize);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        if p[r] == b'/' || (p[r] == b'.' && (r + 1 == n || p[r + 1] == b'/')) {
            // Empty or `.` element.
            r += 1;
        } else if p[r] == b'.' && p.get(r + 1) == Some(&b'.') && (r + 2 == n || p[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                while out.len() > dotdot && out[out.len() - 1] != b'/' {
                    out.pop();
                }
                // Leaves the separator before the removed element; Go's
                // lazybuf rewinds `w` to that separator's index, dropping it.
                if out.len() > dotdot {
                    out.pop();
                }
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && p[r] != b'/' {
                out.push(p[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return ".".to_owned();
    }
    // Only whole elements between ASCII slashes were copied: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `filepath.Dir`: everything but the last element, cleaned.
pub(crate) fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".to_owned(),
    }
}

/// Go's `filepath.ErrBadPattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPattern;

const RUNE_ERROR: u32 = 0xFFFD;

/// `utf8.DecodeRune`: the first rune of `b` and its width; invalid or
/// truncated sequences give `(U+FFFD, 1)`, an empty slice `(U+FFFD, 0)`.
fn decode_rune(b: &[u8]) -> (u32, usize) {
    if b.is_empty() {
        return (RUNE_ERROR, 0);
    }
    if b[0] < 0x80 {
        return (u32::from(b[0]), 1);
    }
    let take = b.len().min(4);
    let s = match std::str::from_utf8(&b[..take]) {
        Ok(s) => s,
        Err(e) if e.valid_up_to() > 0 => match std::str::from_utf8(&b[..e.valid_up_to()]) {
            Ok(s) => s,
            Err(_) => return (RUNE_ERROR, 1),
        },
        Err(_) => return (RUNE_ERROR, 1),
    };
    match s.chars().next() {
        Some(c) => (c as u32, c.len_utf8()),
        None => (RUNE_ERROR, 1),
    }
}

/// `scanChunk`: leading stars, then everything up to the next star that is
/// not inside a bracket expression.
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut inrange = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => inrange = true,
            b']' => inrange = false,
            b'*' if !inrange => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// `getEsc`: one possibly escaped character of a bracket expression.
fn get_esc(mut chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    if chunk.is_empty() || chunk[0] == b'-' || chunk[0] == b']' {
        return Err(BadPattern);
    }
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(BadPattern);
        }
    }
    let (r, n) = decode_rune(chunk);
    if r == RUNE_ERROR && n == 1 {
        return Err(BadPattern);
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

/// `matchChunk`: match `chunk` at the start of `s`; on success the rest of
/// `s`. Keeps checking the chunk's syntax after the match has failed.
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<Option<&'a [u8]>, BadPattern> {
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            b'[' => {
                let mut r = 0u32;
                if !failed {
                    let (rr, n) = decode_rune(s);
                    r = rr;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&b'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&b']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            c => {
                let lit = if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BadPattern);
                    }
                    chunk[0]
                } else {
                    c
                };
                if !failed {
                    if lit != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed {
        Ok(None)
    } else {
        Ok(Some(s))
    }
}

/// `filepath.Match(pattern, name)`: `*` (no `/`), `?`, `[...]`/`[^...]`
/// classes with ranges, `\` escapes; `Err` for a malformed pattern.
pub(crate) fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        let first = match_chunk(chunk, name);
        if let Ok(Some(t)) = first {
            if t.is_empty() || !pattern.is_empty() {
                name = t;
                continue;
            }
        }
        first?;
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    // The last chunk must use up the name.
                    if !pattern.is_empty() || t.is_empty() {
                        name = t;
                        continue 'pattern;
                    }
                }
                i += 1;
            }
        }
        // Before answering "no", check the rest of the pattern's syntax.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Whether a path element has glob characters, as BuildKit's COPY decides
/// it (`*`, `?`, `[`, a backslash escaping the next byte).
pub(crate) fn contains_wildcards(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        // From Go's path/filepath tests.
        let cases = [
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("", "."),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("a/b/c/", "a/b/c"),
            ("./", "."),
            ("../", ".."),
            ("../../", "../.."),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("///abc", "/abc"),
            ("//abc//", "/abc"),
            ("abc//", "abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
            ("**/", "**"),
            ("!a/../b", "b"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "Clean({input:?})");
        }
    }

    #[test]
    fn dir_like_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("/.", "/"),
            ("/", "/"),
            ("////", "/"),
            ("/foo", "/"),
            ("x/", "x"),
            ("abc", "."),
            ("abc/def", "abc"),
            ("a/b/.x", "a/b"),
            ("a/b/c.", "a/b"),
            ("a/b/c.x", "a/b"),
        ] {
            assert_eq!(dir(input), want, "Dir({input:?})");
        }
    }

    #[test]
    fn match_like_go() {
        // Go's path/filepath matchTests.
        let ok = Ok(true);
        let no = Ok(false);
        let bad = Err(BadPattern);
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", ok),
            ("*", "abc", ok),
            ("*c", "abc", ok),
            ("a*", "a", ok),
            ("a*", "abc", ok),
            ("a*", "ab/c", no),
            ("a*/b", "abc/b", ok),
            ("a*/b", "a/c/b", no),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", ok),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", ok),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", no),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", no),
            ("a*b?c*x", "abxbbxdbxebxczzx", ok),
            ("a*b?c*x", "abxbbxdbxebxczzy", no),
            ("ab[c]", "abc", ok),
            ("ab[b-d]", "abc", ok),
            ("ab[e-g]", "abc", no),
            ("ab[^c]", "abc", no),
            ("ab[^b-d]", "abc", no),
            ("ab[^e-g]", "abc", ok),
            ("a\\*b", "a*b", ok),
            ("a\\*b", "ab", no),
            ("a?b", "a☺b", ok),
            ("a[^a]b", "a☺b", ok),
            ("a???b", "a☺b", no),
            ("a[^a][^a][^a]b", "a☺b", no),
            ("[a-ζ]*", "α", ok),
            ("*[a-ζ]", "A", no),
            ("a?b", "a/b", no),
            ("a*b", "a/b", no),
            ("[\\]a]", "]", ok),
            ("[\\-]", "-", ok),
            ("[x\\-]", "x", ok),
            ("[x\\-]", "-", ok),
            ("[x\\-]", "z", no),
            ("[\\-x]", "x", ok),
            ("[\\-x]", "-", ok),
            ("[\\-x]", "a", no),
            ("[]a]", "]", bad),
            ("[-]", "-", bad),
            ("[x-]", "x", bad),
            ("[x-]", "-", bad),
            ("[x-]", "z", bad),
            ("[-x]", "x", bad),
            ("[-x]", "-", bad),
            ("[-x]", "a", bad),
            ("\\", "a", bad),
            ("[a-b-c]", "a", bad),
            ("[", "a", bad),
            ("[^", "a", bad),
            ("[^bc", "a", bad),
            ("a[", "a", bad),
            ("a[", "ab", bad),
            ("a[", "x", bad),
            ("a/b[", "x", bad),
            ("*x", "xxx", ok),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                go_match(pattern, name),
                *want,
                "Match({pattern:?}, {name:?})"
            );
        }
    }

    #[test]
    fn wildcards() {
        assert!(contains_wildcards("*.go"));
        assert!(contains_wildcards("a[bc]"));
        assert!(!contains_wildcards("a\\*b"));
        assert!(!contains_wildcards("plain.txt"));
    }
}
