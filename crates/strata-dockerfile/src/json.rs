//! The JSON (exec) form: a JSON array of strings, validated and decoded as
//! Go's `encoding/json.Unmarshal` into `[]interface{}` does (so invalid JSON
//! falls back to the shell form exactly where BuildKit's does), keeping the
//! position of every element.

/// Why the text is not an exec-form array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Does not start with `[`.
    NotArray,
    /// Not valid JSON (BuildKit falls back to the shell form).
    Syntax,
    /// Valid JSON, but an element is not a string (a hard error in BuildKit).
    NotStringArray,
}

/// One decoded element and its byte range (quotes included) in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonString {
    pub value: String,
    pub start: usize,
    pub end: usize,
}

/// Go's maximum nesting depth for `encoding/json`.
const MAX_DEPTH: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Array,
    Object,
}

struct P<'a> {
    b: &'a [u8],
    s: &'a str,
    pos: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(JsonError::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
        }
        Ok(())
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.b.get(at..at + 4)?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + (c as char).to_digit(16)?;
        }
        Some(v)
    }

    /// A string starting at the opening quote; decoded when `decode`.
    fn string(&mut self, decode: bool) -> Result<String, JsonError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let rest = self.s.get(self.pos..).ok_or(JsonError::Syntax)?;
            let c = rest.chars().next().ok_or(JsonError::Syntax)?;
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\\' => {
                    let e = *self.b.get(self.pos + 1).ok_or(JsonError::Syntax)?;
                    let simple = match e {
                        b'"' => Some('"'),
                        b'\\' => Some('\\'),
                        b'/' => Some('/'),
                        b'b' => Some('\u{8}'),
                        b'f' => Some('\u{c}'),
                        b'n' => Some('\n'),
                        b'r' => Some('\r'),
                        b't' => Some('\t'),
                        b'u' => None,
                        _ => return Err(JsonError::Syntax),
                    };
                    if let Some(ch) = simple {
                        out.push(ch);
                        self.pos += 2;
                        continue;
                    }
                    let r = self.hex4(self.pos + 2).ok_or(JsonError::Syntax)?;
                    self.pos += 6;
                    if (0xd800..0xe000).contains(&r) {
                        // A surrogate: combine with a following low surrogate,
                        // else U+FFFD (and the next escape stands alone).
                        let next = if self.b.get(self.pos) == Some(&b'\\')
                            && self.b.get(self.pos + 1) == Some(&b'u')
                        {
                            self.hex4(self.pos + 2)
                        } else {
                            None
                        };
                        match next {
                            Some(r2) if r < 0xdc00 && (0xdc00..0xe000).contains(&r2) => {
                                let c = 0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00);
                                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                self.pos += 6;
                            }
                            _ => out.push('\u{fffd}'),
                        }
                    } else {
                        out.push(char::from_u32(r).unwrap_or('\u{fffd}'));
                    }
                }
                c if (c as u32) < 0x20 => return Err(JsonError::Syntax),
                c => {
                    if decode {
                        out.push(c);
                    }
                    self.pos += c.len_utf8();
                }
            }
        }
    }
}

