//! A seeded, randomized soak that runs the same code on every runtime.
//!
//! [`run`] dispatches `jobs` jobs in batches of [`BATCH`]: successes, errors, panics, total
//! and per-attempt timeouts, cancellation before the start, mid-run, during backoff and on
//! shared tokens, retries with jitter, cache hits and revalidation, dedup joins, and a quarter
//! of the jobs through an orchestrator. The work pauses for nothing, for one cooperative
//! yield, or for a real sleep of 1 to 3 ms on the runtime's timer (virtual time on
//! `testing::VirtualRuntime`). Cancellation comes from a spawned task that sleeps 0 to 3 ms,
//! then cancels the batch's shared token and a tenth of its handles, and awaits those.
//!
//! After each batch it checks that:
//!
//! - every handle resolved, once: it yields its outcome, then reports itself terminated and
//!   stays pending (a batch that does not finish within [`BATCH_DEADLINE`] is reported as a
//!   hang; the deadline is a hang detector, never a timing assertion);
//! - every outcome is one its dispatch allows (a dispatch whose token was cancelled beforehand
//!   never succeeds, cache hit included; a zero budget times out; a plain retried success
//!   succeeds; nothing is rejected);
//! - every job published exactly one terminal lifecycle event and nothing after it (checked
//!   again for every event of a later batch);
//! - no job is left in flight (`Dispatcher::in_flight`) or tracked
//!   (`OrchestratorHandle::running_jobs`) once the batch has settled.
//!
//! On a real runtime a batch settles when the jobs that outlive their handles (a revalidating
//! cache hit) have ended and the orchestrator's loop has taken every terminal event; the soak
//! waits for that with short sleeps, under the same deadline.
//!
//! The seed fixes the workload (every job's kind, pause and options, every cancel delay). On
//! the virtual runtime it also fixes the interleaving, so a violation reproduces exactly; on a
//! real runtime the same seed replays the same workload under new timings. A violation does not
//! stop the soak (except a hang); [`SoakReport::assert_clean`] fails with the reproducing
//! `SOAK_SEED=.. SOAK_JOBS=..` and the first violations.
//!
//! [`run_measured`] is what the adapters' tests call: a warm-up soak, a heap baseline read from
//! the test binary's counting allocator, the soak, and the heap again once the runtime has
//! settled, which must be back within [`HEAP_SLACK`] of the baseline. The soak disposes its
//! orchestrator before dropping it.
//!
//! ```text
//! // crates/orchestrator-smol/tests/soak.rs (with a counting #[global_allocator])
//! let (report, heap) = soak::guarded(jobs, seed, || {
//!     smol::block_on(soak::run_measured(Arc::new(SmolRuntime::default()), jobs, seed, live_bytes))
//! });
//! report.assert_clean();
//! heap.assert_back_to_baseline(&report);
//! ```

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};
use core::time::Duration;

use futures_core::FusedFuture;
use hashbrown::HashMap;

use super::support::Gate;
use crate::runtime::{Instant, Runtime, Sleep, Spawn, SpawnError, Task, Timer, YieldNow};
use crate::sync::{Arc, Mutex};
use crate::{
    CachePolicy, CancellationToken, DataSource, Dispatch, Dispatcher, Event, Executor, Job,
    JobContext, JobError, JobHandle, JobId, JobLifecycle, JobResult, Orchestrator,
    OrchestratorContext, OrchestratorHandle, Origin, RetryPolicy, Subscription,
};

/// The seed used when none is given (`SOAK_SEED`).
pub const DEFAULT_SEED: u64 = 0x5EED;

/// Jobs dispatched per batch; the checks run after each batch.
pub const BATCH: u64 = 1_000;

/// How long a batch may take before the soak reports a hang (a hang detector on a loaded
/// machine, not a timing assertion: a batch takes milliseconds).
pub const BATCH_DEADLINE: Duration = Duration::from_secs(60);

/// How many violation messages a report keeps (it counts them all).
const KEPT_MESSAGES: usize = 20;

