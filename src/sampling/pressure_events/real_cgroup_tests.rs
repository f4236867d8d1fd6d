//! Kernel memory-pressure events from a real memory cgroup: a child process fills a cgroup
//! with a 64 MiB limit, and the watcher pointed at that cgroup must see the kernel's event.
//! Needs root to make the cgroup (as CI and the development machine have); skipped with the
//! reason where no cgroup can be made.

use super::{candidates, PressureEvent, PressureKind, PressureSource, PressureWatcher, PsiTrigger};
use crate::sampling::cgroup::{parse_mountinfo, CgroupVersion};
use crate::sampling::unix_time_ms;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const LIMIT: u64 = 64 << 20;
const CHILD_ENV: &str = "HPC_HEALTH_PRESSURE_CHILD_BYTES";
/// The test binary runs itself as the child through this (ignored) test.
const CHILD_TEST: &str = "sampling::pressure_events::real_cgroup_tests::child_allocates_toward_the_limit";
/// Bounded wait for the first event after the child starts.
const EVENT_WAIT: Duration = Duration::from_secs(30);

/// Removes the cgroup however the test ends (after its tasks have exited).
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.0.display());
    }
}

/// A v1 memory cgroup with `LIMIT`, or why none can be made.
fn make_v1_cgroup(name: &str) -> Result<TestCgroup, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("no mountinfo: {e}"))?;
    let mounts = parse_mountinfo(&mountinfo).ok_or("malformed mountinfo")?;
    let mount = mounts
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.iter().any(|o| o == "memory"))
        .ok_or("no cgroup v1 memory hierarchy is mounted")?;
    let dir = Path::new(&mount.mount_point).join(name);
    fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cgroup = TestCgroup(dir);
    fs::write(cgroup.0.join("memory.limit_in_bytes"), LIMIT.to_string())
        .map_err(|e| format!("cannot set the limit: {e}"))?;
    Ok(cgroup)
}

/// Run as a child (see `CHILD_ENV`): allocates and touches 1 MiB at a time up to the given
/// number of bytes, printing `<bytes> <unix_ms>` after each chunk. Ignored in normal runs.
#[test]
#[ignore = "the allocating child of v1_pressure_level_fires_when_a_child_fills_the_cgroup"]
fn child_allocates_toward_the_limit() {
    let Ok(target) = std::env::var(CHILD_ENV) else { return };
    let target: u64 = target.parse().unwrap();
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut out = std::io::stdout().lock();
    let chunk = 1usize << 20;
    while (held.len() * chunk) as u64 <= target {
        // Filled, so every page is resident and charged to the cgroup.
        held.push(vec![0xa5; chunk]);
        writeln!(out, "{} {}", held.len() * chunk, unix_time_ms()).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn v1_pressure_level_fires_when_a_child_fills_the_cgroup() {
    let cgroup = match make_v1_cgroup(&format!("hpc-health-pressure-{}", std::process::id())) {
        Ok(cgroup) => cgroup,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    // The system-wide PSI trigger is armed too where the kernel has it, and its events are
    // reported; only the cgroup's own v1 event is asserted, since other load on the machine
    // (or none) decides whether the machine as a whole stalls past the trigger.
    let found = candidates(Path::new("/"), Some((CgroupVersion::V1, &cgroup.0)), None);
    let v1_sources: Vec<_> = found.iter().map(|c| c.source).filter(|s| *s != PressureSource::PsiSystem).collect();
    assert_eq!(v1_sources, vec![PressureSource::CgroupV1PressureLevel, PressureSource::CgroupV1OomControl]);
    let (tx, rx) = mpsc::channel::<PressureEvent>();
    let tx = std::sync::Mutex::new(tx);
    let watcher = PressureWatcher::start(
        &found,
        PsiTrigger::DEFAULT,
        Arc::new(move |e| {
            let _ = tx.lock().unwrap().send(e);
        }),
    )
    .unwrap();
    for source in v1_sources {
        assert!(watcher.sources().contains(&source), "{source:?} not armed: {:?}", watcher.unavailable());
    }

    // The shell moves itself into the cgroup before exec, so every allocation is charged there.
    let mut child = Command::new("/bin/sh")
        .args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
        .arg(&cgroup.0)
        .arg(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, (2 * LIMIT).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let progress = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| {
                let (bytes, at) = l.split_once(' ')?;
                Some((bytes.parse::<u64>().ok()?, at.parse::<f64>().ok()?))
            })
            .collect::<Vec<_>>()
    });

    let deadline = std::time::Instant::now() + EVENT_WAIT;
    let mut events = Vec::new();
    let first = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(event) if event.source == PressureSource::CgroupV1PressureLevel => break Some(event),
            Ok(event) => events.push(event),
            Err(_) => break None,
        }
    };
    // Whatever else the kernel reported while the child ran into the limit (an OOM kill
    // where there is no swap).
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(event) = rx.recv_timeout(Duration::from_millis(500)) {
        events.push(event);
    }
    let progress = progress.join().unwrap();
    drop(watcher);
    let first = first.unwrap_or_else(|| {
        panic!("no pressure level event within {EVENT_WAIT:?}; child reached {:?}", progress.last())
    });
    assert_eq!(first.source, PressureSource::CgroupV1PressureLevel, "{first:?}");
    assert!(matches!(first.kind, PressureKind::Level(_)), "{first:?}");

    // Latency, reported not asserted: from the child's first chunk past 80% of the limit and
    // from its last chunk before the event, to the event.
    let crossed_80 = progress.iter().find(|(bytes, _)| *bytes as f64 >= 0.8 * LIMIT as f64).map(|(_, at)| *at);
    let before_event = progress.iter().rev().find(|(_, at)| *at <= first.at_ms).copied();
    eprintln!(
        "first event {:?} {} (count {}); after 80% crossing: {:?} ms; after last chunk before it ({:?}): {:?} ms; others: {:?}",
        first.source.name(),
        first.kind.name(),
        first.count,
        crossed_80.map(|t| first.at_ms - t),
        before_event.map(|(b, _)| b),
        before_event.map(|(_, t)| first.at_ms - t),
        events.iter().map(|e| (e.source.name(), e.kind.name(), e.count)).collect::<Vec<_>>(),
    );
}
