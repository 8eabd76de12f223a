//! Offline-first with real process death: a child process queues network-bound jobs on a redb
//! file while offline and is killed with SIGKILL; the next child starts online on the same file
//! and sends them, in order, once each; a job the server always rejects is poisoned.
//!
//! The children are this test binary (`offline_child`, which does nothing unless
//! `OFFLINE_CHILD_DIR` is set).

#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::{
    Dispatch, Dispatcher, Executor, Job, JobContext, ManualConnectivity, RetryPolicy,
};
use orchestrator_durable::{Durable, End, Online};
use orchestrator_redb::RedbStore;
use orchestrator_remote::{NodeId, Registry};
use orchestrator_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Send {
    text: String,
}
impl Job for Send {
    type Output = String;
}

#[derive(Debug)]
struct Rejected;
impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rejected")
    }
}
impl std::error::Error for Rejected {}

/// The server: appends each message it receives to `sent.log` (one unbuffered write per
/// line), rejects "spam".
struct Server {
    log: std::path::PathBuf,
}
impl Executor<Send> for Server {
    type Error = Rejected;
    async fn execute(&self, job: &Send, _: JobContext) -> Result<String, Rejected> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the log opens");
        log.write_all(format!("{}\n", job.text).as_bytes())
            .expect("the log is written");
        if job.text == "spam" {
            return Err(Rejected);
        }
        Ok(format!("sent {}", job.text))
    }
}

const TEXTS: [&str; 3] = ["hello", "spam", "bye"];

/// The child: queues the three messages while offline (then waits to be killed), or starts
/// online and sends what is queued.
#[test]
fn offline_child() {
    let Ok(dir) = std::env::var("OFFLINE_CHILD_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let online = std::env::var("OFFLINE_CHILD_ONLINE").is_ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let dispatcher = Dispatcher::new(TokioRuntime::default());
        let mut registry = Registry::new(NodeId::new(3));
        registry.register_job::<Send>("chat.send").expect("a name");
        let network = ManualConnectivity::new(online);
        let (durable, recovery) = Durable::builder(
            RedbStore::open(dir.join("outbox.redb")).expect("the file opens"),
            Arc::new(registry),
        )
        .register_online::<Send, _>(
            Server {
                log: dir.join("sent.log"),
            },
            Online {
                concurrency: 1,
                max_failures: 3,
            },
        )
        .connectivity(network)
        .open(&dispatcher)
        .expect("opens");
        let recovered = recovery.ids();
        recovery.resume();
        if !online {
            for text in TEXTS {
                let handle = dispatcher
                    .job(Send { text: text.into() })
                    .retry(RetryPolicy::fixed(10, Duration::from_millis(10)))
                    .dispatch();
                handle.stored().await.expect("stored while offline");
                let id = orchestrator_durable::format_id(durable.wire_id(handle.id()));
                println!("queued {text} {id}");
            }
            println!("waiting");
            std::future::pending::<()>().await;
        }
        for id in &recovered {
            if let Some(handle) = durable.take_handle::<String>(*id) {
                let _ = handle.await;
            }
        }
        for id in recovered {
            let outcome = durable.outcome(id).expect("readable").expect("kept");
            let end = match outcome.end {
                End::Succeeded { output, .. } => output.as_str().unwrap_or_default().to_owned(),
                End::Failed { error, .. } => format!("failed: {error}"),
                other => format!("{other:?}"),
            };
            println!("outcome {} {end}", orchestrator_durable::format_id(id));
        }
        println!("dead {}", durable.dead_letters().expect("readable").len());
        durable.close();
    });
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(dir: &Path, online: bool) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "--exact",
            "offline_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OFFLINE_CHILD_DIR", dir)
        .stdout(Stdio::piped());
    if online {
        command.env("OFFLINE_CHILD_ONLINE", "1");
    }
    command.spawn().expect("the child starts")
}

#[test]
fn jobs_queued_offline_survive_a_sigkill_and_are_sent_in_order_once_online() {
    let dir = std::env::temp_dir().join(format!("orchestrator-offline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory");

    // Offline: queued, then killed while waiting. (The test harness's own text may begin the
    // child's first line: lines are searched, not matched from their start.)
    let mut offline = Killed(child(&dir, false));
    let mut lines = BufReader::new(offline.0.stdout.take().expect("stdout")).lines();
    let mut queued = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(at) = line.find("queued ") {
            let (text, id) = line[at + 7..].split_once(' ').expect("text and id");
            queued.push((text.to_owned(), id.to_owned()));
        }
        if line.ends_with("waiting") {
            break;
        }
    }
    assert_eq!(queued.len(), 3, "three stored while offline");
    offline.0.kill().expect("SIGKILL");
    let status = offline.0.wait().expect("it ends");
    assert!(!status.success());
    assert!(
        !dir.join("sent.log").exists(),
        "nothing was sent while offline"
    );

    // Online, on the same file: sent in the order they were queued.
    let online = child(&dir, true);
    let output = online.wait_with_output().expect("it ends");
    assert!(output.status.success(), "the online child failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let sent = std::fs::read_to_string(dir.join("sent.log")).expect("the log");
    let sent: Vec<&str> = sent.lines().collect();
    // "spam" keeps its turn through its retries: "bye" never overtakes it.
    assert_eq!(sent, ["hello", "spam", "spam", "spam", "bye"]);
    for (text, id) in &queued {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("outcome {id} ")))
            .unwrap_or_else(|| panic!("no outcome for {text}:\n{stdout}"));
        if text == "spam" {
            assert!(line.contains("poisoned"), "{line}");
        } else {
            assert!(line.ends_with(&format!("sent {text}")), "{line}");
        }
    }
    assert!(stdout.contains("dead 1"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
