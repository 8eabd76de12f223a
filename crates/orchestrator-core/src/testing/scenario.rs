//! [`Scenario`]: an orchestrator tested as given / when / then, on the virtual runtime.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt::{self, Write as _};
use core::future::Future;
use core::time::Duration;

use super::capture::EventCapture;
use super::fakes::Recorder;
use super::virtual_runtime::{Stalled, VirtualRuntime};
use crate::dispatch::builder::Dispatch;
use crate::dispatch::dispatcher::Dispatcher;
use crate::event::Event;
use crate::id::JobId;
use crate::job::Job;
use crate::observer::DroppedEvent;
use crate::orchestrator::{Orchestrator, OrchestratorContext, OrchestratorHandle, Origin};
use crate::sync::{Arc, Mutex};

/// How long a scenario lets virtual time run after its acts by default: one minute.
pub const DEFAULT_SCENARIO_WAIT: Duration = Duration::from_secs(60);

type Given = Box<dyn FnOnce(&Dispatcher<VirtualRuntime>)>;
type When<S> = Box<dyn FnOnce(&Act<'_, S>)>;
/// A check of what was captured: `Some(report)` if it failed.
type Then = Box<dyn FnOnce(&EventCapture) -> Option<String>>;

/// An orchestrator's test as given / when / then: the states it goes through while the test
/// acts on it.
///
/// - **given** a fresh [`VirtualRuntime`] and a dispatcher on it, with the executors (often
///   [fakes](super::FakeExecutor)) that [`given`](Self::given) registers;
/// - **when** the acts of [`when`](Self::when) run (dispatch through the orchestrator,
///   publish events, move the virtual clock), followed by [`wait`](Self::wait) of virtual
///   time ([`DEFAULT_SCENARIO_WAIT`] unless set), so that jobs and timers started by the acts
///   finish;
/// - **then** the orchestrator went through the states of [`then_states`](Self::then_states)
///   (every state its handler left different from the one before, in order; the initial
///   state is not listed), and the bus carried the payloads of
///   [`then_events`](Self::then_events), and fakes received the jobs of
///   [`then_jobs`](Self::then_jobs).
///
/// [`run`](Self::run) returns a [`ScenarioReport`] (the runtime, dispatcher, orchestrator and
/// what was recorded, for further checks) or a [`ScenarioError`] that prints every
/// expectation that failed, expected and actual side by side. It never panics.
///
/// ```
/// use orchestrator_core::testing::{FakeExecutor, Scenario};
/// use orchestrator_core::{Event, Job, Orchestrator, OrchestratorContext, Origin};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Add(u32);
/// impl Job for Add {
///     type Output = u32;
///     fn output_event(&self, n: &u32) -> Option<impl Send + Sync + 'static> {
///         Some(Added(*n))
///     }
/// }
/// struct Added(u32);
///
/// struct Total;
/// impl Orchestrator for Total {
///     type State = u32;
///     fn on_event(&mut self, event: &Event, _: Origin, cx: &mut OrchestratorContext<'_, u32>) {
///         if let Some(Added(n)) = event.downcast_ref() {
///             cx.update(|total| *total += n);
///         }
///     }
/// }
///
/// let adder = FakeExecutor::<Add>::from_fn(|job, _| async move { Ok(job.0) });
/// let recorder = adder.recorder();
/// let report = Scenario::new(Total, 0)
///     .given(move |dispatcher| {
///         dispatcher.register(adder);
///     })
///     .when(|act| {
///         act.dispatch(Add(2));
///         act.dispatch(Add(3));
///     })
///     .then_states([2, 5])
///     .then_jobs(&recorder, [Add(2), Add(3)])
///     .run()
///     .unwrap();
/// assert_eq!(report.state(), 5);
///
/// let wrong = Scenario::new(Total, 0)
///     .when(|act| {
///         act.publish(Added(4));
///     })
///     .then_states([3])
///     .run()
///     .unwrap_err();
/// assert_eq!(
///     wrong.to_string(),
///     "the states differ:\n\
///      \x20     # | expected | actual\n\
///      \x20 >  1 | 3        | 4"
/// );
/// ```
#[must_use = "a scenario does nothing until `run` is called"]
pub struct Scenario<O: Orchestrator> {
    orchestrator: O,
    initial: O::State,
    given: Vec<Given>,
    when: Vec<When<O::State>>,
    wait: Duration,
    states: Option<Vec<O::State>>,
    then: Vec<Then>,
}

impl<O: Orchestrator> Scenario<O> {
    /// Starts a scenario for `orchestrator` with its initial state.
    pub fn new(orchestrator: O, initial: O::State) -> Self {
        Self {
            orchestrator,
            initial,
            given: Vec::new(),
            when: Vec::new(),
            wait: DEFAULT_SCENARIO_WAIT,
            states: None,
            then: Vec::new(),
        }
    }

    /// Prepares the dispatcher before the orchestrator starts (registers executors, sets
    /// breakers). Several run in order.
    pub fn given(mut self, given: impl FnOnce(&Dispatcher<VirtualRuntime>) + 'static) -> Self {
        self.given.push(Box::new(given));
        self
    }

    /// Acts once the orchestrator runs. Several run in order, then the virtual clock moves
    /// by [`wait`](Self::wait).
    pub fn when(mut self, act: impl FnOnce(&Act<'_, O::State>) + 'static) -> Self {
        self.when.push(Box::new(act));
        self
    }

    /// Sets how much virtual time passes after the acts ([`DEFAULT_SCENARIO_WAIT`] by
    /// default); timers due in it fire in order, tasks run after each.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Expects the orchestrator to go through `states`, in order: each state its handler left
    /// different from the state before (the initial state is not listed).
    pub fn then_states(mut self, states: impl IntoIterator<Item = O::State>) -> Self {
        self.states = Some(states.into_iter().collect());
        self
    }

    /// Expects the payloads of type `P` published on the orchestrator's bus after it started
    /// to be `payloads`, in order.
    pub fn then_events<P>(mut self, payloads: impl IntoIterator<Item = P>) -> Self
    where
        P: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    {
        let expected: Vec<P> = payloads.into_iter().collect();
        self.then.push(Box::new(move |capture: &EventCapture| {
            let actual = capture.payloads::<P>();
            let title = format!(
                "the events of type `{}` differ",
                core::any::type_name::<P>()
            );
            compare(&title, &expected, &actual)
        }));
        self
    }

    /// Expects the fake whose recorder is `recorder` to have received `jobs`, in order (each
    /// job once, however many attempts it took; see [`Recorder::jobs`]).
    pub fn then_jobs<J>(mut self, recorder: &Recorder<J>, jobs: impl IntoIterator<Item = J>) -> Self
    where
        J: Clone + PartialEq + fmt::Debug + 'static,
    {
        let expected: Vec<J> = jobs.into_iter().collect();
        let recorder = recorder.clone();
        self.then.push(Box::new(move |_: &EventCapture| {
            let title = format!("the jobs of type `{}` differ", core::any::type_name::<J>());
            compare(&title, &expected, &recorder.jobs())
        }));
        self
    }

    /// Runs the scenario: builds the runtime and dispatcher, applies the givens, starts the
    /// orchestrator, runs the acts, lets [`wait`](Self::wait) of virtual time pass, then
    /// checks every expectation.
    ///
    /// # Errors
    ///
    /// A [`ScenarioError`] listing every expectation that failed (and any event the acts
    /// could not publish), or saying that the orchestrator did not start.
    pub fn run(self) -> Result<ScenarioReport<O::State>, ScenarioError>
    where
        O: Send,
        O::State: PartialEq + fmt::Debug,
    {
        let runtime = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(runtime.clone());
        for given in self.given {
            given(&dispatcher);
        }
        let states = Arc::new(Mutex::new(Vec::new()));
        let capture = EventCapture::on(&dispatcher);
        let recording = Recording {
            inner: self.orchestrator,
            states: states.clone(),
        };
        let orchestrator = recording
            .builder(self.initial, &dispatcher)
            .name(core::any::type_name::<O>())
            .start()
            .map_err(|e| ScenarioError::single(format!("the orchestrator did not start: {e}")))?;
        runtime.run_until_stalled();
        let problems = Mutex::new(Vec::new());
        let act = Act {
            runtime: &runtime,
            dispatcher: &dispatcher,
            orchestrator: &orchestrator,
            problems: &problems,
        };
        for when in self.when {
            when(&act);
        }
        runtime.advance(self.wait);

        let mut failures: Vec<String> = problems.with(core::mem::take);
        let recorded = states.with(|s| s.clone());
        if let Some(expected) = &self.states {
            failures.extend(compare("the states differ", expected, &recorded));
        }
        failures.extend(self.then.into_iter().filter_map(|then| then(&capture)));
        if !failures.is_empty() {
            return Err(ScenarioError { failures });
        }
        Ok(ScenarioReport {
            runtime,
            dispatcher,
            orchestrator,
            states: recorded,
            capture,
        })
    }
}

impl<O: Orchestrator> fmt::Debug for Scenario<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("orchestrator", &core::any::type_name::<O>())
            .field("given", &self.given.len())
            .field("when", &self.when.len())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// `None` if `actual` is `expected`, else the two side by side under `title`, the rows that
/// differ marked with `>`.
fn compare<T: PartialEq + fmt::Debug>(title: &str, expected: &[T], actual: &[T]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let show = |v: Option<&T>| v.map_or_else(String::new, |v| format!("{v:?}"));
    let rows = expected.len().max(actual.len());
    let width = (0..rows)
        .map(|i| show(expected.get(i)).chars().count())
        .max()
        .unwrap_or(0)
        .max("expected".len());
    let mut out = format!("{title}:\n      # | {:<width$} | actual", "expected");
    for i in 0..rows {
        let (e, a) = (expected.get(i), actual.get(i));
        let mark = if e == a { ' ' } else { '>' };
        let _ = write!(
            out,
            "\n  {mark} {:>2} | {:<width$} | {}",
            i + 1,
            show(e),
            show(a)
        );
    }
    Some(out)
}

/// Wraps the orchestrator under test: records each state its handler leaves different from
/// the state before.
struct Recording<O: Orchestrator> {
    inner: O,
    states: Arc<Mutex<Vec<O::State>>>,
}

impl<O: Orchestrator> Recording<O>
where
    O::State: PartialEq,
{
    fn record(
        &mut self,
        cx: &mut OrchestratorContext<'_, O::State>,
        handle: impl FnOnce(&mut O, &mut OrchestratorContext<'_, O::State>),
    ) {
        let before = cx.state();
        handle(&mut self.inner, cx);
        let after = cx.state();
        if after != before {
            self.states.with(|s| s.push(after));
        }
    }
}

impl<O: Orchestrator> Orchestrator for Recording<O>
where
    O::State: PartialEq,
{
    type State = O::State;

    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, O::State>,
    ) {
        self.record(cx, |inner, cx| inner.on_event(event, origin, cx));
    }

    fn on_dropped(
        &mut self,
        dropped: &DroppedEvent<'_>,
        cx: &mut OrchestratorContext<'_, O::State>,
    ) {
        self.record(cx, |inner, cx| inner.on_dropped(dropped, cx));
    }
}

/// What a scenario's acts can do: dispatch through the orchestrator, publish on its bus,
/// move the virtual clock, read the state.
pub struct Act<'a, S> {
    runtime: &'a VirtualRuntime,
    dispatcher: &'a Dispatcher<VirtualRuntime>,
    orchestrator: &'a OrchestratorHandle<S>,
    problems: &'a Mutex<Vec<String>>,
}

impl<S: Clone + Send + Sync + 'static> Act<'_, S> {
    /// Dispatches `job` through the orchestrator (it is tracked: its events are active) and
    /// returns its id; the job runs when the runtime next runs. For its handle, or options,
    /// dispatch through [`orchestrator`](Self::orchestrator).
    pub fn dispatch<J: Job>(&self, job: J) -> JobId {
        self.orchestrator.dispatch(job).id()
    }

    /// Publishes `payload` on the orchestrator's bus (handled when the runtime next runs). A
    /// refusal (the bus closed) fails the scenario.
    pub fn publish<P: Send + Sync + 'static>(&self, payload: P) -> &Self {
        if let Err(refused) = self.orchestrator.bus().emit(payload) {
            let what = refused.into_inner().payload_type_name();
            self.problems.with(|p| {
                p.push(format!(
                    "an act could not publish a `{what}`: the bus is closed"
                ))
            });
        }
        self
    }

    /// Moves the virtual clock by `duration`, firing due timers in order and running tasks
    /// after each.
    pub fn advance(&self, duration: Duration) -> &Self {
        self.runtime.advance(duration);
        self
    }

    /// Runs the ready tasks until none is ready, without moving the clock.
    pub fn settle(&self) -> &Self {
        self.runtime.run_until_stalled();
        self
    }

    /// Drives `future` to completion, moving the clock to the next timer whenever nothing
    /// else can run (see [`VirtualRuntime::try_block_on`]).
    ///
    /// # Errors
    ///
    /// [`Stalled`] if nothing could ever complete the future.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Stalled> {
        self.runtime.try_block_on(future)
    }

    /// Returns the orchestrator's current state.
    pub fn state(&self) -> S {
        self.orchestrator.state()
    }

    /// Returns the orchestrator under test.
    pub fn orchestrator(&self) -> &OrchestratorHandle<S> {
        self.orchestrator
    }

    /// Returns the scenario's dispatcher.
    pub fn dispatcher(&self) -> &Dispatcher<VirtualRuntime> {
        self.dispatcher
    }

    /// Returns the scenario's runtime.
    pub fn runtime(&self) -> &VirtualRuntime {
        self.runtime
    }
}

