//! The public types and futures are `Send`/`Sync` where a multi-threaded runtime needs them.

use orchestrator_core::runtime::{Instant, PoolRuntime, RunPool, SpawnError, TaskPool};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    CancellationToken, DataSource, Dispatcher, Failure, JobContext, JobError, JobHandle, JobId,
    JobOptions, Progress, ProgressStream, RetryPolicy, Success,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn unpin<T: Unpin>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Dispatcher>();
    send_sync::<JobHandle<String>>();
    send_sync::<JobContext>();
    send_sync::<JobId>();
    send_sync::<JobOptions>();
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
    send_sync::<VirtualRuntime>();
    send::<SpawnError>();
}

#[test]
fn futures_are_send_and_handles_unpin() {
    let token = CancellationToken::new();
    fn is_send<F: Send>(_: &F) {}
    is_send(&token.cancelled());
    unpin::<JobHandle<String>>();
    unpin::<ProgressStream>();
}