/// What a soak did and found.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// The seed of the workload.
    pub seed: u64,
    /// The dispatches asked for.
    pub jobs: u64,
    /// The dispatches made (less than `jobs` only after a hang).
    pub dispatched: u64,
    /// The distinct jobs (job ids): a dedup join shares its leader's id.
    pub distinct_jobs: u64,
    /// Handles that resolved with a success (cache hits included).
    pub succeeded: u64,
    /// Of those, the successes served from the cache.
    pub cached: u64,
    /// Handles that resolved as failed (executor errors and panics).
    pub failed: u64,
    /// Handles that resolved as cancelled.
    pub cancelled: u64,
    /// Handles that resolved as timed out.
    pub timed_out: u64,
    /// Handles that resolved as rejected.
    pub rejected: u64,
    /// Every broken guarantee found.
    pub violations: u64,
    /// The first violations, described.
    pub messages: Vec<String>,
    /// Whether a batch outlived [`BATCH_DEADLINE`] (the soak stopped there).
    pub hung: bool,
    /// How long the soak took on the runtime's clock (virtual time on a virtual runtime).
    pub elapsed: Duration,
}

impl SoakReport {
    /// Returns `true` if no guarantee was broken.
    pub fn is_clean(&self) -> bool {
        self.violations == 0
    }

    /// Returns the environment that replays this soak: `SOAK_SEED=.. SOAK_JOBS=..`.
    pub fn reproduce(&self) -> String {
        format!("SOAK_SEED={} SOAK_JOBS={}", self.seed, self.jobs)
    }

    /// Returns the dispatches per second of [`elapsed`](Self::elapsed) (0 if none elapsed).
    pub fn jobs_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.dispatched as f64 / seconds
        } else {
            0.0
        }
    }

    /// Fails if a guarantee was broken, with the seed that reproduces it and the first
    /// violations.
    ///
    /// # Panics
    ///
    /// Panics if [`violations`](Self::violations) is not zero (it is a test harness).
    #[track_caller]
    pub fn assert_clean(&self) {
        if self.is_clean() {
            return;
        }
        let mut text = format!(
            "soak found {} violation(s); reproduce with {}\n{self}",
            self.violations,
            self.reproduce()
        );
        for message in &self.messages {
            text.push_str("\n  - ");
            text.push_str(message);
        }
        panic!("{text}");
    }

    fn violation(&mut self, message: impl FnOnce() -> String) {
        self.violations += 1;
        if self.messages.len() < KEPT_MESSAGES {
            self.messages.push(message());
        }
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "soak seed {}: {} dispatches, {} distinct jobs in {:.2} s ({:.0} jobs/s); {} \
             succeeded ({} cached), {} failed, {} cancelled, {} timed out, {} rejected; {} \
             violation(s){}",
            self.seed,
            self.dispatched,
            self.distinct_jobs,
            self.elapsed.as_secs_f64(),
            self.jobs_per_second(),
            self.succeeded,
            self.cached,
            self.failed,
            self.cancelled,
            self.timed_out,
            self.rejected,
            self.violations,
            if self.hung { " (hung)" } else { "" }
        )
    }
}

/// Reads a number from the environment variable `name`, or `default` if it is unset or not a
/// number (`SOAK_JOBS`, `SOAK_SEED`).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs `soak` with the executor's own panics ("soak panic", caught by the dispatcher as
/// failures) kept off stderr; if `soak` panics, prints the `SOAK_SEED=.. SOAK_JOBS=..` that
/// reproduces it first.
///
/// # Panics
///
/// Re-raises the panic of `soak`.
pub fn guarded<R>(jobs: u64, seed: u64, soak: impl FnOnce() -> R) -> R {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(alloc::boxed::Box::new(move |info| {
        let payload = info.payload();
        let ours = payload.downcast_ref::<&str>() == Some(&"soak panic")
            || payload
                .downcast_ref::<String>()
                .is_some_and(|s| s == "soak panic");
        if !ours {
            default_hook(info);
        }
    }));
    match std::panic::catch_unwind(core::panic::AssertUnwindSafe(soak)) {
        Ok(value) => value,
        Err(panic) => {
            std::eprintln!("soak failed; reproduce with SOAK_SEED={seed} SOAK_JOBS={jobs}");
            std::panic::resume_unwind(panic)
        }
    }
}

