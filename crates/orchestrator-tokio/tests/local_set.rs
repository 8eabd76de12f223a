//! The conformance suite on a tokio `LocalSet` (current-thread runtime), in both flavours:
//! `Send` executors and orchestrators, then local ones (neither `Send` nor `Sync`, futures not
//! `Send`); and the runtime's own edges.

use std::sync::Arc;

use orchestrator_core::runtime::{LocalSpawn, LocalTask, Spawn, Task};
use orchestrator_tokio::LocalSetRuntime;
use tokio::task::LocalSet;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

mod threaded {
    use super::*;
    orchestrator_core::conformance_suite!(|case| {
        let local = LocalSet::new();
        let runtime = LocalSetRuntime::new(&local);
        local.block_on(&current_thread(), case(Arc::new(runtime)));
    });
}

mod local {
    use super::*;
    orchestrator_core::conformance_suite!(
        local | case | {
            let local = LocalSet::new();
            let runtime = LocalSetRuntime::new(&local);
            local.block_on(&current_thread(), case(Arc::new(runtime)));
        }
    );
}

#[test]
fn other_threads_spawn_send_tasks_only_and_a_dropped_set_refuses_everything() {
    let rt = current_thread();
    let local = LocalSet::new();
    let runtime = LocalSetRuntime::new(&local);
    let (sent, local_refused) = std::thread::scope(|s| {
        s.spawn(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let sent = runtime.spawn(Task::new(async move { tx.send(7).unwrap() }));
            let refused = runtime.spawn_local(LocalTask::new(async {})).unwrap_err();
            (sent.map(|()| rx), refused.kind())
        })
        .join()
        .unwrap()
    });
    assert!(local_refused.is_no_runtime(), "not the set's thread");
    let rx = sent.expect("a Send task is accepted from any thread");
    local.block_on(&rt, async {
        while rx.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
    });
    drop(local);
    assert!(
        runtime
            .spawn(Task::new(async {}))
            .unwrap_err()
            .kind()
            .is_shutdown()
    );
    let refused = runtime.spawn_local(LocalTask::new(async {})).unwrap_err();
    assert!(refused.kind().is_shutdown());
}
