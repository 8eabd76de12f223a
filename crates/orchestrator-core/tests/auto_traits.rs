//! The public types and futures are `Send`/`Sync` where a multi-threaded runtime needs them.

use orchestrator_core::runtime::{
    Instant, PoolRuntime, RunPool, SpawnError, TaskPool, TickTimer, Ticks,
};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    CancellationToken, DataSource, Dispatcher, DropReason, DroppedEvent, EmitError, Event, Failure,
    Handled, Job, JobBuilder, JobContext, JobError, JobHandle, JobId, JobLifecycle, LoopGuard,
    OnEvent, OrchestratorError, OrchestratorGroup, OrchestratorHandle, OrchestratorStatus,
    Progress, ProgressStream, PublishError, RetryPolicy, Shutdown, ShutdownReport, SignalBus,
    StateStream, Subscription, Success, TypedEvent, TypedSubscription,
};

struct Noop;
impl Job for Noop {
    type Output = ();
}

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn unpin<T: Unpin>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Dispatcher>();
    send_sync::<JobHandle<String>>();
    send_sync::<JobContext>();
    send_sync::<JobId>();
    send::<JobBuilder<'static, Noop>>();
    send_sync::<JobError>();
    send_sync::<Failure>();
    send_sync::<Success<String>>();
    send_sync::<DataSource>();
    send_sync::<CancellationToken>();
    send_sync::<RetryPolicy>();
    send_sync::<Progress>();
    send_sync::<ProgressStream>();
    send_sync::<Instant>();
    send_sync::<TaskPool>();
    send_sync::<RunPool>();
    send_sync::<PoolRuntime<VirtualRuntime>>();
    send_sync::<PoolRuntime<TickTimer>>();
    send_sync::<Ticks>();
    send_sync::<VirtualRuntime>();
    send::<SpawnError>();
    send_sync::<Event>();
    send_sync::<SignalBus>();
    send_sync::<Subscription>();
    send_sync::<TypedSubscription<u32>>();
    send_sync::<TypedEvent<u32>>();
    send_sync::<PublishError>();
    send_sync::<EmitError>();
    send_sync::<JobLifecycle>();
    send_sync::<OrchestratorHandle<Vec<u8>>>();
    send_sync::<StateStream<Vec<u8>>>();
    send_sync::<OnEvent<u32>>();
    send_sync::<OrchestratorError>();
    send_sync::<OrchestratorGroup>();
    send_sync::<LoopGuard>();
    send_sync::<DropReason>();
    send_sync::<DroppedEvent<'static>>();
    send_sync::<OrchestratorStatus>();
    send_sync::<ShutdownReport>();
    send_sync::<orchestrator_core::AsyncState<u32, JobError>>();
    send_sync::<orchestrator_core::JobResult<u32>>();
    send::<orchestrator_core::Saga<'static, JobError>>();
    send::<orchestrator_core::RollbackReport<JobError>>();
    send::<orchestrator_core::StepError<JobError>>();
    send_sync::<orchestrator_core::CachePolicy>();
    send_sync::<orchestrator_core::InMemoryCache>();
    send_sync::<orchestrator_core::BreakerConfig>();
}

#[test]
fn futures_are_send_and_handles_unpin() {
    let token = CancellationToken::new();
    fn is_send<F: Send>(_: &F) {}
    is_send(&token.cancelled());
    unpin::<JobHandle<String>>();
    unpin::<ProgressStream>();
    unpin::<Subscription>();
    unpin::<StateStream<u8>>();
    is_send(&token.cancelled_owned());
    send::<Handled>();
    send::<Shutdown>();
}
