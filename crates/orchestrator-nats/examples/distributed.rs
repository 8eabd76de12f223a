//! Four processes on one NATS server: a **producer** whose orchestrator dispatches jobs that two
//! **worker** processes run, and an **observer** in a fourth process that sees the jobs' events
//! on its own bus (passively: they are not its jobs).
//!
//! ```text
//! cargo run -p orchestrator-nats --features demo --example distributed
//! ```
//!
//! With `NATS_URL` set, it uses that server (with JetStream); without it, it starts Debian's
//! `nats-server` on 127.0.0.1 (a free port, a temporary store) and stops it at the end. The
//! producer starts the other processes (this same program, with a role argument) and stops them.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::ChildStdout;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use orchestrator_core::{Dispatch, Dispatcher, Event, Orchestrator, OrchestratorContext, Origin};
use orchestrator_nats::demo::{Square, Squared, registry, run_worker_from_env};
use orchestrator_nats::{EventBridge, RemoteConfig, RemoteJobs};
use orchestrator_tokio::TokioRuntime;

const JOBS: u64 = 12;
const PREFIX: &str = "example";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1).as_deref() {
        Some("worker") => run_worker_from_env(),
        Some("observer") => observer(),
        _ => producer(),
    }
}

/// The producer's orchestrator: counts the squares of its own jobs.
struct Board;
impl Orchestrator for Board {
    type State = (u64, u64); // (jobs done, sum of squares)
    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, (u64, u64)>,
    ) {
        if let (Some(done), Origin::Active) = (event.downcast_ref::<Squared>(), origin) {
            cx.update(|(count, sum)| {
                *count += 1;
                *sum += done.square;
            });
        }
    }
}

fn producer() -> Result<(), Box<dyn std::error::Error>> {
    let mut server = None;
    let url = match std::env::var("NATS_URL") {
        Ok(url) => url,
        Err(_) => {
            let (child, url) = start_server()?;
            server = Some(child);
            url
        }
    };
    let me = std::env::current_exe()?;
    let spawn = |role: &str, node: u64| -> std::io::Result<(Child, BufReader<ChildStdout>)> {
        let mut child = Command::new(&me)
            .arg(role)
            .env("NATS_URL", &url)
            .env("DEMO_PREFIX", PREFIX)
            .env("DEMO_NODE", node.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut output = BufReader::new(child.stdout.take().expect("piped"));
        let mut ready = String::new();
        output.read_line(&mut ready)?;
        println!("producer: {role} {node} is {}", ready.trim());
        Ok((child, output))
    };
    let (mut observer, observed) = spawn("observer", 9)?;
    let workers = [spawn("worker", 2)?, spawn("worker", 3)?];

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = async_nats::connect(&url).await?;
        let registry = registry(1);
        let config = RemoteConfig {
            prefix: PREFIX.to_owned(),
            ..RemoteConfig::default()
        };
        let remote = RemoteJobs::start(client.clone(), registry.clone(), config).await?;
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        dispatcher.register(remote.executor::<Square>()?);
        let _bridge = EventBridge::start_on(
            client.clone(),
            registry,
            &dispatcher,
            PREFIX,
            dispatcher.bus(),
        )
        .await?;
        client.flush().await?;
        let board = Board.builder((0, 0), &dispatcher).start()?;
        let handles: Vec<_> = (1..=JOBS)
            .map(|n| board.dispatch(Square::new(n, 50)))
            .collect();
        for handle in handles {
            let done = handle.await?;
            println!("producer: job {} -> {}", done.value.isqrt(), done.value);
        }
        let (count, sum) = board.states().wait_for(|(count, _)| *count == JOBS).await?;
        println!("producer: {count} jobs done by the workers, sum of squares {sum}");
        let stats = remote.stats();
        println!(
            "producer: {} sent, {} outcomes, {} duplicates dropped",
            stats.sent, stats.outcomes, stats.duplicates_dropped
        );
        client.flush().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    for line in observed.lines() {
        println!("{}", line?);
    }
    observer.wait()?;
    for (mut worker, _) in workers {
        drop(worker.stdin.take()); // closed: the worker stops gracefully
        worker.wait()?;
    }
    if let Some(mut server) = server {
        server.kill()?;
        server.wait()?;
    }
    Ok(())
}

/// Another service: sees the producer's events on its own bus, passively.
fn observer() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = async_nats::connect(&url).await?;
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        let mut squares = dispatcher.bus().subscribe_to::<Squared>();
        let bridge = EventBridge::start_on(
            client.clone(),
            registry(9),
            &dispatcher,
            PREFIX,
            dispatcher.bus(),
        )
        .await?;
        client.flush().await?;
        println!("ready");
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen < JOBS && Instant::now() < deadline {
            let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_secs(60), squares.next()).await
            else {
                break;
            };
            seen += 1;
            // An output event is published by the node that dispatched the job (node 1),
            // whichever worker ran it.
            let from = event
                .event()
                .remote_node()
                .map_or("this node".into(), |n| format!("node {n}"));
            println!(
                "observer: {}² = {} (the output of a job {from} dispatched)",
                event.n, event.square
            );
        }
        println!(
            "observer: {seen} of {JOBS} events seen; bridge {:?}",
            bridge.stats()
        );
        Ok(())
    })
}

/// Starts `nats-server` with JetStream on a free port of 127.0.0.1 and a temporary store.
fn start_server() -> Result<(Child, String), Box<dyn std::error::Error>> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let store = std::env::temp_dir().join(format!("orchestrator-example-{port}"));
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("set NATS_URL, or install nats-server (apt-get install nats-server): {e}")
        })?;
    let since = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if since.elapsed() > Duration::from_secs(10) {
            return Err("nats-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("producer: started nats-server on 127.0.0.1:{port}");
    Ok((child, format!("nats://127.0.0.1:{port}")))
}
