//! Wire names for job types and event payloads, and the codec they give: [`Registry`].

use std::any::TypeId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator_core::runtime::Instant;
use orchestrator_core::{DataSource, Event, EventBuilder, Job, JobContext, JobId, JobType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CodecError, RegistryError};
use crate::id::{NodeId, WireJobId};
use crate::wire::{JobRequest, WireEvent};

/// How many foreign job ids a registry keeps local aliases for, by default.
pub const DEFAULT_ALIASES: usize = 65_536;

type EncodeEvent = dyn Fn(&Event) -> Option<Result<Value, serde_json::Error>> + Send + Sync;
type DecodeEvent = dyn Fn(Value, &Envelope) -> Result<Event, serde_json::Error> + Send + Sync;
type EmitEvent = dyn Fn(Value, &JobContext) -> Result<bool, serde_json::Error> + Send + Sync;

struct EventEntry {
    name: String,
    type_name: &'static str,
    encode: Box<EncodeEvent>,
    decode: Box<DecodeEvent>,
    emit: Box<EmitEvent>,
}

struct JobEntry {
    type_id: TypeId,
    job_type: JobType,
}

/// The envelope of a decoded event, in local terms.
struct Envelope {
    correlation: Option<JobId>,
    parent: Option<JobId>,
    job_type: Option<JobType>,
    causal_depth: u32,
    data_source: Option<DataSource>,
    node: NodeId,
    timestamp: Instant,
}

impl Envelope {
    fn apply<P: Send + Sync + 'static>(&self, mut builder: EventBuilder<P>) -> EventBuilder<P> {
        if let Some(id) = self.correlation {
            builder = builder.correlation_id(id);
        }
        if let Some(id) = self.parent {
            builder = builder.parent_id(id);
        }
        if let Some(job_type) = self.job_type {
            builder = builder.job_type(job_type);
        }
        if let Some(source) = self.data_source {
            builder = builder.data_source(source);
        }
        builder
            .causal_depth(self.causal_depth)
            .timestamp(self.timestamp)
            .remote_node(self.node.as_u64())
    }
}

/// Local ids for the jobs of other nodes, so that their events carry a [`JobId`] here.
struct Aliases {
    capacity: usize,
    by_wire: HashMap<WireJobId, JobId>,
    by_local: HashMap<JobId, WireJobId>,
    order: VecDeque<WireJobId>,
}

impl Aliases {
    fn local(&mut self, wire: WireJobId) -> JobId {
        if let Some(&id) = self.by_wire.get(&wire) {
            return id;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                if let Some(id) = self.by_wire.remove(&old) {
                    self.by_local.remove(&id);
                }
            }
        }
        let id = JobId::next();
        self.by_wire.insert(wire, id);
        self.by_local.insert(id, wire);
        self.order.push_back(wire);
        id
    }
}

/// The wire names of a process's job types and event payloads, and the codec they give.
///
/// Each process that exchanges jobs or events registers the same types under the same names:
/// a wire name is a stable string chosen by the application (`"billing.charge"`), never
/// `type_name`, which changes with the crate's layout. Names and types map one to one.
///
/// - Jobs ([`register_job`](Self::register_job)) and their outputs are encoded with serde as
///   JSON values in a [`JobRequest`] or a [`JobOutcome`](crate::JobOutcome).
/// - Events ([`register_event`](Self::register_event)) keep their correlation id (as a
///   [`WireJobId`]), parent, job type (by wire name), causal depth and data source, and say
///   which node published them. An event whose payload type is not registered stays local:
///   [`encode_event`](Self::encode_event) returns `None` for it.
/// - Job ids of other nodes get a local alias (a fresh [`JobId`]) the first time one of their
///   events is decoded, so that local orchestrators and observers can correlate them; the
///   alias maps back to the foreign id when an event is encoded again. The registry keeps the
///   most recent [`DEFAULT_ALIASES`] aliases (see [`with_alias_capacity`](Self::with_alias_capacity)).
///
/// ```
/// use orchestrator_core::{Event, Job, JobId, JobType};
/// use orchestrator_core::runtime::Instant;
/// use orchestrator_remote::{NodeId, Registry};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Charge { cents: u64 }
/// impl Job for Charge {
///     type Output = String;
/// }
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Charged { cents: u64 }
///
/// let mut billing = Registry::new(NodeId::new(1));
/// billing.register_job::<Charge>("billing.charge")?.register_event::<Charged>("billing.charged")?;
/// let mut shop = Registry::new(NodeId::new(2));
/// shop.register_job::<Charge>("billing.charge")?.register_event::<Charged>("billing.charged")?;
///
/// // An event of job 7 on node 1 ...
/// let job = JobId::next();
/// let event = Event::builder(Charged { cents: 250 })
///     .correlation_id(job)
///     .job_type(JobType::of::<Charge>())
///     .causal_depth(1)
///     .build();
/// let wire = billing.encode_event(&event)?.expect("a registered payload");
/// assert_eq!(wire.name, "billing.charged");
///
/// // ... as node 2 sees it.
/// let seen = shop.decode_event(&wire, Instant::ZERO)?;
/// assert_eq!(seen.downcast_ref::<Charged>(), Some(&Charged { cents: 250 }));
/// assert!(seen.is_from_job::<Charge>());
/// assert_eq!((seen.causal_depth(), seen.remote_node()), (1, Some(1)));
/// let alias = seen.correlation_id().unwrap(); // a local id for node 1's job
/// assert_eq!(shop.wire_id(alias).job, job.as_u64());
///
/// // Unregistered payloads stay local.
/// assert!(billing.encode_event(&Event::new("a string"))?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Registry {
    node: NodeId,
    incarnation: u64,
    jobs: HashMap<String, JobEntry>,
    /// Job type names (`type_name`) to wire names.
    job_names: HashMap<&'static str, String>,
    events: HashMap<String, Arc<EventEntry>>,
    event_types: HashMap<TypeId, Arc<EventEntry>>,
    aliases: Mutex<Aliases>,
}

