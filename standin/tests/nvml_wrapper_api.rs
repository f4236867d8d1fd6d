//! Drives the built stand-in through the real `nvml-wrapper` 0.13 API, the
//! same way the addon does. Env vars and the library's global state are
//! process-wide, so everything runs as one ordered #[test].

use std::ffi::{CStr, OsStr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    EccCounter, MemoryError, RetirementCause, TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use nvml_wrapper_sys::bindings::{nvmlDevice_t, nvmlMemory_v2_t, NvmlLib};
use serde_json::{json, Value};

const STATE_ENV: &str = "HPC_HEALTH_STANDIN_STATE";
const LOG_ENV: &str = "HPC_HEALTH_STANDIN_LOG";

/// The built cdylib: `CARGO_CDYLIB_FILE_NVML_STANDIN` if set, else the copy
/// cargo just built next to this test binary (target/<profile>/deps/; the
/// library is a dependency of this test, so it is not uplifted to
/// target/<profile>/), else target/<profile>/ (what `cargo build` leaves).
fn standin_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_CDYLIB_FILE_NVML_STANDIN") {
        return p.into();
    }
    if let Some(p) = option_env!("CARGO_CDYLIB_FILE_NVML_STANDIN") {
        return p.into();
    }
    let mut candidates = Vec::new();
    if let Some(deps) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(deps.join("libnvml_standin.so"));
        if let Some(profile_dir) = deps.parent() {
            candidates.push(profile_dir.join("libnvml_standin.so"));
        }
    }
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let profile_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target").join(profile);
    candidates.push(profile_dir.join("deps/libnvml_standin.so"));
    candidates.push(profile_dir.join("libnvml_standin.so"));
    candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| candidates.pop().unwrap())
}

struct Ctx {
    lib: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl Ctx {
    fn nvml(&self) -> Result<Nvml, NvmlError> {
        Nvml::builder().lib_path(self.lib.as_os_str()).init()
    }

    /// Atomic replace, as the project's tests do.
    fn write(&self, state: &Value) {
        self.write_raw(&serde_json::to_vec_pretty(state).unwrap());
    }

    fn write_raw(&self, bytes: &[u8]) {
        let tmp = self.state.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &self.state).unwrap();
    }
}

#[test]
fn standin_behaves_like_nvml() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Ctx { lib: standin_path(), state: dir.path().join("state.json"), log: dir.path().join("nvml.log") };
    assert!(ctx.lib.exists(), "stand-in not built at {}", ctx.lib.display());
    std::env::set_var(STATE_ENV, &ctx.state);
    std::env::set_var(LOG_ENV, &ctx.log);

    // Sessions that unload and reload the library (nothing else holds it yet).
    for _ in 0..3 {
        let nvml = ctx.nvml().unwrap();
        assert_eq!(nvml.device_count().unwrap(), 2);
        assert!(nvml.device_by_index(1).unwrap().name().is_ok());
    }

    // Keeps the library mapped for the whole test and gives raw access to
    // symbols nvml-wrapper does not wrap.
    let raw = unsafe { NvmlLib::new(ctx.lib.as_os_str()) }.unwrap();

    uninitialized_and_refcount(&ctx, &raw);
    defaults_without_state_file(&ctx);
    device_counts(&ctx);
    device_values(&ctx);
    forced_errors(&ctx);
    lost_devices(&ctx);
    live_updates_and_malformed_json(&ctx);
    delays(&ctx);
    xid_events(&ctx);
    init_errors(&ctx);
    init_log(&ctx);
    concurrent_callers(&ctx);
}

fn uninitialized_and_refcount(ctx: &Ctx, raw: &NvmlLib) {
    unsafe {
        assert_eq!(raw.nvmlShutdown(), 1, "shutdown without init");
        let mut count = 0;
        assert_eq!(raw.nvmlDeviceGetCount_v2(&mut count), 1);
        let s = CStr::from_ptr(raw.nvmlErrorString(3));
        assert_eq!(s.to_str().unwrap(), "Not Supported");
        assert_eq!(CStr::from_ptr(raw.nvmlErrorString(15)).to_str().unwrap(), "GPU is lost");
        assert_eq!(CStr::from_ptr(raw.nvmlErrorString(12345)).to_str().unwrap(), "Unknown Error");
    }

    let a = ctx.nvml().unwrap();
    let b = ctx.nvml().unwrap();
    a.shutdown().unwrap();
    assert_eq!(b.device_count().unwrap(), 2, "b still initialized");
    b.shutdown().unwrap();
    unsafe {
        let mut count = 0;
        assert_eq!(raw.nvmlDeviceGetCount_v2(&mut count), 1, "all sessions closed");
        assert_eq!(raw.nvmlShutdown(), 1);
        assert_eq!(raw.nvmlInitWithFlags(0), 0);
        assert_eq!(raw.nvmlDeviceGetCount_v2(&mut count), 0);
        assert_eq!(count, 2);
        assert_eq!(raw.nvmlShutdown(), 0);
    }
}

