//! What the kernel knows about a container, read from its cgroup on the host: its peak memory
//! and how many of its processes the OOM killer killed.
//!
//! The OOM killer's count is the verdict on a SIGKILL: a process killed while the count rose
//! was killed for memory; one killed while it did not was killed by something else (itself, a
//! `kill -9`). Both cgroup versions and both Docker cgroup drivers are read; where none is
//! readable (a remote Docker engine, a restricted host), the functions say `None` and callers
//! report the verdict as unknown instead of guessing.

/// The cgroup directories a container may have on this host, in the order tried.
fn directories(id: &str) -> [String; 3] {
    [
        format!("/sys/fs/cgroup/memory/docker/{id}"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/docker/{id}"),
    ]
}

/// The most memory the container has used, in bytes.
pub fn peak_memory(id: &str) -> Option<u64> {
    let [v1, v2_systemd, v2_cgroupfs] = directories(id);
    let candidates = [
        format!("{v1}/memory.max_usage_in_bytes"),
        format!("{v2_systemd}/memory.peak"),
        format!("{v2_cgroupfs}/memory.peak"),
    ];
    candidates.iter().find_map(|path| std::fs::read_to_string(path).ok()?.trim().parse().ok())
}

/// Processes of the container the OOM killer has killed so far.
pub fn oom_kills(id: &str) -> Option<u64> {
    let [v1, v2_systemd, v2_cgroupfs] = directories(id);
    let candidates = [
        format!("{v1}/memory.oom_control"),
        format!("{v2_systemd}/memory.events"),
        format!("{v2_cgroupfs}/memory.events"),
    ];
    candidates.iter().find_map(|path| oom_kill_count(&std::fs::read_to_string(path).ok()?))
}

/// The `oom_kill N` line of a cgroup v1 `memory.oom_control` or a v2 `memory.events` file.
fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Why a process that died of SIGKILL died, as far as SoulBox can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillVerdict {
    /// The OOM killer's count rose: the memory cap.
    OutOfMemory,
    /// The count did not rise: something else sent it (the program itself, a `kill -9`).
    NotMemory,
    /// The cgroup could not be read.
    Unknown,
}

impl KillVerdict {
    /// The verdict from the OOM kill count before and after.
    pub fn from_counts(before: Option<u64>, after: Option<u64>) -> Self {
        match (before, after) {
            (Some(before), Some(after)) if after > before => KillVerdict::OutOfMemory,
            (Some(_), Some(_)) => KillVerdict::NotMemory,
            _ => KillVerdict::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_cgroup_versions_oom_counts() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 14\noom 3\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v1), Some(2));
        assert_eq!(oom_kill_count(v2), Some(1));
        assert_eq!(oom_kill_count("oom_kill_disable 0\n"), None, "a kernel too old to count");
        assert_eq!(KillVerdict::from_counts(Some(0), Some(1)), KillVerdict::OutOfMemory);
        assert_eq!(KillVerdict::from_counts(Some(1), Some(1)), KillVerdict::NotMemory);
        assert_eq!(KillVerdict::from_counts(None, Some(1)), KillVerdict::Unknown);
    }
}
