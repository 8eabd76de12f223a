//! The wire model: registrations, the job and event codecs, ids across nodes, errors.

use orchestrator_core::runtime::Instant;
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    DataSource, Dispatch, Dispatcher, Event, Executor, Job, JobContext, JobId, JobType,
};
use orchestrator_remote::{
    CodecError, JobOutcome, JobRequest, NodeId, ProgressReport, Registry, RegistryError, WireError,
    WireEvent, WireJobId, is_stale,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Charge {
    cents: u64,
}
impl Job for Charge {
    type Output = Receipt;
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: String,
}
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Refund {
    cents: u64,
}
impl Job for Refund {
    type Output = ();
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Charged {
    cents: u64,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Audit(String);

fn registry(node: u64) -> Registry {
    let mut r = Registry::new(NodeId::new(node));
    r.register_job::<Charge>("billing.charge")
        .unwrap()
        .register_job::<Refund>("billing.refund")
        .unwrap()
        .register_event::<Charged>("billing.charged")
        .unwrap();
    r
}

#[test]
fn names_and_types_map_one_to_one() {
    let mut r = registry(1);
    // The same registration twice is harmless.
    assert!(r.register_job::<Charge>("billing.charge").is_ok());
    assert!(r.register_event::<Charged>("billing.charged").is_ok());
    assert_eq!(
        r.register_job::<Refund>("billing.charge").unwrap_err(),
        RegistryError::NameTaken {
            name: "billing.charge".into(),
            by: std::any::type_name::<Charge>(),
        }
    );
    assert!(matches!(
        r.register_job::<Charge>("billing.charge.v2"),
        Err(RegistryError::AlreadyRegistered { .. })
    ));
    assert!(matches!(
        r.register_event::<Audit>("billing.charged"),
        Err(RegistryError::NameTaken { .. })
    ));
    assert_eq!(
        r.register_event::<Audit>("").unwrap_err(),
        RegistryError::EmptyName
    );
    assert_eq!(r.job_name::<Charge>(), Some("billing.charge"));
    assert_eq!(r.event_name::<Charged>(), Some("billing.charged"));
    assert_eq!(r.event_name::<Audit>(), None);
    let shown = format!("{r:?}");
    assert!(
        shown.contains("billing.refund") && shown.contains("billing.charged"),
        "{shown}"
    );
}

#[test]
fn a_job_and_its_outcome_cross_and_come_back_to_their_handle() {
    let (shop, worker) = (registry(1), registry(2));
    let id = JobId::next();
    let request = shop
        .encode_job(
            id,
            &Charge { cents: 250 },
            2,
            Some(std::time::Duration::from_secs(60)),
        )
        .unwrap();
    assert_eq!(
        request.id,
        WireJobId::new(NodeId::new(1), shop.incarnation(), id)
    );
    assert!(!is_stale(request.deadline_unix_ms));
    let received = JobRequest::from_bytes(&request.to_bytes().unwrap()).unwrap();
    assert_eq!(received, request);
    assert_eq!(
        worker.decode_job::<Charge>(&received).unwrap(),
        Charge { cents: 250 }
    );
    // Asked as another job type, or under an unknown name: an error, not a panic.
    assert!(matches!(
        worker.decode_job::<Refund>(&received),
        Err(CodecError::WrongType { .. })
    ));
    let unknown = JobRequest {
        job_type: "billing.void".into(),
        ..received.clone()
    };
    assert!(matches!(
        worker.decode_job::<Charge>(&unknown),
        Err(CodecError::UnknownName(name)) if name == "billing.void"
    ));
    let garbage = JobRequest {
        payload: serde_json::json!({"cents": "lots"}),
        ..received.clone()
    };
    assert!(matches!(
        worker.decode_job::<Charge>(&garbage),
        Err(CodecError::Serde(_))
    ));

    let receipt = Receipt { id: "r-1".into() };
    let outcome = JobOutcome {
        id: received.id,
        attempt: received.attempt,
        result: Ok(worker.encode_output::<Charge>(&receipt).unwrap()),
    };
    let back = JobOutcome::from_bytes(&outcome.to_bytes().unwrap()).unwrap();
    assert_eq!(back.id.local_to(shop.node(), shop.incarnation()), Some(id));
    assert_eq!(back.attempt, 2);
    let value = back.result.unwrap();
    assert_eq!(shop.decode_output::<Charge>(&value).unwrap(), receipt);
    assert!(matches!(
        shop.decode_output::<Charge>(&serde_json::json!(3)),
        Err(CodecError::Serde(_))
    ));
    // An unregistered job type cannot be sent.
    #[derive(Serialize)]
    struct Local;
    impl Job for Local {
        type Output = ();
    }
    assert!(matches!(
        shop.encode_job(JobId::next(), &Local, 1, None),
        Err(CodecError::Unregistered(_))
    ));
    assert!(JobOutcome::from_bytes(b"{not json").is_err());
}

#[test]
fn progress_and_errors_cross() {
    let id = WireJobId::new(NodeId::new(3), 1, JobId::next());
    let report = ProgressReport {
        id,
        progress: orchestrator_core::Progress::new(0.5)
            .with_message("halfway")
            .with_step(2, 4),
    };
    let back = ProgressReport::from_bytes(&report.to_bytes().unwrap()).unwrap();
    assert_eq!(back, report);

    #[derive(Debug)]
    struct Io;
    impl std::fmt::Display for Io {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection reset")
        }
    }
    impl std::error::Error for Io {}
    #[derive(Debug)]
    struct Upload(Io);
    impl std::fmt::Display for Upload {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("upload failed")
        }
    }
    impl std::error::Error for Upload {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let wire = WireError::from_error(&Upload(Io), false);
    assert_eq!(wire.message(), "upload failed: connection reset");
    assert!(!wire.is_retryable());
}

#[test]
fn events_keep_their_envelope_and_ids_round_trip_through_aliases() {
    let (billing, shop) = (registry(1), registry(2));
    let job = JobId::next();
    let parent = JobId::next();
    let event = Event::builder(Charged { cents: 9 })
        .correlation_id(job)
        .parent_id(parent)
        .job_type(JobType::of::<Charge>())
        .data_source(DataSource::Cached)
        .causal_depth(3)
        .build();
    let wire = billing.encode_event(&event).unwrap().unwrap();
    assert_eq!(
        (
            wire.name.as_str(),
            wire.job_type.as_deref(),
            wire.causal_depth
        ),
        ("billing.charged", Some("billing.charge"), 3)
    );
    let wire = WireEvent::from_bytes(&wire.to_bytes().unwrap()).unwrap();
    let at = Instant::from_elapsed(std::time::Duration::from_secs(5));
    let seen = shop.decode_event(&wire, at).unwrap();
    assert_eq!(seen.downcast_ref::<Charged>(), Some(&Charged { cents: 9 }));
    assert_eq!(seen.remote_node(), Some(1));
    assert_eq!(seen.timestamp(), at);
    assert_eq!(seen.data_source(), Some(DataSource::Cached));
    assert!(seen.is_from_job::<Charge>());
    let (alias, parent_alias) = (seen.correlation_id().unwrap(), seen.parent_id().unwrap());
    assert_ne!(alias, job, "a local alias, not node 1's number");
    // The same foreign job gets the same alias.
    let again = shop.decode_event(&wire, at).unwrap();
    assert_eq!(again.correlation_id(), Some(alias));
    // Encoded again on node 2 (an event of node 1's job), it names node 1's job ...
    let relayed = Event::builder(Charged { cents: 9 })
        .correlation_id(alias)
        .parent_id(parent_alias)
        .build();
    let relayed = shop.encode_event(&relayed).unwrap().unwrap();
    assert_eq!(
        relayed.correlation,
        Some(WireJobId::new(NodeId::new(1), billing.incarnation(), job))
    );
    // ... which node 1 decodes to its own id.
    let home = billing.decode_event(&relayed, at).unwrap();
    assert_eq!(
        (home.correlation_id(), home.parent_id()),
        (Some(job), Some(parent))
    );

    // Unknown names and bad payloads are errors; unregistered payloads stay local.
    let unknown = WireEvent {
        name: "billing.voided".into(),
        ..wire.clone()
    };
    assert!(matches!(
        shop.decode_event(&unknown, at),
        Err(CodecError::UnknownName(_))
    ));
    let bad = WireEvent {
        payload: serde_json::json!("nine"),
        ..wire
    };
    assert!(matches!(
        shop.decode_event(&bad, at),
        Err(CodecError::Serde(_))
    ));
    assert!(
        billing
            .encode_event(&Event::new(Audit("x".into())))
            .unwrap()
            .is_none()
    );
}

#[test]
fn aliases_are_bounded_and_the_oldest_goes_first() {
    let r = Registry::with_alias_capacity(NodeId::new(1), 2);
    let foreign = |n| WireJobId {
        node: NodeId::new(9),
        incarnation: 1,
        job: n,
    };
    let a = r.local_id(foreign(1));
    let b = r.local_id(foreign(2));
    assert_eq!(r.local_id(foreign(1)), a);
    let c = r.local_id(foreign(3)); // evicts job 1's alias
    assert_eq!((r.wire_id(b), r.wire_id(c)), (foreign(2), foreign(3)));
    let here = |id| WireJobId::new(NodeId::new(1), r.incarnation(), id);
    assert_eq!(r.wire_id(a), here(a), "forgotten");
    assert_ne!(r.local_id(foreign(1)), a, "a new alias");
    // This node's own ids are never aliased.
    let own = JobId::next();
    assert_eq!(r.local_id(here(own)), own);
}

/// A process restarted with the same node id (a new registry) never takes a job of its
/// previous run for its own, though the job ids collide: job ids start again in every process.
#[test]
fn a_restarted_node_tells_its_previous_runs_jobs_from_its_own() {
    let before = Registry::new(NodeId::new(7));
    let after = Registry::new(NodeId::new(7));
    assert_ne!(before.incarnation(), after.incarnation());
    let id = JobId::next();
    let old = before.wire_id(id); // the same number the new process may give its next job
    assert!(after.is_earlier_run(old));
    assert!(!before.is_earlier_run(old));
    assert_eq!(old.local_to(NodeId::new(7), after.incarnation()), None);
    // Its events get an alias in the new process, not the new process's job with that number.
    assert_ne!(after.local_id(old), id);
    assert_eq!(after.wire_id(after.local_id(old)), old);
    // Another node's job is not an earlier run of this one.
    assert!(!after.is_earlier_run(Registry::new(NodeId::new(8)).wire_id(id)));
}

/// Two dispatchers (two "processes") joined by hand through the wire form: a job's output
/// event on one reaches the other's bus with its envelope, marked as remote.
#[test]
fn a_job_event_reaches_another_process_bus() {
    struct Biller;
    impl Executor<Charge> for Biller {
        type Error = std::convert::Infallible;
        async fn execute(&self, job: &Charge, cx: JobContext) -> Result<Receipt, Self::Error> {
            cx.emit(Charged { cents: job.cents }).unwrap();
            Ok(Receipt { id: "r".into() })
        }
    }
    let rt = VirtualRuntime::new();
    let (here, there) = (Dispatcher::new(rt.clone()), Dispatcher::new(rt.clone()));
    let (billing, shop) = (registry(1), registry(2));
    here.register(Biller);
    let mut outbound = here.bus().subscribe();
    let mut inbound = there.bus().subscribe();
    let handle = here.dispatch(Charge { cents: 42 });
    let id = handle.id();
    rt.block_on(handle).unwrap();
    let mut crossed = 0;
    while let Some(event) = outbound.try_next() {
        if let Some(wire) = billing.encode_event(&event).unwrap() {
            let bytes = wire.to_bytes().unwrap();
            let decoded = shop
                .decode_event(
                    &WireEvent::from_bytes(&bytes).unwrap(),
                    orchestrator_core::runtime::Timer::now(&rt),
                )
                .unwrap();
            there.bus().publish(decoded).unwrap();
            crossed += 1;
        }
    }
    assert_eq!(crossed, 1, "only the registered payload crosses");
    let seen = inbound.try_next().expect("published on the other bus");
    assert_eq!(seen.downcast_ref::<Charged>(), Some(&Charged { cents: 42 }));
    assert!(seen.is_from_job::<Charge>());
    assert_eq!(seen.remote_node(), Some(1));
    assert_eq!(
        shop.wire_id(seen.correlation_id().unwrap()),
        billing.wire_id(id)
    );
    assert!(inbound.try_next().is_none());
}
