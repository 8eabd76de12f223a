//! The host stand-in for a microcontroller: one embassy std executor on its own thread, and a
//! way to run a future on it from a test thread.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::{OnceLock, mpsc};
use std::task::{Context, Poll};

use embassy_executor::{Executor, SendSpawner};
use orchestrator_core::runtime::{Spawn, Task};
use orchestrator_embassy::EmbassyRuntime;

/// The spawner of the test binary's executor, started on first use.
pub(crate) fn spawner() -> SendSpawner {
    static SPAWNER: OnceLock<SendSpawner> = OnceLock::new();
    *SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("embassy-executor".into())
            .spawn(move || {
                let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
                executor.run(|spawner| tx.send(spawner.make_send()).expect("test thread gone"))
            })
            .expect("spawn the executor thread");
        rx.recv().expect("the executor thread started")
    })
}

/// Polls the inner future, turning a panic into an output (so that a failing case does not
/// unwind through, and stop, the shared executor).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Runs `future` as an embassy task spawned through `rt`, blocks until it finishes, and
/// re-raises its panic on the calling thread.
pub(crate) fn run_on_executor<F>(rt: &EmbassyRuntime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let caught = CatchUnwind(Box::pin(future));
    rt.spawn(Task::new(async move {
        let _ = tx.send(caught.await);
    }))
    .expect("a slot for the test's own task");
    match rx.recv().expect("the test's task finished") {
        Ok(out) => out,
        Err(panic) => resume_unwind(panic),
    }
}
