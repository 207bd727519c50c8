//! Cutting a file into chunks at record boundaries, ahead of the parsers.
//!
//! A file source memory-maps its file, reads the header ([`read_header`]) and hands the body to a
//! [`Splitter`], which yields [`Chunk`]s of roughly `target_bytes` each. Parser threads then parse
//! chunks independently (`csv_parse::parse_chunk`, `jsonl_parse::parse_chunk`).
//!
//! Why this shape:
//! - **Deterministic.** Boundaries depend only on the bytes and the target size, never on how
//!   many threads parse, so chunk `i` is the same chunk in every run.
//! - **Cheap.** The splitter runs on one thread ahead of the parsers, so it must be much faster
//!   than parsing: it only looks for newlines and quotes with `memchr` and never decodes fields.
//! - **Self-describing chunks.** Each chunk carries the line number of its first byte and the
//!   position (record index) of its first record, so a parser can name lines and positions in
//!   dead records without seeing the rest of the file.
//!
//! # What a record is
//!
//! A record ends at a newline (`\n`; a `\r` before it belongs to the terminator). With
//! `quote_aware` (CSV), a newline inside double quotes does not end a record: quote parity is
//! tracked sequentially from the start of the body, and a `""` escape toggles the parity twice,
//! which leaves it unchanged. An unterminated quote runs to the end of the file; the parser then
//! reports that last record as malformed.
//!
//! A line that is empty or holds only spaces, tabs and carriage returns is **blank**: it is not a
//! record, the parsers skip it and it takes no position. Blank lines still count for line
//! numbers. [`scan_record`] and [`is_blank`] are the single definition of both rules; the parsers
//! use them too, so the splitter's record counts and the parsers' positions always agree.

use memchr::{memchr, memchr2, memchr_iter};

/// A byte range of the file holding whole records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// 0-based index of the chunk in the file.
    pub index: u64,
    /// Offset of the chunk's first byte in the file.
    pub start: usize,
    /// Offset one past the chunk's last byte (the chunk includes its last record's terminator).
    pub end: usize,
    /// 1-based line number of the chunk's first byte.
    pub first_line: u64,
    /// Record index (among the file's data records, blank lines excluded) of the chunk's first
    /// record.
    pub first_position: u64,
}

impl Chunk {
    /// The chunk's bytes within the whole file's bytes.
    pub fn bytes<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        &file[self.start..self.end]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the chunk holds no bytes (never produced by [`Splitter`]).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// One record found by [`scan_record`]. Offsets are absolute in the scanned slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSpan {
    /// Offset of the record's first byte.
    pub start: usize,
    /// Offset one past the record's content: its terminator (`\n`, `\r\n`) is excluded, and so is
    /// a final `\r` at the end of the data.
    pub content_end: usize,
    /// Offset where the next record starts (past the `\n`, or the end of the data).
    pub next: usize,
    /// Number of `\n` bytes in `start..next` (embedded ones and the terminator).
    pub newlines: u64,
    /// Whether the record contains a double quote (only tracked when quote-aware).
    pub has_quote: bool,
    /// Whether every quote was closed (always true when not quote-aware). False only for the
    /// last record of the data, which then runs to its end.
    pub balanced: bool,
}

impl RecordSpan {
    /// The record's content (without terminator) within the scanned slice.
    pub fn content<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.start..self.content_end]
    }
}

/// Finds the record starting at `start`: it ends at the first newline that is outside double
/// quotes (when `quote_aware`) or at the first newline (otherwise), or at the end of `data`.
///
/// Callers must have `start < data.len()`.
#[inline]
pub fn scan_record(data: &[u8], start: usize, quote_aware: bool) -> RecordSpan {
    debug_assert!(start < data.len());
    let (nl, newlines, has_quote, balanced) = if quote_aware {
        let mut i = start;
        let mut in_quotes = false;
        let mut has_quote = false;
        let mut newlines = 0u64;
        loop {
            match memchr2(b'\n', b'"', &data[i..]) {
                None => break (None, newlines, has_quote, !in_quotes),
                Some(off) => {
                    let p = i + off;
                    i = p + 1;
                    if data[p] == b'"' {
                        in_quotes = !in_quotes;
                        has_quote = true;
                    } else {
                        newlines += 1;
                        if !in_quotes {
                            break (Some(p), newlines, has_quote, true);
                        }
                    }
                }
            }
        }
    } else {
        match memchr(b'\n', &data[start..]) {
            Some(off) => (Some(start + off), 1, false, true),
            None => (None, 0, false, true),
        }
    };
    let (mut content_end, next) = match nl {
        Some(p) => (p, p + 1),
        // An unterminated quote runs to the end; its final newline is still not content.
        None if !balanced && data.len() > start && data[data.len() - 1] == b'\n' => {
            (data.len() - 1, data.len())
        }
        None => (data.len(), data.len()),
    };
    if content_end > start && data[content_end - 1] == b'\r' {
        content_end -= 1;
    }
    RecordSpan {
        start,
        content_end,
        next,
        newlines,
        has_quote,
        balanced,
    }
}