/// Parses `s` (which starts at `[` after BuildKit's left trim) as
/// `json.Unmarshal` into `[]interface{}` would, and requires every element
/// to be a string.
pub(crate) fn parse_string_array(s: &str) -> Result<Vec<JsonString>, JsonError> {
    if !s.starts_with('[') {
        return Err(JsonError::NotArray);
    }
    let mut p = P {
        b: s.as_bytes(),
        s,
        pos: 0,
    };
    let mut stack: Vec<Ctx> = Vec::new();
    let mut items = Vec::new();
    let mut non_string = false;

    // Parse one value, then unwind containers as they close.
    'value: loop {
        p.ws();
        let top_level_elem = stack.len() == 1;
        match p.peek() {
            Some(b'[') => {
                p.pos += 1;
                stack.push(Ctx::Array);
                if stack.len() > MAX_DEPTH {
                    return Err(JsonError::Syntax);
                }
                if stack.len() > 1 && top_level_elem {
                    non_string = true;
                }
                p.ws();
                if p.peek() == Some(b']') {
                    p.pos += 1;
                    stack.pop();
                } else {
                    continue 'value;
                }
            }
            Some(b'{') => {
                p.pos += 1;
                stack.push(Ctx::Object);
                if stack.len() > MAX_DEPTH {
                    return Err(JsonError::Syntax);
                }
                if top_level_elem {
                    non_string = true;
                }
                p.ws();
                if p.peek() == Some(b'}') {
                    p.pos += 1;
                    stack.pop();
                } else {
                    object_key(&mut p)?;
                    continue 'value;
                }
            }
            Some(b'"') => {
                let start = p.pos;
                let value = p.string(top_level_elem)?;
                if top_level_elem {
                    items.push(JsonString {
                        value,
                        start,
                        end: p.pos,
                    });
                }
            }
            Some(b't') => {
                p.literal(b"true")?;
                non_string |= top_level_elem;
            }
            Some(b'f') => {
                p.literal(b"false")?;
                non_string |= top_level_elem;
            }
            Some(b'n') => {
                p.literal(b"null")?;
                non_string |= top_level_elem;
            }
            Some(b'-' | b'0'..=b'9') => {
                p.number()?;
                non_string |= top_level_elem;
            }
            _ => return Err(JsonError::Syntax),
        }
        // A value ended: close containers or move to the next element.
        loop {
            p.ws();
            let Some(&ctx) = stack.last() else {
                break 'value;
            };
            match (ctx, p.peek()) {
                (_, Some(b',')) => {
                    p.pos += 1;
                    if ctx == Ctx::Object {
                        p.ws();
                        object_key(&mut p)?;
                    }
                    continue 'value;
                }
                (Ctx::Array, Some(b']')) | (Ctx::Object, Some(b'}')) => {
                    p.pos += 1;
                    stack.pop();
                }
                _ => return Err(JsonError::Syntax),
            }
        }
    }
    p.ws();
    if p.pos != s.len() {
        return Err(JsonError::Syntax);
    }
    if non_string {
        return Err(JsonError::NotStringArray);
    }
    Ok(items)
}

/// `"key" :` inside an object.
fn object_key(p: &mut P<'_>) -> Result<(), JsonError> {
    if p.peek() != Some(b'"') {
        return Err(JsonError::Syntax);
    }
    p.string(false)?;
    p.ws();
    if p.peek() != Some(b':') {
        return Err(JsonError::Syntax);
    }
    p.pos += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(s: &str) -> Result<Vec<String>, JsonError> {
        parse_string_array(s).map(|v| v.into_iter().map(|j| j.value).collect())
    }

    #[test]
    fn arrays_like_go() {
        use JsonError::*;
        let ok: &[(&str, &[&str])] = &[
            ("[]", &[]),
            (r#"[""]"#, &[""]),
            ("[ \"a\",\t\"b\" ]  ", &["a", "b"]),
            (
                r#"["\" \\ \/ \b \f \n \r \t \u0000"]"#,
                &["\" \\ / \u{8} \u{c} \n \r \t \0"],
            ),
            (
                r#"["\ud83d\ude00", "\ud83d", "\ude00x"]"#,
                &["😀", "\u{fffd}", "\u{fffd}x"],
            ),
            (r#"["♥"]"#, &["♥"]),
        ];
        for (input, want) in ok {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(values(input), Ok(want), "{input}");
        }
        let bad: &[(&str, JsonError)] = &[
            ("echo", NotArray),
            ("['a']", Syntax),
            (r#"["a""#, Syntax),
            (r#"["a"] x"#, Syntax),
            (r#"["a",]"#, Syntax),
            ("[\"a\tb\"]", Syntax),
            (r#"["\x"]"#, Syntax),
            (r#"["a", ["b"]]"#, NotStringArray),
            (r#"[1]"#, NotStringArray),
            (r#"[null]"#, NotStringArray),
            (r#"[{"a": [1, {"b": null}]}]"#, NotStringArray),
            (r#"[01]"#, Syntax),
            (r#"[1.]"#, Syntax),
            (r#"[-1.5e+3]"#, NotStringArray),
            (r#"[{"a" 1}]"#, Syntax),
        ];
        for (input, want) in bad {
            assert_eq!(values(input), Err(*want), "{input}");
        }
    }

    #[test]
    fn positions_cover_the_quotes() {
        let v = parse_string_array(r#"[ "a", "bc" ]"#).unwrap_or_default();
        assert_eq!((v[1].start, v[1].end), (7, 11));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(20_000) + &"]".repeat(20_000);
        assert_eq!(values(&deep), Err(JsonError::Syntax));
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(values(&ok), Err(JsonError::NotStringArray));
    }
}
