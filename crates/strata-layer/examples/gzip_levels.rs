//! What each gzip level costs and saves on a given tar (a layer, say), with
//! the deflate implementation and block size layers use: one core, levels
//! 1 to 9, seconds and compressed bytes. How `GZIP_LEVEL` was chosen.
//!
//! ```sh
//! zcat BLOB > /tmp/layer.tar
//! cargo run --release -p strata-layer --example gzip_levels -- /tmp/layer.tar
//! ```

use std::io::Read;

/// pgzip's block: each is deflated on its own (with the previous block's
/// tail as dictionary, which changes little and is left out here).
const BLOCK: usize = 512 * 1024;

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: gzip_levels FILE");
        std::process::exit(2);
    };
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    println!("{} bytes", data.len());
    for level in 1..=9u32 {
        let t = std::time::Instant::now();
        let mut out = 0usize;
        for chunk in data.chunks(BLOCK) {
            let mut c = flate2::Compress::new(flate2::Compression::new(level), false);
            let mut buf = Vec::with_capacity(chunk.len() + 1024);
            c.compress_vec(chunk, &mut buf, flate2::FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            out += buf.len();
        }
        println!(
            "level {level}: {:.2} s, {out} bytes ({:.2} % of the input)",
            t.elapsed().as_secs_f64(),
            100.0 * out as f64 / data.len() as f64
        );
    }
    Ok(())
}
