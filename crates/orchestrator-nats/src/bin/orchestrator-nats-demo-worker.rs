//! A worker process for the demo job type (`orchestrator_nats::demo`), used by the fault tests
//! (which kill it). Configured by environment variables; see
//! `orchestrator_nats::demo::run_worker_from_env`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    orchestrator_nats::demo::run_worker_from_env()
}
