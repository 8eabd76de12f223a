//! A producer process for the demo job type (`orchestrator_nats::demo`), used by the restart
//! tests (which kill it and start another with the same node id). Configured by environment
//! variables; see `orchestrator_nats::demo::run_producer_from_env`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    orchestrator_nats::demo::run_producer_from_env()
}
