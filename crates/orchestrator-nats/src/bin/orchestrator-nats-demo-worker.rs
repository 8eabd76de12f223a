//! A worker process for the demo job type (`orchestrator_nats::demo`), used by the fault tests
//! (which kill it) and the example. Configured by environment variables:
//! `NATS_URL` (default `nats://127.0.0.1:4222`), `DEMO_PREFIX`, `DEMO_NODE`,
//! `DEMO_ACK_WAIT_MS`, `DEMO_MAX_DELIVER`, `DEMO_CONCURRENCY`. Prints `ready` once it takes
//! jobs, then runs until it is killed or its standard input closes (then it stops gracefully).

use std::io::BufRead;
use std::time::Duration;

use orchestrator_core::Dispatcher;
use orchestrator_nats::demo::{Square, Squarer, registry};
use orchestrator_nats::{RemoteConfig, Worker};
use orchestrator_tokio::TokioRuntime;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &str, default: u64) -> u64 {
    var(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let url = var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let config = RemoteConfig {
            prefix: var("DEMO_PREFIX").unwrap_or_else(|| "demo".into()),
            ack_wait: Duration::from_millis(number("DEMO_ACK_WAIT_MS", 30_000)),
            max_deliver: u32::try_from(number("DEMO_MAX_DELIVER", 5)).unwrap_or(5),
            ..RemoteConfig::default()
        };
        let client = async_nats::connect(url).await?;
        let local = Dispatcher::new(TokioRuntime::default());
        local.register(Squarer::default());
        let worker = Worker::builder(client, registry(number("DEMO_NODE", 2)), &local)
            .config(config)
            .concurrency(usize::try_from(number("DEMO_CONCURRENCY", 8)).unwrap_or(8))
            .accept::<Square>()?
            .start()
            .await?;
        println!("ready");
        // Until standard input closes.
        tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines() {}).await?;
        worker.stop(Duration::from_secs(5)).await;
        eprintln!("stopped");
        Ok(())
    })
}
