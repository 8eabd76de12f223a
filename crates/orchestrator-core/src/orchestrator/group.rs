//! Groups of orchestrators started and disposed together.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use super::{OrchestratorError, OrchestratorHandle};

/// What a group needs of a member, whatever its state type.
trait Member: Send + Sync {
    fn start(&self) -> Result<(), OrchestratorError>;
    fn dispose(&self);
    fn is_running(&self) -> bool;
    fn name(&self) -> &'static str;
}

impl<S: Clone + Send + Sync + 'static> Member for OrchestratorHandle<S> {
    fn start(&self) -> Result<(), OrchestratorError> {
        OrchestratorHandle::start(self)
    }

    fn dispose(&self) {
        OrchestratorHandle::dispose(self);
    }

    fn is_running(&self) -> bool {
        OrchestratorHandle::is_running(self)
    }

    fn name(&self) -> &'static str {
        OrchestratorHandle::name(self)
    }
}

/// Several orchestrators, started and disposed as one.
///
/// Add built (not yet started) orchestrators, then [`start`](Self::start) them all: if one
/// fails, the ones already started are disposed and the error is returned, so a group is
/// either running whole or not at all. [`dispose`](Self::dispose) disposes every member.
///
/// ```
/// use orchestrator_core::testing::VirtualRuntime;
/// use orchestrator_core::{Dispatcher, Event, Orchestrator, OrchestratorContext, OrchestratorGroup, Origin};
///
/// struct Quiet;
/// impl Orchestrator for Quiet {
///     type State = ();
///     fn on_event(&mut self, _: &Event, _: Origin, _: &mut OrchestratorContext<'_, ()>) {}
/// }
///
/// let dispatcher = Dispatcher::new(VirtualRuntime::new());
/// let a = Quiet.builder((), &dispatcher).name("a").build();
/// let b = Quiet.builder((), &dispatcher).name("b").build();
/// let mut group = OrchestratorGroup::new();
/// group.add(&a).add(&b);
/// group.start().unwrap();
/// assert!(a.is_running() && b.is_running());
/// group.dispose();
/// assert!(a.is_disposed() && b.is_disposed());
/// ```
#[derive(Default)]
pub struct OrchestratorGroup {
    members: Vec<Box<dyn Member>>,
}

impl OrchestratorGroup {
    /// Creates an empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an orchestrator (the group keeps a handle clone).
    pub fn add<S: Clone + Send + Sync + 'static>(
        &mut self,
        orchestrator: &OrchestratorHandle<S>,
    ) -> &mut Self {
        self.members.push(Box::new(orchestrator.clone()));
        self
    }

    /// Starts every member that is not running yet.
    ///
    /// # Errors
    ///
    /// The first member's start error; every member started by this call is then disposed.
    pub fn start(&self) -> Result<(), OrchestratorError> {
        let mut started: Vec<&dyn Member> = Vec::new();
        for member in &self.members {
            if member.is_running() {
                continue;
            }
            if let Err(e) = member.start() {
                for m in started {
                    m.dispose();
                }
                return Err(e);
            }
            started.push(&**member);
        }
        Ok(())
    }

    /// Disposes every member.
    pub fn dispose(&self) {
        for member in &self.members {
            member.dispose();
        }
    }

    /// Returns the number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Returns `true` if the group has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl fmt::Debug for OrchestratorGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.members.iter().map(|m| m.name()))
            .finish()
    }
}
