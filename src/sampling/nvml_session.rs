//! One NVML session per library per process, shared by every monitor.
//!
//! `nvmlInit` is reference counted by the driver, but each `Nvml` value also loads the
//! library; sharing one keeps that to once. A failed open is remembered for a short while
//! so that a machine without a driver does not retry `dlopen` on every sample.

use crate::sync::lock;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// The library loaded when neither an option nor the environment names one.
pub const DEFAULT_NVML_LIBRARY: &str = "libnvidia-ml.so.1";
/// The environment variable that names the library when no option does.
pub const NVML_LIBRARY_ENV: &str = "HPC_HEALTH_NVML_LIBRARY";
/// How long a failed open is trusted before the next sample tries again.
pub const FAILED_OPEN_RETRY: Duration = Duration::from_secs(5);

/// The library to load: the option, else `HPC_HEALTH_NVML_LIBRARY`, else `libnvidia-ml.so.1`.
pub fn resolve_nvml_library(option: Option<&str>) -> OsString {
    match option {
        Some(path) => path.into(),
        None => {
            std::env::var_os(NVML_LIBRARY_ENV).filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_NVML_LIBRARY.into())
        }
    }
}

/// What a device was the last time it answered; kept so a lost device can still be named
/// and so a re-opened session can wait for the same devices by UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDevice {
    pub index: u32,
    pub uuid: String,
    pub name: String,
}

// One per library per process: its size does not matter, boxing would only add a hop.
#[allow(clippy::large_enum_variant)]
enum SessionState {
    Closed,
    Open(Nvml),
    Failed { reason: String, at: Instant },
}

pub struct NvmlSession {
    library: OsString,
    state: RwLock<SessionState>,
    known_devices: Mutex<Vec<Option<KnownDevice>>>,
    /// Set while `reopen` waits for the session: long holders (the Xid watcher) let go.
    reopening: AtomicBool,
    /// Counts opens, so that holders of device handles can tell they went stale.
    generation: AtomicU64,
    /// How many devices NVML reported the last time it was asked.
    device_count: AtomicU32,
}

/// The process-wide session for `library`.
pub fn shared_session(library: &OsStr) -> Arc<NvmlSession> {
    static SESSIONS: OnceLock<Mutex<HashMap<OsString, Arc<NvmlSession>>>> = OnceLock::new();
    let mut sessions = lock(&SESSIONS.get_or_init(Default::default));
    sessions
        .entry(library.to_owned())
        .or_insert_with(|| {
            Arc::new(NvmlSession {
                library: library.to_owned(),
                state: RwLock::new(SessionState::Closed),
                known_devices: Mutex::new(Vec::new()),
                reopening: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                device_count: AtomicU32::new(0),
            })
        })
        .clone()
}

/// Words for an NVML failure that an operator can act on.
pub fn describe_nvml_error(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(e) => format!("NVML library could not be loaded: {e}"),
        NvmlError::DriverNotLoaded => "NVIDIA driver is not loaded".to_owned(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".to_owned(),
        NvmlError::NotSupported => "not supported by this device".to_owned(),
        NvmlError::GpuLost => "the GPU has fallen off the bus or is otherwise inaccessible".to_owned(),
        NvmlError::LibRmVersionMismatch => {
            "NVML library and kernel driver versions differ (reboot or reload the driver)".to_owned()
        }
        other => format!("NVML error: {other}"),
    }
}

/// Marks the loaded NVML library never to be unloaded. `reopen` drops the old `Nvml`,
/// whose `dlclose` would otherwise unload the library and the next open load it afresh:
/// every cycle leaks what the library's statics and the loader keep (measured: ~2 KiB per
/// re-open, linear, gone once pinned), and reloading a driver library costs far more than
/// `nvmlShutdown` + `nvmlInit`. `RTLD_NOLOAD` never loads anything itself.
#[cfg(unix)]
fn pin_library(library: &OsStr) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(library.as_bytes()) else { return };
    // SAFETY: `path` is a valid C string; with RTLD_NOLOAD dlopen only returns a handle
    // to an object already loaded (here by nvml-wrapper), whose initialisers have run.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD | libc::RTLD_NODELETE) };
    if !handle.is_null() {
        // The handle only took a reference; RTLD_NODELETE outlives it.
        // SAFETY: `handle` came from the dlopen just above.
        unsafe { libc::dlclose(handle) };
    }
}