#[derive(Debug)]
struct Flaky;
impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("flaky")
    }
}
impl Error for Flaky {}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    Err,
    Panic,
}

/// How the work waits before it ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pause {
    None,
    Yield,
    Sleep(Duration),
}

#[derive(Clone)]
struct Work {
    mode: Mode,
    pause: Pause,
}
impl Job for Work {
    type Output = u64;
}
struct WorkExec;
impl Executor<Work> for WorkExec {
    type Error = Flaky;
    async fn execute(&self, job: &Work, cx: JobContext) -> Result<u64, Flaky> {
        match job.pause {
            Pause::None => {}
            Pause::Yield => YieldNow::new().await,
            Pause::Sleep(delay) => cx.sleep(delay).await,
        }
        match job.mode {
            Mode::Ok => Ok(u64::from(cx.attempt())),
            Mode::Err => Err(Flaky),
            Mode::Panic => panic!("soak panic"),
        }
    }
}

/// Counts the lifecycle events of its own jobs.
struct Quiet;
impl Orchestrator for Quiet {
    type State = u64;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, u64>) {
        if origin.is_active() && event.is::<JobLifecycle>() {
            cx.update(|n| *n += 1);
        }
    }
}

/// The runtime under test, as a value a `DispatcherBuilder` takes.
struct Shared(Arc<dyn Runtime>);
impl Spawn for Shared {
    fn spawn(&self, task: Task) -> Result<(), SpawnError> {
        self.0.spawn(task)
    }
}
impl Timer for Shared {
    fn sleep(&self, duration: Duration) -> Sleep {
        self.0.sleep(duration)
    }
    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// xorshift64*: small, seedable, good enough to pick cases.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a dispatch must end as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Any,
    Success,
    /// Its token was cancelled before the dispatch.
    Cancelled,
    TimedOut,
    FailedOrRetried,
}

fn allowed(expect: Expect, outcome: &JobResult<u64>) -> bool {
    let never_rejected = !matches!(outcome, Err(JobError::Rejected(_)));
    match expect {
        Expect::Any | Expect::FailedOrRetried => never_rejected,
        Expect::Success => outcome.is_ok(),
        Expect::Cancelled => matches!(outcome, Err(JobError::Cancelled { .. })),
        Expect::TimedOut => matches!(outcome, Err(JobError::TimedOut { .. })),
    }
}

/// One handle's outcome, with what was checked about how it resolved.
struct Resolved {
    id: JobId,
    expect: Expect,
    cached_policy: bool,
    outcome: JobResult<u64>,
    /// `None` if it resolved once; otherwise what was wrong.
    twice: Option<&'static str>,
}

/// Awaits `handle`, then checks that it resolved once: terminated, finished, and still pending
/// when polled again.
async fn resolve(mut handle: JobHandle<u64>, expect: Expect, cached_policy: bool) -> Resolved {
    let id = handle.id();
    let outcome = (&mut handle).await;
    let twice = if !handle.is_terminated() {
        Some("the handle is not terminated after yielding its outcome")
    } else if !handle.is_finished() {
        Some("the handle yielded an outcome but its job is not finished")
    } else if Pin::new(&mut handle)
        .poll(&mut Context::from_waker(core::task::Waker::noop()))
        .is_ready()
    {
        Some("the handle yielded a second outcome")
    } else {
        None
    };
    Resolved {
        id,
        expect,
        cached_policy,
        outcome,
        twice,
    }
}

