//! Deterministic parallel gzip, the way pigz does it.
//!
//! The input is cut into fixed blocks of [`BLOCK`] bytes. Each block is
//! raw-deflated on its own thread with the previous block's last 32 KiB as
//! its dictionary and ends with a sync flush (byte-aligned, as if one
//! stream had been flushed there); the last block finishes the stream. The
//! pieces concatenate into one standard gzip member, so every reader takes
//! it. The output depends only on the bytes, the level and [`BLOCK`],
//! never on the number of threads or how the caller split its writes:
//! the same tree still gives the same digest.
//!
//! Memory stays bounded: at most `2 * threads` blocks are in flight.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

/// Uncompressed bytes per block.
pub(crate) const BLOCK: usize = 512 * 1024;
/// Deflate's window: the dictionary carried from block to block.
const WINDOW: usize = 32 * 1024;

/// A gzip encoder that compresses blocks in parallel.
pub(crate) struct ParGzEncoder<W: Write> {
    inner: W,
    level: u32,
    threads: usize,
    buf: Vec<u8>,
    /// The tail of the previous block (the next block's dictionary).
    dict: Vec<u8>,
    crc: Crc,
    pending: VecDeque<JoinHandle<io::Result<Vec<u8>>>>,
    header_written: bool,
}

impl<W: Write> ParGzEncoder<W> {
    /// `level` 0-9; `threads` 0 means the machine's parallelism.
    pub(crate) fn new(inner: W, level: u32, threads: usize) -> ParGzEncoder<W> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
        } else {
            threads
        };
        ParGzEncoder {
            inner,
            level: level.min(9),
            threads,
            buf: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: Crc::new(),
            pending: VecDeque::new(),
            header_written: false,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // No name, no mtime, OS 255 ("unknown"); XFL as zlib sets it.
            let xfl = match self.level {
                9 => 2,
                0 | 1 => 4,
                _ => 0,
            };
            self.inner
                .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Hand the buffered block to a worker (`last`: it ends the stream).
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        self.header()?;
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        self.crc.update(&data);
        let dict = std::mem::take(&mut self.dict);
        if !last {
            self.dict = data[data.len().saturating_sub(WINDOW)..].to_vec();
        }
        let level = self.level;
        while self.pending.len() >= 2 * self.threads {
            self.write_oldest()?;
        }
        self.pending.push_back(std::thread::spawn(move || {
            deflate_block(&data, &dict, level, last)
        }));
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(h) = self.pending.pop_front() {
            let out = h
                .join()
                .map_err(|_| io::Error::other("a gzip worker thread panicked"))??;
            self.inner.write_all(&out)?;
        }
        Ok(())
    }

    /// Compress what is left, write the trailer and return the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&len.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let take = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BLOCK {
                self.dispatch(false)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing would change where blocks end; data goes out at finish.
        Ok(())
    }
}

/// Raw deflate of one block, primed with `dict`, ended by a sync flush
/// (or the final block).
fn deflate_block(data: &[u8], dict: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Room for the worst case (stored blocks) so one call does it all.
    let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 1024);
    let mut input = data;
    loop {
        let before = c.total_in();
        let status = c
            .compress_vec(input, &mut out, flush)
            .map_err(io::Error::other)?;
        let used = (c.total_in() - before) as usize;
        input = &input[used..];
        let done = match status {
            Status::StreamEnd => true,
            // A sync flush is complete once the input is used up and the
            // output was not cut short.
            Status::Ok | Status::BufError => {
                !last && input.is_empty() && out.len() < out.capacity()
            }
        };
        if done {
            return Ok(out);
        }
        out.reserve(out.capacity().max(64 * 1024));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|i| {
                if (i / 4096) % 3 == 0 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                } else {
                    b"the quick brown fox jumps over the lazy dog\n"[i % 44]
                }
            })
            .collect()
    }

    fn encode(data: &[u8], level: u32, threads: usize, write: usize) -> Vec<u8> {
        let mut e = ParGzEncoder::new(Vec::new(), level, threads);
        for piece in data.chunks(write.max(1)) {
            e.write_all(piece).unwrap();
        }
        e.finish().unwrap()
    }

    #[test]
    fn round_trips_through_a_standard_gzip_reader() {
        for n in [0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let data = sample(n);
            for level in [0, 1, 6, 9] {
                let gz = encode(&data, level, 3, 70_000);
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, data, "n={n} level={level}");
            }
        }
    }

    #[test]
    fn output_depends_on_the_bytes_only() {
        let data = sample(5 * BLOCK + 777);
        let one = encode(&data, 6, 1, BLOCK);
        for (threads, write) in [(2, 1), (4, 4096), (8, 1_000_003), (3, 5 * BLOCK + 777)] {
            assert_eq!(
                encode(&data, 6, threads, write),
                one,
                "threads={threads} write={write}"
            );
        }
        assert_ne!(encode(&data, 1, 2, 4096), one);
        // It compresses about as well as one stream.
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(
            one.len() < single.len() + single.len() / 50 + 64,
            "{} vs {}",
            one.len(),
            single.len()
        );
    }

    #[test]
    fn header_is_fixed() {
        let gz = encode(b"x", 6, 1, 1);
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    }
}
