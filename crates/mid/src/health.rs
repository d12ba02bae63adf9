//! The MID's own CPU and memory use, reported in heartbeats.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// Samples this process.
pub struct ProcessStats {
    system: System,
    pid: Option<Pid>,
}

impl Default for ProcessStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessStats {
    /// Starts sampling (the first CPU figure covers the time since this call).
    pub fn new() -> Self {
        let mut stats = Self {
            system: System::new(),
            pid: sysinfo::get_current_pid().ok(),
        };
        stats.sample();
        stats
    }

    /// CPU use since the last sample (percent of one core) and resident memory (bytes).
    pub fn sample(&mut self) -> (Option<f32>, Option<u64>) {
        let Some(pid) = self.pid else {
            return (None, None);
        };
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        match self.system.process(pid) {
            Some(p) => (Some(p.cpu_usage()), Some(p.memory())),
            None => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_this_process() {
        let mut stats = ProcessStats::new();
        let (cpu, rss) = stats.sample();
        assert!(cpu.is_some());
        assert!(rss.is_some_and(|r| r > 1024 * 1024), "{rss:?}");
    }
}
