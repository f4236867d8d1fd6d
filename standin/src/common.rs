//! Plumbing shared by the exported functions: panic containment, the init
//! reference count, the session log, device handles and C string output.

use std::ffi::c_char;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvml_wrapper_sys::bindings::*;

use crate::state::{self, DeviceState, State, MAX_DEVICES};

pub const SUCCESS: nvmlReturn_t = nvmlReturn_enum_NVML_SUCCESS;
pub const UNINITIALIZED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
pub const INVALID_ARGUMENT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
pub const NOT_SUPPORTED: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
pub const NOT_FOUND: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
pub const INSUFFICIENT_SIZE: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
pub const TIMEOUT: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_TIMEOUT;
pub const GPU_IS_LOST: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST;
pub const ARGUMENT_VERSION_MISMATCH: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
pub const UNKNOWN: nvmlReturn_t = nvmlReturn_enum_NVML_ERROR_UNKNOWN;

/// Env var naming an append-only log of init/shutdown calls.
pub const LOG_ENV: &str = "HPC_HEALTH_STANDIN_LOG";

/// Runs an exported function body; a panic must never unwind into C.
pub fn guard<F: FnOnce() -> nvmlReturn_t>(f: F) -> nvmlReturn_t {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(UNKNOWN)
}

// ---------------------------------------------------------------------------
// Init reference count

static INIT_COUNT: Mutex<u32> = Mutex::new(0);

fn init_count() -> std::sync::MutexGuard<'static, u32> {
    INIT_COUNT.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn is_initialized() -> bool {
    *init_count() > 0
}

/// nvmlInit*: honours `delay_ms.init` and `init_error`, then counts +1.
pub fn do_init() -> nvmlReturn_t {
    sleep_for(&state::current(), "init");
    let st = state::current();
    let rc = match st.init_error {
        Some(code) if code != SUCCESS => code,
        _ => {
            *init_count() += 1;
            SUCCESS
        }
    };
    log_line("init", rc);
    rc
}

/// nvmlShutdown: counts -1; UNINITIALIZED when nothing is open.
pub fn do_shutdown() -> nvmlReturn_t {
    let rc = {
        let mut count = init_count();
        if *count == 0 {
            UNINITIALIZED
        } else {
            *count -= 1;
            SUCCESS
        }
    };
    log_line("shutdown", rc);
    rc
}

