//! The module's TPM connection (DESIGN.md §6): opened at first need, used by one thread
//! at a time, kept during bursts and given up — its key contexts saved in memory — when
//! another process waits for a TPM without a resource manager or after a moment without
//! use.
//!
//! Nothing here waits forever. libtss2's synchronous calls cannot be cut short (its swtpm
//! TCTI ignores timeouts), so a frozen TPM holds the thread that sent the command; every
//! other thread waits for the connection at most [`wait_limit`] and then gets
//! [`TpmError::Unresponsive`] (CKR_DEVICE_ERROR). A connection whose command has run past
//! that limit is abandoned to its thread, and the next call opens a fresh one — taking
//! over the TPM's cross-process lock the abandoned one holds rather than waiting for it.
//! C_Finalize waits for the idle thread and for closing the connection a bounded time.
//!
//! [`TpmLink::run`] takes the connection at step 4 of the crate's lock order (crate docs,
//! "Lock order"): after the store's and the card's locks, before `saved` and the TPM's
//! cross-process lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::provision::access::{TpmAccess, TpmFailure};
use crate::tpm::{self, Blob, Tpm, TpmError, TpmLock};

/// How often the idle thread looks, and after how long without use a shared TPM
/// connection is given up.
const IDLE_CHECK: Duration = Duration::from_millis(25);
const IDLE_RELEASE_MS: u64 = 100;
/// How long C_Finalize lets closing the connection take at least.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long a call waits for a connection another thread is using, and how long a
/// command may run before its connection is abandoned (`TPMVSC_TPM_WAIT`, `tpm_wait` in a
/// configuration file, else 30 s).
pub(crate) fn wait_limit() -> Duration {
    crate::config::current().map_or(Duration::from_secs(30), |c| c.tpm_wait.value)
}

/// One connection (replaced as a whole when it hangs).
#[derive(Debug, Default)]
struct Conn {
    tpm: Mutex<Option<Tpm>>,
    /// Milliseconds since the link's epoch (plus one) when the running command began; 0
    /// when idle.
    busy_since: AtomicU64,
    /// The TPM's cross-process lock (no resource manager) while this connection is open —
    /// or, before it opens, the one an abandoned connection of this process still holds,
    /// which this one takes over.
    lock: Mutex<Option<Arc<TpmLock>>>,
}

impl Conn {
    /// Drops the connection (it goes with its lock, unless a later one took it over).
    fn close(&self, guard: &mut Option<Tpm>) {
        *guard = None;
        *self.lock.lock() = None;
    }
}

/// The process's TPM connection and what keeps it.
#[derive(Debug)]
pub(crate) struct TpmLink {
    current: Mutex<Arc<Conn>>,
    /// Contexts of loaded keys saved when a shared TPM connection was given up; the next
    /// connection loads them back.
    saved: Mutex<Option<tpm::SavedObjects>>,
    /// Milliseconds since `epoch` of the last TPM use (for the idle release).
    last_use: AtomicU64,
    epoch: Instant,
    wait: Duration,
    /// False when the host forbade the library its own threads
    /// (CKF_LIBRARY_CANT_CREATE_OS_THREADS): a shared connection is then given up after
    /// every call instead of by the idle thread.
    threads_allowed: bool,
    /// The idle thread and its stop signal; C_Finalize stops and joins it, so no thread
    /// of this library runs after the host unloads it.
    reaper: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: (Mutex<bool>, Condvar),
}

/// The link lent to provisioning code (PIN change, unblock, format), so that it runs on
/// this process's connection, taken after the card's locks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lent<'a>(pub(crate) &'a Arc<TpmLink>);

impl TpmAccess for Lent<'_> {
    fn run<T, E: TpmFailure>(&self, f: impl FnOnce(&mut Tpm) -> Result<T, E>) -> Result<T, E> {
        self.0.run(f)
    }
}

impl TpmLink {
    pub(crate) fn new(threads_allowed: bool) -> Arc<TpmLink> {
        Arc::new(TpmLink {
            current: Mutex::new(Arc::new(Conn::default())),
            saved: Mutex::new(None),
            last_use: AtomicU64::new(0),
            epoch: Instant::now(),
            wait: wait_limit(),
            threads_allowed,
            reaper: Mutex::new(None),
            stop: (Mutex::new(false), Condvar::new()),
        })
    }

