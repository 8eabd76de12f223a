//! Writes a job timeline of a small run, on tokio: an order service whose orchestrator checks
//! stock, charges (retried once: a flaky payment provider) and ships, while a report job fails
//! and a slow import is cancelled. Two files come out, for the same run:
//!
//! - `target/timeline/trace.json`: a Chrome trace; open it in <https://ui.perfetto.dev> or
//!   `chrome://tracing`;
//! - `target/timeline/timeline.html`: the same timeline as a page, with nothing to fetch.
//!
//! ```text
//! cargo run -p orchestrator-timeline --example timeline
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use orchestrator_core::{
    CancellationToken, Dispatch, Dispatcher, Executor, Job, JobContext, RetryPolicy,
};
use orchestrator_timeline::Timeline;
use orchestrator_tokio::TokioRuntime;

#[derive(Debug)]
struct Failure(&'static str);
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Failure {}

/// The order's events: what each step's success tells the rest of the application.
#[derive(Debug)]
struct InStock;
#[derive(Debug)]
struct Charged;
#[derive(Debug)]
struct Shipped;

struct CheckStock;
impl Job for CheckStock {
    type Output = ();
    fn output_event(&self, (): &()) -> Option<impl Send + Sync + 'static> {
        Some(InStock)
    }
}
struct Charge;
impl Job for Charge {
    type Output = ();
    fn output_event(&self, (): &()) -> Option<impl Send + Sync + 'static> {
        Some(Charged)
    }
}
struct Ship;
impl Job for Ship {
    type Output = ();
    fn output_event(&self, (): &()) -> Option<impl Send + Sync + 'static> {
        Some(Shipped)
    }
}
struct Report;
impl Job for Report {
    type Output = ();
}
struct Import;
impl Job for Import {
    type Output = ();
}

/// Sleeps `ms`, then fails the first `fail` attempts.
struct Work {
    ms: u64,
    fail: u32,
    calls: AtomicU32,
}
impl Work {
    fn new(ms: u64, fail: u32) -> Self {
        Self {
            ms,
            fail,
            calls: AtomicU32::new(0),
        }
    }
    async fn run(&self, cx: &JobContext) -> Result<(), Failure> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        cx.sleep(Duration::from_millis(self.ms)).await;
        if call <= self.fail {
            Err(Failure("provider busy"))
        } else {
            Ok(())
        }
    }
}
macro_rules! executor {
    ($job:ty) => {
        impl Executor<$job> for Work {
            type Error = Failure;
            async fn execute(&self, _: &$job, cx: JobContext) -> Result<(), Failure> {
                self.run(&cx).await
            }
        }
    };
}
executor!(CheckStock);
executor!(Charge);
executor!(Ship);
executor!(Import);

struct Reporter;
impl Executor<Report> for Reporter {
    type Error = Failure;
    async fn execute(&self, _: &Report, cx: JobContext) -> Result<(), Failure> {
        cx.sleep(Duration::from_millis(15)).await;
        Err(Failure("no data for the period"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let timeline = Timeline::new();
    let dispatcher = Dispatcher::builder(TokioRuntime::default())
        .observer(timeline.observer())
        .build();
    dispatcher.register::<CheckStock, _>(Work::new(20, 0));
    dispatcher.register::<Charge, _>(Work::new(10, 1));
    dispatcher.register::<Ship, _>(Work::new(25, 0));
    dispatcher.register::<Import, _>(Work::new(10_000, 0));
    dispatcher.register(Reporter);

    timeline.state("order", &"placed");
    let token = CancellationToken::new();
    let import = dispatcher
        .job(Import)
        .cancellation(token.clone())
        .dispatch();
    let report = dispatcher.dispatch(Report);
    dispatcher.dispatch(CheckStock).await?;
    timeline.state("order", &"in stock");
    dispatcher
        .job(Charge)
        .retry(RetryPolicy::fixed(2, Duration::from_millis(5)))
        .dispatch()
        .await?;
    timeline.state("order", &"paid");
    token.cancel_with("the import was not needed after all");
    dispatcher.dispatch(Ship).await?;
    timeline.state("order", &"shipped");
    println!(
        "report: {}",
        report
            .await
            .map_or_else(|e| format!("{e:#}"), |_| "done".into())
    );
    println!(
        "import: {}",
        import
            .await
            .map_or_else(|e| format!("{e:#}"), |_| "done".into())
    );

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/timeline");
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    std::fs::write(dir.join("trace.json"), timeline.chrome_trace())?;
    std::fs::write(dir.join("timeline.html"), timeline.html())?;
    println!("timeline: {timeline}");
    println!(
        "wrote {} and {}",
        dir.join("trace.json").display(),
        dir.join("timeline.html").display()
    );
    Ok(())
}