#[cfg(not(unix))]
fn pin_library(_library: &OsStr) {}

impl NvmlSession {
    pub fn library(&self) -> &OsStr {
        &self.library
    }

    fn open(&self) -> SessionState {
        match Nvml::builder().lib_path(&self.library).init() {
            Ok(nvml) => {
                // The first open pins the library (see `pin_library`).
                if self.generation.fetch_add(1, Ordering::SeqCst) == 0 {
                    pin_library(&self.library);
                }
                SessionState::Open(nvml)
            }
            Err(error) => SessionState::Failed { reason: describe_nvml_error(&error), at: Instant::now() },
        }
    }

    /// Runs `f` with the open session, opening it first if needed. `Err` carries why NVML
    /// is unavailable.
    pub fn with_nvml<R>(&self, f: impl FnOnce(&Nvml) -> R) -> Result<R, String> {
        {
            let state = crate::sync::read(&self.state);
            match &*state {
                SessionState::Open(nvml) => return Ok(f(nvml)),
                SessionState::Failed { reason, at } if at.elapsed() < FAILED_OPEN_RETRY => return Err(reason.clone()),
                _ => {}
            }
        }
        let mut state = crate::sync::write(&self.state);
        // Another thread may have opened it while this one waited for the lock.
        let retry = match &*state {
            SessionState::Open(_) => false,
            SessionState::Failed { at, .. } => at.elapsed() >= FAILED_OPEN_RETRY,
            SessionState::Closed => true,
        };
        if retry {
            *state = self.open();
        }
        drop(state);
        let state = crate::sync::read(&self.state);
        match &*state {
            SessionState::Open(nvml) => Ok(f(nvml)),
            SessionState::Failed { reason, .. } => Err(reason.clone()),
            SessionState::Closed => Err("NVML session is closed".to_owned()),
        }
    }

    /// Shuts the session down and opens it anew: handles of a device that fell off the bus
    /// stay stale until NVML is initialised again.
    pub fn reopen(&self) -> Result<(), String> {
        self.reopening.store(true, Ordering::SeqCst);
        let mut state = crate::sync::write(&self.state);
        // Dropping the old `Nvml` calls nvmlShutdown before the new nvmlInit.
        *state = SessionState::Closed;
        *state = self.open();
        self.reopening.store(false, Ordering::SeqCst);
        match &*state {
            SessionState::Open(_) => Ok(()),
            SessionState::Failed { reason, .. } => Err(reason.clone()),
            SessionState::Closed => unreachable!("open() never leaves the session closed"),
        }
    }

    /// Whether a `reopen` is waiting for holders of the session to let go.
    pub fn reopen_pending(&self) -> bool {
        self.reopening.load(Ordering::SeqCst)
    }

    /// How many times the session has been opened.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Records how many devices NVML reported just now.
    pub fn remember_device_count(&self, count: u32) {
        self.device_count.store(count, Ordering::SeqCst);
    }

    /// How many devices NVML reported the last time it was asked (0 before that).
    pub fn device_count(&self) -> u32 {
        self.device_count.load(Ordering::SeqCst)
    }

    pub fn remember_device(&self, device: KnownDevice) {
        let mut known = lock(&self.known_devices);
        let slot = device.index as usize;
        if known.len() <= slot {
            known.resize(slot + 1, None);
        }
        known[slot] = Some(device);
    }

    pub fn known_device(&self, index: u32) -> Option<KnownDevice> {
        let known = lock(&self.known_devices);
        known.get(index as usize).cloned().flatten()
    }