impl<S> fmt::Debug for Act<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Act")
            .field("runtime", self.runtime)
            .finish_non_exhaustive()
    }
}

/// What a scenario that passed leaves for further checks. Dropping it disposes the
/// orchestrator and drops the runtime's tasks.
pub struct ScenarioReport<S> {
    runtime: VirtualRuntime,
    dispatcher: Dispatcher<VirtualRuntime>,
    orchestrator: OrchestratorHandle<S>,
    states: Vec<S>,
    capture: EventCapture,
}

impl<S: Clone + Send + Sync + 'static> ScenarioReport<S> {
    /// Returns the orchestrator's final state.
    pub fn state(&self) -> S {
        self.orchestrator.state()
    }

    /// Returns the states the orchestrator went through (as [`Scenario::then_states`]
    /// compares them).
    pub fn states(&self) -> &[S] {
        &self.states
    }

    /// Returns what was published on the orchestrator's bus once it started.
    pub fn events(&self) -> &EventCapture {
        &self.capture
    }

    /// Returns the orchestrator.
    pub fn orchestrator(&self) -> &OrchestratorHandle<S> {
        &self.orchestrator
    }

    /// Returns the dispatcher.
    pub fn dispatcher(&self) -> &Dispatcher<VirtualRuntime> {
        &self.dispatcher
    }

    /// Returns the runtime (its owner: the tasks live as long as the report).
    pub fn runtime(&self) -> &VirtualRuntime {
        &self.runtime
    }
}

impl<S> fmt::Debug for ScenarioReport<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScenarioReport")
            .field("states", &self.states.len())
            .field("events", &self.capture)
            .finish_non_exhaustive()
    }
}

/// A scenario that failed: each expectation that did not hold, with expected and actual
/// side by side.
///
/// Its `Debug` is its message, so that `.unwrap()` prints the tables as they are.
#[derive(Clone, PartialEq, Eq)]
pub struct ScenarioError {
    failures: Vec<String>,
}

impl ScenarioError {
    fn single(message: String) -> Self {
        Self {
            failures: alloc::vec![message],
        }
    }

    /// Returns each failed expectation's report.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            f.write_str(failure)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error for ScenarioError {}
