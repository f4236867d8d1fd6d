//! Event sets fed from the state file's `xid_events` list.
//!
//! Delivery rule (kept simple and predictable for tests): a set delivers, once
//! each and in ascending id order, every event whose `id` is greater than the
//! largest id present in the state file when nvmlEventSetCreate was called
//! (all events if there were none), for a device registered on the set with a
//! matching event type. Events already in the file are therefore never
//! replayed to a fresh set, and a test "fires" an Xid by rewriting the file
//! with a new, larger id.
//!
//! The opaque `nvmlEventSet_t` is the address of a small boxed token; the data
//! lives in a registry keyed by that address, so a stale, foreign or freed
//! handle is rejected with INVALID_ARGUMENT rather than dereferenced, and a
//! set freed by another thread mid-wait cannot be used after free.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nvml_wrapper_sys::bindings::*;

use crate::common::*;
use crate::state::{self, State};

/// How often a waiting caller re-reads the state file.
const POLL: Duration = Duration::from_millis(10);

#[derive(Default)]
struct SetData {
    /// Device index -> registered event type mask.
    registered: HashMap<u32, u64>,
    /// Only events with an id above this are delivered (see module docs).
    baseline: Option<u64>,
    delivered: HashSet<u64>,
}

static SETS: Mutex<Option<HashMap<usize, SetData>>> = Mutex::new(None);

fn with_sets<R>(f: impl FnOnce(&mut HashMap<usize, SetData>) -> R) -> R {
    let mut guard = SETS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// nvmlEventSetCreate.
///
/// # Safety
/// `out` must be null or valid for a write.
pub unsafe fn create(out: *mut nvmlEventSet_t) -> nvmlReturn_t {
    if !is_initialized() {
        return UNINITIALIZED;
    }
    if out.is_null() {
        return INVALID_ARGUMENT;
    }
    let baseline = state::current().max_event_id();
    // The token only provides a unique, stable address.
    let token = Box::into_raw(Box::new(0u64)) as usize;
    with_sets(|sets| sets.insert(token, SetData { baseline, ..SetData::default() }));
    out.write(token as nvmlEventSet_t);
    SUCCESS
}

/// nvmlEventSetFree. The set is released even when NVML is no longer
/// initialized (the return code still says UNINITIALIZED, like the real one).
pub fn free(set: nvmlEventSet_t) -> nvmlReturn_t {
    let token = set as usize;
    let removed = with_sets(|sets| sets.remove(&token)).is_some();
    if !removed {
        return if is_initialized() { INVALID_ARGUMENT } else { UNINITIALIZED };
    }
    // SAFETY: `token` came from Box::into_raw in `create` and was still
    // registered, so this is its one and only release.
    unsafe { drop(Box::from_raw(token as *mut u64)) };
    if is_initialized() {
        SUCCESS
    } else {
        UNINITIALIZED
    }
}

/// nvmlDeviceRegisterEvents.
pub fn register(device: nvmlDevice_t, event_types: u64, set: nvmlEventSet_t) -> nvmlReturn_t {
    let (st, index) = match device_query(device, "events") {
        Ok(v) => v,
        Err(code) => return code,
    };
    if set.is_null() {
        return INVALID_ARGUMENT;
    }
    let supported = st.devices[index as usize].supported_event_types;
    if event_types & !supported != 0 {
        return NOT_SUPPORTED;
    }
    with_sets(|sets| match sets.get_mut(&(set as usize)) {
        Some(data) => {
            *data.registered.entry(index).or_insert(0) |= event_types;
            SUCCESS
        }
        None => INVALID_ARGUMENT,
    })
}

/// nvmlEventSetWait(_v2). Polls the state file without holding any lock
/// while sleeping.
///
/// # Safety
/// `data` must be null or valid for a write of `nvmlEventData_t`.
pub unsafe fn wait(set: nvmlEventSet_t, data: *mut nvmlEventData_t, timeout_ms: u32) -> nvmlReturn_t {
    if !is_initialized() {
        return UNINITIALIZED;
    }
    if data.is_null() || set.is_null() {
        return INVALID_ARGUMENT;
    }
    sleep_for(&state::current(), "events");
    let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
    loop {
        if !is_initialized() {
            return UNINITIALIZED;
        }
        let st = state::current();
        match with_sets(|sets| poll_once(&st, sets.get_mut(&(set as usize)))) {
            Ok(Some(event)) => {
                data.write(event);
                return SUCCESS;
            }
            Ok(None) => {}
            Err(code) => return code,
        }
        let now = Instant::now();
        if now >= deadline {
            return TIMEOUT;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// One delivery attempt: errors for lost/removed registered devices first,
/// then the lowest-id pending event.
fn poll_once(st: &State, set: Option<&mut SetData>) -> Result<Option<nvmlEventData_t>, nvmlReturn_t> {
    let set = set.ok_or(INVALID_ARGUMENT)?;
    let mut indices: Vec<u32> = set.registered.keys().copied().collect();
    indices.sort_unstable();
    for &index in &indices {
        let dev = st.device(index).ok_or(GPU_IS_LOST)?;
        check_device(dev, "events")?;
    }
    let next = st
        .xid_events
        .iter()
        .filter(|e| set.baseline.is_none_or(|b| e.id > b))
        .filter(|e| !set.delivered.contains(&e.id))
        .filter(|e| set.registered.get(&e.device).is_some_and(|mask| mask & e.event_type != 0))
        .min_by_key(|e| e.id);
    Ok(next.map(|e| {
        set.delivered.insert(e.id);
        nvmlEventData_t {
            device: handle_for(e.device),
            eventType: e.event_type,
            eventData: e.xid,
            gpuInstanceId: 0xFFFF_FFFF,
            computeInstanceId: 0xFFFF_FFFF,
        }
    }))
}
