//! Kernel memory-pressure events, where the kernel gives them: a wake-up for the supervisor
//! that arrives when memory gets tight instead of at the next sample.
//!
//! Sources, tried in this order (every one that arms is used):
//! 1. a PSI trigger (`some <stall> <window>`) on the cgroup's own `memory.pressure` (v2), or
//!    on `/proc/pressure/memory` where the cgroup has none (v1, or no memory cgroup);
//! 2. cgroup v2 `memory.events` of the cgroup that holds the limit: `high`, `max`, `oom`,
//!    `oom_kill`, reported as the counters that changed;
//! 3. cgroup v1 `memory.pressure_level` (`low`/`medium`/`critical`) and `memory.oom_control`
//!    through `cgroup.event_control` and an eventfd.
//!
//! Where none arms the caller keeps to fast sampling. One named thread polls every armed
//! file plus an eventfd that stops it; it holds a fixed set of descriptors and a fixed
//! amount of state, and signals closer together than [`MIN_EVENT_GAP`] are folded into one
//! event with a count, so a reclaim storm cannot flood the callback.

use super::cgroup::{locate_memory_cgroup, read_tightest_limit, CgroupError, CgroupLocation, CgroupVersion};
use super::unix_time_ms;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The default PSI trigger: 150 ms of stall in a 1 s window, as the kernel's documentation
/// suggests for memory.
pub const PSI_STALL_US: u64 = 150_000;
pub const PSI_WINDOW_US: u64 = 1_000_000;
/// Without CAP_SYS_RESOURCE (even as root in many containers) a PSI trigger needs a window
/// that is a multiple of 2 s (kernel 6.5+); the stall is scaled with it so the share stays.
const UNPRIVILEGED_WINDOW_US: u64 = 2_000_000;
/// Signals of one source closer together than this are delivered as one event.
pub const MIN_EVENT_GAP: Duration = Duration::from_millis(100);

/// Where a pressure event comes from. `name()` is the stable string for status and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PressureSource {
    /// A PSI trigger on the cgroup's own `memory.pressure` (cgroup v2).
    PsiCgroup,
    /// A PSI trigger on `/proc/pressure/memory`: the whole machine's stalls.
    PsiSystem,
    /// cgroup v2 `memory.events` of the cgroup that holds the limit.
    CgroupV2MemoryEvents,
    /// cgroup v1 `memory.pressure_level` through `cgroup.event_control`.
    CgroupV1PressureLevel,
    /// cgroup v1 `memory.oom_control` through `cgroup.event_control`.
    CgroupV1OomControl,
}

impl PressureSource {
    pub fn name(self) -> &'static str {
        match self {
            PressureSource::PsiCgroup => "psi_cgroup",
            PressureSource::PsiSystem => "psi_system",
            PressureSource::CgroupV2MemoryEvents => "cgroup_v2_memory_events",
            PressureSource::CgroupV1PressureLevel => "cgroup_v1_pressure_level",
            PressureSource::CgroupV1OomControl => "cgroup_v1_oom_control",
        }
    }
}

/// The v1 `memory.pressure_level` levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum V1PressureLevel {
    Low,
    Medium,
    Critical,
}

impl V1PressureLevel {
    pub const ALL: [V1PressureLevel; 3] = [V1PressureLevel::Low, V1PressureLevel::Medium, V1PressureLevel::Critical];
    pub fn name(self) -> &'static str {
        match self {
            V1PressureLevel::Low => "low",
            V1PressureLevel::Medium => "medium",
            V1PressureLevel::Critical => "critical",
        }
    }
}

/// The v2 `memory.events` counters that mean the limit is near or hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemoryEventCounter {
    High,
    Max,
    Oom,
    OomKill,
}

