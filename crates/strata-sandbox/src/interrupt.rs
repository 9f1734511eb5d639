//! Surviving Ctrl-C while a container runs, to forward it and clean up.
//!
//! While at least one run is in progress, SIGINT, SIGTERM, SIGHUP and SIGQUIT
//! are caught by a handler that only counts them (async-signal-safe: one
//! atomic add); the waiting loops poll the count and forward the signal to
//! the container (a second one escalates to SIGKILL). When the last run
//! ends, the previous dispositions are restored. Caught (not ignored)
//! signals reset to their defaults across exec, so the runtime and the
//! container start with default dispositions.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, WaitOptions};

const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

static COUNT: AtomicU32 = AtomicU32::new(0);
static LAST: AtomicI32 = AtomicI32::new(0);

struct Installed {
    users: usize,
    saved: Vec<(libc::c_int, libc::sigaction)>,
}

static STATE: Mutex<Installed> = Mutex::new(Installed {
    users: 0,
    saved: Vec::new(),
});

extern "C" fn on_signal(sig: libc::c_int) {
    LAST.store(sig, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// Catches termination signals while alive.
pub(crate) struct InterruptGuard {
    seen: u32,
    pub received: u32,
}

impl InterruptGuard {
    pub(crate) fn install() -> InterruptGuard {
        let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
        if st.users == 0 {
            st.saved.clear();
            for sig in SIGNALS {
                // SAFETY: zeroed sigaction is valid; we fill handler and mask.
                let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
                new.sa_sigaction = on_signal as *const () as usize;
                new.sa_flags = libc::SA_RESTART;
                // SAFETY: valid pointers.
                unsafe { libc::sigemptyset(&mut new.sa_mask) };
                // SAFETY: zeroed sigaction is valid output storage.
                let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
                // SAFETY: valid pointers to sigaction structs.
                if unsafe { libc::sigaction(sig, &new, &mut old) } == 0 {
                    st.saved.push((sig, old));
                }
            }
        }
        st.users += 1;
        InterruptGuard {
            seen: COUNT.load(Ordering::SeqCst),
            received: 0,
        }
    }

    /// A signal that arrived since the last call, if any.
    pub(crate) fn take(&mut self) -> Option<libc::c_int> {
        let now = COUNT.load(Ordering::SeqCst);
        if now != self.seen {
            self.seen = now;
            self.received += 1;
            Some(LAST.load(Ordering::SeqCst))
        } else {
            None
        }
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
        st.users = st.users.saturating_sub(1);
        if st.users == 0 {
            for (sig, old) in st.saved.drain(..) {
                // SAFETY: restoring a sigaction saved above.
                unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
            }
        }
    }
}

/// Waits for process `pid` (our child) to exit, calling `on_signal(sig,
/// nth)` for every termination signal that reaches us meanwhile. Returns
/// the raw wait status. Reaps the child.
pub(crate) fn wait_pid(
    pid: Pid,
    guard: &mut InterruptGuard,
    mut on_signal: impl FnMut(libc::c_int, u32),
) -> std::io::Result<i32> {
    let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok();
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    // __WALL: also a child whose exit signal is not SIGCHLD.
    let options = WaitOptions::NOHANG | WaitOptions::from_bits_retain(libc::__WALL as u32);
    loop {
        match &pidfd {
            Some(fd) => {
                // Readable when the child exits; the timeout lets us look at
                // the signal count. EINTR is fine: we look anyway.
                let _ = rustix::event::poll(&mut [PollFd::new(fd, PollFlags::IN)], Some(&tick));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
        if let Some(sig) = guard.take() {
            on_signal(sig, guard.received);
        }
        match rustix::process::waitpid(Some(pid), options) {
            Ok(Some((_, status))) => return Ok(status.as_raw()),
            Ok(None) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
