//! Events: user-defined payloads in an envelope that says where they came from.
//!
//! Any `Send + Sync + 'static` type is an event payload. An [`Event`] wraps it with the
//! correlation id of the job that emitted it (if any), a timestamp, the emitting job's type and,
//! for job outputs, the [`DataSource`] they came from. Cloning an `Event` is one reference
//! count: every subscriber of a bus receives the same allocation.

pub(crate) mod ambient;

use core::any::{Any, TypeId};
use core::fmt;

use crate::cause::{CausalChain, Cause, CauseStep};
use crate::id::JobId;
use crate::job::{Job, JobType};
use crate::outcome::DataSource;
use crate::runtime::Instant;
use crate::sync::Arc;

/// An event's envelope, as the core builds it.
#[derive(Clone, Default)]
pub(crate) struct Meta {
    pub(crate) correlation_id: Option<JobId>,
    /// The job that dispatched the emitting job (sub-jobs only).
    pub(crate) parent_id: Option<JobId>,
    pub(crate) timestamp: Instant,
    pub(crate) job_type: Option<JobType>,
    pub(crate) data_source: Option<DataSource>,
    pub(crate) cause: Cause,
    pub(crate) type_name: &'static str,
    /// The process (node) the event came from, for an event received from another one.
    pub(crate) remote_node: Option<u64>,
}

struct Envelope<P: ?Sized> {
    meta: Meta,
    payload: P,
}

/// An event on a [`SignalBus`](crate::SignalBus): a payload and its envelope.
///
/// ```
/// use orchestrator_core::Event;
///
/// #[derive(Debug, PartialEq)]
/// struct CartUpdated {
///     items: u32,
/// }
///
/// let event = Event::new(CartUpdated { items: 3 });
/// assert!(event.is::<CartUpdated>());
/// assert_eq!(event.downcast_ref::<CartUpdated>(), Some(&CartUpdated { items: 3 }));
/// assert!(event.downcast_ref::<String>().is_none());
/// assert_eq!(event.correlation_id(), None); // not emitted by a job
/// ```
#[derive(Clone)]
pub struct Event {
    inner: Arc<Envelope<dyn Any + Send + Sync>>,
}

impl Event {
    /// Wraps `payload` with no correlation id, no job type and timestamp [`Instant::ZERO`].
    pub fn new<P: Send + Sync + 'static>(payload: P) -> Self {
        Self::build(payload, Meta::default())
    }

    /// Wraps `payload` with a timestamp read from a runtime clock.
    pub fn at<P: Send + Sync + 'static>(payload: P, timestamp: Instant) -> Self {
        Self::build(
            payload,
            Meta {
                timestamp,
                ..Meta::default()
            },
        )
    }

    /// Starts an event whose envelope is set field by field: how a transport rebuilds an
    /// event that another process published (its correlation id, job type, causal depth and
    /// the node it came from), so that local observers and orchestrators see it as it was.
    ///
    /// ```
    /// use orchestrator_core::{Event, Job, JobId, JobType};
    ///
    /// struct Shipped(u32);
    /// struct Ship;
    /// impl Job for Ship {
    ///     type Output = ();
    /// }
    ///
    /// let id = JobId::next();
    /// let event = Event::builder(Shipped(7))
    ///     .correlation_id(id)
    ///     .job_type(JobType::of::<Ship>())
    ///     .causal_depth(2)
    ///     .remote_node(0xfeed)
    ///     .build();
    /// assert_eq!(event.correlation_id(), Some(id));
    /// assert!(event.is_from_job::<Ship>());
    /// assert_eq!((event.causal_depth(), event.remote_node()), (2, Some(0xfeed)));
    /// assert!(event.cause().is_none(), "the reaction steps stay in the process that made them");
    /// ```
    pub fn builder<P: Send + Sync + 'static>(payload: P) -> EventBuilder<P> {
        EventBuilder {
            payload,
            meta: Meta::default(),
        }
    }

    /// Returns the node (process) this event was received from, if it came from another one
    /// ([`EventBuilder::remote_node`]); `None` for an event published in this process.
    pub fn remote_node(&self) -> Option<u64> {
        self.inner.meta.remote_node
    }

    pub(crate) fn build<P: Send + Sync + 'static>(payload: P, mut meta: Meta) -> Self {
        meta.type_name = core::any::type_name::<P>();
        Self {
            inner: Arc::new(Envelope { meta, payload }),
        }
    }

    /// Gives an event built outside any job the cause of the handler running on this thread,
    /// if one runs (with `std`) and the event is not shared yet.
    pub(crate) fn stamp_ambient(&mut self) {
        let meta = &self.inner.meta;
        if meta.correlation_id.is_some() || !meta.cause.is_root() {
            return;
        }
        let Some(cause) = ambient::current() else {
            return;
        };
        if let Some(envelope) = Arc::get_mut(&mut self.inner) {
            envelope.meta.cause = cause;
        }
    }

    pub(crate) fn cause_ref(&self) -> &Cause {
        &self.inner.meta.cause
    }

    /// Returns `true` if the payload is a `P`.
    pub fn is<P: 'static>(&self) -> bool {
        self.inner.payload.is::<P>()
    }

    /// Returns the payload if it is a `P`.
    pub fn downcast_ref<P: 'static>(&self) -> Option<&P> {
        self.inner.payload.downcast_ref::<P>()
    }

    /// Returns the `TypeId` of the payload.
    pub fn payload_type_id(&self) -> TypeId {
        Any::type_id(&self.inner.payload)
    }

    /// Returns the payload type's name.
    pub fn payload_type_name(&self) -> &'static str {
        self.inner.meta.type_name
    }

    /// Returns the id of the job that emitted the event, if a job did.
    pub fn correlation_id(&self) -> Option<JobId> {
        self.inner.meta.correlation_id
    }

    /// Returns when the event was created, on the emitting runtime's clock
    /// ([`Instant::ZERO`] for events built without a clock).
    pub fn timestamp(&self) -> Instant {
        self.inner.meta.timestamp
    }

    /// Returns the type of the job that emitted the event, if a job did.
    pub fn job_type(&self) -> Option<JobType> {
        self.inner.meta.job_type
    }

    /// Returns `true` if a job of type `J` emitted the event.
    pub fn is_from_job<J: Job>(&self) -> bool {
        self.inner.meta.job_type.is_some_and(|t| t.is::<J>())
    }

    /// Returns where the data in the event came from, for events made from a job's output.
    pub fn data_source(&self) -> Option<DataSource> {
        self.inner.meta.data_source
    }

    /// Returns the id of the job that dispatched the emitting job, for events of sub-jobs.
    pub fn parent_id(&self) -> Option<JobId> {
        self.inner.meta.parent_id
    }

    /// Returns the event's causal depth: 0 if it was produced outside any orchestrator's
    /// handler, `d + 1` if it was produced (directly, or through jobs) while an orchestrator
    /// handled an event of depth `d`.
    pub fn causal_depth(&self) -> u32 {
        self.inner.meta.cause.depth
    }

    /// Returns the reaction that produced this event: which orchestrator handled which event.
    pub fn cause(&self) -> Option<&CauseStep> {
        self.inner.meta.cause.step.as_deref()
    }

    /// Returns the chain of reactions that produced this event, most recent first.
    pub fn causal_chain(&self) -> CausalChain<'_> {
        CausalChain::new(self.cause())
    }

    /// Returns `true` if both are the same event (the same allocation).
    pub fn ptr_eq(&self, other: &Event) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// An event being built with an explicit envelope; see [`Event::builder`].