impl MemoryEventCounter {
    pub const ALL: [MemoryEventCounter; 4] =
        [MemoryEventCounter::High, MemoryEventCounter::Max, MemoryEventCounter::Oom, MemoryEventCounter::OomKill];
    pub fn name(self) -> &'static str {
        match self {
            MemoryEventCounter::High => "high",
            MemoryEventCounter::Max => "max",
            MemoryEventCounter::Oom => "oom",
            MemoryEventCounter::OomKill => "oom_kill",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressureKind {
    /// The PSI trigger's stall threshold was exceeded within its window.
    Stall,
    /// A `memory.events` counter grew by `delta`.
    Counter { counter: MemoryEventCounter, delta: u64 },
    /// The highest v1 pressure level signalled.
    Level(V1PressureLevel),
    /// The v1 cgroup hit its limit and could not reclaim (the OOM path).
    Oom,
}

impl PressureKind {
    pub fn name(self) -> &'static str {
        match self {
            PressureKind::Stall => "stall",
            PressureKind::Counter { counter, .. } => counter.name(),
            PressureKind::Level(level) => level.name(),
            PressureKind::Oom => "oom",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureEvent {
    pub source: PressureSource,
    pub kind: PressureKind,
    /// Kernel signals folded into this event (at least 1).
    pub count: u64,
    /// When the watcher saw it, in milliseconds since the Unix epoch.
    pub at_ms: f64,
}

/// Called on the watcher thread for every event; it should only wake someone and return.
pub type WakeFn = Arc<dyn Fn(PressureEvent) + Send + Sync>;

/// A source the watcher may arm, with the file it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub source: PressureSource,
    /// The file polled (v1: the control file named in `cgroup.event_control`).
    pub path: PathBuf,
}

/// The sources to try for this process's own memory cgroup under `root` (normally `/`), in
/// order. Empty when the kernel offers none of them.
pub fn candidates_for_process(root: &Path) -> Result<Vec<Candidate>, CgroupError> {
    let location = locate_memory_cgroup(root)?;
    let limit_dir = match &location {
        Some(location) => Some(limit_dir(location)?),
        None => None,
    };
    Ok(candidates(root, location.as_ref().map(|l| (l.version, l.leaf_dir.as_path())), limit_dir.as_deref()))
}

/// The directory whose limit applies: the tightest one up the hierarchy. Without a limit,
/// v2 watches the process's own cgroup (OOM kills still count there) and v1 the top of the
/// hierarchy, where the kernel reports global reclaim.
fn limit_dir(location: &CgroupLocation) -> Result<PathBuf, CgroupError> {
    Ok(match read_tightest_limit(location)? {
        Some(tightest) => tightest.dir,
        None if location.version == CgroupVersion::V1 => location.top_dir.clone(),
        None => location.leaf_dir.clone(),
    })
}

/// The sources to try for an explicit cgroup: `cgroup` is `(version, dir)` of the cgroup
/// whose tasks matter, `limit_dir` the one that holds the limit (defaults to `dir`).
pub fn candidates(root: &Path, cgroup: Option<(CgroupVersion, &Path)>, limit_dir: Option<&Path>) -> Vec<Candidate> {
    let mut out = Vec::new();
    let present = |source, path: PathBuf| path.exists().then_some(Candidate { source, path });
    let own_psi = match cgroup {
        Some((CgroupVersion::V2, dir)) => present(PressureSource::PsiCgroup, dir.join("memory.pressure")),
        _ => None,
    };
    match own_psi {
        Some(candidate) => out.push(candidate),
        None => out.extend(present(PressureSource::PsiSystem, root.join("proc/pressure/memory"))),
    }
    if let Some((version, dir)) = cgroup {
        let limit_dir = limit_dir.unwrap_or(dir);
        match version {
            CgroupVersion::V2 => {
                out.extend(present(PressureSource::CgroupV2MemoryEvents, limit_dir.join("memory.events")))
            }
            CgroupVersion::V1 if limit_dir.join("cgroup.event_control").exists() => {
                out.extend(present(PressureSource::CgroupV1PressureLevel, limit_dir.join("memory.pressure_level")));
                out.extend(present(PressureSource::CgroupV1OomControl, limit_dir.join("memory.oom_control")));
            }
            CgroupVersion::V1 => {}
        }
    }
    out
}

/// Parses `memory.events` (`key value` lines) into the counters this module reports; a
/// counter the kernel does not write reads 0.
pub fn parse_memory_events(text: &str) -> Result<[u64; 4], String> {
    let mut values = [0u64; 4];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line.split_once(' ').ok_or_else(|| format!("expected 'key value', got {line:?}"))?;
        let value: u64 = value.trim().parse().map_err(|_| format!("bad {key} value {value:?}"))?;
        if let Some(i) = MemoryEventCounter::ALL.iter().position(|c| c.name() == key) {
            values[i] = value;
        }
    }
    Ok(values)
}

/// The counters that grew from `before` to `after`, with how much. A counter that went
/// down (the cgroup was re-created) is not an event.
pub fn memory_event_deltas(before: &[u64; 4], after: &[u64; 4]) -> Vec<(MemoryEventCounter, u64)> {
    MemoryEventCounter::ALL
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(_, (b, a))| a > b)
        .map(|(c, (b, a))| (*c, a - b))
        .collect()
}

/// What a PSI trigger was armed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsiTrigger {
    pub stall_us: u64,
    pub window_us: u64,
}

impl PsiTrigger {
    pub const DEFAULT: PsiTrigger = PsiTrigger { stall_us: PSI_STALL_US, window_us: PSI_WINDOW_US };

    /// The trigger text the kernel expects.
    pub fn line(self) -> String {
        format!("some {} {}", self.stall_us, self.window_us)
    }