/// Appends "init <pid>" / "shutdown <pid>" (plus " error=<code>" when the call
/// failed) with a single O_APPEND write, so concurrent processes don't interleave.
fn log_line(what: &str, rc: nvmlReturn_t) {
    let Some(path) = std::env::var_os(LOG_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let pid = std::process::id();
    let line = if rc == SUCCESS { format!("{what} {pid}\n") } else { format!("{what} {pid} error={rc}\n") };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Sleeps `delay_ms[key]` (never while holding a lock).
pub fn sleep_for(st: &State, key: &str) {
    let ms = st.delay(key);
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Common prologue of the non-device queries: initialized check + delay.
/// Returns the state to answer from.
pub fn system_query(key: &str) -> Result<Arc<State>, nvmlReturn_t> {
    if !is_initialized() {
        return Err(UNINITIALIZED);
    }
    let st = state::current();
    if st.delay(key) > 0 {
        sleep_for(&st, key);
        return Ok(state::current());
    }
    Ok(st)
}

// ---------------------------------------------------------------------------
// Device handles: stable pointers into a static table, one slot per index.
// Handles are never dereferenced; the index is recovered from the address, so
// a garbage handle yields INVALID_ARGUMENT instead of undefined behaviour.

#[repr(C)]
pub struct DeviceSlot {
    index: u32,
}

const fn make_slots() -> [DeviceSlot; MAX_DEVICES] {
    let mut slots = [const { DeviceSlot { index: 0 } }; MAX_DEVICES];
    let mut i = 0;
    while i < MAX_DEVICES {
        slots[i].index = i as u32;
        i += 1;
    }
    slots
}

static SLOTS: [DeviceSlot; MAX_DEVICES] = make_slots();

pub fn handle_for(index: u32) -> nvmlDevice_t {
    &SLOTS[index as usize] as *const DeviceSlot as nvmlDevice_t
}

pub fn index_of(handle: nvmlDevice_t) -> Option<u32> {
    let base = SLOTS.as_ptr() as usize;
    let addr = handle as usize;
    let size = std::mem::size_of::<DeviceSlot>();
    if addr < base || !(addr - base).is_multiple_of(size) {
        return None;
    }
    let index = (addr - base) / size;
    (index < MAX_DEVICES).then_some(index as u32)
}

/// Common prologue of every per-device query, in the order the real library
/// would hit them: initialized, valid handle, (simulated driver latency),
/// device still present, forced error for `key`, device lost.
/// On success returns the state and the device index to answer from.
pub fn device_query(handle: nvmlDevice_t, key: &str) -> Result<(Arc<State>, u32), nvmlReturn_t> {
    if !is_initialized() {
        return Err(UNINITIALIZED);
    }
    let index = index_of(handle).ok_or(INVALID_ARGUMENT)?;
    let mut st = state::current();
    if st.delay(key) > 0 {
        sleep_for(&st, key);
        st = state::current();
    }
    let dev = st.device(index).ok_or(GPU_IS_LOST)?;
    check_device(dev, key)?;
    Ok((st, index))
}

/// Forced error for `key`, then the lost flag.
pub fn check_device(dev: &DeviceState, key: &str) -> Result<(), nvmlReturn_t> {
    if let Some(code) = dev.forced_error(key) {
        return Err(code);
    }
    if dev.lost {
        return Err(GPU_IS_LOST);
    }
    Ok(())
}

/// Writes `value` into a caller-owned out-pointer, INVALID_ARGUMENT if null.
///
/// # Safety
/// `ptr` must be null or valid for a write of `T`.
pub unsafe fn put<T>(ptr: *mut T, value: T) -> nvmlReturn_t {
    if ptr.is_null() {
        return INVALID_ARGUMENT;
    }
    ptr.write(value);
    SUCCESS
}

/// Copies `s` NUL-terminated into a caller buffer of `length` bytes.
///
/// # Safety
/// `buf` must be null or valid for `length` bytes of writes.
pub unsafe fn put_str(buf: *mut c_char, length: u32, s: &str) -> nvmlReturn_t {
    if buf.is_null() {
        return INVALID_ARGUMENT;
    }
    let bytes = s.as_bytes();
    if (length as usize) < bytes.len() + 1 {
        return INSUFFICIENT_SIZE;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
    *buf.add(bytes.len()) = 0;
    SUCCESS
}

/// Collapses the Result-style prologues into a return code.
pub fn rc(r: Result<nvmlReturn_t, nvmlReturn_t>) -> nvmlReturn_t {
    r.unwrap_or_else(|e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_unknown() {
        assert_eq!(guard(|| panic!("boom")), UNKNOWN);
        assert_eq!(guard(|| SUCCESS), SUCCESS);
    }

    #[test]
    fn handles_round_trip_and_garbage_is_rejected() {
        for i in [0, 1, 63] {
            assert_eq!(index_of(handle_for(i)), Some(i));
        }
        assert_eq!(index_of(std::ptr::null_mut()), None);
        assert_eq!(index_of(8 as nvmlDevice_t), None);
        let past_end = unsafe { (handle_for(63) as *const DeviceSlot).add(1) } as nvmlDevice_t;
        assert_eq!(index_of(past_end), None);
        let misaligned = (handle_for(1) as usize + 1) as nvmlDevice_t;
        assert_eq!(index_of(misaligned), None);
    }

    #[test]
    fn strings_respect_buffer_size() {
        let mut buf = [1 as c_char; 4];
        unsafe {
            assert_eq!(put_str(buf.as_mut_ptr(), 4, "abcd"), INSUFFICIENT_SIZE);
            assert_eq!(put_str(buf.as_mut_ptr(), 4, "abc"), SUCCESS);
            assert_eq!(put_str(std::ptr::null_mut(), 4, "a"), INVALID_ARGUMENT);
        }
        assert_eq!(buf.map(|c| c as u8), *b"abc\0");
    }
}
