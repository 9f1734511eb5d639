//! What a container supervisor needs beside an executor, as podman's
//! conmon does it without a daemon: a state directory per container
//! ([`ContainerDir`]) with atomically written JSON files and a lock the
//! supervisor holds while it lives (so a supervisor that died is told from
//! one that runs), the container's output kept in a log file in the CRI
//! format ([`LogWriter`], [`LogReader`]), and published ports forwarded
//! from the host into the container's network namespace in user space
//! ([`forward_port`]), as rootless podman's port forwarders do.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::spec::Stream;
use crate::started::ExecTarget;

/// A container's state directory.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    path: PathBuf,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, not started yet.
    Created,
    /// Its process runs.
    Running,
    /// Its process exited (or could not start).
    Exited,
}

/// The state file of a container, rewritten by its supervisor at each change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Where it is.
    pub status: Status,
    /// The supervisor's pid.
    #[serde(default)]
    pub supervisor: i32,
    /// How to reach the running container (its pid, the runtime's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ExecTarget>,
    /// When it started (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<i64>,
    /// When it exited (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<i64>,
    /// Its exit code (125-127 for a command that could not start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl State {
    /// A new container's state.
    pub fn created() -> State {
        State {
            status: Status::Created,
            supervisor: 0,
            target: None,
            started: None,
            finished: None,
            exit_code: None,
            error: None,
        }
    }
}

/// The current time in unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const STATE: &str = "state.json";
const LOCK: &str = "supervisor.lock";
const LOG: &str = "ctr.log";

impl ContainerDir {
    /// The directory `path` (nothing is created).
    pub fn new(path: impl Into<PathBuf>) -> ContainerDir {
        ContainerDir { path: path.into() }
    }

    /// Creates the directory (its parent must exist or is created), with a
    /// `created` state.
    pub fn create(path: impl Into<PathBuf>) -> io::Result<ContainerDir> {
        let d = ContainerDir::new(path);
        if let Some(parent) = d.path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::DirBuilder::new().mode(0o700).create(&d.path)?;
        d.write_state(&State::created())?;
        Ok(d)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `value` as `name` atomically: a temporary file, synced, then
    /// renamed over the old one (a reader sees the old or the new file, a
    /// crash leaves one of them).
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        let tmp = self
            .path
            .join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            // Private: a container's record holds its environment.
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            fs::rename(&tmp, self.path.join(name))?;
            if let Ok(d) = File::open(&self.path) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads the JSON file `name`.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> io::Result<T> {
        let data = fs::read(self.path.join(name))?;
        serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Writes the state file.
    pub fn write_state(&self, state: &State) -> io::Result<()> {
        self.write_json(STATE, state)
    }

    /// The state as last written, corrected for a supervisor that is gone:
    /// a container that says it runs (or whose supervisor started) while
    /// nobody holds its lock is reported exited with an unknown status.
    pub fn state(&self) -> io::Result<State> {
        let orphaned = |s: &State| {
            (s.status == Status::Running || (s.status == Status::Created && s.supervisor != 0))
                && !self.supervised()
        };
        let mut s: State = self.read_json(STATE)?;
        if orphaned(&s) {
            // Re-read: the supervisor may have finished between the two looks.
            s = self.read_json(STATE)?;
            if orphaned(&s) {
                s.status = Status::Exited;
                if s.error.is_none() && s.supervisor != 0 {
                    s.error = Some("its supervisor is gone; the exit status is unknown".into());
                }
            }
        }
        Ok(s)
    }

    /// Takes the supervisor's lock (held until the returned descriptor is
    /// closed, which the kernel does when the supervisor dies).
    pub fn lock(&self) -> io::Result<OwnedFd> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.join(LOCK))?;
        let fd = OwnedFd::from(f);
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
            if e == rustix::io::Errno::WOULDBLOCK {
                io::Error::new(io::ErrorKind::WouldBlock, "the container has a supervisor")
            } else {
                e.into()
            }
        })?;
        Ok(fd)
    }

    /// Whether a supervisor holds the lock.
    pub fn supervised(&self) -> bool {
        let Ok(f) = File::open(self.path.join(LOCK)) else {
            return false;
        };
        match rustix::fs::flock(f.as_fd(), FlockOperation::NonBlockingLockShared) {
            Ok(()) => false,
            Err(e) => e == rustix::io::Errno::WOULDBLOCK,
        }
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.path.join(LOG)
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

/// Writes a container's output in the CRI log format (one line per record:
/// `TIME STREAM F|P CONTENT`, `P` for a line cut short, as kubelet and
/// podman's k8s-file do), so `logs` can tell stdout from stderr and follow.
pub struct LogWriter {
    file: File,
}

impl LogWriter {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        Ok(LogWriter {
            file: OpenOptions::new().create(true).append(true).open(path)?,
        })
    }

    /// Records `data` from `stream`: each complete line as a full record,
    /// a trailing part without newline as a partial one.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let time = rfc3339_nanos(std::time::SystemTime::now());
        let mut out = Vec::with_capacity(data.len() + 64);
        for piece in data.split_inclusive(|b| *b == b'\n') {
            let (body, tag) = match piece.strip_suffix(b"\n") {
                Some(b) => (b, "F"),
                None => (piece, "P"),
            };
            out.extend_from_slice(format!("{time} {name} {tag} ").as_bytes());
            out.extend_from_slice(body);
            out.push(b'\n');
        }
        self.file.write_all(&out)
    }
}

