//! Source positions: byte spans with their line and column, and the mapping
//! from a logical (continuation-joined) line back to the source text.

use serde::Serialize;

/// A region of the Dockerfile source: byte `offset` and `len`, plus the
/// 1-based `line` and `column` (counted in characters) where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes (0 for a position between two characters).
    pub len: usize,
    /// 1-based line of the first byte.
    pub line: usize,
    /// 1-based column (in characters) of the first byte.
    pub column: usize,
}

impl Span {
    /// Byte offset just past the span.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }

    /// The span as a byte range, for slicing the source.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.end()
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.offset, s.len).into()
    }
}

/// Line starts of a source, to turn byte offsets into spans.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(src: &str) -> Self {
        let mut starts = Vec::with_capacity(src.len() / 32 + 1);
        starts.push(0);
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The span of bytes `start..end` of `src` (clamped to the source).
    pub(crate) fn span(&self, src: &str, start: usize, end: usize) -> Span {
        let start = floor_boundary(src, start.min(src.len()));
        let end = floor_boundary(src, end.clamp(start, src.len()));
        let line_idx = match self.starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let line_start = self.starts.get(line_idx).copied().unwrap_or(0);
        let column = src
            .get(line_start..start)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        Span {
            offset: start,
            len: end - start,
            line: line_idx + 1,
            column,
        }
    }

    /// 1-based line number of byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i.max(1),
        }
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Maps byte positions in a logical line (pieces of physical lines joined
/// after continuation handling) back to source offsets.
#[derive(Debug, Clone, Default)]
pub(crate) struct LineMap {
    /// (logical start, source start, length), in logical order.
    pieces: Vec<(usize, usize, usize)>,
    /// Where an empty logical line sits in the source.
    fallback: usize,
}

impl LineMap {
    pub(crate) fn new(fallback: usize) -> Self {
        LineMap {
            pieces: Vec::new(),
            fallback,
        }
    }

    pub(crate) fn push(&mut self, logical: usize, source: usize, len: usize) {
        if len > 0 {
            self.pieces.push((logical, source, len));
        }
    }

    /// Index of the piece containing logical position `pos`, if any.
    fn piece(&self, pos: usize) -> Option<usize> {
        let i = self.pieces.partition_point(|&(l, _, _)| l <= pos);
        let i = i.checked_sub(1)?;
        let (l, _, n) = self.pieces[i];
        (pos < l + n).then_some(i)
    }

    /// Source offset of logical position `pos` (a start position).
    pub(crate) fn start(&self, pos: usize) -> usize {
        if let Some(i) = self.piece(pos) {
            let (l, s, _) = self.pieces[i];
            return s + (pos - l);
        }
        // Past the end of a piece: the start of the next one, or the end.
        let next = self.pieces.partition_point(|&(l, _, _)| l <= pos);
        match self.pieces.get(next) {
            Some(&(_, s, _)) => s,
            None => self
                .pieces
                .last()
                .map(|&(_, s, n)| s + n)
                .unwrap_or(self.fallback),
        }
    }

    /// Source range of logical range `start..end`.
    pub(crate) fn range(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.start(start);
        if end <= start {
            return (s, s);
        }
        let e = match self.piece(end - 1) {
            Some(i) => {
                let (l, src, _) = self.pieces[i];
                src + (end - l)
            }
            None => self.start(end - 1) + 1,
        };
        (s, e.max(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_have_lines_and_columns() {
        let src = "FROM a\nRUN é x\n";
        let idx = LineIndex::new(src);
        let s = idx.span(src, 11, 14);
        assert_eq!((s.line, s.column, s.len), (2, 5, 3));
        assert_eq!(&src[s.range()], "é ");
        assert_eq!(idx.line_of(7), 2);
    }

    #[test]
    fn logical_positions_map_back() {
        // "RUN a \\\n  b" joined as "RUN a   b"
        let mut m = LineMap::new(0);
        m.push(0, 0, 6);
        m.push(6, 8, 3);
        assert_eq!(m.start(4), 4);
        assert_eq!(m.start(6), 8);
        assert_eq!(m.range(4, 9), (4, 11));
        assert_eq!(m.range(9, 9), (11, 11));
    }
}
