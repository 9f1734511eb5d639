//! The signal handling `run` and the container supervisor share: resize
//! the container's terminal on SIGWINCH, forward every other signal to the
//! container's process.

use std::sync::atomic::{AtomicI32, Ordering};

/// Called from a signal handler (async-signal-safe: atomics, ioctl, kill).
/// `console` is the pty master (or -1 without a terminal); on SIGWINCH it
/// gets this process's window size. Without a console, SIGWINCH is
/// forwarded when `forward_winch` is set, like any other signal to `pid`.
pub(super) fn forward_or_resize(
    sig: libc::c_int,
    pid: &AtomicI32,
    console: &AtomicI32,
    forward_winch: bool,
) {
    if sig == libc::SIGWINCH {
        let master = console.load(Ordering::SeqCst);
        if master >= 0 {
            // SAFETY: ioctls on descriptors kept open for the process's
            // life; winsize is stack storage. Async-signal-safe.
            unsafe {
                let mut ws: libc::winsize = std::mem::zeroed();
                if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0
                    || libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0
                {
                    libc::ioctl(master, libc::TIOCSWINSZ, &ws);
                }
            }
            return;
        }
        if !forward_winch {
            return;
        }
    }
    let pid = pid.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}