/// Reads a log written by [`LogWriter`], record by record.
pub struct LogReader {
    reader: BufReader<File>,
    partial: Vec<u8>,
}

impl LogReader {
    /// Opens the log at `path`.
    pub fn open(path: &Path) -> io::Result<LogReader> {
        Ok(LogReader {
            reader: BufReader::new(File::open(path)?),
            partial: Vec::new(),
        })
    }

    /// The next record's stream and bytes (a full record ends with `\n`),
    /// or `None` at the current end of the file (more may come later: call
    /// again to follow). A record being written (no newline yet) is kept
    /// for the next call.
    pub fn next_record(&mut self) -> io::Result<Option<(Stream, Vec<u8>)>> {
        loop {
            let n = self.reader.read_until(b'\n', &mut self.partial)?;
            if n == 0 || !self.partial.ends_with(b"\n") {
                return Ok(None);
            }
            let line = std::mem::take(&mut self.partial);
            if let Some(r) = parse_record(&line) {
                return Ok(Some(r));
            }
        }
    }
}

fn parse_record(line: &[u8]) -> Option<(Stream, Vec<u8>)> {
    let line = line.strip_suffix(b"\n")?;
    let mut parts = line.splitn(4, |b| *b == b' ');
    let _time = parts.next()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let tag = parts.next()?;
    let mut body = parts.next().unwrap_or_default().to_vec();
    if tag == b"F" {
        body.push(b'\n');
    }
    Some((stream, body))
}

/// `2006-01-02T15:04:05.999999999Z` in UTC.
fn rfc3339_nanos(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// One published port: `-p [IP:]HOST:CONTAINER[/tcp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// Host address to listen on (`0.0.0.0` when not given).
    pub host_ip: Ipv4Addr,
    /// Host port (0: any free port).
    pub host_port: u16,
    /// Port inside the container.
    pub container_port: u16,
}

impl PortMap {
    /// Parses docker's `-p` forms: `8080:80`, `127.0.0.1:8080:80`,
    /// `80` (any host port), with an optional `/tcp`. UDP is refused.
    pub fn parse(s: &str) -> Result<PortMap, String> {
        let bad = |why: &str| format!("invalid port mapping {s:?}: {why}");
        let (spec, proto) = match s.rsplit_once('/') {
            Some((spec, p)) => (spec, p),
            None => (s, "tcp"),
        };
        if proto != "tcp" {
            return Err(bad("only tcp ports can be published"));
        }
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(&format!("{p:?} is not a port number")))
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [i, h, c] => (*i, *h, *c),
            _ => return Err(bad("expected [IP:]HOST:CONTAINER")),
        };
        Ok(PortMap {
            host_ip: if ip.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                ip.parse()
                    .map_err(|_| bad(&format!("{ip:?} is not an IPv4 address")))?
            },
            host_port: if host.is_empty() { 0 } else { port(host)? },
            container_port: port(ctr)?,
        })
    }
}

impl std::fmt::Display for PortMap {
    /// As `docker ps` shows it: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/tcp",
            self.host_ip, self.host_port, self.container_port
        )
    }
}

