//! Synchronisation helpers and test jobs for the conformance cases.

use alloc::vec::Vec;
use core::error::Error;
use core::fmt;

use event_listener::Event;

use crate::job::Job;
use crate::progress::Progress;
use crate::sync::{Arc, AtomicBool, Mutex, Ordering};
use crate::{Executor, JobContext};

/// A one-shot latch: closed until [`open`](Gate::open), then open forever.
#[derive(Clone, Default)]
pub struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Default)]
struct GateInner {
    open: AtomicBool,
    event: Event,
}

impl Gate {
    /// Creates a closed gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the gate and wakes every waiter.
    pub fn open(&self) {
        self.inner.open.store(true, Ordering::SeqCst);
        self.inner.event.notify(usize::MAX);
    }

    /// Returns `true` once the gate is open.
    pub fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// Waits until the gate is open.
    pub async fn wait(&self) {
        loop {
            if self.is_open() {
                return;
            }
            let listener = self.inner.event.listen();
            if self.is_open() {
                return;
            }
            listener.await;
        }
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("open", &self.is_open())
            .finish()
    }
}

/// Opens its gate when dropped: proves a work future was dropped.
#[derive(Debug)]
pub struct DropFlag(pub Gate);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// What a test executor records.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    pub(crate) calls: Mutex<u32>,
    pub(crate) started: Gate,
    pub(crate) release: Gate,
    pub(crate) dropped: Gate,
    pub(crate) finished: Gate,
    pub(crate) contexts: Mutex<Vec<JobContext>>,
    pub(crate) ids: Mutex<Vec<crate::JobId>>,
}

impl Probe {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn calls(&self) -> u32 {
        self.calls.with(|c| *c)
    }

    fn enter(&self) -> u32 {
        self.calls.with(|c| {
            *c += 1;
            *c
        })
    }
}

/// The error of the test executors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestError {
    pub(crate) attempt: u32,
    pub(crate) permanent: bool,
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} failed", self.attempt)
    }
}

impl Error for TestError {}

/// Returns `job.0 + add`.
pub(crate) struct Value(pub(crate) u64);
impl Job for Value {
    type Output = u64;
}
pub(crate) struct ValueExec {
    pub(crate) add: u64,
    pub(crate) probe: Arc<Probe>,
}
impl Executor<Value> for ValueExec {
    type Error = TestError;
    async fn execute(&self, job: &Value, cx: JobContext) -> Result<u64, TestError> {
        self.probe.enter();
        self.probe.ids.with(|ids| ids.push(cx.job_id()));
        Ok(job.0 + self.add)
    }
}

/// Fails its first `fail_first` attempts (permanently if `permanent`), then returns the
/// attempt number. Opens `started` after each failing attempt.
pub(crate) struct Flaky {
    pub(crate) fail_first: u32,
    pub(crate) permanent: bool,
}
impl Job for Flaky {
    type Output = u32;
}
pub(crate) struct FlakyExec(pub(crate) Arc<Probe>);
impl Executor<Flaky> for FlakyExec {
    type Error = TestError;
    async fn execute(&self, job: &Flaky, cx: JobContext) -> Result<u32, TestError> {
        let n = self.0.enter();
        assert_eq!(n, cx.attempt(), "the context counts attempts");
        if n <= job.fail_first {
            self.0.started.open();
            return Err(TestError {
                attempt: n,
                permanent: job.permanent,
            });
        }
        Ok(n)
    }
}

/// Hangs forever, ignoring cancellation, on attempts up to `hang_first`; then succeeds.
pub(crate) struct Hang {
    pub(crate) hang_first: u32,
}
impl Job for Hang {
    type Output = u32;
}
pub(crate) struct HangExec(pub(crate) Arc<Probe>);
impl Executor<Hang> for HangExec {
    type Error = TestError;
    async fn execute(&self, job: &Hang, _cx: JobContext) -> Result<u32, TestError> {
        let n = self.0.enter();
        if n > job.hang_first {
            return Ok(n);
        }
        let _flag = DropFlag(self.0.dropped.clone());
        self.0.started.open();
        core::future::pending().await
    }
}

/// Panics with "boom".
pub(crate) struct Boom;
impl Job for Boom {
    type Output = ();
}
pub(crate) struct BoomExec;
impl Executor<Boom> for BoomExec {
    type Error = TestError;
    async fn execute(&self, _job: &Boom, _cx: JobContext) -> Result<(), TestError> {
        panic!("boom");
    }
}

/// Reports each value, opens `started`, waits for `release`, opens `finished`.
pub(crate) struct Report(pub(crate) Vec<f64>);
impl Job for Report {
    type Output = ();
}
pub(crate) struct ReportExec(pub(crate) Arc<Probe>);
impl Executor<Report> for ReportExec {
    type Error = TestError;
    async fn execute(&self, job: &Report, cx: JobContext) -> Result<(), TestError> {
        self.0.enter();
        for &v in &job.0 {
            cx.report_progress(Progress::new(v).with_message("working"));
        }
        self.0.contexts.with(|c| c.push(cx.clone()));
        self.0.started.open();
        self.0.release.wait().await;
        self.0.finished.open();
        Ok(())
    }
}

