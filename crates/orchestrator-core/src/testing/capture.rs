//! [`EventCapture`]: everything published on a bus, kept for the test, and waits on it.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::any::TypeId;
use core::error::Error;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use futures_core::Stream;

use crate::bus::{SignalBus, Subscription, TypedEvent};
use crate::dispatch::dispatcher::Dispatcher;
use crate::event::Event;
use crate::lifecycle::JobLifecycle;
use crate::runtime::{Sleep, Timer};
use crate::sync::{Arc, Mutex};

/// How long a wait lasts by default, on the capture's clock: one minute (of virtual time on
/// a `VirtualRuntime`, where it passes at once).
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Describes the payload of an event if it is of the type this function knows.
type Show = fn(&Event) -> Option<String>;

/// Everything published on a bus since the capture was made, in publish order.
///
/// A capture subscribes when it is made: create it before acting. It reads its subscription
/// whenever it is asked (so it records without being polled), keeps every event (they are
/// shared, so this costs a pointer each) and waits for events on a clock given at creation:
/// the virtual runtime's in deterministic tests, a real adapter's (`TokioRuntime`, ...)
/// elsewhere. Clones share the record.
///
/// A wait ([`wait_for`](Self::wait_for), [`wait_for_matching`](Self::wait_for_matching))
/// first looks at what was captured already, then waits for the next events, at most its
/// limit ([`DEFAULT_WAIT_LIMIT`] unless [`with_limit`](Self::with_limit) says otherwise). A
/// wait that does not find its event ends with a [`WaitError`] naming what it expected and
/// listing what was published instead: it never hangs and never panics.
///
/// ```
/// use core::time::Duration;
/// use orchestrator_core::testing::{EventCapture, VirtualRuntime};
/// use orchestrator_core::SignalBus;
///
/// #[derive(Debug, Clone, PartialEq)]
/// struct Paid(u32);
///
/// let rt = VirtualRuntime::new();
/// let bus = SignalBus::new();
/// let capture = EventCapture::new(&bus, rt.clone())
///     .with_limit(Duration::from_secs(5))
///     .show::<Paid>();
/// bus.emit(Paid(30)).unwrap();
/// assert_eq!(capture.payloads::<Paid>(), [Paid(30)]);
/// assert_eq!(rt.block_on(capture.wait_for::<Paid>()).unwrap().0, 30);
///
/// let missing = rt.block_on(capture.wait_for::<u64>()).unwrap_err();
/// assert!(missing.is_timed_out());
/// assert_eq!(
///     missing.to_string(),
///     "timed out after 5s waiting for an event of type `u64`; seen instead (1 event):\n  1. Paid(30)"
/// );
/// ```
#[derive(Clone)]
pub struct EventCapture {
    shared: Arc<Mutex<Captured>>,
    timer: Arc<dyn Timer>,
    limit: Duration,
    shows: Vec<(TypeId, Show)>,
}

struct Captured {
    subscription: Subscription,
    events: Vec<Event>,
    /// The bus closed (the subscription ended).
    closed: bool,
}

impl Captured {
    /// Moves the events ready on the subscription into the record.
    fn drain(&mut self) {
        while let Some(event) = self.subscription.try_next() {
            self.events.push(event);
        }
    }
}

impl EventCapture {
    /// Starts capturing what is published on `bus`; waits run on `timer`'s clock.
    ///
    /// The capture does not keep the bus open: once every handle of the bus is dropped, it
    /// closes, the capture keeps what it recorded, and waits end with
    /// [`WaitError::is_closed`].
    pub fn new(bus: &SignalBus, timer: impl Timer) -> Self {
        let shows: [(TypeId, Show); 2] = [
            (TypeId::of::<&'static str>(), show_debug::<&'static str>),
            (TypeId::of::<String>(), show_debug::<String>),
        ];
        Self {
            shared: Arc::new(Mutex::new(Captured {
                subscription: bus.subscribe(),
                events: Vec::new(),
                closed: false,
            })),
            timer: Arc::new(timer),
            limit: DEFAULT_WAIT_LIMIT,
            shows: shows.into(),
        }
    }

    /// Starts capturing what is published on `dispatcher`'s bus; waits run on its runtime's
    /// clock.
    pub fn on<R>(dispatcher: &Dispatcher<R>) -> Self {
        Self::new(dispatcher.bus(), dispatcher.runtime().clone())
    }

