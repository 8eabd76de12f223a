//! A runtime made from a single-threaded host's own spawner and timer: [`LocalHost`].

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use super::deadlines::{Deadlines, SleepUntil};
use super::{
    Instant, LocalSpawn, LocalSpawnError, LocalTask, LocalTimer, Sleep, Spawn, SpawnError, Task,
    Timer,
};
use crate::sync::{Arc, Mutex};

/// A [`Runtime`](super::Runtime) made from a host's spawner of tasks that are not `Send`
/// ([`LocalSpawn`]) and its timer whose sleeps are not `Send` ([`LocalTimer`]): a browser's
/// `spawn_local` and `setTimeout` through `gloo-timers`, or any single-threaded executor with
/// a timer of its own.
///
/// The engine's sleeps (deadlines, retry backoffs, [`JobContext::sleep`](crate::JobContext::sleep))
/// must be `Send`, so they are not the host's: they are registrations in a deadline queue of
/// `LocalHost`'s own, which are `Send`. The host's timer drives that queue: whenever a sleep
/// is left pending with a deadline earlier than the one the queue waits for, `LocalHost`
/// spawns one local task that sleeps on the host's timer until then and wakes every sleep that
/// is due, then waits for the next deadline the same way. So there is one host sleep per
/// earliest deadline, whatever the number of engine sleeps; a sleep completes at the first
/// reading of the host's clock at or past its deadline, never before it (a host timer that
/// fires early is waited on again). A sleep dropped early is removed from the queue at once.
///
/// Tasks that are `Send` go to the host's spawner as they are ([`LocalTask`] holds a [`Task`]
/// without boxing it again); local executors and local orchestrators work as on any
/// [`LocalSpawn`] runtime. Give `LocalHost` a *handle* to the host (see
/// [Ownership](super#ownership)): its timer tasks hold a clone.
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::runtime::{
///     Instant, LocalHost, LocalSleep, LocalSpawn, LocalSpawnError, LocalTask, LocalTimer, Timer,
/// };
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatch, Dispatcher, Executor, Job, JobContext};
/// use std::rc::Rc;
///
/// /// A host whose sleeps are not `Send` (here: a virtual clock's, holding an `Rc`).
/// struct Host(VirtualRuntime);
/// impl LocalSpawn for Host {
///     fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
///         self.0.spawn_local(task)
///     }
/// }
/// impl LocalTimer for Host {
///     fn sleep_local(&self, duration: Duration) -> LocalSleep {
///         let (not_send, sleep) = (Rc::new(()), self.0.sleep(duration));
///         LocalSleep::new(async move {
///             sleep.await;
///             drop(not_send);
///         })
///     }
///     fn now(&self) -> Instant {
///         Timer::now(&self.0)
///     }
/// }
///
/// struct Nap(u64);
/// impl Job for Nap {
///     type Output = u64;
/// }
/// struct Napper;
/// impl Executor<Nap> for Napper {
///     type Error = core::convert::Infallible;
///     async fn execute(&self, job: &Nap, cx: JobContext) -> Result<u64, Self::Error> {
///         cx.sleep(Duration::from_secs(job.0)).await; // a `Send` sleep, driven by the host's
///         Ok(job.0)
///     }
/// }
///
/// let rt = VirtualRuntime::new();
/// let dispatcher = Dispatcher::new(LocalHost::new(Host(rt.clone())));
/// dispatcher.register(Napper);
/// let start = Timer::now(&rt);
/// assert_eq!(rt.block_on(dispatcher.dispatch(Nap(30))).unwrap().value, 30);
/// assert_eq!(Timer::now(&rt).saturating_duration_since(start), Duration::from_secs(30));
/// ```
pub struct LocalHost<H> {
    shared: Arc<Shared<H>>,
}

struct Shared<H> {
    host: H,
    /// The engine's sleeps, by deadline; `now` is the host's clock at its last reading.
    clock: Arc<Mutex<Deadlines<Instant>>>,
    /// The deadline the host's timer is waiting for, if any.
    armed: Mutex<Option<Instant>>,
}

impl<H: LocalSpawn + LocalTimer> LocalHost<H> {
    /// Makes a runtime of `host`'s spawner and timer.
    pub fn new(host: H) -> Self {
        let now = host.now();
        Self {
            shared: Arc::new(Shared {
                host,
                clock: Arc::new(Mutex::new(Deadlines::new(now))),
                armed: Mutex::new(None),
            }),
        }
    }

    /// Returns the host.
    pub fn host(&self) -> &H {
        &self.shared.host
    }