impl Registry {
    /// An empty registry for the process `node`.
    pub fn new(node: NodeId) -> Self {
        Self::with_alias_capacity(node, DEFAULT_ALIASES)
    }

    /// An empty registry that keeps at most `capacity` aliases of foreign job ids (at least
    /// one).
    pub fn with_alias_capacity(node: NodeId, capacity: usize) -> Self {
        Self {
            node,
            incarnation: crate::id::random_u64(),
            jobs: HashMap::new(),
            job_names: HashMap::new(),
            events: HashMap::new(),
            event_types: HashMap::new(),
            aliases: Mutex::new(Aliases {
                capacity: capacity.max(1),
                by_wire: HashMap::new(),
                by_local: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Returns this process's node id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Returns this registry's incarnation: random 64 bits drawn when it was made, carried in
    /// the [`WireJobId`] of every job it encodes. Two processes with the same node id (one
    /// restarted after the other) have different incarnations, so neither takes the other's
    /// jobs for its own. Share one registry per process.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Returns `true` if `wire` is a job of this node's previous runs (the same node id, another
    /// incarnation): something a restarted process must not take for its own.
    pub fn is_earlier_run(&self, wire: WireJobId) -> bool {
        wire.is_earlier_run_of(self.node, self.incarnation)
    }

    fn check_name(&self, name: &str) -> Result<(), RegistryError> {
        if name.is_empty() {
            return Err(RegistryError::EmptyName);
        }
        Ok(())
    }

    /// Registers job type `J` under `name`; returns `self` for chaining.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] if `name` is empty or another job type's, or `J` already has a name.
    pub fn register_job<J>(&mut self, name: impl Into<String>) -> Result<&mut Self, RegistryError>
    where
        J: Job + Serialize + DeserializeOwned,
        J::Output: Serialize + DeserializeOwned,
    {
        let name = name.into();
        self.check_name(&name)?;
        let type_name = core::any::type_name::<J>();
        if let Some(existing) = self.jobs.get(&name) {
            if existing.type_id == TypeId::of::<J>() {
                return Ok(self);
            }
            return Err(RegistryError::NameTaken {
                name,
                by: existing.job_type.name(),
            });
        }
        if let Some(as_name) = self.job_names.get(type_name) {
            return Err(RegistryError::AlreadyRegistered {
                ty: type_name,
                as_name: as_name.clone(),
            });
        }
        self.job_names.insert(type_name, name.clone());
        self.jobs.insert(
            name,
            JobEntry {
                type_id: TypeId::of::<J>(),
                job_type: JobType::of::<J>(),
            },
        );
        Ok(self)
    }

    /// Registers event payload type `P` under `name`; returns `self` for chaining.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] if `name` is empty or another payload type's, or `P` already has a
    /// name.
    pub fn register_event<P>(&mut self, name: impl Into<String>) -> Result<&mut Self, RegistryError>
    where
        P: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let name = name.into();
        self.check_name(&name)?;
        let type_name = core::any::type_name::<P>();
        if let Some(existing) = self.events.get(&name) {
            if existing.type_name == type_name {
                return Ok(self);
            }
            return Err(RegistryError::NameTaken {
                name,
                by: existing.type_name,
            });
        }
        if let Some(existing) = self.event_types.get(&TypeId::of::<P>()) {
            return Err(RegistryError::AlreadyRegistered {
                ty: type_name,
                as_name: existing.name.clone(),
            });
        }
        let entry = Arc::new(EventEntry {
            name: name.clone(),
            type_name,
            encode: Box::new(|event: &Event| event.downcast_ref::<P>().map(serde_json::to_value)),
            decode: Box::new(|value, envelope| {
                let payload: P = serde_json::from_value(value)?;
                Ok(envelope.apply(Event::builder(payload)).build())
            }),
            emit: Box::new(|value, cx| {
                let payload: P = serde_json::from_value(value)?;
                Ok(cx.emit(payload).is_ok())
            }),
        });
        self.events.insert(name, entry.clone());
        self.event_types.insert(TypeId::of::<P>(), entry);
        Ok(self)
    }

    /// Returns the wire name of job type `J`.
    pub fn job_name<J: Job>(&self) -> Option<&str> {
        self.job_names
            .get(core::any::type_name::<J>())
            .map(String::as_str)
    }

    /// Returns the wire name of event payload type `P`.
    pub fn event_name<P: 'static>(&self) -> Option<&str> {
        self.event_types
            .get(&TypeId::of::<P>())
            .map(|e| e.name.as_str())
    }

    /// Encodes attempt `attempt` of `job` (local id `id`) for a worker; `deadline` is the time
    /// left before the dispatcher's deadline, if it has one.
    ///
    /// # Errors
    ///
    /// [`CodecError::Unregistered`] if `J` has no wire name; [`CodecError::Serde`].
    pub fn encode_job<J: Job + Serialize>(
        &self,
        id: JobId,
        job: &J,
        attempt: u32,
        deadline: Option<Duration>,
    ) -> Result<JobRequest, CodecError> {
        let name = self
            .job_name::<J>()
            .ok_or(CodecError::Unregistered(core::any::type_name::<J>()))?;
        Ok(JobRequest {
            id: self.wire_id(id),
            job_type: name.to_owned(),
            attempt,
            deadline_unix_ms: deadline.map(|left| unix_ms(wall_now() + left)),
            payload: serde_json::to_value(job)?,
            handed_back: 0,
        })
    }

    /// Decodes the job of `request` as a `J`.
    ///
    /// # Errors
    ///
    /// [`CodecError::UnknownName`], [`CodecError::WrongType`] if the request is another job
    /// type's, [`CodecError::Serde`].
    pub fn decode_job<J: Job + DeserializeOwned>(
        &self,
        request: &JobRequest,
    ) -> Result<J, CodecError> {
        self.check_job::<J>(&request.job_type)?;
        Ok(J::deserialize(&request.payload)?)
    }

    fn check_job<J: Job>(&self, name: &str) -> Result<(), CodecError> {
        let entry = self
            .jobs
            .get(name)
            .ok_or_else(|| CodecError::UnknownName(name.to_owned()))?;
        if entry.type_id != TypeId::of::<J>() {
            return Err(CodecError::WrongType {
                name: name.to_owned(),
                expected: core::any::type_name::<J>(),
            });
        }
        Ok(())
    }

    /// Encodes an output of job type `J`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Serde`].
    pub fn encode_output<J: Job>(&self, output: &J::Output) -> Result<Value, CodecError>
    where
        J::Output: Serialize,
    {
        Ok(serde_json::to_value(output)?)
    }

    /// Decodes an output of job type `J`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Serde`].
    pub fn decode_output<J: Job>(&self, output: &Value) -> Result<J::Output, CodecError>
    where
        J::Output: DeserializeOwned,
    {
        Ok(<J::Output>::deserialize(output)?)
    }

    /// Encodes `event` for the other nodes, or returns `None` if its payload type has no wire
    /// name (it stays local).
    ///
    /// # Errors
    ///
    /// [`CodecError::Serde`] if the payload cannot be encoded.
    pub fn encode_event(&self, event: &Event) -> Result<Option<WireEvent>, CodecError> {
        let Some(entry) = self.event_types.get(&event.payload_type_id()) else {
            return Ok(None);
        };
        let Some(payload) = (entry.encode)(event) else {
            return Ok(None);
        };
        Ok(Some(WireEvent {
            name: entry.name.clone(),
            payload: payload?,
            correlation: event.correlation_id().map(|id| self.wire_id(id)),
            parent: event.parent_id().map(|id| self.wire_id(id)),
            job_type: event
                .job_type()
                .and_then(|t| self.job_names.get(t.name()).cloned()),
            causal_depth: event.causal_depth(),
            data_source: event.data_source(),
            node: self.node,
        }))
    }

    /// Rebuilds an event another node published, stamped `now` on the local clock and marked
    /// with its node ([`Event::remote_node`]). Its correlation and parent ids are local: this
    /// node's own jobs keep their ids, other nodes' get an alias. Its job type is known if it
    /// is registered here.
    ///
    /// # Errors
    ///
    /// [`CodecError::UnknownName`] if its payload type is not registered here;
    /// [`CodecError::Serde`] if the payload does not decode.
    pub fn decode_event(&self, wire: &WireEvent, now: Instant) -> Result<Event, CodecError> {
        let entry = self
            .events
            .get(&wire.name)
            .ok_or_else(|| CodecError::UnknownName(wire.name.clone()))?;
        let envelope = Envelope {
            correlation: wire.correlation.map(|id| self.local_id(id)),
            parent: wire.parent.map(|id| self.local_id(id)),
            job_type: wire
                .job_type
                .as_ref()
                .and_then(|name| self.jobs.get(name))
                .map(|e| e.job_type),
            causal_depth: wire.causal_depth,
            data_source: wire.data_source,
            node: wire.node,
            timestamp: now,
        };
        Ok((entry.decode)(wire.payload.clone(), &envelope)?)
    }

    /// Emits the payload of `wire` as an event of the running job behind `cx`
    /// ([`JobContext::emit`]): how the events a job's executor emitted in another process
    /// become the job's own events here (its correlation id, job type and causal depth are
    /// the local job's). Returns `false` if the job had already ended (the event is dropped).
    ///
    /// # Errors
    ///
    /// [`CodecError::UnknownName`] if the payload type is not registered here;
    /// [`CodecError::Serde`] if the payload does not decode.
    pub fn emit_in(&self, wire: &WireEvent, cx: &JobContext) -> Result<bool, CodecError> {
        let entry = self
            .events
            .get(&wire.name)
            .ok_or_else(|| CodecError::UnknownName(wire.name.clone()))?;
        Ok((entry.emit)(wire.payload.clone(), cx)?)
    }

    /// Returns the wire id of local job id `id`: this node's job, or the foreign job it is an
    /// alias of.
    pub fn wire_id(&self, id: JobId) -> WireJobId {
        let aliases = self.aliases.lock().unwrap_or_else(PoisonError::into_inner);
        match aliases.by_local.get(&id) {
            Some(&wire) => wire,
            None => WireJobId::new(self.node, self.incarnation, id),
        }
    }

    /// Returns the local job id of `wire`: this process's job id, or an alias for another
    /// node's job (or for a job of this node's previous runs).
    pub fn local_id(&self, wire: WireJobId) -> JobId {
        if let Some(id) = wire.local_to(self.node, self.incarnation) {
            return id;
        }
        self.aliases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .local(wire)
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut jobs: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
        let mut events: Vec<&str> = self.events.keys().map(String::as_str).collect();
        jobs.sort_unstable();
        events.sort_unstable();
        f.debug_struct("Registry")
            .field("node", &self.node)
            .field("incarnation", &format_args!("{:016x}", self.incarnation))
            .field("jobs", &jobs)
            .field("events", &events)
            .finish_non_exhaustive()
    }
}

/// The wall clock: `SystemTime::now()`, or in a browser (where that panics) `Date.now()`.
fn wall_now() -> SystemTime {
    #[cfg(target_arch = "wasm32")]
    {
        UNIX_EPOCH + Duration::from_millis(js_sys::Date::now() as u64)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        SystemTime::now()
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Returns `true` if a request's deadline (milliseconds since the Unix epoch) has passed on
/// this machine's clock.
///
/// ```
/// use orchestrator_remote::is_stale;
/// assert!(is_stale(Some(1)));  // 1970
/// assert!(!is_stale(None));    // no deadline
/// assert!(!is_stale(Some(u64::MAX)));
/// ```
pub fn is_stale(deadline_unix_ms: Option<u64>) -> bool {
    deadline_unix_ms.is_some_and(|deadline| unix_ms(wall_now()) >= deadline)
}
