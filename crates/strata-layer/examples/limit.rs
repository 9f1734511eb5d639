//! The machine's limit for a cold COPY: every file of a directory read
//! once, hashed (sha256) and gzipped (at the layers' level, `GZIP_LEVEL`,
//! with the same deflate implementation layers use), on every core.
//!
//! ```sh
//! cargo run --release -p strata-layer --example limit -- DIR [THREADS]
//! ```
//!
//! The files (sorted) are split into THREADS runs of about equal bytes, one
//! per thread; each reads its run in 128 KiB chunks and feeds every chunk
//! to sha256 and to a gzip stream. Nothing is written. Prints one JSON
//! object: wall seconds, bytes, files, compressed bytes, threads.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

fn files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let t = e.file_type()?;
        if t.is_dir() {
            files(&e.path(), out)?;
        } else if t.is_file() {
            out.push((e.path(), e.metadata()?.len()));
        }
    }
    Ok(())
}

fn work(paths: &[(PathBuf, u64)]) -> std::io::Result<u64> {
    let mut sha = sha2::Sha256::new();
    let mut gz = flate2::write::GzEncoder::new(
        Counter(0),
        flate2::Compression::new(strata_layer::GZIP_LEVEL as u32),
    );
    let mut buf = vec![0u8; 128 * 1024];
    for (p, _) in paths {
        let mut f = std::fs::File::open(p)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            gz.write_all(&buf[..n])?;
        }
    }
    let _ = sha.finalize();
    Ok(gz.finish()?.0)
}

struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let threads: usize = args
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut all = Vec::new();
    files(&dir, &mut all)?;
    let total: u64 = all.iter().map(|(_, s)| s).sum();
    let mut runs: Vec<Vec<(PathBuf, u64)>> = vec![Vec::new()];
    let mut acc = 0u64;
    for f in all.iter().cloned() {
        acc += f.1;
        if let Some(r) = runs.last_mut() {
            r.push(f);
        }
        if runs.len() < threads && acc as f64 >= total as f64 * runs.len() as f64 / threads as f64 {
            runs.push(Vec::new());
        }
    }
    let t0 = std::time::Instant::now();
    let compressed: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = runs.iter().map(|r| s.spawn(|| work(r))).collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("panicked")))
            })
            .sum::<std::io::Result<u64>>()
    })?;
    println!(
        "{{\"wall\": {:.3}, \"bytes\": {total}, \"files\": {}, \"compressed\": {compressed}, \"threads\": {threads}}}",
        t0.elapsed().as_secs_f64(),
        all.len()
    );
    Ok(())
}