fn defaults_without_state_file(ctx: &Ctx) {
    assert!(!ctx.state.exists());
    let nvml = ctx.nvml().unwrap();
    assert_eq!(nvml.sys_driver_version().unwrap(), "550.54.15");
    assert_eq!(nvml.sys_nvml_version().unwrap(), "12.550.54.15");
    assert_eq!(nvml.sys_cuda_driver_version().unwrap(), 12040);
    assert_eq!(nvml.device_count().unwrap(), 2);
    for i in 0..2u32 {
        let d = nvml.device_by_index(i).unwrap();
        assert_eq!(d.index().unwrap(), i);
        assert_eq!(d.name().unwrap(), format!("NVIDIA H100 80GB HBM3 (stand-in {i})"));
        let uuid = d.uuid().unwrap();
        assert_eq!(uuid, format!("GPU-5ca1ab1e-0000-4000-8000-00000000000{i}"));
        let by_uuid = nvml.device_by_uuid(uuid.as_str()).unwrap();
        assert_eq!(by_uuid.index().unwrap(), i);
        // Same handle for the same index.
        unsafe { assert_eq!(by_uuid.handle(), d.handle()) };
        let mem = d.memory_info().unwrap();
        assert_eq!(mem.total, 85_899_345_920);
        assert_eq!(mem.used, 1_073_741_824);
        assert_eq!(mem.free, 85_899_345_920 - 1_073_741_824);
        assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 40);
        assert_eq!(d.power_usage().unwrap(), 70_000);
        assert_eq!(d.current_throttle_reasons().unwrap(), ThrottleReasons::empty());
    }
    assert!(matches!(nvml.device_by_uuid("GPU-nope"), Err(NvmlError::NotFound)));
    assert!(matches!(nvml.device_by_index(2), Err(NvmlError::InvalidArg)));
}

fn device_counts(ctx: &Ctx) {
    let nvml = ctx.nvml().unwrap();
    ctx.write(&json!({ "devices": [] }));
    assert_eq!(nvml.device_count().unwrap(), 0);
    assert!(matches!(nvml.device_by_index(0), Err(NvmlError::InvalidArg)));

    ctx.write(&json!({ "devices": [{}] }));
    assert_eq!(nvml.device_count().unwrap(), 1);

    ctx.write(&json!({ "devices": vec![json!({}); 8] }));
    assert_eq!(nvml.device_count().unwrap(), 8);
    let d7 = nvml.device_by_index(7).unwrap();
    assert_eq!(d7.uuid().unwrap(), "GPU-5ca1ab1e-0000-4000-8000-000000000007");
    assert!(matches!(nvml.device_by_index(8), Err(NvmlError::InvalidArg)));

    // A handle whose index vanished from the state is a lost GPU.
    ctx.write(&json!({ "devices": [{}] }));
    assert!(matches!(d7.temperature(TemperatureSensor::Gpu), Err(NvmlError::GpuLost)));

    ctx.write(&json!({ "device_count_error": 999 }));
    assert!(matches!(nvml.device_count(), Err(NvmlError::Unknown)));
}