    /// The same share of stall over the unprivileged minimum window.
    fn unprivileged(self) -> Option<PsiTrigger> {
        (!self.window_us.is_multiple_of(UNPRIVILEGED_WINDOW_US)).then(|| {
            let window_us = self.window_us.div_ceil(UNPRIVILEGED_WINDOW_US) * UNPRIVILEGED_WINDOW_US;
            PsiTrigger { stall_us: self.stall_us * window_us / self.window_us, window_us }
        })
    }
}

/// One armed source as it is polled.
enum Armed {
    /// PSI trigger: POLLPRI when it fires; the trigger lives as long as the file is open.
    Psi { source: PressureSource, file: File, trigger: PsiTrigger },
    /// `memory.events`: POLLPRI|POLLERR when it changes; re-read to see what and to re-arm.
    Events { file: File, last: [u64; 4] },
    /// v1 `memory.pressure_level`: one eventfd per level (a higher level wakes the lower
    /// listeners too, so the highest one that fired is the level).
    Levels { control: PathBuf, eventfds: Vec<(V1PressureLevel, OwnedFd)> },
    /// v1 `memory.oom_control`.
    OomControl { control: PathBuf, eventfd: OwnedFd },
}

impl Armed {
    fn source(&self) -> PressureSource {
        match self {
            Armed::Psi { source, .. } => *source,
            Armed::Events { .. } => PressureSource::CgroupV2MemoryEvents,
            Armed::Levels { .. } => PressureSource::CgroupV1PressureLevel,
            Armed::OomControl { .. } => PressureSource::CgroupV1OomControl,
        }
    }
}

/// A source that was tried and could not be armed, with why (e.g. no permission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub source: PressureSource,
    pub reason: String,
}

fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads and resets an eventfd's counter; 0 when it had not been signalled.
fn drain_eventfd(fd: RawFd) -> u64 {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into a local u64 from a descriptor this module owns.
    let n = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
    if n == 8 {
        value
    } else {
        0
    }
}

fn signal_eventfd(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a local u64 to a descriptor this module owns.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

fn arm_psi(source: PressureSource, path: &Path, trigger: PsiTrigger) -> Result<(Armed, PsiTrigger), String> {
    let mut attempts = vec![trigger];
    attempts.extend(trigger.unprivileged());
    let mut last_error = String::new();
    for attempt in attempts {
        let mut file = match OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path) {
            Ok(file) => file,
            Err(e) => return Err(format!("cannot open {} for writing: {e}", path.display())),
        };
        // One write() per trigger, NUL included: the kernel parses the buffer as one trigger
        // and overwrites its last byte with the terminator.
        let mut line = attempt.line().into_bytes();
        line.push(0);
        match file.write(&line) {
            Ok(n) if n == line.len() => return Ok((Armed::Psi { source, file, trigger: attempt }, attempt)),
            // A second write would be parsed as a trigger of its own.
            Ok(n) => last_error = format!("{} took {n} of {} bytes of a trigger", path.display(), line.len()),
            Err(e) => last_error = format!("{} refused trigger {:?}: {e}", path.display(), attempt.line()),
        }
    }
    Err(last_error)
}

