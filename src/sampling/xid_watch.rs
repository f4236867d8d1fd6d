//! Watching for critical Xid events: one background thread per NVML session waits on an
//! NVML event set for every device. The wait is bounded so the thread notices promptly
//! that nobody watches any more (it then ends), that the session is being re-opened (it
//! lets go and re-arms), or that a device came back. After an NVML error it re-arms with
//! backoff. A native thread never keeps Node's event loop alive.

use super::nvml_session::{describe_nvml_error, NvmlSession};
use super::unix_time_ms;
use crate::sync::lock;
use crate::wake::{WakeHandle, WakeSource};
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::{nvml_try, NvmlError};
use nvml_wrapper::{EventSet, Nvml};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Longest single wait on the event set; bounds how long stopping or re-opening waits.
pub const WAIT_MS: u32 = 250;
/// Events kept per device; older ones are dropped (their count stays in `totals`).
pub const HISTORY_PER_DEVICE: usize = 64;
/// Backoff between attempts to arm after an error.
pub const RETRY_MIN: Duration = Duration::from_millis(200);
pub const RETRY_MAX: Duration = Duration::from_secs(10);
/// How often to try arming devices that could not be armed (lost, or not yet there).
pub const REARM_MISSING: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct XidEvent {
    pub device: u32,
    pub uuid: Option<String>,
    pub code: u64,
    pub timestamp_ms: f64,
}

/// Whether the watcher is doing its job, for operators.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchState {
    Starting,
    /// Armed on these device indices.
    Watching(Vec<u32>),
    /// Not armed; the next attempt comes after a backoff.
    Retrying(String),
}

#[derive(Debug, Default)]
struct History {
    recent: BTreeMap<u32, VecDeque<XidEvent>>,
    /// Every event ever seen, by (device, Xid).
    totals: BTreeMap<(u32, u64), u64>,
}

/// The process's Xid watch for one NVML session. Hold it to keep the thread running.
pub struct XidWatch {
    history: Mutex<History>,
    state: Mutex<WatchState>,
    /// The session generation the current event set was armed in.
    armed_generation: AtomicU64,
    /// Woken at each event and when a watched device is lost (the supervisors watching).
    wakes: Mutex<Vec<WakeHandle>>,
}

