//! Deterministic parallel gzip, the way pigz does it.
//!
//! The input is cut into fixed blocks of [`BLOCK`] bytes. Each block is
//! raw-deflated on its own with the previous block's last 32 KiB as its
//! dictionary and ends with a sync flush (byte-aligned, as if one stream
//! had been flushed there); the last block finishes the stream. The pieces
//! concatenate into one standard gzip member, so every reader takes it.
//! The output depends only on the bytes, the level and [`BLOCK`], never on
//! the number of threads or how the caller split its writes: the same tree
//! still gives the same digest.
//!
//! A block that does not compress (already compressed files, random
//! bytes) is stored instead of deflated: four 8 KiB probes spread over it
//! are deflated at level 1 first, and when none shrinks below 97 % the
//! block is written as stored deflate blocks, which costs a copy instead
//! of a full compression. The decision depends on the bytes only, so the
//! output still does.
//!
//! Blocks are compressed (and their CRC computed) on rayon's global pool,
//! the one pool every layer of every stage shares with context hashing:
//! however many layers are written at once, no more threads compress than
//! there are cores. Memory stays bounded: each encoder has at most
//! `2 * threads` blocks in flight.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver};

use flate2::{Compress, Crc, FlushCompress, Status};

/// Uncompressed bytes per block.
pub(crate) const BLOCK: usize = 512 * 1024;
/// Deflate's window: the dictionary carried from block to block.
const WINDOW: usize = 32 * 1024;
/// Bytes of each probe that decides whether a block compresses.
const PROBE: usize = 8 * 1024;

/// A compressed block and the CRC of its input.
type Done = io::Result<(Vec<u8>, Crc)>;

/// A gzip encoder that compresses blocks in parallel.
pub(crate) struct ParGzEncoder<W: Write> {
    inner: W,
    level: u32,
    /// Blocks in flight at most.
    window: usize,
    buf: Vec<u8>,
    /// The tail of the previous block (the next block's dictionary).
    dict: Vec<u8>,
    crc: Crc,
    pending: VecDeque<Receiver<Done>>,
    header_written: bool,
    /// Another pool than the global one (tests).
    #[cfg(test)]
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

impl<W: Write> ParGzEncoder<W> {
    /// `level` 0-9.
    pub(crate) fn new(inner: W, level: u32) -> ParGzEncoder<W> {
        ParGzEncoder {
            inner,
            level: level.min(9),
            window: 2 * rayon::current_num_threads().max(1),
            buf: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: Crc::new(),
            pending: VecDeque::new(),
            header_written: false,
            #[cfg(test)]
            pool: None,
        }
    }