    /// Sets how long later waits last, on the capture's clock.
    pub fn with_limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Describes payloads of type `P` with their `Debug` in wait errors and in
    /// [`seen`](Self::seen) (other payloads are named by their type). Lifecycle events and
    /// strings are always described.
    pub fn show<P: fmt::Debug + Send + Sync + 'static>(mut self) -> Self {
        self.shows.push((TypeId::of::<P>(), show_debug::<P>));
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut Captured) -> T) -> T {
        self.shared.with(|captured| {
            captured.drain();
            f(captured)
        })
    }

    /// Returns every event captured so far, in publish order.
    pub fn all(&self) -> Vec<Event> {
        self.with(|c| c.events.clone())
    }

    /// Returns the captured events whose payload is a `P`, in publish order.
    pub fn of<P: Send + Sync + 'static>(&self) -> Vec<TypedEvent<P>> {
        self.with(|c| {
            c.events
                .iter()
                .filter_map(|e| TypedEvent::from_event(e.clone()))
                .collect()
        })
    }

    /// Returns clones of the captured payloads of type `P`, in publish order.
    pub fn payloads<P: Clone + Send + Sync + 'static>(&self) -> Vec<P> {
        self.with(|c| {
            c.events
                .iter()
                .filter_map(|e| e.downcast_ref::<P>().cloned())
                .collect()
        })
    }

    /// Returns how many events were captured.
    pub fn len(&self) -> usize {
        self.with(|c| c.events.len())
    }

    /// Returns `true` if nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns how many captured events have a payload of type `P`.
    pub fn count<P: 'static>(&self) -> usize {
        self.with(|c| c.events.iter().filter(|e| e.is::<P>()).count())
    }

    /// Forgets what was captured so far (later waits look at later events only).
    pub fn clear(&self) {
        self.with(|c| c.events.clear());
    }

    /// Describes each captured event in one line, as wait errors list them: the payload
    /// (its `Debug` if [`show`](Self::show) named its type, else its type's name) and the
    /// job that published it, if any.
    pub fn seen(&self) -> Vec<String> {
        self.with(|c| c.events.iter().map(|e| describe(e, &self.shows)).collect())
    }

    /// Waits for an event whose payload is a `P`: the first one captured, or else the next
    /// one published within the limit.
    ///
    /// # Errors
    ///
    /// The future yields a [`WaitError`] if no such event arrives within the limit, or the
    /// bus closes first.
    pub fn wait_for<P: Send + Sync + 'static>(&self) -> Wait<TypedEvent<P>> {
        let expected = format!("an event of type `{}`", core::any::type_name::<P>());
        Wait::new(self.wait(expected.into(), |e: &Event| {
            TypedEvent::from_event(e.clone())
        }))
    }

    /// Waits for an event that satisfies `matches`: the first one captured, or else the next
    /// one published within the limit. `expected` describes it in the error.
    ///
    /// # Errors
    ///
    /// The future yields a [`WaitError`] if no such event arrives within the limit, or the
    /// bus closes first.
    ///
    /// ```
    /// use orchestrator_core::testing::{EventCapture, VirtualRuntime};
    /// use orchestrator_core::SignalBus;
    ///
    /// let rt = VirtualRuntime::new();
    /// let bus = SignalBus::new();
    /// let capture = EventCapture::new(&bus, rt.clone());
    /// bus.emit(1u32).unwrap();
    /// bus.emit(12u32).unwrap();
    /// let big = capture.wait_for_matching("a number over 10", |e| {
    ///     e.downcast_ref::<u32>().is_some_and(|n| *n > 10)
    /// });
    /// assert_eq!(rt.block_on(big).unwrap().downcast_ref::<u32>(), Some(&12));
    /// ```
    pub fn wait_for_matching(
        &self,
        expected: impl Into<Cow<'static, str>>,
        matches: impl Fn(&Event) -> bool + Send + 'static,
    ) -> Wait<Event> {
        Wait::new(self.wait(expected.into(), move |e: &Event| {
            matches(e).then(|| e.clone())
        }))
    }

    /// Waits for the first captured or next published event that `pick` maps to a value.
    fn wait<T: Send + 'static>(
        &self,
        expected: Cow<'static, str>,
        pick: impl Fn(&Event) -> Option<T> + Send + 'static,
    ) -> impl Future<Output = Result<T, WaitError>> + Send + 'static {
        let shared = self.shared.clone();
        let shows = self.shows.clone();
        let limit = self.limit;
        let mut deadline: Sleep = self.timer.sleep(limit);
        let mut checked = 0;
        core::future::poll_fn(move |cx| {
            loop {
                let step = shared.with(|c| {
                    c.drain();
                    if let Some(found) = c.events[checked.min(c.events.len())..]
                        .iter()
                        .find_map(&pick)
                    {
                        return Step::Found(found);
                    }
                    checked = c.events.len();
                    if c.closed {
                        return Step::Closed;
                    }
                    match Pin::new(&mut c.subscription).poll_next(cx) {
                        Poll::Ready(Some(event)) => {
                            c.events.push(event);
                            Step::Again
                        }
                        Poll::Ready(None) => {
                            c.closed = true;
                            Step::Closed
                        }
                        Poll::Pending => Step::Pending,
                    }
                });
                let end = match step {
                    Step::Found(event) => return Poll::Ready(Ok(event)),
                    Step::Again => continue,
                    Step::Closed => End::Closed,
                    Step::Pending => match Pin::new(&mut deadline).poll(cx) {
                        Poll::Ready(()) => End::TimedOut(limit),
                        Poll::Pending => return Poll::Pending,
                    },
                };
                let seen = shared.with(|c| c.events.iter().map(|e| describe(e, &shows)).collect());
                return Poll::Ready(Err(WaitError {
                    expected: expected.clone(),
                    seen,
                    end,
                }));
            }
        })
    }
}