    /// Returns how many engine sleeps are pending (polled, not yet due, not dropped).
    ///
    /// ```
    /// # use core::time::Duration;
    /// # use orchestrator_core::runtime::{Instant, LocalHost, LocalSleep, LocalSpawn, LocalSpawnError, LocalTask, LocalTimer, Timer};
    /// # use orchestrator_core::testing::VirtualRuntime;
    /// # struct Host(VirtualRuntime);
    /// # impl LocalSpawn for Host {
    /// #     fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> { self.0.spawn_local(task) }
    /// # }
    /// # impl LocalTimer for Host {
    /// #     fn sleep_local(&self, d: Duration) -> LocalSleep { LocalSleep::new(self.0.sleep(d)) }
    /// #     fn now(&self) -> Instant { Timer::now(&self.0) }
    /// # }
    /// use core::future::Future;
    /// use core::task::{Context, Waker};
    ///
    /// let rt = VirtualRuntime::new();
    /// let host = LocalHost::new(Host(rt.clone()));
    /// let mut sleeps: Vec<_> = (1..=3).map(|s| Box::pin(host.sleep(Duration::from_secs(s)))).collect();
    /// let mut cx = Context::from_waker(Waker::noop());
    /// for sleep in &mut sleeps {
    ///     assert!(sleep.as_mut().poll(&mut cx).is_pending());
    /// }
    /// assert_eq!(host.pending(), 3);
    /// rt.block_on(sleeps.remove(0));
    /// assert_eq!(host.pending(), 2);
    /// drop(sleeps); // dropped early: deregistered
    /// assert_eq!(host.pending(), 0);
    /// ```
    pub fn pending(&self) -> usize {
        self.shared.clock.with(|c| c.len())
    }
}

impl<H> Clone for LocalHost<H> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<H: LocalSpawn + LocalTimer> Shared<H> {
    /// Reads the host's clock into the queue's.
    fn read_clock(&self) -> Instant {
        let now = self.host.now();
        self.clock.with(|c| {
            c.now = c.now.max(now);
            c.now
        })
    }

    /// Makes the host's timer wait for `deadline` unless it waits for an earlier one.
    fn arm(self: &Arc<Self>, deadline: Instant) {
        let arm = self.armed.with(|armed| match *armed {
            Some(t) if t <= deadline => false,
            _ => {
                *armed = Some(deadline);
                true
            }
        });
        if !arm {
            return;
        }
        let wait = deadline.saturating_duration_since(self.host.now());
        let sleep = self.host.sleep_local(wait);
        let shared = self.clone();
        let driver = LocalTask::new(async move {
            sleep.await;
            shared.fire(deadline);
        });
        if self.host.spawn_local(driver).is_err() {
            // The host is gone: nothing can wait; a later sleep tries again.
            self.armed.with(|armed| {
                if *armed == Some(deadline) {
                    *armed = None;
                }
            });
        }
    }

    /// The host's timer reached (about) `target`: wakes every sleep that is due, then waits
    /// for the next deadline.
    fn fire(self: &Arc<Self>, target: Instant) {
        let now = self.read_clock();
        // One sleep per lock: the wake runs outside it.
        while let Some((_, waker)) = self.clock.with(|c| c.pop_due(now)) {
            waker.wake();
        }
        self.armed.with(|armed| {
            if *armed == Some(target) {
                *armed = None;
            }
        });
        if let Some(next) = self.clock.with(|c| c.next_deadline()) {
            self.arm(next);
        }
    }
}

/// An engine sleep on a [`LocalHost`]: a registration in its queue that arms the host's
/// timer whenever it is left pending.
struct HostSleep<H> {
    inner: SleepUntil<Instant>,
    deadline: Instant,
    shared: Arc<Shared<H>>,
}

impl<H: LocalSpawn + LocalTimer> Future for HostSleep<H> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.read_clock();
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                self.shared.arm(self.deadline);
                Poll::Pending
            }
        }
    }
}

impl<H: LocalSpawn + LocalTimer> Timer for LocalHost<H> {
    fn sleep(&self, duration: Duration) -> Sleep {
        let deadline = self.shared.read_clock().saturating_add(duration);
        Sleep::new(HostSleep {
            inner: SleepUntil::new(self.shared.clock.clone(), deadline),
            deadline,
            shared: self.shared.clone(),
        })
    }

    fn now(&self) -> Instant {
        self.shared.read_clock()
    }
}

impl<H: LocalSpawn + LocalTimer> Spawn for LocalHost<H> {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.shared
            .host
            .spawn_local(LocalTask::from(task))
            .map_err(|refused| {
                let kind = refused.kind();
                match refused.into_task().into_send() {
                    Ok(task) => SpawnError::new(kind, task),
                    // A host that gives back another task than it was given: this one is
                    // gone, and its job resolves as cancelled when it is dropped.
                    Err(_) => SpawnError::new(kind, Task::new(async {})),
                }
            })
    }

    fn local(&self) -> Option<&dyn LocalSpawn> {
        Some(self)
    }
}

impl<H: LocalSpawn + LocalTimer> LocalSpawn for LocalHost<H> {
    fn spawn_local(&self, task: LocalTask) -> Result<(), LocalSpawnError> {
        self.shared.host.spawn_local(task)
    }
}

impl<H: fmt::Debug> fmt::Debug for LocalHost<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (now, pending) = self.shared.clock.with(|c| (c.now, c.len()));
        f.debug_struct("LocalHost")
            .field("host", &self.shared.host)
            .field("now", &now)
            .field("pending", &pending)
            .field("armed", &self.shared.armed.with(|a| *a))
            .finish()
    }
}