fn device_values(ctx: &Ctx) {
    ctx.write(&json!({
        "driver_version": "535.104.05",
        "devices": [{}, {
            "name": "Tesla Stand-in",
            "uuid": "GPU-custom",
            "memory_total": 1000, "memory_used": 300, "memory_reserved": 100,
            "temperature": 83, "slowdown_temperature": 85, "shutdown_temperature": 90,
            "utilization_gpu": 97, "utilization_memory": 41,
            "power_usage_mw": 612_345, "power_limit_mw": 650_000,
            "throttle_reasons": 0x8 | 0x20 | 0x40,
            "ecc_uncorrected_volatile": 3, "ecc_uncorrected_aggregate": 11,
            "ecc_corrected_volatile": 5,
            "retired_pages_pending": true,
            "remapped_rows": { "correctable": 2, "uncorrectable": 1, "pending": true, "failure": false }
        }]
    }));
    let nvml = ctx.nvml().unwrap();
    assert_eq!(nvml.sys_driver_version().unwrap(), "535.104.05");
    let d = nvml.device_by_uuid("GPU-custom").unwrap();
    assert_eq!(d.index().unwrap(), 1);
    assert_eq!(d.name().unwrap(), "Tesla Stand-in");

    let mem = d.memory_info().unwrap();
    assert_eq!((mem.total, mem.used, mem.reserved, mem.free), (1000, 300, 100, 600));

    assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 83);
    assert_eq!(d.temperature_threshold(TemperatureThreshold::Slowdown).unwrap(), 85);
    assert_eq!(d.temperature_threshold(TemperatureThreshold::Shutdown).unwrap(), 90);
    assert_eq!(d.temperature_threshold(TemperatureThreshold::GpuMax).unwrap(), 85);
    assert!(matches!(d.temperature_threshold(TemperatureThreshold::MemoryMax), Err(NvmlError::NotSupported)));

    let util = d.utilization_rates().unwrap();
    assert_eq!((util.gpu, util.memory), (97, 41));
    assert_eq!(d.power_usage().unwrap(), 612_345);
    assert_eq!(d.enforced_power_limit().unwrap(), 650_000);
    assert_eq!(d.power_management_limit().unwrap(), 650_000);

    let reasons = d.current_throttle_reasons().unwrap();
    assert_eq!(
        reasons,
        ThrottleReasons::HW_SLOWDOWN | ThrottleReasons::SW_THERMAL_SLOWDOWN | ThrottleReasons::HW_THERMAL_SLOWDOWN
    );

    assert_eq!(d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile).unwrap(), 3);
    assert_eq!(d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate).unwrap(), 11);
    assert_eq!(d.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile).unwrap(), 5);
    assert!(d.are_pages_pending_retired().unwrap());
    assert!(d.retired_pages(RetirementCause::DoubleBitEccError).unwrap().is_empty());
    assert!(!nvml.device_by_index(0).unwrap().are_pages_pending_retired().unwrap());

    // Not wrapped by nvml-wrapper 0.13: call the symbols directly.
    unsafe {
        let h = d.handle();
        let lib = nvml.lib();
        let (mut c, mut u, mut p, mut f) = (9, 9, 9, 9);
        assert_eq!(lib.nvmlDeviceGetRemappedRows(h, &mut c, &mut u, &mut p, &mut f), 0);
        assert_eq!((c, u, p, f), (2, 1, 1, 0));
        let mut r = 0u64;
        assert_eq!(lib.nvmlDeviceGetCurrentClocksEventReasons(h, &mut r), 0);
        assert_eq!(r, 0x68);
        // Null out-pointer.
        assert_eq!(lib.nvmlDeviceGetPowerUsage(h, std::ptr::null_mut()), 2);
        // Garbage handle.
        let mut t = 0;
        assert_eq!(lib.nvmlDeviceGetTemperature(8 as nvmlDevice_t, 0, &mut t), 2);
        // Too small a buffer.
        let mut buf = [0 as std::ffi::c_char; 4];
        assert_eq!(lib.nvmlDeviceGetName(h, buf.as_mut_ptr(), 4), 7);
        // nvmlMemory_v2_t needs its version field set.
        let mut m: nvmlMemory_v2_t = std::mem::zeroed();
        assert_eq!(lib.nvmlDeviceGetMemoryInfo_v2(h, &mut m), 25);
        // v1 layout reports reserved memory as used.
        let mut m1 = std::mem::zeroed();
        assert_eq!(lib.nvmlDeviceGetMemoryInfo(h, &mut m1), 0);
        assert_eq!((m1.total, m1.used, m1.free), (1000, 400, 600));
    }
}

fn forced_errors(ctx: &Ctx) {
    ctx.write(&json!({
        "devices": [{
            "errors": { "power_usage": 3, "ecc": 3, "memory_info": 999, "name": 0 },
            "remapped_rows": null
        }]
    }));
    let nvml = ctx.nvml().unwrap();
    let d = nvml.device_by_index(0).unwrap();
    assert!(matches!(d.power_usage(), Err(NvmlError::NotSupported)));
    assert!(matches!(d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile), Err(NvmlError::NotSupported)));
    assert!(matches!(d.memory_info(), Err(NvmlError::Unknown)));
    // 0 = not forced; other queries unaffected.
    assert!(d.name().is_ok());
    assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 40);
    unsafe {
        let (mut c, mut u, mut p, mut f) = (0, 0, 0, 0);
        let rc = nvml.lib().nvmlDeviceGetRemappedRows(d.handle(), &mut c, &mut u, &mut p, &mut f);
        assert_eq!(rc, 3);
    }

    ctx.write(&json!({ "devices": [{ "errors": { "handle": 15 } }] }));
    assert!(matches!(nvml.device_by_index(0), Err(NvmlError::GpuLost)));
}