/// Whether a record's content is blank (empty, or only spaces, tabs and carriage returns):
/// blank lines are not records.
#[inline]
pub fn is_blank(content: &[u8]) -> bool {
    content.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// Reads a CSV file's header: the first record that is not blank.
///
/// Returns the header's content without its terminator and without a leading UTF-8 byte order
/// mark (or `None` if the file has no non-blank record), and the offset where the body starts.
/// The header may contain quoted names with newlines in them. Use [`line_at`] to get the line
/// number of the body's first byte.
pub fn read_header(data: &[u8]) -> (Option<&[u8]>, usize) {
    let mut pos = 0;
    while pos < data.len() {
        let span = scan_record(data, pos, true);
        pos = span.next;
        let content = span.content(data);
        if !is_blank(content) {
            let content = content.strip_prefix(b"\xef\xbb\xbf").unwrap_or(content);
            return (Some(content), pos);
        }
    }
    (None, data.len())
}

/// The 1-based line number of the byte at `offset` (1 plus the number of newlines before it).
pub fn line_at(data: &[u8], offset: usize) -> u64 {
    1 + memchr_iter(b'\n', &data[..offset.min(data.len())]).count() as u64
}

/// An iterator over the [`Chunk`]s of a file body.
///
/// Each chunk ends at the first record end at or after `start + target_bytes`, so chunks hold
/// whole records and are at least `target_bytes` long (except the last). The iterator scans
/// every record once, counting lines and records as it goes; it never looks at fields.
#[derive(Clone, Debug)]
pub struct Splitter<'a> {
    data: &'a [u8],
    pos: usize,
    line: u64,
    records: u64,
    index: u64,
    target_bytes: usize,
    quote_aware: bool,
    /// Offset of the next double quote at or after `pos` as last found (the length of the data
    /// if there is none), so that a quote far ahead is searched for once, not once per chunk.
    next_quote: usize,
}

impl<'a> Splitter<'a> {
    /// Splits `data[body_offset..]`, the byte at `body_offset` being on line `first_line`
    /// (1-based). Chunk offsets are offsets in `data`. `target_bytes` is the size chunks aim for
    /// (e.g. 1 MiB; 0 is treated as 1). `quote_aware` is true for CSV, where newlines inside
    /// quoted fields do not end records.
    pub fn new(
        data: &'a [u8],
        body_offset: usize,
        first_line: u64,
        target_bytes: usize,
        quote_aware: bool,
    ) -> Splitter<'a> {
        Splitter {
            data,
            pos: body_offset.min(data.len()),
            line: first_line,
            records: 0,
            index: 0,
            target_bytes: target_bytes.max(1),
            quote_aware,
            next_quote: 0,
        }
    }

    /// Number of records seen so far (after the iterator is exhausted: in the whole body).
    pub fn records_seen(&self) -> u64 {
        self.records
    }

    /// Number of the line the next chunk starts on (after the iterator is exhausted: one past
    /// the last line).
    pub fn next_line(&self) -> u64 {
        self.line
    }

    /// Scans quote-free bytes `self.pos..limit` line by line, which is cheaper than
    /// [`scan_record`] per line. Stops after the first record that reaches `goal`. `limit`
    /// must be a position not inside a record that started earlier, and the bytes before it
    /// must hold no quote.
    #[inline]
    fn scan_plain(&mut self, limit: usize, goal: usize) -> bool {
        let data = self.data;
        let mut line_start = self.pos;
        for off in memchr_iter(b'\n', &data[self.pos..limit]) {
            let nl = self.pos + off;
            self.line += 1;
            // Fast test first: a line starting with an ordinary byte is not blank.
            let first = data[line_start];
            if !(matches!(first, b' ' | b'\t' | b'\r' | b'\n') && is_blank(&data[line_start..nl])) {
                self.records += 1;
            }
            line_start = nl + 1;
            if line_start >= goal {
                self.pos = line_start;
                return true;
            }
        }
        self.pos = line_start;
        false
    }
}