#[must_use = "an event builder does nothing until `build` is called"]
pub struct EventBuilder<P> {
    payload: P,
    meta: Meta,
}

impl<P: Send + Sync + 'static> EventBuilder<P> {
    /// Sets the id of the job the event belongs to.
    pub fn correlation_id(mut self, id: JobId) -> Self {
        self.meta.correlation_id = Some(id);
        self
    }

    /// Sets the id of the job that dispatched that job (a sub-job's parent).
    pub fn parent_id(mut self, id: JobId) -> Self {
        self.meta.parent_id = Some(id);
        self
    }

    /// Sets the type of the job the event belongs to.
    pub fn job_type(mut self, job_type: JobType) -> Self {
        self.meta.job_type = Some(job_type);
        self
    }

    /// Sets the time the event was made (default: [`Instant::ZERO`]).
    pub fn timestamp(mut self, timestamp: Instant) -> Self {
        self.meta.timestamp = timestamp;
        self
    }

    /// Sets where a job output came from.
    pub fn data_source(mut self, source: DataSource) -> Self {
        self.meta.data_source = Some(source);
        self
    }

    /// Sets the causal depth: how many reactions led to the event. The loop guards of the
    /// orchestrators that handle it count from there. (The chain of reaction steps itself,
    /// [`Event::causal_chain`], is not carried: it is empty.)
    pub fn causal_depth(mut self, depth: u32) -> Self {
        self.meta.cause = Cause { depth, step: None };
        self
    }

    /// Marks the event as received from node `node` (another process).
    pub fn remote_node(mut self, node: u64) -> Self {
        self.meta.remote_node = Some(node);
        self
    }

    /// Builds the event.
    pub fn build(self) -> Event {
        Event::build(self.payload, self.meta)
    }
}

impl<P> fmt::Debug for EventBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBuilder")
            .field("payload", &core::any::type_name::<P>())
            .field("correlation_id", &self.meta.correlation_id)
            .field("causal_depth", &self.meta.cause.depth)
            .field("remote_node", &self.meta.remote_node)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = &self.inner.meta;
        f.debug_struct("Event")
            .field("payload", &meta.type_name)
            .field("correlation_id", &meta.correlation_id)
            .field("timestamp", &meta.timestamp)
            .field("job_type", &meta.job_type.map(|t| t.name()))
            .field("data_source", &meta.data_source)
            .field("causal_depth", &meta.cause.depth)
            .field("remote_node", &meta.remote_node)
            .finish()
    }
}
