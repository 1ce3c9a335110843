//! How much memory this process may still take, and how much it took: read
//! from `/proc/meminfo` (`MemAvailable`) and the memory limit of the cgroup
//! the process runs in (version 2 `memory.max`, or version 1
//! `memory.limit_in_bytes`, less what the group already uses), so that a run
//! too large for the machine stops with an error before it allocates.

use std::path::{Path, PathBuf};

/// Memory this process can still allocate, and what limits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// Where the figure comes from.
    pub source: Limit,
}

/// What bounds the memory available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The kernel's estimate of memory available without swapping
    /// (`MemAvailable` in `/proc/meminfo`).
    MemAvailable,
    /// A cgroup's memory limit less its usage.
    Cgroup,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::MemAvailable => "MemAvailable in /proc/meminfo",
            Limit::Cgroup => "the memory limit of this process's cgroup, less its usage",
        })
    }
}

/// The memory available to this process now: the smaller of `MemAvailable`
/// and the room left under every cgroup limit that applies. `None` where
/// neither can be read (not Linux).
pub fn available() -> Option<Available> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| meminfo_field(&text, "MemAvailable:"))
        .map(|bytes| Available {
            bytes,
            source: Limit::MemAvailable,
        });
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| cgroup_room(&text, Path::new("/sys/fs/cgroup")))
        .map(|bytes| Available {
            bytes,
            source: Limit::Cgroup,
        });
    match (meminfo, cgroup) {
        (Some(m), Some(c)) => Some(if c.bytes < m.bytes { c } else { m }),
        (m, c) => m.or(c),
    }
}

/// The largest resident set this process has had (`VmHWM`), in bytes.
pub fn peak_resident() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| meminfo_field(&text, "VmHWM:"))
}

/// A `Name:   123 kB` field of `/proc/meminfo` or `/proc/self/status`, in bytes.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    Some(match words.next() {
        Some("kB") => value.saturating_mul(1024),
        _ => value,
    })
}

/// Room left under the tightest cgroup limit on the way from the process's
/// group up to the root, for cgroup version 2 or the version 1 memory
/// controller; `None` when no limit is set.
fn cgroup_room(proc_cgroup: &str, root: &Path) -> Option<u64> {
    let mut tightest: Option<u64> = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        // Limit, usage, and the page cache the kernel reclaims before it
        // refuses memory (counted in the usage).
        let (base, limit_file, usage_file, reclaimable) = if controllers.is_empty() {
            (
                root.to_path_buf(),
                "memory.max",
                "memory.current",
                "inactive_file",
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                root.join("memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            )
        } else {
            continue;
        };
        for dir in ancestors(&base, path) {
            let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
            let Some(limit) = read(limit_file).and_then(|t| t.trim().parse::<u64>().ok()) else {
                continue;
            };
            // Version 1 writes "no limit" as a number near 2⁶³.
            if limit >= 1 << 60 {
                continue;
            }
            let usage = read(usage_file)
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let cache = read("memory.stat")
                .and_then(|t| stat_field(&t, reclaimable))
                .unwrap_or(0);
            let room = limit.saturating_sub(usage.saturating_sub(cache));
            tightest = Some(tightest.map_or(room, |t| t.min(room)));
        }
    }
    tightest
}

/// A `name value` line of a cgroup's `memory.stat`.
fn stat_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The group's directory and each of its parents up to `base`; a container
/// that mounts its own group at `base` is covered by `base` itself.
fn ancestors(base: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = vec![base.to_path_buf()];
    let mut current = base.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        current.push(part);
        dirs.push(current.clone());
    }
    dirs.retain(|dir| dir.is_dir());
    dirs
}

/// `bytes` in binary units, e.g. `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn fields_are_read_in_bytes() {
        let text = "MemTotal:       24683664 kB\nMemAvailable:   1000 kB\n";
        assert_eq!(meminfo_field(text, "MemAvailable:"), Some(1_024_000));
        assert_eq!(meminfo_field(text, "VmHWM:"), None);
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn the_tightest_cgroup_limit_counts() {
        let root = std::env::temp_dir().join(format!("wukong-cgroup-{}", std::process::id()));
        let group = root.join("job/step");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(root.join("job/memory.max"), "1000000\n").unwrap();
        std::fs::write(root.join("job/memory.current"), "400000\n").unwrap();
        // 100000 of the usage is page cache the kernel would reclaim.
        std::fs::write(
            root.join("job/memory.stat"),
            "anon 300000\ninactive_file 100000\n",
        )
        .unwrap();
        std::fs::write(group.join("memory.max"), "max\n").unwrap();
        std::fs::write(group.join("memory.current"), "100\n").unwrap();
        assert_eq!(cgroup_room("0::/job/step\n", &root), Some(700_000));
        // No limit anywhere.
        assert_eq!(cgroup_room("0::/other\n", &root), None);
        // Version 1: the memory controller's own hierarchy.
        let v1 = root.join("memory/box");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "5000\n").unwrap();
        std::fs::write(root.join("memory/memory.usage_in_bytes"), "1000\n").unwrap();
        assert_eq!(cgroup_room("4:memory:/box\n1:cpu:/\n", &root), Some(4000));
        std::fs::remove_dir_all(&root).unwrap();
        assert!(available().is_some_and(|a| a.bytes > 0));
        assert!(peak_resident().is_some_and(|p| p > 0));
    }
}