/// Terminal-event bookkeeping across batches.
struct Ledger {
    /// The first job id of the soak: ids are allocated in increasing order.
    base: Option<u64>,
    /// Ids of earlier batches (bit `id - base`): each has had its one terminal event.
    closed: Vec<u64>,
    /// The current batch's ids and their terminal events so far.
    open: HashMap<JobId, u32>,
    /// Open ids that have not had their terminal event yet.
    awaiting: usize,
    /// Ids that are no dispatch of the soak (none expected), with their terminal events.
    strays: HashMap<JobId, u32>,
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            base: None,
            closed: Vec::new(),
            open: HashMap::new(),
            awaiting: 0,
            strays: HashMap::new(),
        }
    }

    fn bit(&self, id: JobId) -> Option<(usize, u64)> {
        let offset = id.as_u64().checked_sub(self.base?)?;
        let word = usize::try_from(offset / 64).ok()?;
        Some((word, 1 << (offset % 64)))
    }

    fn is_closed(&self, id: JobId) -> bool {
        self.bit(id)
            .is_some_and(|(w, b)| self.closed.get(w).is_some_and(|word| word & b != 0))
    }

    /// Registers a dispatch of the current batch; `true` if its id is new (a dedup join
    /// shares its leader's).
    fn open(&mut self, id: JobId) -> bool {
        self.base.get_or_insert(id.as_u64());
        let mut new = false;
        self.open.entry(id).or_insert_with(|| {
            new = true;
            0
        });
        if new {
            self.awaiting += 1;
        }
        new
    }

    /// Takes one event of the bus.
    fn take(&mut self, event: &Event, report: &mut SoakReport) {
        let Some(id) = event.correlation_id() else {
            return;
        };
        let terminal = event
            .downcast_ref::<JobLifecycle>()
            .is_some_and(JobLifecycle::is_terminal);
        if self.is_closed(id) {
            report.violation(|| format!("job {id:?} published {event:?} after its terminal event"));
            return;
        }
        let (count, open) = match self.open.get_mut(&id) {
            Some(count) => (count, true),
            None => (self.strays.entry(id).or_insert(0), false),
        };
        if *count > 0 {
            report.violation(|| format!("job {id:?} published {event:?} after its terminal event"));
            return;
        }
        if terminal {
            *count += 1;
            if open {
                self.awaiting -= 1;
            }
        }
    }

    /// Ends the batch: every open id must have had exactly one terminal event.
    fn close(&mut self, report: &mut SoakReport) {
        let ids: Vec<(JobId, u32)> = self.open.drain().collect();
        for (id, count) in ids {
            if count != 1 {
                report.violation(|| format!("job {id:?} published {count} terminal events"));
            }
            if let Some((word, bit)) = self.bit(id) {
                if self.closed.len() <= word {
                    self.closed.resize(word + 1, 0);
                }
                self.closed[word] |= bit;
            }
        }
        self.awaiting = 0;
    }
}

/// Runs the soak on `runtime`: `jobs` dispatches drawn from `seed`.
///
/// The orchestrator it starts is disposed, and it and the dispatcher are dropped, before it
/// returns; their tasks end on the runtime shortly after (the adapters' soak tests then check
/// that the heap is back to its baseline).
pub async fn run(runtime: Arc<dyn Runtime>, jobs: u64, seed: u64) -> SoakReport {
    let mut report = SoakReport {
        seed,
        jobs,
        ..SoakReport::default()
    };
    let dispatcher = Dispatcher::builder(Shared(runtime.clone()))
        .lifecycle_events(true)
        .build();
    dispatcher.register(WorkExec);
    let orchestrator = match Quiet.builder(0, &dispatcher).start() {
        Ok(orchestrator) => orchestrator,
        Err(error) => {
            report.violation(|| format!("the orchestrator did not start: {error}"));
            return report;
        }
    };
    let mut soak = Soak {
        events: dispatcher.bus().subscribe(),
        runtime,
        dispatcher,
        orchestrator,
        rng: Rng(seed | 1),
        ledger: Ledger::new(),
        report,
    };
    let started = soak.runtime.now();
    let mut batches = 0u64;
    while soak.report.dispatched < jobs {
        let n = BATCH.min(jobs - soak.report.dispatched);
        batches += 1;
        let watchdog = soak.runtime.sleep(BATCH_DEADLINE);
        let finished = within(pin!(soak.batch(n)), watchdog).await;
        if !finished {
            let (in_flight, tracked) = (
                soak.dispatcher.in_flight(),
                soak.orchestrator.running_jobs(),
            );
            let awaiting = soak.ledger.awaiting;
            soak.report.hung = true;
            soak.report.elapsed = soak.runtime.now().saturating_duration_since(started);
            soak.report.violation(|| {
                format!(
                    "batch {batches} did not finish within {BATCH_DEADLINE:?}: {in_flight} in \
                     flight, {tracked} tracked, {awaiting} jobs without their terminal event \
                     (or a handle never resolved)"
                )
            });
            return soak.report;
        }
    }
    soak.report.elapsed = soak.runtime.now().saturating_duration_since(started);
    // Nothing may come after the last batch's terminal events either.
    soak.runtime.sleep(Duration::from_millis(1)).await;
    soak.drain();
    // Disposed explicitly (dropping its last handle would too).
    soak.orchestrator.dispose();
    let Soak {
        ledger, mut report, ..
    } = soak;
    for (id, count) in &ledger.strays {
        if *count != 1 {
            report.violation(|| format!("event correlation id {id:?}: {count} terminal events"));
        }
    }
    report
}