/// Forwards every connection accepted on `listener` to
/// `127.0.0.1:port` inside the network namespace of process `pid` (a
/// container with a network namespace of its own), copying bytes both ways
/// on threads, until the listener fails. The connection into the container
/// is made from a thread that joined the namespace (`setns` moves only the
/// calling thread), so nothing else of the caller moves.
pub fn forward_port(listener: TcpListener, pid: i32, port: u16) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            std::thread::spawn(move || {
                let Ok(upstream) = connect_in_netns(pid, port) else {
                    return;
                };
                splice(client, upstream);
            });
        }
    })
}

/// Connects to `127.0.0.1:port` in the network namespace of `pid`, from
/// this thread (which stays in that namespace afterwards).
fn connect_in_netns(pid: i32, port: u16) -> io::Result<TcpStream> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Copies `a` to `b` and `b` to `a` until both directions end.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let t = std::thread::spawn(move || copy_then_shutdown(a2, b2));
    copy_then_shutdown(b, a);
    let _ = t.join();
}

fn copy_then_shutdown(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_and_the_supervisor_lock() {
        let t = tempfile::tempdir().unwrap();
        let d = ContainerDir::create(t.path().join("c/abc")).unwrap();
        assert_eq!(d.state().unwrap().status, Status::Created);
        // A running container whose supervisor is gone reads as exited.
        let mut s = State::created();
        s.status = Status::Running;
        s.supervisor = 4242;
        d.write_state(&s).unwrap();
        let seen = d.state().unwrap();
        assert_eq!(seen.status, Status::Exited);
        assert!(seen.error.unwrap().contains("supervisor is gone"));
        // With the lock held it runs; a second supervisor is refused.
        let lock = d.lock().unwrap();
        assert!(d.supervised());
        assert_eq!(d.state().unwrap().status, Status::Running);
        assert_eq!(d.lock().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(lock);
        assert!(!d.supervised());
        // Private files in a private directory.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(d.path()), 0o700);
        assert_eq!(mode(&d.path().join(STATE)), 0o600);
        // No temporary file stays behind.
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        d.remove().unwrap();
        d.remove().unwrap();
        assert!(!d.path().exists());
    }

    #[test]
    fn logs_keep_streams_and_partial_lines() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("ctr.log");
        let mut w = LogWriter::open(&p).unwrap();
        w.write(Stream::Stdout, b"one\ntwo").unwrap();
        w.write(Stream::Stderr, b"err line\n").unwrap();
        w.write(Stream::Stdout, b" more\n").unwrap();
        let mut r = LogReader::open(&p).unwrap();
        let mut got = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            got.push(rec);
        }
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, b"one\n".to_vec()),
                (Stream::Stdout, b"two".to_vec()),
                (Stream::Stderr, b"err line\n".to_vec()),
                (Stream::Stdout, b" more\n".to_vec()),
            ]
        );
        // Following: a later write is read by the same reader.
        w.write(Stream::Stdout, b"later\n").unwrap();
        assert_eq!(
            r.next_record().unwrap(),
            Some((Stream::Stdout, b"later\n".to_vec()))
        );
        let text = fs::read_to_string(&p).unwrap();
        let first = text.lines().next().unwrap();
        assert!(first.ends_with(" stdout F one"), "{first}");
        assert_eq!(first.as_bytes()[10], b'T');
    }

    #[test]
    fn rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(951_782_400 + 3661, 5);
        assert_eq!(rfc3339_nanos(t), "2000-02-29T01:01:01.000000005Z");
    }

    #[test]
    fn port_mappings() {
        let p = PortMap::parse("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port),
            (Ipv4Addr::UNSPECIFIED, 8080, 80)
        );
        let p = PortMap::parse("127.0.0.1:9000:90/tcp").unwrap();
        assert_eq!(p.to_string(), "127.0.0.1:9000->90/tcp");
        assert_eq!(PortMap::parse("80").unwrap().host_port, 0);
        for bad in [
            "",
            "a:80",
            "80:0",
            "1.2.3:80:80",
            "53:53/udp",
            "1:2:3:4",
            "70000:80",
        ] {
            assert!(PortMap::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_forward_into_a_namespace() {
        if !strata_testkit::require_root() {
            return;
        }
        // Our own network namespace stands in for the container's.
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = front.local_addr().unwrap();
        forward_port(front, std::process::id() as i32, port);
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
    }
}
