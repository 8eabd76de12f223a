//! Tokio adapter for [`orchestrator-core`](orchestrator_core).
//!
//! [`TokioRuntime`] spawns jobs with `tokio::spawn` (detached), sleeps with
//! `tokio::time::sleep` and reads `tokio::time::Instant`, so tokio's paused test clock
//! (`#[tokio::test(start_paused = true)]`) applies to job timeouts and backoff too. It works on
//! the multi-thread and the current-thread schedulers. The runtime must have its time driver
//! enabled (`#[tokio::main]` does; a hand-built runtime needs `enable_time()` or
//! `enable_all()`). The timer also works outside any runtime (see [`TokioRuntime`]).
//!
//! [`LocalSetRuntime`] runs every job on a tokio `LocalSet` instead, on one thread, so that
//! executors and orchestrators that are not `Send` (local ones) work too.
//!
//! With the `tokio-util` feature, `link_tokens` cancels a core `CancellationToken` and a
//! `tokio_util::sync::CancellationToken` together.
//!
//! ```
//! use orchestrator_core::Dispatcher;
//! use orchestrator_tokio::TokioRuntime;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let dispatcher = Dispatcher::new(TokioRuntime::default());
//!     assert!(!dispatcher.is_closed());
//! }
//! ```

#![forbid(unsafe_code)]

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

mod local_set;
#[cfg(feature = "tokio-util")]
mod tokens;

pub use local_set::LocalSetRuntime;
#[cfg(feature = "tokio-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
pub use tokens::{TokenLink, link_tokens};

use orchestrator_core::runtime::{Instant, Sleep, Spawn, SpawnError, SpawnErrorKind, Task, Timer};
use tokio::runtime::Handle;

/// Runs the core's jobs on tokio.
///
/// `TokioRuntime::default()` spawns on whichever tokio runtime is current when a job is
/// dispatched (dispatching outside any runtime is rejected with
/// [`SpawnErrorKind::NoRuntime`]); [`TokioRuntime::with_handle`] pins it to one runtime.
///
/// # Timer
///
/// [`Timer::sleep`] and [`Timer::now`] use the clock of the pinned runtime, or else of the
/// runtime that is current, so a paused test clock applies to them. Neither panics when there
/// is no runtime:
///
/// - a sleep made where no runtime is current (and none is pinned) starts counting at its
///   first poll. Polled inside a runtime, it is an ordinary tokio sleep on that runtime's
///   clock. Polled with no runtime at all, it waits on the system clock: a small helper
///   thread wakes it, and ends when the sleep completes or is dropped;
/// - `now()` outside any runtime reads the system clock.
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::runtime::Timer;
/// use orchestrator_tokio::TokioRuntime;
///
/// let rt = TokioRuntime::default();
/// let before = rt.now();
/// let sleep = rt.sleep(Duration::from_millis(1)); // no runtime here, and no panic
/// futures::executor::block_on(sleep); // woken by the helper thread
/// assert!(rt.now() >= before);
/// ```
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    handle: Option<Handle>,
    epoch: tokio::time::Instant,
}

impl Default for TokioRuntime {
    fn default() -> Self {
        Self {
            handle: None,
            epoch: clock_now(None),
        }
    }
}

impl TokioRuntime {
    /// Spawns on the runtime that is current at each dispatch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns on the runtime behind `handle`, from any thread.
    pub fn with_handle(handle: Handle) -> Self {
        Self {
            epoch: clock_now(Some(&handle)),
            handle: Some(handle),
        }
    }
}

impl Spawn for TokioRuntime {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.spawn_future(task)
    }

    /// Spawns `future` on tokio as it is (no box of ours; tokio allocates its task).
    #[inline]
    fn spawn_future<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Dropping a JoinHandle detaches the task.
        match &self.handle {
            Some(handle) => drop(handle.spawn(future)),
            None => match Handle::try_current() {
                Ok(handle) => drop(handle.spawn(future)),
                Err(_) => {
                    return Err(SpawnError::new(
                        SpawnErrorKind::NoRuntime,
                        Task::new(future),
                    ));
                }
            },
        }
        Ok(())
    }
}

impl Timer for TokioRuntime {
    fn sleep(&self, duration: Duration) -> Sleep {
        match tokio_sleep(duration, self.handle.as_ref()) {
            Some(sleep) => Sleep::new(sleep),
            None => Sleep::new(LazySleep {
                duration,
                handle: self.handle.clone(),
                started: None,
            }),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(clock_now(self.handle.as_ref()).saturating_duration_since(self.epoch))
    }
}

/// Where this thread stands with tokio's runtime context.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RuntimeContext {
    /// A runtime is current.
    Current,
    /// No runtime is current.
    Missing,
    /// The thread-local context is being destroyed: it cannot be read or entered.
    Unreachable,
}

