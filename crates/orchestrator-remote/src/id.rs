//! Identities that mean the same thing in every process: [`NodeId`] and [`WireJobId`].

use core::fmt;
#[cfg(not(target_arch = "wasm32"))]
use std::hash::BuildHasher;
use std::hash::Hasher;

use orchestrator_core::JobId;
use serde::{Deserialize, Serialize};

/// The identity of one process (a node) among those that exchange jobs and events.
///
/// Job ids ([`JobId`]) are unique within a process only; on the wire a job is named by its
/// node and its id there ([`WireJobId`]). Give each process a distinct node id: a configured
/// one ([`NodeId::new`]) or a random one at start-up ([`NodeId::random`]).
///
/// ```
/// use orchestrator_remote::NodeId;
/// let a = NodeId::random();
/// let b = NodeId::random();
/// assert_ne!(a, b); // 64 random bits each
/// assert_eq!(NodeId::new(0xbeef).to_string(), "node-000000000000beef");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(u64);

impl NodeId {
    /// A node id chosen by the application.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// A random node id (from the standard library's per-process random hasher keys, mixed
    /// with the time and the process id).
    ///
    /// A configured node id is as safe across restarts as a random one: what tells one run of
    /// a process from the next is the incarnation in every [`WireJobId`].
    pub fn random() -> Self {
        Self(random_u64())
    }

    /// Returns the id as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:016x})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{:016x}", self.0)
    }
}

/// 64 bits that differ from process to process and from call to call (the standard
/// library's per-process random hasher keys, mixed with the time and the process id).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(elapsed.as_nanos());
    }
    hasher.finish()
}

/// 64 bits that differ from page to page and from call to call. In a browser the standard
/// library has no random keys, process id or clock (they are fixed or panic there), so they
/// come from the page: two draws of `Math.random()` and `Date.now()`.
#[cfg(target_arch = "wasm32")]
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write_u64(js_sys::Math::random().to_bits());
    hasher.write_u64(js_sys::Math::random().to_bits());
    hasher.write_u64(js_sys::Date::now().to_bits());
    hasher.finish()
}

/// A job's id on the wire: the node that dispatched it, the run (incarnation) of that node's
/// process, and its [`JobId`] there.
///
/// Job ids start again at 1 in every process, so a node id alone does not tell job 7 of a
/// process from job 7 of the same node's previous run: the incarnation does. A
/// [`Registry`](crate::Registry) draws a random one when it is made
/// ([`Registry::incarnation`](crate::Registry::incarnation)), so a process restarted with its
/// configured node id never takes its previous run's jobs, outcomes or events for its own.
///
/// ```
/// use orchestrator_core::JobId;
/// use orchestrator_remote::{NodeId, WireJobId};
///
/// let here = NodeId::new(1);
/// let id = JobId::next();
/// let wire = WireJobId::new(here, 0xa, id);
/// assert_eq!(wire.local_to(here, 0xa), Some(id));
/// assert_eq!(wire.local_to(NodeId::new(2), 0xa), None); // another node's job
/// assert_eq!(wire.local_to(here, 0xb), None); // the same node's job, in another run
/// assert!(wire.is_earlier_run_of(here, 0xb));
/// assert_eq!(
///     serde_json::to_string(&wire).unwrap(),
///     format!(r#"{{"node":1,"incarnation":10,"job":{}}}"#, id.as_u64())
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WireJobId {
    /// The node that dispatched the job.
    pub node: NodeId,
    /// The run of that node's process that dispatched it.
    pub incarnation: u64,
    /// The job's id in that process ([`JobId::as_u64`]).
    pub job: u64,
}

impl WireJobId {
    /// The wire id of job `id` of run `incarnation` of node `node`.
    pub fn new(node: NodeId, incarnation: u64, id: JobId) -> Self {
        Self {
            node,
            incarnation,
            job: id.as_u64(),
        }
    }

    /// Returns the local [`JobId`] if this job was dispatched by run `incarnation` of node
    /// `node` (this process).
    pub fn local_to(self, node: NodeId, incarnation: u64) -> Option<JobId> {
        if self.node == node && self.incarnation == incarnation {
            JobId::from_u64(self.job)
        } else {
            None
        }
    }

    /// Returns `true` if this job was dispatched by node `node` in a run other than
    /// `incarnation`: a previous process with the same node id.
    pub fn is_earlier_run_of(self, node: NodeId, incarnation: u64) -> bool {
        self.node == node && self.incarnation != incarnation
    }
}

impl fmt::Debug for WireJobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WireJobId({:016x}/{:016x}/{})",
            self.node.0, self.incarnation, self.job
        )
    }
}

impl fmt::Display for WireJobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/run-{:016x}/job-{}",
            self.node, self.incarnation, self.job
        )
    }
}