fn read_events(file: &mut File) -> io::Result<[u64; 4]> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    parse_memory_events(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Registers an eventfd for `control` in the v1 `cgroup.event_control` next to it.
fn register_v1(control: &Path, args: &str) -> Result<OwnedFd, String> {
    let eventfd = new_eventfd().map_err(|e| format!("cannot create an eventfd: {e}"))?;
    // The kernel only needs the control file open while registering.
    let target = File::open(control).map_err(|e| format!("cannot open {}: {e}", control.display()))?;
    let event_control = control.with_file_name("cgroup.event_control");
    let line = format!("{} {} {args}", eventfd.as_raw_fd(), target.as_raw_fd());
    OpenOptions::new()
        .write(true)
        .open(&event_control)
        .and_then(|mut f| f.write_all(line.trim_end().as_bytes()))
        .map_err(|e| format!("{} refused {:?}: {e}", event_control.display(), line.trim_end()))?;
    Ok(eventfd)
}

fn arm(candidate: &Candidate, trigger: PsiTrigger) -> Result<Armed, String> {
    match candidate.source {
        PressureSource::PsiCgroup | PressureSource::PsiSystem => {
            arm_psi(candidate.source, &candidate.path, trigger).map(|(armed, _)| armed)
        }
        PressureSource::CgroupV2MemoryEvents => {
            let mut file =
                File::open(&candidate.path).map_err(|e| format!("cannot open {}: {e}", candidate.path.display()))?;
            let last = read_events(&mut file).map_err(|e| format!("cannot read {}: {e}", candidate.path.display()))?;
            Ok(Armed::Events { file, last })
        }
        PressureSource::CgroupV1PressureLevel => {
            let eventfds = V1PressureLevel::ALL
                .iter()
                .map(|level| register_v1(&candidate.path, level.name()).map(|fd| (*level, fd)))
                .collect::<Result<_, _>>()?;
            Ok(Armed::Levels { control: candidate.path.clone(), eventfds })
        }
        PressureSource::CgroupV1OomControl => register_v1(&candidate.path, "")
            .map(|eventfd| Armed::OomControl { control: candidate.path.clone(), eventfd }),
    }
}

/// Watches the armed sources on a named thread until stopped or dropped.
pub struct PressureWatcher {
    sources: Vec<PressureSource>,
    psi_trigger: Option<PsiTrigger>,
    unavailable: Vec<Unavailable>,
    stop_fd: Option<Arc<OwnedFd>>,
    thread: Option<JoinHandle<()>>,
}

impl PressureWatcher {
    /// Arms every candidate it can and starts the thread. With none armed no thread runs
    /// and `sources()` is empty: the caller falls back to fast sampling.
    pub fn start(candidates: &[Candidate], trigger: PsiTrigger, wake: WakeFn) -> io::Result<PressureWatcher> {
        let mut armed = Vec::new();
        let mut unavailable = Vec::new();
        for candidate in candidates {
            match arm(candidate, trigger) {
                Ok(a) => armed.push(a),
                Err(reason) => unavailable.push(Unavailable { source: candidate.source, reason }),
            }
        }
        Self::spawn(armed, unavailable, wake)
    }

    /// The PSI trigger armed, which may be the 2 s fallback of the one asked for.
    pub fn psi_trigger(&self) -> Option<PsiTrigger> {
        self.psi_trigger
    }

    fn spawn(armed: Vec<Armed>, unavailable: Vec<Unavailable>, wake: WakeFn) -> io::Result<PressureWatcher> {
        let sources = armed.iter().map(Armed::source).collect();
        let psi_trigger = armed.iter().find_map(|a| match a {
            Armed::Psi { trigger, .. } => Some(*trigger),
            _ => None,
        });
        if armed.is_empty() {
            return Ok(PressureWatcher { sources, psi_trigger, unavailable, stop_fd: None, thread: None });
        }
        let stop_fd = Arc::new(new_eventfd()?);
        let thread_stop = stop_fd.clone();
        let thread = std::thread::Builder::new()
            .name("hpc-health-pressure".to_owned())
            .spawn(move || watch_loop(armed, thread_stop, wake))?;
        Ok(PressureWatcher { sources, psi_trigger, unavailable, stop_fd: Some(stop_fd), thread: Some(thread) })
    }

    /// Discovers this process's sources under `root` and starts watching them.
    pub fn start_for_process(root: &Path, trigger: PsiTrigger, wake: WakeFn) -> io::Result<PressureWatcher> {
        let candidates = candidates_for_process(root).map_err(|e| io::Error::other(e.to_string()))?;
        Self::start(&candidates, trigger, wake)
    }

    /// The sources being watched; empty means none (fall back to fast sampling).
    pub fn sources(&self) -> &[PressureSource] {
        &self.sources
    }

    pub fn unavailable(&self) -> &[Unavailable] {
        &self.unavailable
    }

    /// Whether the thread still watches: it ends by itself when every source's cgroup is
    /// gone, and the caller then falls back to fast sampling.
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread and waits for it; the kernel drops the triggers and registrations
    /// as their descriptors close.
    pub fn stop(&mut self) {
        if let Some(stop_fd) = &self.stop_fd {
            signal_eventfd(stop_fd.as_raw_fd());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PressureWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Signals seen but not yet delivered, per source (folded while within `MIN_EVENT_GAP`).
struct Pending {
    kind: Option<PressureKind>,
    count: u64,
    last_delivered: Option<Instant>,
}

/// Folds a new signal into what waits: the higher level and the summed counter win.
fn fold(waiting: Option<PressureKind>, new: PressureKind) -> PressureKind {
    match (waiting, new) {
        (Some(PressureKind::Level(a)), PressureKind::Level(b)) => PressureKind::Level(a.max(b)),
        (Some(PressureKind::Counter { counter: a, delta: da }), PressureKind::Counter { counter: b, delta: db })
            if a == b =>
        {
            PressureKind::Counter { counter: a, delta: da + db }
        }
        _ => new,
    }
}

fn watch_loop(mut armed: Vec<Armed>, stop_fd: Arc<OwnedFd>, wake: WakeFn) {
    // memory.events can change several counters at once: one pending slot per counter.
    let slots_of = |a: &Armed| if matches!(a, Armed::Events { .. }) { MemoryEventCounter::ALL.len() } else { 1 };
    let mut pending: Vec<Vec<Pending>> = armed
        .iter()
        .map(|a| (0..slots_of(a)).map(|_| Pending { kind: None, count: 0, last_delivered: None }).collect())
        .collect();
    loop {
        // The poll set: the stop eventfd, then each source's descriptors.
        let mut fds = vec![libc::pollfd { fd: stop_fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        let mut owner = Vec::new();
        for (i, a) in armed.iter().enumerate() {
            let polled: Vec<(RawFd, i16)> = match a {
                Armed::Psi { file, .. } => vec![(file.as_raw_fd(), libc::POLLPRI)],
                Armed::Events { file, .. } => vec![(file.as_raw_fd(), libc::POLLPRI)],
                Armed::Levels { eventfds, .. } => {
                    eventfds.iter().map(|(_, fd)| (fd.as_raw_fd(), libc::POLLIN)).collect()
                }
                Armed::OomControl { eventfd, .. } => vec![(eventfd.as_raw_fd(), libc::POLLIN)],
            };
            for (fd, events) in polled {
                fds.push(libc::pollfd { fd, events, revents: 0 });
                owner.push(i);
            }
        }
        // Sleep until a signal, or until the earliest folded signal may be delivered.
        let now = Instant::now();
        let flush_at = pending
            .iter()
            .flatten()
            .filter(|p| p.kind.is_some())
            .filter_map(|p| p.last_delivered.map(|t| t + MIN_EVENT_GAP))
            .min();
        let timeout_ms = match flush_at {
            Some(at) => at.saturating_duration_since(now).as_millis().clamp(1, i32::MAX as u128) as i32,
            None => -1,
        };
        // SAFETY: `fds` is a live, correctly sized array of pollfd for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            return;
        }
        let mut gone = Vec::new();
        for (pollfd, &i) in fds[1..].iter().zip(&owner) {
            if pollfd.revents == 0 {
                continue;
            }
            let signals: Vec<(usize, PressureKind, u64)> = match &mut armed[i] {
                Armed::Psi { .. } if pollfd.revents & libc::POLLERR != 0 => {
                    // The cgroup went away; its trigger never fires again.
                    gone.push(i);
                    vec![]
                }
                Armed::Psi { .. } => vec![(0, PressureKind::Stall, 1)],
                Armed::Events { file, last } => match read_events(file) {
                    Ok(now) => {
                        let deltas = memory_event_deltas(last, &now);
                        *last = now;
                        deltas
                            .into_iter()
                            .map(|(counter, delta)| {
                                let slot = MemoryEventCounter::ALL.iter().position(|c| *c == counter).unwrap_or(0);
                                (slot, PressureKind::Counter { counter, delta }, delta)
                            })
                            .collect()
                    }
                    Err(_) => {
                        gone.push(i);
                        vec![]
                    }
                },
                Armed::Levels { eventfds, .. } => {
                    let level = eventfds.iter().find(|(_, fd)| fd.as_raw_fd() == pollfd.fd).map(|(l, _)| *l);
                    let count = drain_eventfd(pollfd.fd);
                    // Every kernel event signals the `low` listener once; the higher ones
                    // only say how high it went.
                    match level {
                        Some(level) if count > 0 => {
                            vec![(0, PressureKind::Level(level), if level == V1PressureLevel::Low { count } else { 0 })]
                        }
                        _ => vec![],
                    }
                }
                Armed::OomControl { eventfd, .. } => {
                    let count = drain_eventfd(eventfd.as_raw_fd());
                    if count > 0 {
                        vec![(0, PressureKind::Oom, count)]
                    } else {
                        vec![]
                    }
                }
            };
            for (slot, kind, count) in signals {
                let p = &mut pending[i][slot];
                p.kind = Some(fold(p.kind, kind));
                p.count += count;
            }
        }
        // The kernel signals a v1 eventfd when its cgroup is removed: a source whose control
        // file is gone is dropped, not reported.
        for (i, a) in armed.iter().enumerate() {
            if let Armed::Levels { control, .. } | Armed::OomControl { control, .. } = a {
                if pending[i].iter().any(|p| p.kind.is_some()) && !control.exists() {
                    gone.push(i);
                }
            }
        }
        let now = Instant::now();
        for (i, slots) in pending.iter_mut().enumerate() {
            if gone.contains(&i) {
                slots.iter_mut().for_each(|p| *p = Pending { kind: None, count: 0, last_delivered: p.last_delivered });
                continue;
            }
            for p in slots.iter_mut() {
                let Some(kind) = p.kind else { continue };
                if p.last_delivered.is_some_and(|t| now.duration_since(t) < MIN_EVENT_GAP) {
                    continue;
                }
                let event =
                    PressureEvent { source: armed[i].source(), kind, count: p.count.max(1), at_ms: unix_time_ms() };
                // A panicking callback must not end the watch for every later event.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wake(event)));
                *p = Pending { kind: None, count: 0, last_delivered: Some(now) };
            }
        }
        if !gone.is_empty() {
            gone.sort_unstable();
            gone.dedup();
            for i in gone.into_iter().rev() {
                armed.remove(i);
                pending.remove(i);
            }
            if armed.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod real_cgroup_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::sampling::test_files::write;

    fn sources(candidates: &[Candidate]) -> Vec<PressureSource> {
        candidates.iter().map(|c| c.source).collect()
    }

    const V2_MOUNTINFO: &str = "24 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const V1_MOUNTINFO: &str = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory\n";

    #[test]
    fn memory_events_parse_and_deltas() {
        let before = parse_memory_events("low 0\nhigh 3\nmax 10\noom 0\noom_kill 0\noom_group_kill 0\n").unwrap();
        assert_eq!(before, [3, 10, 0, 0]);
        let after = parse_memory_events("low 5\nhigh 3\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n").unwrap();
        assert_eq!(
            memory_event_deltas(&before, &after),
            vec![(MemoryEventCounter::Max, 2), (MemoryEventCounter::Oom, 1), (MemoryEventCounter::OomKill, 1)]
        );
        // Older kernels write fewer counters; missing ones read 0. A counter that went down
        // (the cgroup was re-created) is no event.
        assert_eq!(parse_memory_events("max 4\n").unwrap(), [0, 4, 0, 0]);
        assert_eq!(memory_event_deltas(&[0, 9, 0, 0], &[0, 4, 0, 0]), vec![]);
        for bad in ["max\n", "max x\n", "oom -1\n"] {
            assert!(parse_memory_events(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn v2_uses_own_psi_and_the_limit_holders_events() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/self/cgroup", "0::/pod/ctr\n");
        write(root, "proc/self/mountinfo", V2_MOUNTINFO);
        write(root, "proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        write(root, "sys/fs/cgroup/cgroup.controllers", "memory\n");
        write(root, "sys/fs/cgroup/pod/memory.max", "1073741824\n");
        write(root, "sys/fs/cgroup/pod/memory.events", "max 0\n");
        write(root, "sys/fs/cgroup/pod/ctr/memory.max", "max\n");
        write(root, "sys/fs/cgroup/pod/ctr/memory.pressure", "some avg10=0.00\n");
        write(root, "sys/fs/cgroup/pod/ctr/memory.events", "max 0\n");
        let candidates = candidates_for_process(root).unwrap();
        assert_eq!(
            candidates,
            vec![
                Candidate {
                    source: PressureSource::PsiCgroup,
                    path: root.join("sys/fs/cgroup/pod/ctr/memory.pressure")
                },
                Candidate {
                    source: PressureSource::CgroupV2MemoryEvents,
                    path: root.join("sys/fs/cgroup/pod/memory.events")
                },
            ]
        );
        // Without the cgroup's own PSI file (PSI off for cgroups) the system's is used.
        fs::remove_file(root.join("sys/fs/cgroup/pod/ctr/memory.pressure")).unwrap();
        assert_eq!(
            sources(&candidates_for_process(root).unwrap()),
            vec![PressureSource::PsiSystem, PressureSource::CgroupV2MemoryEvents]
        );
        // No limit anywhere: the process's own cgroup still counts OOM kills.
        write(root, "sys/fs/cgroup/pod/memory.max", "max\n");
        assert_eq!(candidates_for_process(root).unwrap()[1].path, root.join("sys/fs/cgroup/pod/ctr/memory.events"));
    }

    #[test]
    fn v1_uses_event_control_at_the_limit_holder_and_system_psi() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/self/cgroup", "4:memory:/api/job\n0::/\n");
        write(root, "proc/self/mountinfo", V1_MOUNTINFO);
        write(root, "proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        let unlimited = "9223372036854771712\n";
        write(root, "sys/fs/cgroup/memory/memory.limit_in_bytes", unlimited);
        for dir in ["", "api/", "api/job/"] {
            write(root, &format!("sys/fs/cgroup/memory/{dir}cgroup.event_control"), "");
            write(root, &format!("sys/fs/cgroup/memory/{dir}memory.pressure_level"), "");
            write(root, &format!("sys/fs/cgroup/memory/{dir}memory.oom_control"), "oom_kill_disable 0\n");
        }
        write(root, "sys/fs/cgroup/memory/api/memory.limit_in_bytes", "536870912\n");
        write(root, "sys/fs/cgroup/memory/api/job/memory.limit_in_bytes", unlimited);
        let candidates = candidates_for_process(root).unwrap();
        assert_eq!(
            candidates,
            vec![
                Candidate { source: PressureSource::PsiSystem, path: root.join("proc/pressure/memory") },
                Candidate {
                    source: PressureSource::CgroupV1PressureLevel,
                    path: root.join("sys/fs/cgroup/memory/api/memory.pressure_level")
                },
                Candidate {
                    source: PressureSource::CgroupV1OomControl,
                    path: root.join("sys/fs/cgroup/memory/api/memory.oom_control")
                },
            ]
        );
        // No limit: global reclaim is reported at the top of the hierarchy.
        write(root, "sys/fs/cgroup/memory/api/memory.limit_in_bytes", unlimited);
        assert_eq!(
            candidates_for_process(root).unwrap()[1].path,
            root.join("sys/fs/cgroup/memory/memory.pressure_level")
        );
        // A kernel without PSI and without event_control (cgroup v1 built without it) has none.
        fs::remove_file(root.join("proc/pressure/memory")).unwrap();
        fs::remove_file(root.join("sys/fs/cgroup/memory/cgroup.event_control")).unwrap();
        assert_eq!(candidates_for_process(root).unwrap(), vec![]);
    }

    #[test]
    fn no_cgroup_leaves_system_psi_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/self/cgroup", "1:cpu:/\n");
        write(root, "proc/self/mountinfo", "24 1 0:22 / / rw - ext4 /dev/vda rw\n");
        assert_eq!(candidates_for_process(root).unwrap(), vec![]);
        write(root, "proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        assert_eq!(sources(&candidates_for_process(root).unwrap()), vec![PressureSource::PsiSystem]);
    }

    #[test]
    fn source_and_kind_names_are_stable() {
        assert_eq!(PressureSource::PsiCgroup.name(), "psi_cgroup");
        assert_eq!(PressureSource::CgroupV1PressureLevel.name(), "cgroup_v1_pressure_level");
        assert_eq!(PressureKind::Counter { counter: MemoryEventCounter::OomKill, delta: 1 }.name(), "oom_kill");
        assert_eq!(PressureKind::Level(V1PressureLevel::Critical).name(), "critical");
    }

    #[test]
    fn psi_trigger_lines_and_unprivileged_window() {
        assert_eq!(PsiTrigger::DEFAULT.line(), "some 150000 1000000");
        assert_eq!(PsiTrigger::DEFAULT.unprivileged(), Some(PsiTrigger { stall_us: 300_000, window_us: 2_000_000 }));
        assert_eq!(PsiTrigger { stall_us: 1, window_us: 4_000_000 }.unprivileged(), None);
    }

    #[test]
    fn folding_keeps_the_highest_level_and_sums_counters() {
        let low = PressureKind::Level(V1PressureLevel::Low);
        let critical = PressureKind::Level(V1PressureLevel::Critical);
        assert_eq!(fold(Some(critical), low), critical);
        assert_eq!(fold(Some(low), critical), critical);
        let max = |delta| PressureKind::Counter { counter: MemoryEventCounter::Max, delta };
        assert_eq!(fold(Some(max(2)), max(3)), max(5));
        assert_eq!(fold(None, PressureKind::Stall), PressureKind::Stall);
    }

    #[test]
    fn sources_that_cannot_arm_are_reported_with_why() {
        let dir = tempfile::tempdir().unwrap();
        let candidates = [
            Candidate { source: PressureSource::PsiSystem, path: dir.path().join("missing/memory") },
            Candidate { source: PressureSource::CgroupV2MemoryEvents, path: dir.path().join("missing/memory.events") },
        ];
        let watcher = PressureWatcher::start(&candidates, PsiTrigger::DEFAULT, Arc::new(|_| {})).unwrap();
        assert!(watcher.sources().is_empty());
        assert!(watcher.thread.is_none(), "no thread without a source");
        let unavailable: Vec<_> = watcher.unavailable().iter().map(|u| u.source).collect();
        assert_eq!(unavailable, vec![PressureSource::PsiSystem, PressureSource::CgroupV2MemoryEvents]);
        assert!(watcher.unavailable()[0].reason.contains("missing/memory"), "{:?}", watcher.unavailable());
    }

    #[test]
    fn stop_ends_the_thread_blocked_in_poll() {
        // The thread waits in poll() with no timeout while nothing is pending; stop() must
        // still end it. The source is the system PSI file, which root can always arm (with
        // the 2 s window where it lacks CAP_SYS_RESOURCE).
        let psi = PathBuf::from("/proc/pressure/memory");
        // SAFETY: geteuid takes no arguments and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !psi.exists() || !root {
            eprintln!("skipped: needs /proc/pressure/memory and root");
            return;
        }
        let candidates = [Candidate { source: PressureSource::PsiSystem, path: psi }];
        let mut watcher = PressureWatcher::start(&candidates, PsiTrigger::DEFAULT, Arc::new(|_| {})).unwrap();
        assert!(watcher.unavailable().is_empty(), "{:?}", watcher.unavailable());
        let armed = watcher.psi_trigger().unwrap();
        assert!(armed == PsiTrigger::DEFAULT || Some(armed) == PsiTrigger::DEFAULT.unprivileged(), "{armed:?}");
        assert_eq!(watcher.sources(), &[PressureSource::PsiSystem]);
        let thread = watcher.thread.as_ref().unwrap().thread().clone();
        assert_eq!(thread.name(), Some("hpc-health-pressure"));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            watcher.stop();
            let _ = done_tx.send(watcher.thread.is_none());
        });
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)), Ok(true), "stop() did not end the watcher");
    }

    /// A v1 registration stood in by eventfds this test signals itself: the loop's delivery,
    /// folding and clean-up are the same whatever signals the eventfd.
    fn fake_v1(dir: &Path) -> (Armed, Armed, Vec<RawFd>, RawFd) {
        write(dir, "memory.pressure_level", "");
        write(dir, "memory.oom_control", "");
        let eventfds: Vec<_> = V1PressureLevel::ALL.iter().map(|l| (*l, new_eventfd().unwrap())).collect();
        let level_fds = eventfds.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        let oom = new_eventfd().unwrap();
        let oom_fd = oom.as_raw_fd();
        (
            Armed::Levels { control: dir.join("memory.pressure_level"), eventfds },
            Armed::OomControl { control: dir.join("memory.oom_control"), eventfd: oom },
            level_fds,
            oom_fd,
        )
    }

    fn collecting() -> (WakeFn, std::sync::mpsc::Receiver<PressureEvent>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        (
            Arc::new(move |e| {
                let _ = tx.lock().unwrap().send(e);
            }),
            rx,
        )
    }

    #[test]
    fn watcher_delivers_the_highest_level_and_folds_bursts() {
        let dir = tempfile::tempdir().unwrap();
        let (levels, oom, level_fds, oom_fd) = fake_v1(dir.path());
        let (wake, rx) = collecting();
        let mut watcher = PressureWatcher::spawn(vec![levels, oom], vec![], wake).unwrap();
        assert_eq!(watcher.sources(), &[PressureSource::CgroupV1PressureLevel, PressureSource::CgroupV1OomControl]);
        let wait = Duration::from_secs(10);
        // A critical event signals every listener at or below critical, as the kernel does.
        for fd in &level_fds {
            signal_eventfd(*fd);
        }
        let event = rx.recv_timeout(wait).unwrap();
        assert_eq!(
            (event.source, event.kind, event.count),
            (PressureSource::CgroupV1PressureLevel, PressureKind::Level(V1PressureLevel::Critical), 1)
        );
        assert!((event.at_ms - unix_time_ms()).abs() < 60_000.0);
        // Signals 5 ms apart, spanning about one gap: folded into a few events that count
        // them all, not one event each.
        for _ in 0..20 {
            signal_eventfd(level_fds[0]);
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut burst = vec![rx.recv_timeout(wait).unwrap()];
        while burst.iter().map(|e| e.count).sum::<u64>() < 20 {
            burst.push(rx.recv_timeout(wait).unwrap());
        }
        assert_eq!(burst.iter().map(|e| e.count).sum::<u64>(), 20);
        assert!(burst.len() <= 4, "{} events for 20 signals within ~100 ms", burst.len());
        assert!(burst.iter().all(|e| e.kind == PressureKind::Level(V1PressureLevel::Low)));
        signal_eventfd(oom_fd);
        let event = rx.recv_timeout(wait).unwrap();
        assert_eq!((event.source, event.kind), (PressureSource::CgroupV1OomControl, PressureKind::Oom));
        assert!(watcher.running());
        watcher.stop();
        assert!(!watcher.running());
        assert!(rx.try_recv().is_err(), "nothing after stop");
    }

    #[test]
    fn removed_cgroup_signal_is_dropped_and_the_thread_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (levels, oom, level_fds, oom_fd) = fake_v1(dir.path());
        let (wake, rx) = collecting();
        let watcher = PressureWatcher::spawn(vec![levels, oom], vec![], wake).unwrap();
        // The kernel signals v1 eventfds when their cgroup is removed: no event for that.
        fs::remove_file(dir.path().join("memory.pressure_level")).unwrap();
        fs::remove_file(dir.path().join("memory.oom_control")).unwrap();
        signal_eventfd(level_fds[0]);
        signal_eventfd(oom_fd);
        let deadline = Instant::now() + Duration::from_secs(10);
        while watcher.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!watcher.running(), "the thread outlived every source");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_panicking_callback_does_not_end_the_watch() {
        let dir = tempfile::tempdir().unwrap();
        let (_, oom, _, oom_fd) = fake_v1(dir.path());
        let (forward, rx) = collecting();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let wake: WakeFn = Arc::new(move |e| {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                panic!("the first call fails");
            }
            forward(e)
        });
        let watcher = PressureWatcher::spawn(vec![oom], vec![], wake).unwrap();
        signal_eventfd(oom_fd);
        // Past the gap, so the second signal is delivered on its own.
        std::thread::sleep(MIN_EVENT_GAP * 2);
        signal_eventfd(oom_fd);
        let event = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(event.kind, PressureKind::Oom);
        assert!(watcher.running());
    }
}