impl XidWatch {
    fn record(&self, event: XidEvent) {
        let mut history = lock(&self.history);
        *history.totals.entry((event.device, event.code)).or_default() += 1;
        let recent = history.recent.entry(event.device).or_default();
        if recent.len() == HISTORY_PER_DEVICE {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// Wakes every supervisor that asked, forgetting those that are gone.
    fn wake(&self) {
        lock(&self.wakes).retain(|w| w.wake(WakeSource::Xid));
    }

    /// Wakes `handle` at each Xid event, and when a watched device is lost.
    pub fn wake_on_events(&self, handle: WakeHandle) {
        let mut wakes = lock(&self.wakes);
        wakes.retain(WakeHandle::is_alive);
        wakes.push(handle);
    }

    fn set_state(&self, state: WatchState) {
        *lock(&self.state) = state;
    }

    /// The NVML session generation the watch last armed in (0 before it first armed).
    pub fn armed_generation(&self) -> u64 {
        self.armed_generation.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> WatchState {
        lock(&self.state).clone()
    }

    /// Events at or after `since_ms`, oldest first.
    pub fn events_since(&self, since_ms: f64) -> Vec<XidEvent> {
        let history = lock(&self.history);
        let mut events: Vec<XidEvent> =
            history.recent.values().flatten().filter(|e| e.timestamp_ms >= since_ms).cloned().collect();
        events.sort_by(|a, b| a.timestamp_ms.total_cmp(&b.timestamp_ms));
        events
    }

    /// Every event seen since the process started, by (device, Xid).
    pub fn totals(&self) -> BTreeMap<(u32, u64), u64> {
        lock(&self.history).totals.clone()
    }
}

/// The watch of `session`, started if nobody holds one yet.
pub fn shared_xid_watch(session: &Arc<NvmlSession>) -> Arc<XidWatch> {
    static WATCHES: OnceLock<Mutex<HashMap<OsString, Weak<XidWatch>>>> = OnceLock::new();
    let mut watches = lock(&WATCHES.get_or_init(Default::default));
    let key = session.library().to_owned();
    if let Some(watch) = watches.get(&key).and_then(Weak::upgrade) {
        return watch;
    }
    let watch = Arc::new(XidWatch {
        history: Mutex::default(),
        state: Mutex::new(WatchState::Starting),
        armed_generation: AtomicU64::new(0),
        wakes: Mutex::default(),
    });
    let weak = Arc::downgrade(&watch);
    let session = session.clone();
    let spawned =
        std::thread::Builder::new().name("hpc-health-xid".to_owned()).spawn(move || watch_loop(weak, session));
    if let Err(error) = spawned {
        watch.set_state(WatchState::Retrying(format!("cannot start the Xid watcher thread: {error}")));
    }
    watches.insert(key, Arc::downgrade(&watch));
    watch
}

enum Leave {
    /// Nobody holds the watch any more.
    Stop,
    /// Let go of the session (it is being re-opened) or arm again (a device may be back).
    Rearm,
}

fn watch_loop(weak: Weak<XidWatch>, session: Arc<NvmlSession>) {
    let mut backoff = RETRY_MIN;
    loop {
        if weak.strong_count() == 0 {
            return;
        }
        let outcome = session.with_nvml(|nvml| watch_armed(nvml, &weak, &session)).and_then(|r| r);
        match outcome {
            Ok(Leave::Stop) => return,
            Ok(Leave::Rearm) => {
                backoff = RETRY_MIN;
                // Until the new set is armed, events are not being watched.
                if let Some(watch) = weak.upgrade() {
                    watch.set_state(WatchState::Starting);
                }
                // Give a pending re-open the lock before taking it again.
                while session.reopen_pending() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Err(reason) => {
                if let Some(watch) = weak.upgrade() {
                    watch.set_state(WatchState::Retrying(reason));
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if weak.strong_count() == 0 {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
                }
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Registers every device that accepts Xid events on `set` and returns their indices.
fn arm(nvml: &Nvml, session: &NvmlSession, set: &EventSet) -> Result<(Vec<u32>, u32), String> {
    let count = nvml.device_count().map_err(|e| describe_nvml_error(&e))?;
    session.remember_device_count(count);
    // nvml-wrapper's `register_events` frees the whole set when one device refuses, so the
    // raw call is used: one lost device must not disarm the others.
    let register = nvml
        .lib()
        .nvmlDeviceRegisterEvents
        .as_ref()
        .map_err(|e| format!("NVML has no nvmlDeviceRegisterEvents: {e}"))?;
    let mut armed = Vec::new();
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else { continue };
        // SAFETY: both handles belong to the live `Nvml` borrowed here.
        let result =
            unsafe { nvml_try(register(device.handle(), EventTypes::CRITICAL_XID_ERROR.bits(), set.handle())) };
        match result {
            Ok(()) => armed.push(index),
            Err(NvmlError::NotSupported | NvmlError::GpuLost) => {}
            Err(error) => {
                return Err(format!("cannot watch GPU {index} for Xid events: {}", describe_nvml_error(&error)))
            }
        }
    }
    Ok((armed, count))
}

fn watch_armed(nvml: &Nvml, weak: &Weak<XidWatch>, session: &NvmlSession) -> Result<Leave, String> {
    let set =
        nvml.create_event_set().map_err(|e| format!("cannot create an NVML event set: {}", describe_nvml_error(&e)))?;
    let (armed, count) = arm(nvml, session, &set)?;
    if armed.is_empty() {
        return Err(if count == 0 { "no GPU to watch".to_owned() } else { "no GPU accepts Xid events".to_owned() });
    }
    let all_armed = armed.len() as u32 == count;
    match weak.upgrade() {
        Some(watch) => {
            watch.set_state(WatchState::Watching(armed));
            watch.armed_generation.store(session.generation(), Ordering::SeqCst);
        }
        None => return Ok(Leave::Stop),
    }
    let armed_at = Instant::now();
    loop {
        if weak.strong_count() == 0 {
            return Ok(Leave::Stop);
        }
        if session.reopen_pending() || (!all_armed && armed_at.elapsed() >= REARM_MISSING) {
            return Ok(Leave::Rearm);
        }
        match set.wait(WAIT_MS) {
            Ok(data) => {
                let Some(xid) = data.event_data else { continue };
                let device = data.device.index().ok();
                let Some(watch) = weak.upgrade() else { return Ok(Leave::Stop) };
                let device = device.unwrap_or(u32::MAX);
                watch.record(XidEvent {
                    device,
                    uuid: session.known_device(device).map(|k| k.uuid),
                    code: xid_code(xid),
                    timestamp_ms: unix_time_ms(),
                });
                watch.wake();
            }
            Err(NvmlError::Timeout) => {}
            Err(error) => {
                // A watched device lost is news for the supervisor now, not at its next check.
                if matches!(error, NvmlError::GpuLost) {
                    if let Some(watch) = weak.upgrade() {
                        watch.wake();
                    }
                }
                return Err(format!("Xid watch stopped: {}", describe_nvml_error(&error)));
            }
        }
    }
}

/// NVML reports 999 for an Xid it cannot name; it stays 999, which no catalog entry has.
fn xid_code(xid: XidError) -> u64 {
    match xid {
        XidError::Value(code) => code,
        XidError::Unknown => 999,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::nvml_session::shared_session;
    use std::path::PathBuf;

    /// The stand-in libnvidia-ml.so that cargo builds next to this test binary.
    fn standin() -> PathBuf {
        let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
        let path = deps.join("libnvml_standin.so");
        assert!(path.exists(), "stand-in not built at {}", path.display());
        path
    }

    fn write_state(file: &std::path::Path, json: &str) {
        let temp = file.with_extension("tmp");
        std::fs::write(&temp, json).unwrap();
        std::fs::rename(&temp, file).unwrap();
    }

    fn xid_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim() == "hpc-health-xid")
            .count()
    }

    fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn watches_rearms_on_reopen_and_stops_when_nobody_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        write_state(&state, r#"{"devices":[{},{}],"xid_events":[]}"#);
        // Only this test loads the stand-in in this binary, so the variable is set once here.
        std::env::set_var("HPC_HEALTH_STANDIN_STATE", &state);
        let session = shared_session(standin().as_os_str());
        let watch = shared_xid_watch(&session);
        assert!(Arc::ptr_eq(&watch, &shared_xid_watch(&session)), "one watch per session");
        wait_for("arming", || watch.state() == WatchState::Watching(vec![0, 1]));
        assert_eq!(xid_threads(), 1);
        let wake = crate::wake::Wake::default();
        watch.wake_on_events(wake.handle());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();

        write_state(&state, r#"{"devices":[{},{}],"xid_events":[{"device":1,"xid":48,"id":1}]}"#);
        wait_for("the event", || !watch.events_since(0.0).is_empty());
        runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), wake.woken()).await })
            .expect("the event wakes the supervisor");
        let event = &watch.events_since(0.0)[0];
        assert_eq!((event.device, event.code), (1, 48));
        assert_eq!(event.uuid.as_deref(), None, "no sample has named the device yet");
        assert_eq!(watch.totals().get(&(1, 48)), Some(&1));

        // A re-open takes the session from the watcher within one wait, and it re-arms.
        let generation = session.generation();
        session.reopen().unwrap();
        assert_eq!(session.generation(), generation + 1);
        wait_for("re-arming", || watch.armed_generation() == generation + 1);
        assert_eq!(watch.state(), WatchState::Watching(vec![0, 1]));
        write_state(
            &state,
            r#"{"devices":[{},{}],"xid_events":[{"device":1,"xid":48,"id":1},{"device":0,"xid":79,"id":2}]}"#,
        );
        wait_for("an event after the re-open", || watch.events_since(0.0).len() == 2);

        drop(watch);
        wait_for("the thread to end", || xid_threads() == 0);
    }

    #[test]
    fn history_is_bounded_per_device() {
        let watch = XidWatch {
            history: Mutex::default(),
            state: Mutex::new(WatchState::Starting),
            armed_generation: AtomicU64::new(0),
            wakes: Mutex::default(),
        };
        for i in 0..(HISTORY_PER_DEVICE + 10) {
            watch.record(XidEvent { device: 3, uuid: None, code: 63, timestamp_ms: i as f64 });
        }
        let events = watch.events_since(0.0);
        assert_eq!(events.len(), HISTORY_PER_DEVICE);
        assert_eq!(events[0].timestamp_ms, 10.0, "the oldest were dropped");
        assert_eq!(watch.totals()[&(3, 63)], (HISTORY_PER_DEVICE + 10) as u64);
        assert_eq!(watch.events_since(70.0).len(), HISTORY_PER_DEVICE + 10 - 70);
    }
}
