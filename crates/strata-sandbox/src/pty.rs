//! Pseudo-terminals: allocating one inside a container (the master side
//! handed back over a unix socket, as the OCI runtimes' `--console-socket`
//! does), putting the caller's terminal in raw mode for the time a
//! container has it, window sizes, and relaying bytes between a terminal
//! and a container's console.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::pty::OpenptFlags;
use rustix::termios::{OptionalActions, Termios, Winsize};

use crate::spec::ConsoleSize;

/// Opens a new pty in the current mount namespace's `/dev/ptmx` (the
/// container's own devpts once pivoted into it) and returns (master,
/// slave), both close-on-exec. Only system calls, no allocation: safe in a
/// forked child.
pub(crate) fn open_console(size: Option<ConsoleSize>) -> Result<(OwnedFd, OwnedFd), Errno> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::unlockpt(&master)?;
    if let Some(s) = size {
        set_size(master.as_fd(), s)?;
    }
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )?;
    Ok((master, slave))
}

/// Makes `slave` the controlling terminal of a new session and the
/// caller's stdin, stdout and stderr. For a forked child before exec.
pub(crate) fn become_console(slave: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::process::setsid()?;
    rustix::process::ioctl_tiocsctty(slave)?;
    rustix::stdio::dup2_stdin(slave)?;
    rustix::stdio::dup2_stdout(slave)?;
    rustix::stdio::dup2_stderr(slave)?;
    Ok(())
}

/// Sends `fd` over the unix socket `sock` (one byte of data with it).
/// Allocation-free.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Errno::NOBUFS);
    }
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(b"c")],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Receives a descriptor sent with [`send_fd`] (or by an OCI runtime on its
/// console socket). `Ok(None)` when the peer closed without sending one.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // runc sends the pty's name as data: room for it.
    let mut buf = [0u8; 4096];
    loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(_) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut got = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                if got.is_none() {
                    got = Some(fd);
                }
            }
        }
    }
    Ok(got)
}

/// The size of terminal `fd`.
pub fn console_size(fd: BorrowedFd<'_>) -> io::Result<ConsoleSize> {
    let w = rustix::termios::tcgetwinsize(fd)?;
    Ok(ConsoleSize {
        rows: w.ws_row,
        cols: w.ws_col,
    })
}

/// Sets the size of terminal `fd` (a pty master: its session gets SIGWINCH).
pub fn set_console_size(fd: BorrowedFd<'_>, size: ConsoleSize) -> io::Result<()> {
    set_size(fd, size).map_err(io::Error::from)
}

fn set_size(fd: BorrowedFd<'_>, size: ConsoleSize) -> Result<(), Errno> {
    rustix::termios::tcsetwinsize(
        fd,
        Winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
}

/// The caller's terminal in raw mode (no echo, no line editing, no signals
/// from keys: Ctrl-C reaches the container as a byte) until dropped, when
/// the previous settings come back.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode.
    pub fn enable(fd: BorrowedFd<'_>) -> io::Result<RawMode> {
        let fd = fd.try_clone_to_owned()?;
        let saved = rustix::termios::tcgetattr(&fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, OptionalActions::Now, &raw)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(&self.fd, OptionalActions::Drain, &self.saved);
    }
}

/// Copies between a console's master side and the outside until the
/// console closes (every process holding its slave exited): what `input`
/// gives goes to the container (when `input` ends, it is no longer read),
/// what the container writes goes to `output`. An `output` error stops
/// nothing: the container keeps its console (its writer may be gone).
pub fn relay_console(
    master: BorrowedFd<'_>,
    input: Option<BorrowedFd<'_>>,
    mut output: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut input = input;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![PollFd::new(&master, PollFlags::IN)];
        if let Some(i) = &input {
            fds.push(PollFd::new(i, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let master_ready = fds[0].revents();
        let input_ready = fds.get(1).map(|f| f.revents());
        if !master_ready.is_empty() {
            match rustix::io::read(master, &mut buf) {
                Ok(0) | Err(Errno::IO) => return Ok(()),
                Ok(n) => output(&buf[..n]),
                Err(Errno::INTR | Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(r) = input_ready {
            if !r.is_empty() {
                let Some(i) = input else { continue };
                match rustix::io::read(i, &mut buf) {
                    Ok(0) | Err(Errno::IO | Errno::BADF) => input = None,
                    Ok(n) => {
                        if write_all(master, &buf[..n]).is_err() {
                            return Ok(());
                        }
                    }
                    Err(Errno::INTR | Errno::AGAIN) => {}
                    Err(_) => input = None,
                }
            }
        }
    }
}

/// Writes all of `data` to `fd`.
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_travel_over_a_socket() {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        send_fd(a.as_fd(), w.as_fd()).unwrap();
        drop(w);
        let got = recv_fd(b.as_fd()).unwrap().unwrap();
        write_all(got.as_fd(), b"hi").unwrap();
        drop(got);
        let mut buf = [0u8; 8];
        assert_eq!(rustix::io::read(&r, &mut buf).unwrap(), 2);
        drop(a);
        assert!(recv_fd(b.as_fd()).unwrap().is_none(), "closed: no fd");
    }

    #[test]
    fn console_relays_and_sizes() {
        // The host's own /dev/ptmx: a pty pair like the one a container gets.
        let Ok((master, slave)) = open_console(Some(ConsoleSize {
            rows: 30,
            cols: 100,
        })) else {
            return; // no /dev/ptmx (a minimal build environment)
        };
        assert_eq!(
            console_size(slave.as_fd()).unwrap(),
            ConsoleSize {
                rows: 30,
                cols: 100
            }
        );
        set_console_size(master.as_fd(), ConsoleSize { rows: 5, cols: 6 }).unwrap();
        assert_eq!(console_size(slave.as_fd()).unwrap().cols, 6);
        // What the "container" writes comes out; its close ends the relay.
        write_all(slave.as_fd(), b"out\n").unwrap();
        drop(slave);
        let mut got = Vec::new();
        relay_console(master.as_fd(), None, |b| got.extend_from_slice(b)).unwrap();
        assert_eq!(String::from_utf8_lossy(&got).trim_end(), "out");
    }
}