enum Step<T> {
    Found(T),
    Again,
    Closed,
    Pending,
}

impl fmt::Debug for EventCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventCapture")
            .field("captured", &self.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

fn show_debug<P: fmt::Debug + 'static>(event: &Event) -> Option<String> {
    event.downcast_ref::<P>().map(|p| format!("{p:?}"))
}

/// One line for `event`: its payload and the job that published it.
fn describe(event: &Event, shows: &[(TypeId, Show)]) -> String {
    let payload = if let Some(lifecycle) = event.downcast_ref::<JobLifecycle>() {
        format!("JobLifecycle::{lifecycle:?}")
    } else {
        let id = event.payload_type_id();
        shows
            .iter()
            .rev()
            .filter(|(type_id, _)| *type_id == id)
            .find_map(|(_, show)| show(event))
            .unwrap_or_else(|| event.payload_type_name().to_string())
    };
    match event.correlation_id() {
        Some(job) => format!("{payload} from {job}"),
        None => payload,
    }
}

/// A wait of an [`EventCapture`]: the event, or a [`WaitError`].
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct Wait<T> {
    future: Pin<Box<dyn Future<Output = Result<T, WaitError>> + Send>>,
}

impl<T> Wait<T> {
    fn new(future: impl Future<Output = Result<T, WaitError>> + Send + 'static) -> Self {
        Self {
            future: Box::pin(future),
        }
    }
}

impl<T> Future for Wait<T> {
    type Output = Result<T, WaitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.future.as_mut().poll(cx)
    }
}

impl<T> fmt::Debug for Wait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    TimedOut(Duration),
    Closed,
}

/// A wait that did not find its event: what it expected, why it ended, and what was
/// published instead.
///
/// It displays on several lines:
///
/// ```text
/// timed out after 5s waiting for an event of type `app::Shipped`; seen instead (2 events):
///   1. JobLifecycle::Started from job-4
///   2. Paid(30) from job-4
/// ```
///
/// Its `Debug` is the same text, so that `.unwrap()` prints it as is.
#[derive(Clone, PartialEq, Eq)]
pub struct WaitError {
    expected: Cow<'static, str>,
    seen: Vec<String>,
    end: End,
}

impl WaitError {
    /// Returns `true` if the wait's limit passed.
    pub fn is_timed_out(&self) -> bool {
        matches!(self.end, End::TimedOut(_))
    }

    /// Returns `true` if the bus closed before the event arrived.
    pub fn is_closed(&self) -> bool {
        self.end == End::Closed
    }

    /// Returns what the wait expected (`an event of type ...`).
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// Returns the events captured when the wait ended, one line each (see
    /// [`EventCapture::seen`]).
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            End::TimedOut(limit) => write!(f, "timed out after {limit:?}")?,
            End::Closed => f.write_str("the bus closed")?,
        }
        write!(f, " waiting for {}; ", self.expected)?;
        match self.seen.len() {
            0 => f.write_str("nothing was published"),
            n => {
                write!(
                    f,
                    "seen instead ({n} event{}):",
                    if n == 1 { "" } else { "s" }
                )?;
                for (i, line) in self.seen.iter().enumerate() {
                    write!(f, "\n  {}. {line}", i + 1)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error for WaitError {}