/// Jobs of the warm-up soak that [`run_measured`] runs before it takes the heap baseline.
pub const WARM_UP_JOBS: u64 = 2 * BATCH;

/// How much more live heap than the baseline [`run_measured`] accepts after the soak.
///
/// The warm-up grows the runtime's lazily sized structures (worker queues, timer wheels and
/// maps, executor slabs, thread-local caches) to what a batch needs, so a clean soak comes
/// back to its baseline: measured on 2 cores over dozens of 20,000- to 1,000,000-job soaks on
/// every adapter, the difference was 0 bytes in most runs, ±456 bytes in a few, and +8,192
/// bytes once (async-std, a runtime buffer that doubled once more). The slack is twice that
/// largest growth, and still far below what a leak leaves: one job kept alive holds several
/// hundred bytes (its task, its shared state, its handle), so 16 KiB is crossed by a few dozen
/// leaked jobs, by any leak of a byte per job (100,000 jobs), and by an orchestrator left
/// running with its dispatcher (about 85 KiB, measured by leaving out `dispose`).
pub const HEAP_SLACK: usize = 16 * 1024;

/// How long [`run_measured`] lets the runtime settle (tasks ending after the soak returns)
/// before it reads the heap a last time: a hang detector, not a timing assertion.
pub const HEAP_SETTLE: Duration = Duration::from_secs(10);

/// The live heap around a soak, from the test binary's counting allocator.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeapReport {
    /// Live bytes after the warm-up, before the soak.
    pub baseline: usize,
    /// Live bytes after the soak, once the runtime settled (or [`HEAP_SETTLE`] ran out).
    pub after: usize,
}

impl HeapReport {
    /// Returns how many bytes more than the baseline are live (0 if fewer).
    pub fn growth(&self) -> usize {
        self.after.saturating_sub(self.baseline)
    }

    /// Fails if the heap did not come back to within [`HEAP_SLACK`] of its baseline, with the
    /// seed that reproduces the soak.
    ///
    /// # Panics
    ///
    /// Panics if [`growth`](Self::growth) exceeds [`HEAP_SLACK`] (it is a test harness).
    #[track_caller]
    pub fn assert_back_to_baseline(&self, soak: &SoakReport) {
        assert!(
            self.growth() <= HEAP_SLACK,
            "the heap did not come back to its baseline after the soak: {} bytes live before, \
             {} after ({} more, {HEAP_SLACK} allowed); reproduce with {}",
            self.baseline,
            self.after,
            self.growth(),
            soak.reproduce()
        );
    }
}

impl fmt::Display for HeapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heap: {} bytes live before the soak, {} after ({:+})",
            self.baseline,
            self.after,
            self.after as i128 - self.baseline as i128
        )
    }
}

/// Runs a warm-up soak of [`WARM_UP_JOBS`], reads `live_bytes` (the live heap, from a
/// counting global allocator in the test binary) as the baseline, runs the soak, then lets
/// the runtime settle until the live heap is back within [`HEAP_SLACK`] of the baseline or
/// [`HEAP_SETTLE`] runs out.
///
/// Nothing else may allocate in the process meanwhile (run one such test at a time), and the
/// caller should not print before it has read the reports (captured output is heap).
pub async fn run_measured(
    runtime: Arc<dyn Runtime>,
    jobs: u64,
    seed: u64,
    live_bytes: fn() -> usize,
) -> (SoakReport, HeapReport) {
    let warm_up = run(runtime.clone(), WARM_UP_JOBS.min(jobs), seed).await;
    if !warm_up.is_clean() {
        return (warm_up, HeapReport::default());
    }
    drop(warm_up);
    settle(&runtime, 5, || true).await;
    let baseline = live_bytes();
    let report = run(runtime.clone(), jobs, seed).await;
    let settled = || live_bytes() <= baseline.saturating_add(HEAP_SLACK);
    settle(&runtime, 2, settled).await;
    let after = live_bytes();
    (report, HeapReport { baseline, after })
}

