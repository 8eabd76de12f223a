//! What the kernel says about this thread over a measured window: time on the CPU, time
//! waiting for one, page faults, preemptions and the machine's steal time.
//!
//! Read from `/proc` (Linux); elsewhere every figure reads as zero, so a benchmark can print
//! them unconditionally. Reading costs a few system calls: take samples outside the timed loop.

use std::fs;

/// One reading of the counters; subtract two with [`SchedSample::since`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SchedSample {
    /// Nanoseconds this thread has spent on a CPU (`/proc/thread-self/schedstat`, field 1).
    pub(crate) on_cpu_ns: u64,
    /// Nanoseconds it has spent runnable but waiting for a CPU (field 2): another tenant.
    pub(crate) run_delay_ns: u64,
    /// Minor page faults of the process (`/proc/self/stat`, field 10): first touches of
    /// fresh memory.
    pub(crate) minor_faults: u64,
    /// Major page faults of the process (field 12).
    pub(crate) major_faults: u64,
    /// Clock ticks in user mode (field 14).
    pub(crate) user_ticks: u64,
    /// Clock ticks in kernel mode (field 15): mostly page-fault handling here.
    pub(crate) system_ticks: u64,
    /// Times this thread was preempted (`nonvoluntary_ctxt_switches`).
    pub(crate) preempted: u64,
    /// Steal ticks of the whole machine (`/proc/stat`, the `cpu` line's 8th figure): time the
    /// hypervisor ran something else on our virtual CPUs.
    pub(crate) steal_ticks: u64,
}

impl SchedSample {
    /// Reads the counters now.
    pub(crate) fn now() -> Self {
        let mut s = SchedSample::default();
        if let Ok(text) = fs::read_to_string("/proc/thread-self/schedstat") {
            let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0));
            s.on_cpu_ns = fields.next().unwrap_or(0);
            s.run_delay_ns = fields.next().unwrap_or(0);
        }
        if let Ok(text) = fs::read_to_string("/proc/self/stat") {
            // The command name (field 2) may hold spaces: count fields after its `)`.
            let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
            s.minor_faults = field(10);
            s.major_faults = field(12);
            s.user_ticks = field(14);
            s.system_ticks = field(15);
        }
        if let Ok(text) = fs::read_to_string("/proc/thread-self/status") {
            s.preempted = text
                .lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
        if let Ok(text) = fs::read_to_string("/proc/stat") {
            s.steal_ticks = text
                .lines()
                .find(|l| l.starts_with("cpu "))
                .and_then(|l| l.split_whitespace().nth(8))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        s
    }

    /// Returns the change from `before` to `self`.
    pub(crate) fn since(self, before: SchedSample) -> SchedSample {
        SchedSample {
            on_cpu_ns: self.on_cpu_ns.saturating_sub(before.on_cpu_ns),
            run_delay_ns: self.run_delay_ns.saturating_sub(before.run_delay_ns),
            minor_faults: self.minor_faults.saturating_sub(before.minor_faults),
            major_faults: self.major_faults.saturating_sub(before.major_faults),
            user_ticks: self.user_ticks.saturating_sub(before.user_ticks),
            system_ticks: self.system_ticks.saturating_sub(before.system_ticks),
            preempted: self.preempted.saturating_sub(before.preempted),
            steal_ticks: self.steal_ticks.saturating_sub(before.steal_ticks),
        }
    }
}
