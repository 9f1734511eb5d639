//! A byte stream written on one thread and read on another, in bounded
//! chunks: how a layer's uncompressed tar reaches work that runs beside
//! the compressor (extracting the snapshot, recording its files).

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes per message.
const CHUNK: usize = 256 * 1024;
/// Messages in flight: memory stays under `CHUNK * DEPTH` whatever the
/// stream's length, and the writer waits when the reader falls behind.
const DEPTH: usize = 16;

/// A reader running on a thread of its own over what is written here.
///
/// Writing never fails: once the reader has returned (it is done, or it
/// failed), the rest of the stream is dropped. [`StreamThread::finish`]
/// ends the stream and gives the reader's result; dropping ends it too and
/// waits for the thread.
///
/// ```
/// use std::io::{Read, Write};
/// let mut t = strata_layer::StreamThread::spawn("count", |r: &mut dyn Read| {
///     let mut n = 0;
///     let mut buf = [0u8; 1000];
///     while let Ok(k) = r.read(&mut buf) {
///         if k == 0 { break; }
///         n += k;
///     }
///     n
/// }).unwrap();
/// t.write_all(&[1u8; 700_000]).unwrap();
/// assert_eq!(t.finish(), Some(700_000));
/// ```
pub struct StreamThread<T> {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> StreamThread<T> {
    /// Start `read` on a thread named `name`, reading the stream.
    pub fn spawn(
        name: &str,
        read: impl FnOnce(&mut dyn Read) -> T + Send + 'static,
    ) -> io::Result<StreamThread<T>> {
        let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                read(&mut ChannelReader {
                    rx,
                    cur: Vec::new(),
                    pos: 0,
                })
            })?;
        Ok(StreamThread {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            handle: Some(handle),
        })
    }

    /// End the stream and wait for the reader's result (`None` if it
    /// panicked).
    pub fn finish(mut self) -> Option<T> {
        self.close();
        self.handle.take()?.join().ok()
    }
}

impl<T> StreamThread<T> {
    fn send(&mut self) {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        if let Some(tx) = &self.tx {
            if tx.send(chunk).is_err() {
                self.tx = None;
            }
        }
    }

    /// Send what is buffered and end the stream.
    fn close(&mut self) {
        if !self.buf.is_empty() {
            self.send();
        }
        self.tx = None;
    }
}

impl<T> Write for StreamThread<T> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_none() {
            return Ok(data.len());
        }
        let mut rest = data;
        while !rest.is_empty() {
            let take = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == CHUNK {
                self.send();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T> Drop for StreamThread<T> {
    fn drop(&mut self) {
        // Cut short (the stream failed): end it unsent, let the thread go.
        self.buf.clear();
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The stream, read on the reader's thread.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.cur.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte arrives in order, however the writes are cut; a reader
    /// that stops early does not block the writer; a dropped stream ends
    /// its reader.
    #[test]
    fn bytes_arrive_in_order_and_nothing_blocks() {
        let data: Vec<u8> = (0..3 * CHUNK as u32 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut t = StreamThread::spawn("test", |r: &mut dyn Read| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v).ok()
        })
        .unwrap();
        for piece in data.chunks(99_991) {
            t.write_all(piece).unwrap();
        }
        assert_eq!(t.finish(), Some(Some(data.clone())));

        // Reads 10 bytes and returns: the writer goes on unblocked.
        let mut t = StreamThread::spawn("test", |r: &mut dyn Read| {
            let mut b = [0u8; 10];
            r.read_exact(&mut b).map(|()| b).ok()
        })
        .unwrap();
        for _ in 0..(DEPTH * 4) {
            t.write_all(&data[..CHUNK]).unwrap();
        }
        assert_eq!(t.finish(), Some(Some(data[..10].try_into().unwrap())));

        // Dropped halfway: the reader sees the end and the drop returns.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut t = StreamThread::spawn("test", move |r: &mut dyn Read| {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            done_tx.send(v.len()).unwrap();
        })
        .unwrap();
        t.write_all(&data[..CHUNK + 5]).unwrap();
        drop(t);
        assert_eq!(done_rx.recv().unwrap(), CHUNK);
    }
}