fn lost_devices(ctx: &Ctx) {
    ctx.write(&json!({ "devices": [{}, { "lost": true }] }));
    let nvml = ctx.nvml().unwrap();
    assert_eq!(nvml.device_count().unwrap(), 2);
    let healthy = nvml.device_by_index(0).unwrap();
    let lost = nvml.device_by_index(1).expect("handle of a lost GPU still resolves");
    assert!(matches!(lost.memory_info(), Err(NvmlError::GpuLost)));
    assert!(matches!(lost.temperature(TemperatureSensor::Gpu), Err(NvmlError::GpuLost)));
    assert!(matches!(lost.uuid(), Err(NvmlError::GpuLost)));
    assert!(matches!(lost.power_usage(), Err(NvmlError::GpuLost)));
    assert!(matches!(lost.index(), Err(NvmlError::GpuLost)));
    assert!(matches!(nvml.device_by_uuid("GPU-5ca1ab1e-0000-4000-8000-000000000001"), Err(NvmlError::GpuLost)));
    assert!(healthy.memory_info().is_ok());
}

fn live_updates_and_malformed_json(ctx: &Ctx) {
    ctx.write(&json!({ "devices": [{ "temperature": 50 }] }));
    let nvml = ctx.nvml().unwrap();
    let d = nvml.device_by_index(0).unwrap();
    assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 50);
    for t in [51, 52, 95] {
        ctx.write(&json!({ "devices": [{ "temperature": t }] }));
        assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), t);
    }
    // In-place rewrite (not atomic) is seen too.
    std::fs::write(&ctx.state, br#"{ "devices": [{ "temperature": 61, "memory_used": 5 }] }"#).unwrap();
    assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 61);

    // Malformed JSON or wrong types: keep the last good state.
    ctx.write_raw(b"{ not json");
    assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 61);
    ctx.write_raw(br#"{ "devices": [{ "temperature": "hot" }] }"#);
    assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 61);
    ctx.write_raw(b"");
    assert_eq!(nvml.device_count().unwrap(), 1);

    // Missing file: default state (2 devices).
    std::fs::remove_file(&ctx.state).unwrap();
    assert_eq!(nvml.device_count().unwrap(), 2);
    assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 40);
}

fn delays(ctx: &Ctx) {
    ctx.write(&json!({ "delay_ms": { "memory_info": 1000 } }));
    let nvml = ctx.nvml().unwrap();
    let d = nvml.device_by_index(0).unwrap();
    let start = Instant::now();
    d.memory_info().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1000));
    let start = Instant::now();
    d.power_usage().unwrap();
    assert!(start.elapsed() < Duration::from_millis(700));

    // A slow call does not block other threads (no lock held while sleeping).
    std::thread::scope(|s| {
        let slow = s.spawn(|| d.memory_info().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        d.temperature(TemperatureSensor::Gpu).unwrap();
        assert!(start.elapsed() < Duration::from_millis(700));
        slow.join().unwrap();
    });
}

