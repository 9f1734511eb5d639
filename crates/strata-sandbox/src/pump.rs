//! Moving a child's output into a [`Capture`], line by line.

use std::io::{BufRead, BufReader, Read};
use std::thread::JoinHandle;

use crate::spec::{Capture, Stream};

/// Longest line handed over in one piece; longer ones are split.
const MAX_LINE: usize = 64 * 1024;

/// Reads `r` on a thread until EOF, pushing lines into `capture`.
pub(crate) fn spawn_pump(
    r: impl Read + Send + 'static,
    stream: Stream,
    capture: Capture,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            let mut limited = (&mut r).take(MAX_LINE as u64);
            match limited.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => capture.push(stream, &line),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    })
}
