//! Identities that mean the same thing in every process: [`NodeId`] and [`WireJobId`].

use core::fmt;
use std::hash::{BuildHasher, Hasher};

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
    pub fn random() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(elapsed.as_nanos());
        }
        Self(hasher.finish())
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

/// A job's id on the wire: the node that dispatched it and its [`JobId`] there.
///
/// ```
/// use orchestrator_core::JobId;
/// use orchestrator_remote::{NodeId, WireJobId};
///
/// let here = NodeId::new(1);
/// let id = JobId::next();
/// let wire = WireJobId::new(here, id);
/// assert_eq!(wire.local_to(here), Some(id));
/// assert_eq!(wire.local_to(NodeId::new(2)), None); // another node's job
/// assert_eq!(serde_json::to_string(&wire).unwrap(), format!(r#"{{"node":1,"job":{}}}"#, id.as_u64()));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WireJobId {
    /// The node that dispatched the job.
    pub node: NodeId,
    /// The job's id on that node ([`JobId::as_u64`]).
    pub job: u64,
}

impl WireJobId {
    /// The wire id of job `id` of node `node`.
    pub fn new(node: NodeId, id: JobId) -> Self {
        Self {
            node,
            job: id.as_u64(),
        }
    }

    /// Returns the local [`JobId`] if this job was dispatched by node `here`.
    pub fn local_to(self, here: NodeId) -> Option<JobId> {
        if self.node == here {
            JobId::from_u64(self.job)
        } else {
            None
        }
    }
}

impl fmt::Debug for WireJobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireJobId({:016x}/{})", self.node.0, self.job)
    }
}

impl fmt::Display for WireJobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/job-{}", self.node, self.job)
    }
}