    /// How long a call waits for another thread's TPM command.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs TPM work on the process's connection, opening it on first need (with the key
    /// contexts an earlier connection saved). Waits at most the wait limit for another
    /// thread's command.
    pub(crate) fn run<T, E: TpmFailure>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Tpm) -> Result<T, E>,
    ) -> Result<T, E> {
        let conn = Arc::clone(&self.current.lock());
        let Some(mut guard) = conn.tpm.try_lock_for(self.wait) else {
            return Err(self.unresponsive(&conn).into());
        };
        conn.busy_since.store(self.now_ms() + 1, Ordering::Relaxed);
        if guard.is_none() {
            let held = conn.lock.lock().clone();
            match Tpm::open_sharing(held) {
                Ok(mut t) => {
                    if let Some(saved) = self.saved.lock().take() {
                        t.restore_objects(saved);
                    }
                    *conn.lock.lock() = t.cross_process_lock();
                    *guard = Some(t);
                }
                Err(e) => {
                    conn.busy_since.store(0, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
        let r = match guard.as_mut() {
            Some(t) => f(t),
            None => Err(TpmError::Gone("no TPM connection".into()).into()),
        };
        conn.busy_since.store(0, Ordering::Relaxed);
        let lost = r.as_ref().is_err_and(TpmFailure::connection_lost);
        self.after_call(&conn, &mut guard, lost);
        if guard.as_ref().is_some_and(Tpm::is_shared) {
            self.start_idle_release();
        }
        r
    }

    /// A call gave up waiting. When the command in flight has run past the limit, its
    /// connection is abandoned: the next call opens a new one.
    fn unresponsive(&self, conn: &Arc<Conn>) -> TpmError {
        let since = conn.busy_since.load(Ordering::Relaxed);
        let busy_ms = if since == 0 {
            0
        } else {
            self.now_ms().saturating_sub(since - 1)
        };
        if Duration::from_millis(busy_ms) >= self.wait {
            let mut current = self.current.lock();
            if Arc::ptr_eq(&current, conn) {
                let next = Conn::default();
                *next.lock.lock() = conn.lock.lock().clone();
                *current = Arc::new(next);
                *self.saved.lock() = None;
            }
        }
        TpmError::Unresponsive {
            secs: (busy_ms / 1000).max(self.wait.as_secs()),
        }
    }

    /// After a call: a broken connection is dropped; a shared one is given up (its key
    /// contexts saved) when another process waits, else kept for the next call.
    fn after_call(&self, conn: &Conn, guard: &mut Option<Tpm>, lost: bool) {
        self.last_use.store(self.now_ms(), Ordering::Relaxed);
        if lost {
            conn.close(guard);
            *self.saved.lock() = None;
        } else if guard.as_ref().is_some_and(Tpm::others_waiting)
            || (!self.threads_allowed && guard.as_ref().is_some_and(Tpm::is_shared))
        {
            self.give_up(conn, guard);
        }
    }

    fn give_up(&self, conn: &Conn, guard: &mut Option<Tpm>) {
        if let Some(t) = guard.as_mut() {
            *self.saved.lock() = Some(t.save_objects());
        }
        conn.close(guard);
    }

    /// Starts (once) the thread that gives a shared TPM up after a moment without use, so
    /// other processes get their turn while this one keeps its loaded keys during bursts.
    pub(crate) fn start_idle_release(self: &Arc<Self>) {
        if !self.threads_allowed {
            return;
        }
        let mut slot = self.reaper.lock();
        if slot.is_some() {
            return;
        }
        let link = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("tpmvsc-idle".into())
            .spawn(move || {
                loop {
                    let Some(link) = link.upgrade() else { return };
                    {
                        let (flag, cv) = &link.stop;
                        let mut stopped = flag.lock();
                        if !*stopped {
                            cv.wait_for(&mut stopped, IDLE_CHECK);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    let idle = link
                        .now_ms()
                        .saturating_sub(link.last_use.load(Ordering::Relaxed));
                    if idle < IDLE_RELEASE_MS {
                        continue;
                    }
                    let conn = Arc::clone(&link.current.lock());
                    if let Some(mut g) = conn.tpm.try_lock()
                        && g.as_ref().is_some_and(Tpm::is_shared)
                    {
                        // Saving contexts is TPM work: a freeze here is seen like any other.
                        conn.busy_since.store(link.now_ms() + 1, Ordering::Relaxed);
                        link.give_up(&conn, &mut g);
                        conn.busy_since.store(0, Ordering::Relaxed);
                    }
                }
            });
        // Without the thread the connection is still given up when another process waits.
        *slot = spawned.ok();
    }

    /// Runs `f` on the connection if one is open (never opens one), waiting at most the
    /// wait limit.
    fn if_open(&self, f: impl FnOnce(&mut Tpm)) {
        let conn = Arc::clone(&self.current.lock());
        if let Some(mut g) = conn.tpm.try_lock_for(self.wait)
            && let Some(t) = g.as_mut()
        {
            f(t);
        }
    }

    /// Flushes every loaded object (logout) and forgets saved contexts.
    pub(crate) fn flush_objects(&self) {
        self.if_open(Tpm::flush_objects);
        *self.saved.lock() = None;
    }

    /// Removes an object (a destroyed key) from the TPM and the cache.
    pub(crate) fn forget(&self, blob: &Blob) {
        self.if_open(|t| t.forget(blob));
    }

    /// C_Finalize: stops the idle thread and closes the connection, each within
    /// `deadline`. A connection still busy in another thread is left to it; an idle thread
    /// or a close whose TPM command does not come back (a frozen TPM) is left running
    /// rather than waited for: libtss2's calls cannot be cut short, and a C_Finalize that
    /// never returns is the worst outcome for the host.
    pub(crate) fn shut_down(&self, deadline: Instant) {
        {
            let (flag, cv) = &self.stop;
            *flag.lock() = true;
            cv.notify_all();
        }
        if let Some(h) = self.reaper.lock().take() {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        let conn = Arc::clone(&self.current.lock());
        let left = deadline.saturating_duration_since(Instant::now());
        // Closing a healthy connection takes milliseconds: it gets a moment of its own even
        // when waiting for calls in flight used the whole deadline.
        let deadline = deadline.max(Instant::now() + CLOSE_WAIT);
        if let Some(mut g) = conn.tpm.try_lock_for(left) {
            if let Some(t) = g.take() {
                self.close_within(t, deadline);
            }
            conn.close(&mut g);
        }
        *self.saved.lock() = None;
    }

    /// Closes a connection — flushing what it loaded, so that no key of a card stays
    /// usable on a TPM without resource manager — waiting for that at most until
    /// `deadline`.
    fn close_within(&self, tpm: Tpm, deadline: Instant) {
        if !self.threads_allowed {
            drop(tpm);
            return;
        }
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("tpmvsc-close".into())
            .spawn(move || {
                drop(tpm);
                let _ = done.send(());
            });
        // A thread that cannot start drops the connection right here (with the closure).
        if let Ok(h) = spawned
            && finished
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        {
            let _ = h.join();
        }
    }
}