/// How far past a chunk's target end the splitter looks for the next quote.
const QUOTE_LOOKAHEAD: usize = 64 * 1024;

impl Iterator for Splitter<'_> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        let data = self.data;
        if self.pos >= data.len() {
            return None;
        }
        let start = self.pos;
        let first_line = self.line;
        let first_position = self.records;
        let goal = start.saturating_add(self.target_bytes);
        loop {
            if self.pos >= data.len() {
                break;
            }
            // Fast path: up to the next quote (or the end), every newline is a record end.
            let limit = if self.quote_aware {
                if self.next_quote < self.pos {
                    // Look for the next quote only a little past this chunk's goal: a file
                    // without quotes would otherwise be scanned (and paged in) to its end here.
                    // Stopping the fast path at the window's edge is harmless: the record
                    // there is then scanned quote-aware, which handles any record.
                    let window = data
                        .len()
                        .min(goal.max(self.pos).saturating_add(QUOTE_LOOKAHEAD));
                    self.next_quote =
                        memchr(b'"', &data[self.pos..window]).map_or(window, |q| self.pos + q);
                }
                self.next_quote
            } else {
                data.len()
            };
            if self.scan_plain(limit, goal) {
                break;
            }
            if self.pos >= data.len() {
                break;
            }
            // The record at `pos` has a quote (or is the last, unterminated line): scan it fully.
            let span = scan_record(data, self.pos, self.quote_aware);
            self.line += span.newlines;
            if !is_blank(span.content(data)) {
                self.records += 1;
            }
            self.pos = span.next;
            if self.pos >= goal {
                break;
            }
        }
        let chunk = Chunk {
            index: self.index,
            start,
            end: self.pos,
            first_line,
            first_position,
        };
        self.index += 1;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records (content, start line) by scanning the whole body in one go.
    fn records(
        data: &[u8],
        from: usize,
        first_line: u64,
        quote_aware: bool,
    ) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        let mut pos = from;
        let mut line = first_line;
        while pos < data.len() {
            let span = scan_record(data, pos, quote_aware);
            if !is_blank(span.content(data)) {
                out.push((span.content(data).to_vec(), line));
            }
            line += span.newlines;
            pos = span.next;
        }
        out
    }

    /// Records by chunking and scanning each chunk on its own, checking chunk metadata.
    fn chunked(
        data: &[u8],
        from: usize,
        first_line: u64,
        target: usize,
        quote_aware: bool,
    ) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        let mut expect_start = from;
        let mut splitter = Splitter::new(data, from, first_line, target, quote_aware);
        for (i, chunk) in splitter.by_ref().enumerate() {
            assert_eq!(chunk.index, i as u64);
            assert_eq!(chunk.start, expect_start);
            assert!(chunk.end > chunk.start);
            assert_eq!(chunk.first_line, line_at(data, chunk.start));
            let before = records(&data[..chunk.start], from, first_line, quote_aware).len();
            assert_eq!(chunk.first_position, before as u64);
            expect_start = chunk.end;
            let bytes = chunk.bytes(data);
            let mut pos = 0;
            let mut line = chunk.first_line;
            while pos < bytes.len() {
                let span = scan_record(bytes, pos, quote_aware);
                if !is_blank(span.content(bytes)) {
                    out.push((span.content(bytes).to_vec(), line));
                }
                line += span.newlines;
                pos = span.next;
            }
        }
        assert_eq!(expect_start, data.len().max(from));
        assert_eq!(
            splitter.records_seen(),
            records(data, from, first_line, quote_aware).len() as u64
        );
        out
    }

    const CSV: &[u8] = b"id,name,note\n1,a,plain\n\n2,\"b\nb\",\"x,y\"\r\n   \n3,\"q\"\"uote\",z\n4,\"multi\n\nline\",w\n5,e,last";

    #[test]
    fn chunking_never_splits_records() {
        let (_, body) = read_header(CSV);
        let whole = records(CSV, body, 2, true);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[1], (b"2,\"b\nb\",\"x,y\"".to_vec(), 4));
        assert_eq!(whole[2].1, 7);
        assert_eq!(whole[3].1, 8);
        assert_eq!(whole[4], (b"5,e,last".to_vec(), 11));
        for target in [1, 2, 3, 7, 64, 4096, 1 << 20] {
            assert_eq!(
                chunked(CSV, body, 2, target, true),
                whole,
                "target {target}"
            );
        }
    }

    #[test]
    fn small_targets_give_one_record_per_chunk() {
        let data = b"a\nb\nc\n";
        let chunks: Vec<_> = Splitter::new(data, 0, 1, 1, false).collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[2],
            Chunk {
                index: 2,
                start: 4,
                end: 6,
                first_line: 3,
                first_position: 2
            }
        );
    }

    #[test]
    fn unterminated_quote_runs_to_the_end() {
        let data = b"1,\"open\n2,x\n3,y\n";
        let chunks: Vec<_> = Splitter::new(data, 0, 1, 1, true).collect();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].end, data.len());
        let span = scan_record(data, 0, true);
        assert!(!span.balanced);
        assert_eq!(span.next, data.len());
        // Without quote awareness (JSON Lines), quotes mean nothing.
        assert_eq!(Splitter::new(data, 0, 1, 1, false).count(), 3);
    }

    #[test]
    fn header() {
        assert_eq!(read_header(b"a,b\r\n1,2\n"), (Some(&b"a,b"[..]), 5));
        assert_eq!(read_header(b"\xef\xbb\xbfa,b\n"), (Some(&b"a,b"[..]), 7));
        assert_eq!(read_header(b"\n\na,b"), (Some(&b"a,b"[..]), 5));
        assert_eq!(read_header(b""), (None, 0));
        assert_eq!(read_header(b" \n"), (None, 2));
        assert_eq!(read_header(b"\"a\nb\",c\nx"), (Some(&b"\"a\nb\",c"[..]), 8));
        assert_eq!(line_at(b"a\nb\nc", 4), 3);
    }

    #[test]
    fn empty_and_past_the_end() {
        assert_eq!(Splitter::new(b"", 0, 1, 10, true).count(), 0);
        assert_eq!(Splitter::new(b"abc", 3, 1, 10, true).count(), 0);
        assert_eq!(Splitter::new(b"abc", 30, 1, 10, true).count(), 0);
        let data = b"\n\n\n";
        let chunks: Vec<_> = Splitter::new(data, 0, 1, 1, true).collect();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.first_position == 0));
    }

    #[test]
    fn crlf_and_blank_lines() {
        let data = b"a\r\n\r\n \t\r\nb\r\nc";
        let recs = records(data, 0, 1, true);
        assert_eq!(
            recs,
            vec![(b"a".to_vec(), 1), (b"b".to_vec(), 4), (b"c".to_vec(), 5)]
        );
        for target in [1, 2, 5, 100] {
            assert_eq!(chunked(data, 0, 1, target, true), recs);
            assert_eq!(chunked(data, 0, 1, target, false), recs);
        }
    }

    #[test]
    #[ignore = "throughput check; run with --ignored --nocapture"]
    fn splitter_throughput() {
        let mut data = Vec::new();
        let mut i = 0u64;
        while data.len() < 200 << 20 {
            data.extend_from_slice(format!("{i},2024-01-01T00:00:{:02}.123Z,{},books,\"Socks, 3-pack\",2,12.99,25.98,paid\n", i % 60, i % 977).as_bytes());
            if i.is_multiple_of(7) {
                data.extend_from_slice(
                    format!("{i},2024-01-01T00:00:00.000Z,5,toys,Kite,1,3.50,3.50,placed\n")
                        .as_bytes(),
                );
            }
            i += 1;
        }
        for quote_aware in [true, false] {
            let t = std::time::Instant::now();
            let mut splitter = Splitter::new(&data, 0, 1, 1 << 20, quote_aware);
            let n = splitter.by_ref().count();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "splitter quote_aware={quote_aware}: {n} chunks, {} records, {:.2} GB/s",
                splitter.records_seen(),
                data.len() as f64 / secs / 1e9
            );
        }
        // All quote-free.
        let plain: Vec<u8> = data.iter().copied().filter(|&b| b != b'"').collect();
        let t = std::time::Instant::now();
        let n = Splitter::new(&plain, 0, 1, 1 << 20, true).count();
        println!(
            "splitter, no quotes: {n} chunks, {:.2} GB/s",
            plain.len() as f64 / t.elapsed().as_secs_f64() / 1e9
        );
    }
}
