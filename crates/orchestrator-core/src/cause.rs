//! Causation: why an event or a job exists, as a chain of orchestrator reactions.
//!
//! Every [`Event`](crate::Event) and every dispatched job carries a *causal depth*. An event
//! published, or a job dispatched, outside any orchestrator's event handler has depth 0. While
//! an orchestrator handles an event of depth `d`, every job it dispatches and every event it
//! publishes gets depth `d + 1`, and remembers which orchestrator reacted to which event: a
//! [`CauseStep`]. A job passes its depth on to everything it produces: its own events, its
//! lifecycle and output events, and its sub-jobs. So a chain of reactions, however it travels
//! (through jobs, sub-jobs, domain events, lifecycle events, several orchestrators), grows one
//! step per reaction, and a loop is a chain that never stops growing.
//!
//! An orchestrator's [`LoopGuard`](crate::LoopGuard) cuts a chain deeper than its limit; a
//! burst of independent events (each of depth 0 or small) is never touched.
//!
//! # How the depth is carried
//!
//! Dispatching or publishing through the handler's [`OrchestratorContext`] always carries
//! it. With `std`, anything else published or dispatched on the handler's thread while the
//! handler runs (a [`SignalBus`](crate::SignalBus) or [`Dispatcher`](crate::Dispatcher) clone
//! kept in the orchestrator, another orchestrator's handle) carries it too. Without `std`,
//! only the context carries it.
//!
//! [`OrchestratorContext`]: crate::OrchestratorContext

use core::fmt;

use crate::id::JobId;
use crate::job::JobType;
use crate::sync::Arc;

/// One step of a causal chain: an orchestrator that reacted to an event.
///
/// Steps are shared (reference-counted) between every event and job of a chain; reading one
/// is free.
#[derive(Clone)]
pub struct CauseStep {
    orchestrator: &'static str,
    event_type: &'static str,
    job_id: Option<JobId>,
    job_type: Option<JobType>,
    depth: u32,
    parent: Option<Arc<CauseStep>>,
}

impl CauseStep {
    /// Returns the name of the orchestrator that reacted.
    pub fn orchestrator(&self) -> &'static str {
        self.orchestrator
    }

    /// Returns the payload type name of the event it reacted to.
    pub fn event_type(&self) -> &'static str {
        self.event_type
    }

    /// Returns the correlation id of the event it reacted to, if a job emitted it.
    pub fn job_id(&self) -> Option<JobId> {
        self.job_id
    }

    /// Returns the type of the job that emitted the event it reacted to, if a job did.
    pub fn job_type(&self) -> Option<JobType> {
        self.job_type
    }

    /// Returns the causal depth of the event it reacted to.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Returns the step that caused the event this step reacted to, if any.
    pub fn parent(&self) -> Option<&CauseStep> {
        self.parent.as_deref()
    }
}

impl fmt::Debug for CauseStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CauseStep")
            .field("orchestrator", &self.orchestrator)
            .field("event_type", &self.event_type)
            .field("job_id", &self.job_id)
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

/// An iterator over a causal chain, from the most recent step back to the root; see
/// [`Event::causal_chain`](crate::Event::causal_chain).
#[derive(Debug, Clone)]
pub struct CausalChain<'a> {
    next: Option<&'a CauseStep>,
}

impl<'a> CausalChain<'a> {
    pub(crate) fn new(first: Option<&'a CauseStep>) -> Self {
        Self { next: first }
    }
}

impl<'a> Iterator for CausalChain<'a> {
    type Item = &'a CauseStep;

    fn next(&mut self) -> Option<&'a CauseStep> {
        let step = self.next?;
        self.next = step.parent();
        Some(step)
    }
}

/// The cause an event or a job carries: its depth and the step that produced it.
#[derive(Clone, Default)]
pub(crate) struct Cause {
    pub(crate) depth: u32,
    pub(crate) step: Option<Arc<CauseStep>>,
}

impl Cause {
    /// The cause of something produced outside any handler.
    pub(crate) const ROOT: Cause = Cause {
        depth: 0,
        step: None,
    };

    /// Returns `true` for a root cause (depth 0, no step).
    pub(crate) fn is_root(&self) -> bool {
        self.depth == 0 && self.step.is_none()
    }

    /// The cause of what an orchestrator named `orchestrator` produces while it handles an
    /// event of payload type `event_type`, correlation id `job_id`, job type `job_type` and
    /// cause `event_cause`: one step deeper.
    pub(crate) fn reaction(
        orchestrator: &'static str,
        event_type: &'static str,
        job_id: Option<JobId>,
        job_type: Option<JobType>,
        event_cause: &Cause,
    ) -> Cause {
        Cause {
            depth: event_cause.depth.saturating_add(1),
            step: Some(Arc::new(CauseStep {
                orchestrator,
                event_type,
                job_id,
                job_type,
                depth: event_cause.depth,
                parent: event_cause.step.clone(),
            })),
        }
    }
}