fn runtime_context() -> RuntimeContext {
    match Handle::try_current() {
        Ok(_) => RuntimeContext::Current,
        Err(error) if error.is_thread_local_destroyed() => RuntimeContext::Unreachable,
        Err(_) => RuntimeContext::Missing,
    }
}

/// Creates a tokio sleep in the pinned runtime's context, or in the current one; `None` if
/// neither is available (creating it then would panic).
fn tokio_sleep(duration: Duration, pinned: Option<&Handle>) -> Option<tokio::time::Sleep> {
    match (runtime_context(), pinned) {
        (RuntimeContext::Unreachable, _) | (RuntimeContext::Missing, None) => None,
        (_, Some(handle)) => {
            let _context = handle.enter();
            Some(tokio::time::sleep(duration))
        }
        (RuntimeContext::Current, None) => Some(tokio::time::sleep(duration)),
    }
}

/// Reads the pinned runtime's clock, or the current one's, or else the system clock.
fn clock_now(pinned: Option<&Handle>) -> tokio::time::Instant {
    if runtime_context() == RuntimeContext::Unreachable {
        return tokio::time::Instant::from_std(std::time::Instant::now());
    }
    let _context = pinned.map(Handle::enter);
    tokio::time::Instant::now()
}

/// A sleep made where no runtime was available: it picks its clock at its first poll.
struct LazySleep {
    duration: Duration,
    handle: Option<Handle>,
    started: Option<Started>,
}

enum Started {
    /// A tokio sleep, made in the runtime that first polled.
    Tokio(Pin<Box<tokio::time::Sleep>>),
    /// Polled with no runtime: a helper thread wakes the sleep at the deadline.
    Thread(ThreadSleep),
    /// Polled with no runtime and already due, or no helper thread could be started: the
    /// sleep checks the system clock at each poll and asks to be polled again until then.
    Polling(Option<std::time::Instant>),
}

impl Started {
    fn new(duration: Duration, pinned: Option<&Handle>) -> Started {
        if let Some(sleep) = tokio_sleep(duration, pinned) {
            return Started::Tokio(Box::pin(sleep));
        }
        // `None`: too far away to represent, so never.
        let deadline = std::time::Instant::now().checked_add(duration);
        if duration.is_zero() {
            return Started::Polling(deadline);
        }
        match ThreadSleep::start(deadline) {
            Some(thread) => Started::Thread(thread),
            None => Started::Polling(deadline),
        }
    }
}

impl Future for LazySleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let LazySleep {
            duration,
            handle,
            started,
        } = &mut *self;
        match started.get_or_insert_with(|| Started::new(*duration, handle.as_ref())) {
            Started::Tokio(sleep) => sleep.as_mut().poll(cx),
            Started::Thread(thread) => thread.poll(cx),
            Started::Polling(None) => Poll::Pending,
            Started::Polling(Some(deadline)) => {
                if std::time::Instant::now() >= *deadline {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
    }
}

/// A helper thread that waits until a deadline on the system clock, then wakes the sleep.
struct ThreadSleep {
    shared: Arc<ThreadShared>,
    thread: std::thread::Thread,
}

#[derive(Default)]
struct ThreadShared {
    due: AtomicBool,
    dropped: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl ThreadSleep {
    /// Starts the helper thread; `None` if the system would not start one.
    fn start(deadline: Option<std::time::Instant>) -> Option<ThreadSleep> {
        let shared = Arc::new(ThreadShared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("orchestrator-tokio-sleep".into())
            .spawn(move || {
                loop {
                    if theirs.dropped.load(Ordering::Acquire) {
                        return;
                    }
                    match deadline {
                        Some(deadline) => {
                            let now = std::time::Instant::now();
                            if now >= deadline {
                                break;
                            }
                            std::thread::park_timeout(deadline.saturating_duration_since(now));
                        }
                        None => std::thread::park(),
                    }
                }
                theirs.due.store(true, Ordering::Release);
                let waker = theirs
                    .waker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            })
            .ok()?;
        Some(ThreadSleep {
            shared,
            thread: thread.thread().clone(),
        })
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.due.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut waker = self
            .shared
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The thread sets `due` before it takes the waker, so checking again under the lock
        // cannot miss the wake-up.
        if self.shared.due.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        match &*waker {
            Some(stored) if stored.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for ThreadSleep {
    fn drop(&mut self) {
        self.shared.dropped.store(true, Ordering::Release);
        self.thread.unpark();
    }
}