/// Lets other tasks run: sleeps one millisecond on the runtime.
pub(crate) async fn settle(rt: &Arc<dyn crate::runtime::Runtime>) {
    rt.sleep(core::time::Duration::from_millis(1)).await;
}

/// A job with an output event: returns `n` (after waiting on `gate` if given); its event is
/// `Added(n)`.
pub(crate) struct Add {
    pub(crate) n: u64,
    pub(crate) gate: Option<Gate>,
}
impl Job for Add {
    type Output = u64;
    fn output_event(&self, n: &u64) -> Option<impl Send + Sync + 'static> {
        Some(Added(*n))
    }
}
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Added(pub(crate) u64);
pub(crate) struct AddExec;
impl Executor<Add> for AddExec {
    type Error = TestError;
    async fn execute(&self, job: &Add, cx: JobContext) -> Result<u64, TestError> {
        if let Some(gate) = &job.gate {
            gate.wait().await;
        }
        cx.emit(Note(job.n)).map_err(|_| TestError {
            attempt: 0,
            permanent: true,
        })?;
        Ok(job.n)
    }
}

/// An event an executor emits on its own.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Note(pub(crate) u64);

/// What a [`Watcher`] saw: for each job id, the origin of its first event, and its events.
#[derive(Default)]
pub(crate) struct Sightings {
    pub(crate) first: hashbrown::HashMap<crate::JobId, crate::Origin>,
    pub(crate) events: Vec<(crate::JobId, &'static str, crate::Origin)>,
}

/// An orchestrator that records every job event; its state counts terminal events handled
/// and the sum of `Added` values.
pub(crate) struct Watcher {
    pub(crate) sightings: Arc<Mutex<Sightings>>,
    pub(crate) record_all: bool,
}

/// The state of a [`Watcher`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Tally {
    pub(crate) terminals: u64,
    pub(crate) sum: u64,
}

impl crate::Orchestrator for Watcher {
    type State = Tally;
    fn on_event(
        &mut self,
        event: &crate::Event,
        origin: crate::Origin,
        cx: &mut crate::OrchestratorContext<'_, Tally>,
    ) {
        let Some(id) = event.correlation_id() else {
            return;
        };
        let lifecycle = event.downcast_ref::<crate::JobLifecycle>();
        let added = event.downcast_ref::<Added>();
        let kind = match (lifecycle, added) {
            (Some(l), _) if l.is_terminal() => "terminal",
            (Some(_), _) => "lifecycle",
            (None, Some(_)) => "added",
            (None, None) => "other",
        };
        // Record first: tests wait on the state, which changes last.
        self.sightings.with(|s| {
            s.first.entry(id).or_insert(origin);
            if self.record_all {
                s.events.push((id, kind, origin));
            }
        });
        if kind == "terminal" {
            assert!(
                !cx.is_job_running(id),
                "untracked when its terminal event is handled"
            );
            cx.update(|t| t.terminals += 1);
        }
        if let Some(Added(n)) = added {
            cx.update(|t| t.sum += n);
        }
    }
}

/// Fails while its executor's switch is on.
pub(crate) struct Toggle;
impl Job for Toggle {
    type Output = ();
}
pub(crate) struct ToggleExec {
    pub(crate) failing: Arc<AtomicBool>,
    pub(crate) probe: Arc<Probe>,
}
impl Executor<Toggle> for ToggleExec {
    type Error = TestError;
    async fn execute(&self, _: &Toggle, _cx: JobContext) -> Result<(), TestError> {
        let attempt = self.probe.enter();
        if self.failing.load(Ordering::SeqCst) {
            return Err(TestError {
                attempt,
                permanent: false,
            });
        }
        Ok(())
    }
}

/// An executor seen as a local one that is neither `Send` nor `Sync`, with futures that are
/// not `Send` either (each holds an `Rc` across its await): the local flavour of the suite
/// registers every executor through it, so nothing on the local path can require `Send`.
pub(crate) struct AsLocal<E> {
    executor: E,
    _not_send: core::marker::PhantomData<alloc::rc::Rc<()>>,
}

impl<E> AsLocal<E> {
    pub(crate) fn new(executor: E) -> Self {
        Self {
            executor,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl<J: crate::Job, E: crate::Executor<J>> crate::LocalExecutor<J> for AsLocal<E> {
    type Error = E::Error;

    async fn execute(&self, job: &J, cx: crate::JobContext) -> Result<J::Output, E::Error> {
        let here = alloc::rc::Rc::new(());
        let output = self.executor.execute(job, cx).await;
        drop(here);
        output
    }
}
