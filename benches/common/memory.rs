//! The memory of a group of processes, from /proc: which processes run a
//! given binary with a given argument, the sum of their proportional set
//! size (`Pss` of `/proc/PID/smaps_rollup`) and threads, and where one
//! process's memory goes (its `/proc/PID/smaps` by kind of mapping).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// KiB per MiB.
pub const KIB_PER_MIB: f64 = 1024.0;
/// Largest `---p` mapping taken for a thread stack's guard below a stack.
const MAX_GUARD_KIB: u64 = 64;
/// glibc's malloc arenas are reserved 64 MiB at a time, aligned to that.
const ARENA_ALIGN: u64 = 64 << 20;

/// The processes whose executable is `exe` and whose command line has the
/// argument `arg` (e.g. the config path), by pid.
pub fn processes(exe: &Path, arg: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let listing = fs::read_dir("/proc").expect("read /proc");
    for entry in listing {
        let entry = entry.expect("read /proc");
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let proc = entry.path();
        // A process that ended meanwhile is not one of them.
        let Ok(link) = fs::read_link(proc.join("exe")) else {
            continue;
        };
        if link != exe {
            continue;
        }
        let Ok(cmdline) = fs::read(proc.join("cmdline")) else {
            continue;
        };
        if cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// What a group of processes holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub processes: usize,
    pub pss_kib: u64,
    pub rss_kib: u64,
    pub threads: u64,
    /// The largest `Pss` of one of them.
    pub max_pss_kib: u64,
}

impl Usage {
    pub fn pss_mib(&self) -> f64 {
        self.pss_kib as f64 / KIB_PER_MIB
    }
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / KIB_PER_MIB
    }
}

/// The sums over `pids` (a process gone meanwhile counts nothing).
pub fn usage(pids: &[u32]) -> Usage {
    let mut total = Usage::default();
    for &pid in pids {
        let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let pss = field_kib(&rollup, "Pss:");
        total.processes += 1;
        total.pss_kib += pss;
        total.rss_kib += field_kib(&rollup, "Rss:");
        total.max_pss_kib = total.max_pss_kib.max(pss);
        total.threads += field_kib(&status, "Threads:");
    }
    total
}

/// The number after `name` on its line of `text` (`kB` dropped), 0 when
/// missing.
fn field_kib(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One kind of mapping in a breakdown: how many, their size, `Rss`,
/// `Pss` and `Private_Dirty`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Part {
    pub mappings: usize,
    pub size_kib: u64,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub dirty_kib: u64,
}

/// One mapping of `/proc/PID/smaps`.
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    path: String,
    rss_kib: u64,
    pss_kib: u64,
    dirty_kib: u64,
}

/// Where process `pid`'s memory goes, by kind: the binary `exe` (its
/// read-only parts and its written ones: relocations, .data, .bss), other
/// files (shared libraries, locale), `[heap]` (brk), `[stack]`, thread
/// stacks (anonymous `rw-p` right above a small `---p` guard), malloc
/// arenas (anonymous mappings at a 64 MiB boundary, glibc's per-thread
/// heaps) and other anonymous memory. (Rust gives each thread a signal
/// stack behind a guard page too: those count as thread stacks.)
pub fn breakdown(pid: u32, exe: &Path) -> BTreeMap<&'static str, Part> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/smaps: {e}"));
    let maps = parse_smaps(&text);
    let exe = exe.to_string_lossy();
    let mut out: BTreeMap<&'static str, Part> = BTreeMap::new();
    for (i, m) in maps.iter().enumerate() {
        let kind = if m.path == exe {
            if m.dirty_kib > 0 {
                "binary, written (relocations, data)"
            } else {
                "binary, clean"
            }
        } else if m.path == "[heap]" {
            "heap (brk)"
        } else if m.path == "[stack]" {
            "main stack"
        } else if m.path.starts_with('/') {
            "other files (libraries)"
        } else if !m.path.is_empty() {
            "kernel ([vdso], [vvar], ...)"
        } else if m.perms.starts_with("---") {
            "guards and reserves (---p)"
        } else if i > 0
            && maps[i - 1].end == m.start
            && maps[i - 1].perms.starts_with("---")
            && (maps[i - 1].end - maps[i - 1].start) / 1024 <= MAX_GUARD_KIB
        {
            "thread and signal stacks"
        } else if m.start % ARENA_ALIGN == 0 {
            "malloc arenas (per-thread heaps)"
        } else {
            "other anonymous (mmap'd allocations)"
        };
        let part = out.entry(kind).or_default();
        part.mappings += 1;
        part.size_kib += (m.end - m.start) / 1024;
        part.rss_kib += m.rss_kib;
        part.pss_kib += m.pss_kib;
        part.dirty_kib += m.dirty_kib;
    }
    out
}

fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            let perms = words.next().unwrap_or("").to_string();
            // offset, device, inode, then the path (may hold spaces).
            let path = words.skip(3).collect::<Vec<_>>().join(" ");
            maps.push(Mapping {
                start,
                end,
                perms,
                path,
                rss_kib: 0,
                pss_kib: 0,
                dirty_kib: 0,
            });
            continue;
        }
        let Some(m) = maps.last_mut() else { continue };
        let value = || {
            words
                .clone()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" => m.rss_kib = value(),
            "Pss:" => m.pss_kib = value(),
            "Private_Dirty:" => m.dirty_kib = value(),
            _ => {}
        }
    }
    maps
}

/// The canonical path of `exe`, as `/proc/PID/exe` shows it.
pub fn canonical_exe(exe: &Path) -> PathBuf {
    fs::canonicalize(exe).unwrap_or_else(|e| panic!("canonicalize {}: {e}", exe.display()))
}