fn xid_events(ctx: &Ctx) {
    ctx.write(&json!({
        "devices": [{}, {}],
        "xid_events": [{ "device": 0, "xid": 31, "id": 7 }]
    }));
    let nvml = ctx.nvml().unwrap();
    let d0 = nvml.device_by_index(0).unwrap();
    let supported = d0.supported_event_types().unwrap();
    assert!(supported.contains(EventTypes::CRITICAL_XID_ERROR));

    let set = nvml.create_event_set().unwrap();
    let set = d0.register_events(EventTypes::CRITICAL_XID_ERROR, set).unwrap();

    // The event that predates the set is not replayed.
    let start = Instant::now();
    assert!(matches!(set.wait(100), Err(NvmlError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(100));

    // An Xid written while we wait arrives well within the timeout.
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            ctx.write(&json!({
                "devices": [{}, {}],
                "xid_events": [
                    { "device": 0, "xid": 31, "id": 7 },
                    { "device": 0, "xid": 79, "id": 8 }
                ]
            }));
        });
        let ev = set.wait(5_000).unwrap();
        assert!(start.elapsed() < Duration::from_millis(2_000));
        assert!(ev.event_type.contains(EventTypes::CRITICAL_XID_ERROR));
        assert_eq!(ev.event_data, Some(XidError::Value(79)));
        assert_eq!(ev.device.index().unwrap(), 0);
    });
    // Delivered once.
    assert!(matches!(set.wait(50), Err(NvmlError::Timeout)));

    // A fresh set does not see old events either.
    let set2 = d0.register_events(EventTypes::CRITICAL_XID_ERROR, nvml.create_event_set().unwrap()).unwrap();
    assert!(matches!(set2.wait(50), Err(NvmlError::Timeout)));

    // Events go only to sets that registered the device; oldest id first.
    ctx.write(&json!({
        "devices": [{}, {}],
        "xid_events": [
            { "device": 0, "xid": 31, "id": 7 },
            { "device": 0, "xid": 79, "id": 8 },
            { "device": 1, "xid": 13, "id": 10 },
            { "device": 0, "xid": 48, "id": 9 }
        ]
    }));
    for s in [&set, &set2] {
        let ev = s.wait(1_000).unwrap();
        assert_eq!(ev.event_data, Some(XidError::Value(48)));
        assert!(matches!(s.wait(50), Err(NvmlError::Timeout)));
    }
    let d1 = nvml.device_by_index(1).unwrap();
    let set = d1.register_events(EventTypes::CRITICAL_XID_ERROR, set).unwrap();
    let ev = set.wait(1_000).unwrap();
    assert_eq!(ev.event_data, Some(XidError::Value(13)));
    assert_eq!(ev.device.index().unwrap(), 1);

    // A registered device falling off the bus ends the wait with GpuLost.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            ctx.write(&json!({ "devices": [{}, { "lost": true }] }));
        });
        let start = Instant::now();
        assert!(matches!(set.wait(5_000), Err(NvmlError::GpuLost)));
        assert!(start.elapsed() < Duration::from_millis(2_000));
    });
    // set2 only has device 0, which is fine.
    assert!(matches!(set2.wait(20), Err(NvmlError::Timeout)));
    set.release_events().unwrap();
    set2.release_events().unwrap();

    // Registering on a lost device fails the same way.
    let lost = nvml.device_by_index(1).unwrap();
    let err = lost.register_events(EventTypes::CRITICAL_XID_ERROR, nvml.create_event_set().unwrap());
    assert!(matches!(err, Err(e) if matches!(e.error, NvmlError::GpuLost)));
}

fn init_errors(ctx: &Ctx) {
    ctx.write(&json!({ "init_error": 9 }));
    assert!(matches!(ctx.nvml(), Err(NvmlError::DriverNotLoaded)));
    ctx.write(&json!({ "init_error": 18 }));
    assert!(matches!(ctx.nvml(), Err(NvmlError::LibRmVersionMismatch)));
    ctx.write(&json!({ "init_error": null }));
    ctx.nvml().unwrap();
}

fn init_log(ctx: &Ctx) {
    let _ = std::fs::remove_file(&ctx.log);
    ctx.write(&json!({}));
    let a = ctx.nvml().unwrap();
    let b = Nvml::builder()
        .lib_path(OsStr::new(&ctx.lib))
        .flags(nvml_wrapper::bitmasks::InitFlags::NO_GPUS)
        .init()
        .unwrap();
    drop(a);
    b.shutdown().unwrap();
    ctx.write(&json!({ "init_error": 9 }));
    assert!(ctx.nvml().is_err());

    let pid = std::process::id();
    let log = std::fs::read_to_string(&ctx.log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("init {pid}"),
            format!("init {pid}"),
            format!("shutdown {pid}"),
            format!("shutdown {pid}"),
            format!("init {pid} error=9"),
        ]
    );
}

fn concurrent_callers(ctx: &Ctx) {
    ctx.write(&json!({ "devices": vec![json!({}); 4] }));
    let nvml = ctx.nvml().unwrap();
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let nvml = &nvml;
            s.spawn(move || {
                for i in 0..200u32 {
                    let d = nvml.device_by_index((t + i) % 4).unwrap();
                    assert_eq!(d.temperature(TemperatureSensor::Gpu).unwrap(), 40);
                    assert!(d.memory_info().is_ok());
                }
            });
        }
        for i in 0..20 {
            ctx.write(&json!({ "devices": vec![json!({ "power_usage_mw": i }); 4] }));
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}