/// Sleeps in steps of 10 ms, at least `min_steps` of them (so that the tasks woken at the end
/// of a soak run and end), until `done` or [`HEAP_SETTLE`] has passed.
async fn settle(runtime: &Arc<dyn Runtime>, min_steps: u32, done: impl Fn() -> bool) {
    let step = Duration::from_millis(10);
    let mut steps = 0u32;
    while step * steps < HEAP_SETTLE {
        runtime.sleep(step).await;
        steps += 1;
        if steps >= min_steps && done() {
            return;
        }
    }
}

/// Drives `batch` until it ends (`true`) or `watchdog` fires first (`false`).
async fn within(mut batch: Pin<&mut impl Future<Output = ()>>, mut watchdog: Sleep) -> bool {
    core::future::poll_fn(|cx| {
        if batch.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        if Pin::new(&mut watchdog).poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

/// The state of one soak.
struct Soak {
    runtime: Arc<dyn Runtime>,
    dispatcher: Dispatcher<Shared>,
    orchestrator: OrchestratorHandle<u64>,
    events: Subscription,
    rng: Rng,
    ledger: Ledger,
    report: SoakReport,
}

impl Soak {
    /// Takes every event published so far.
    fn drain(&mut self) {
        while let Some(event) = self.events.try_next() {
            self.ledger.take(&event, &mut self.report);
        }
    }

    /// Dispatches `n` jobs, cancels some, awaits every handle, settles and checks.
    async fn batch(&mut self, n: u64) {
        let ms = Duration::from_millis;
        let jitter = RetryPolicy::builder()
            .max_retries(3)
            .base_delay(ms(2))
            .jitter(0.5)
            .build()
            .expect("a valid retry policy");
        let shared = CancellationToken::new();
        let mut handles = Vec::with_capacity(n as usize);
        let mut cancel_later = Vec::new();
        for _ in 0..n {
            let (handle, expect, cached_policy, later) = self.dispatch_one(&shared, &jitter);
            if self.ledger.open(handle.id()) {
                self.report.distinct_jobs += 1;
            }
            if later {
                cancel_later.push((handle, expect, cached_policy));
            } else {
                handles.push((handle, expect, cached_policy));
            }
        }
        self.report.dispatched += n;

        // A task of its own lets some jobs run, then cancels: mid-run, during backoff, or
        // before the start; and awaits what it cancelled.
        let delay = ms(self.rng.below(4));
        let done = Gate::new();
        let cancelled: Arc<Mutex<Vec<Resolved>>> = Arc::new(Mutex::new(Vec::new()));
        let canceller = {
            let rt = self.runtime.clone();
            let shared = shared.clone();
            let done = done.clone();
            let cancelled = cancelled.clone();
            Task::new(async move {
                rt.sleep(delay).await;
                shared.cancel_with(Cow::Borrowed("batch cancelled"));
                for (handle, _, _) in &cancel_later {
                    handle.cancel();
                }
                for (handle, expect, cached_policy) in cancel_later {
                    let resolved = resolve(handle, expect, cached_policy).await;
                    cancelled.with(|c| c.push(resolved));
                }
                done.open();
            })
        };
        if let Err(error) = self.runtime.spawn(canceller) {
            self.report
                .violation(|| format!("the runtime refused the canceller task: {error}"));
            return;
        }

        for (handle, expect, cached_policy) in handles {
            let resolved = resolve(handle, expect, cached_policy).await;
            tally(&resolved, &mut self.report);
        }
        done.wait().await;
        for resolved in cancelled.with(core::mem::take) {
            tally(&resolved, &mut self.report);
        }

        // Settle: jobs that outlive their handles (revalidation) end, the orchestrator takes
        // every terminal event. A few yields first, then short sleeps; the watchdog bounds the
        // wait.
        let mut spins = 0u32;
        loop {
            self.drain();
            if self.ledger.awaiting == 0
                && self.dispatcher.in_flight() == 0
                && self.orchestrator.running_jobs() == 0
            {
                break;
            }
            spins += 1;
            if spins < 16 {
                YieldNow::new().await;
            } else {
                self.runtime.sleep(ms(1)).await;
            }
        }
        self.ledger.close(&mut self.report);
    }

    /// Draws one job and its options from the seed and dispatches it; returns its handle,
    /// what it must end as, whether it has a cache policy, and whether the canceller cancels
    /// it.
    fn dispatch_one(
        &mut self,
        shared: &CancellationToken,
        jitter: &RetryPolicy,
    ) -> (JobHandle<u64>, Expect, bool, bool) {
        let ms = Duration::from_millis;
        let rng = &mut self.rng;
        let mode = match rng.below(10) {
            0 => Mode::Err,
            1 => Mode::Panic,
            _ => Mode::Ok,
        };
        let pause = match rng.below(5) {
            0 => Pause::None,
            1 => Pause::Yield,
            k => Pause::Sleep(ms(k - 1)),
        };
        let work = Work { mode, pause };
        let builder = if rng.below(4) == 0 {
            self.orchestrator.job(work)
        } else {
            self.dispatcher.job(work)
        };
        let mut cached_policy = false;
        let mut later = false;
        let (builder, expect) = match rng.below(10) {
            0 => {
                let token = CancellationToken::new();
                token.cancel();
                let key = format!("k{}", rng.below(8));
                let b = builder.cancellation(token);
                let b = if rng.below(2) == 0 {
                    cached_policy = true;
                    b.cache(CachePolicy::new(key))
                } else {
                    b
                };
                (b, Expect::Cancelled)
            }
            1 => (builder.cancellation(shared.clone()), Expect::Any),
            2 => (builder.timeout(ms(1)).retry(jitter.clone()), Expect::Any),
            3 => (
                builder.attempt_timeout(ms(2)).retry(jitter.clone()),
                Expect::FailedOrRetried,
            ),
            4 => {
                let key = format!("k{}", rng.below(8));
                let policy = CachePolicy::new(key).with_ttl(ms(50));
                let policy = if rng.below(3) == 0 {
                    policy.revalidate()
                } else {
                    policy
                };
                cached_policy = true;
                (builder.cache(policy), Expect::Any)
            }
            5 => (builder.dedup(format!("d{}", rng.below(4))), Expect::Any),
            6 => {
                later = true;
                (builder.retry(RetryPolicy::fixed(5, ms(3))), Expect::Any)
            }
            7 => (builder.timeout(Duration::ZERO), Expect::TimedOut),
            _ => (
                builder.retry(jitter.clone()),
                if mode == Mode::Ok {
                    Expect::Success
                } else {
                    Expect::FailedOrRetried
                },
            ),
        };
        (builder.dispatch(), expect, cached_policy, later)
    }
}

/// Counts `resolved` and checks it.
fn tally(resolved: &Resolved, report: &mut SoakReport) {
    let Resolved {
        id,
        expect,
        cached_policy,
        outcome,
        twice,
    } = resolved;
    match outcome {
        Ok(success) => {
            report.succeeded += 1;
            if success.data_source == DataSource::Cached {
                report.cached += 1;
            }
        }
        Err(JobError::Failed(_)) => report.failed += 1,
        Err(JobError::Cancelled { .. }) => report.cancelled += 1,
        Err(JobError::TimedOut { .. }) => report.timed_out += 1,
        Err(JobError::Rejected(_)) => report.rejected += 1,
    }
    if let Some(what) = twice {
        report.violation(|| format!("job {id:?}: {what}"));
    }
    if !allowed(*expect, outcome) {
        if *expect == Expect::Cancelled && outcome.is_ok() {
            report.violation(|| {
                format!(
                    "job {id:?}: its token was cancelled before the dispatch, yet it succeeded \
                     (cache policy: {cached_policy}): {outcome:?}"
                )
            });
        } else {
            report.violation(|| format!("job {id:?}: expected {expect:?}, got {outcome:?}"));
        }
    }
}