    /// Every device that has answered at least once since the process started.
    pub fn known_devices(&self) -> Vec<KnownDevice> {
        let known = lock(&self.known_devices);
        known.iter().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_wins_over_environment_and_default() {
        assert_eq!(resolve_nvml_library(Some("/x/libnvidia-ml.so")), OsString::from("/x/libnvidia-ml.so"));
        // The environment is process-wide; only read it here, never set it.
        let expected =
            std::env::var_os(NVML_LIBRARY_ENV).filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_NVML_LIBRARY.into());
        assert_eq!(resolve_nvml_library(None), expected);
    }

    #[test]
    fn missing_library_fails_with_reason_and_is_shared() {
        let a = shared_session(OsStr::new("/nonexistent/libnvidia-ml.so.1"));
        let b = shared_session(OsStr::new("/nonexistent/libnvidia-ml.so.1"));
        assert!(Arc::ptr_eq(&a, &b));
        let reason = a.with_nvml(|_| ()).unwrap_err();
        assert!(reason.contains("could not be loaded"), "{reason}");
        assert!(a.reopen().is_err());
    }

    /// How many objects the dynamic loader has loaded into this process so far (glibc's
    /// `dlpi_adds`: it counts every load, a reload of an unloaded library included).
    fn objects_ever_loaded() -> u64 {
        unsafe extern "C" fn read_adds(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            out: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: the loader passes a valid `info`; `out` is the `u64` handed in below.
            unsafe { *(out as *mut u64) = (*info).dlpi_adds };
            1 // every entry carries the same counter: the first is enough
        }
        let mut adds = 0u64;
        // SAFETY: the callback only writes through `out`, which outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(read_adds), &mut adds as *mut u64 as *mut libc::c_void) };
        adds
    }

    const REOPEN_CHILD_ENV: &str = "HPC_HEALTH_TEST_REOPEN_CHILD";

    /// Run alone in a child process by the test below: the load counter is process-wide,
    /// so no other test may load libraries while it counts.
    #[test]
    #[ignore = "run by reopen_keeps_the_library_loaded in a process of its own"]
    fn reopen_child() {
        let Some(state) = std::env::var_os(REOPEN_CHILD_ENV) else { return };
        std::env::set_var("HPC_HEALTH_STANDIN_STATE", state);
        let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
        let session = shared_session(deps.join("libnvml_standin.so").as_os_str());
        let count = |session: &NvmlSession| session.with_nvml(|nvml| nvml.device_count().unwrap());
        assert_eq!(count(&session), Ok(1));
        let loaded = objects_ever_loaded();
        for _ in 0..20 {
            session.reopen().unwrap();
            assert_eq!(count(&session), Ok(1));
        }
        assert_eq!(objects_ever_loaded(), loaded, "a re-open loaded the library again");
    }

    /// Re-opening must not unload and reload the driver library: each cycle leaked what
    /// the library's statics and the loader keep (~2 KiB, linear in re-opens).
    #[test]
    fn reopen_keeps_the_library_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        std::fs::write(&state, r#"{"devices":[{}]}"#).unwrap();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sampling::nvml_session::tests::reopen_child",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(REOPEN_CHILD_ENV, &state)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&child.stdout);
        assert!(child.status.success(), "{out}{}", String::from_utf8_lossy(&child.stderr));
        assert!(out.contains("1 passed"), "the child ran no test: {out}");
    }

    #[test]
    fn known_devices_are_kept_by_index() {
        let s = shared_session(OsStr::new("/nonexistent/known-devices-test.so"));
        s.remember_device(KnownDevice { index: 2, uuid: "GPU-2".into(), name: "two".into() });
        assert_eq!(s.known_device(2).unwrap().uuid, "GPU-2");
        assert_eq!(s.known_device(0), None);
        assert_eq!(s.known_devices().len(), 1);
    }
}