    /// The same, compressing on `pool`.
    #[cfg(test)]
    fn new_in(inner: W, level: u32, pool: std::sync::Arc<rayon::ThreadPool>) -> ParGzEncoder<W> {
        let mut e = ParGzEncoder::new(inner, level);
        e.window = 2 * pool.current_num_threads();
        e.pool = Some(pool);
        e
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

    /// Hand the buffered block to the pool (`last`: it ends the stream).
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        self.header()?;
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let dict = std::mem::take(&mut self.dict);
        if !last {
            self.dict = data[data.len().saturating_sub(WINDOW)..].to_vec();
        }
        let level = self.level;
        while self.pending.len() >= self.window {
            self.write_oldest()?;
        }
        let job = move || {
            let mut crc = Crc::new();
            crc.update(&data);
            deflate_block(&data, &dict, level, last).map(|out| (out, crc))
        };
        let (tx, rx) = sync_channel(1);
        let work = move || {
            let _ = tx.send(job());
        };
        #[cfg(test)]
        if let Some(pool) = &self.pool {
            pool.spawn(work);
            self.pending.push_back(rx);
            return Ok(());
        }
        if rayon::current_thread_index().is_some() {
            // On a pool thread already: waiting for the pool here could
            // leave no thread to do the work.
            work();
        } else {
            rayon::spawn(work);
        }
        self.pending.push_back(rx);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let (out, crc) = rx
                .recv()
                .map_err(|_| io::Error::other("a gzip worker stopped"))??;
            self.crc.combine(&crc);
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
    let level = if level > 0 && incompressible(data) {
        0
    } else {
        level
    };
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

/// Whether none of four probes spread over `data` deflates (level 1) below
/// 97 % of its size. Blocks too small to probe are compressed.
fn incompressible(data: &[u8]) -> bool {
    if data.len() < 4 * PROBE {
        return false;
    }
    (0..4).all(|i| {
        let start = i * (data.len() - PROBE) / 3;
        let probe = &data[start..start + PROBE];
        let mut c = Compress::new(flate2::Compression::fast(), false);
        let mut out = Vec::with_capacity(PROBE + 256);
        c.compress_vec(probe, &mut out, FlushCompress::Finish)
            .is_ok()
            && out.len() * 100 >= probe.len() * 97
    })
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

    /// Encodes on a pool of `threads` threads (the global one when 0).
    fn encode(data: &[u8], level: u32, threads: usize, write: usize) -> Vec<u8> {
        let mut e = if threads == 0 {
            ParGzEncoder::new(Vec::new(), level)
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            ParGzEncoder::new_in(Vec::new(), level, std::sync::Arc::new(pool))
        };
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

    /// The bytes of this encoder never change (layer digests depend on
    /// them): digests of its output from before it used a shared pool.
    #[test]
    fn output_is_what_it_always_was() {
        use sha2::Digest as _;
        for (n, level, want) in [
            (
                0,
                6,
                "ac73670af3abed54ac6fb4695131f4099be9fbe39d6076c5d0264a6bbdae9d83",
            ),
            (
                1,
                6,
                "48177b2c400b02e5a4ebd09573609544e775a9554f1637ecc5a4b39164f0c3ec",
            ),
            (
                BLOCK,
                6,
                "412f91497f3e30cc749969857798dc2ad4259ca17b0176c30ce2ebf95b2aa4a7",
            ),
            (
                5 * BLOCK + 777,
                6,
                "e182efdfd8e7eeaf4670e2502b80c5167573d75fa8e43908d04040404f1b6d64",
            ),
            (
                3 * BLOCK + 5,
                1,
                "4a0b3ea69b5aefe8d12f6ed0ffc33f2db296e8b90df2babf7f3f3d1747e98872",
            ),
            (
                2 * BLOCK + 9,
                9,
                "98b0b7067d4cffb4199165470929909b2cd18d4dda1fd7d2e20f66705589d446",
            ),
        ] {
            for threads in [0, 1, 3] {
                let gz = encode(&sample(n), level, threads, 70_000);
                assert_eq!(
                    hex::encode(sha2::Sha256::digest(&gz)),
                    want,
                    "n={n} level={level} threads={threads}"
                );
            }
        }
    }

    /// Random bytes are stored, not deflated: the output is their size plus
    /// a little, still standard gzip, and the same on any thread count; a
    /// block with a compressible part is compressed.
    #[test]
    fn incompressible_blocks_are_stored() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<u8> = (0..3 * BLOCK + 1000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let gz = encode(&random, 6, 3, 70_000);
        assert!(gz.len() < random.len() + random.len() / 500, "{}", gz.len());
        assert_eq!(gz, encode(&random, 6, 1, 4096));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, random);
        assert!(incompressible(&random[..BLOCK]));
        // A probe that compresses keeps the block compressed.
        let mut mixed = random[..BLOCK].to_vec();
        let second = (BLOCK - PROBE) / 3;
        mixed[second..second + PROBE].fill(b'a');
        assert!(!incompressible(&mixed));
        assert!(!incompressible(&sample(BLOCK)));
    }

    #[test]
    fn header_is_fixed() {
        let gz = encode(b"x", 6, 1, 1);
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    }
}
