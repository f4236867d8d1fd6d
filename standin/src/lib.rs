//! A scriptable stand-in for NVIDIA's `libnvidia-ml.so`, for tests only.
//!
//! `nvml-wrapper` dlopens this library exactly as it would the real one and
//! calls its symbols with nvml.h's C signatures. What the "GPUs" report comes
//! from a JSON file named by `HPC_HEALTH_STANDIN_STATE`, re-read whenever it
//! changes, so a test can script failures (lost GPUs, Xid errors, hangs,
//! unsupported queries) while the code under test is running. See README.md
//! for the schema.
//!
//! Every export runs inside `common::guard`, so no panic crosses into C
//! (it becomes NVML_ERROR_UNKNOWN instead).

#![allow(non_snake_case)]
#![allow(non_upper_case_globals)] // bindgen constant names used in patterns
#![allow(clippy::missing_safety_doc)] // the safety contract is nvml.h's

mod common;
mod events;
mod state;

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, CStr};

use nvml_wrapper_sys::bindings::*;

use common::*;

// ---------------------------------------------------------------------------
// Init / shutdown / errors

#[no_mangle]
pub unsafe extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    guard(do_init)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlInit() -> nvmlReturn_t {
    guard(do_init)
}

/// Flags (NO_GPUS, NO_ATTACH) do not change the stand-in's behaviour.
#[no_mangle]
pub unsafe extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    guard(do_init)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    guard(do_shutdown)
}

/// Same strings as the real library for the codes it knows.
#[no_mangle]
pub unsafe extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    std::panic::catch_unwind(|| error_string(result)).unwrap_or(c"Unknown Error").as_ptr()
}

fn error_string(code: nvmlReturn_t) -> &'static CStr {
    match code {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        5 => c"Already Initialized",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        8 => c"Insufficient External Power",
        9 => c"Driver Not Loaded",
        10 => c"Timeout",
        11 => c"Interrupt request issue",
        12 => c"NVML Shared Library Not Found",
        13 => c"Function Not Found",
        14 => c"Corrupted infoROM",
        15 => c"GPU is lost",
        16 => c"GPU requires restart",
        17 => c"The operating system has blocked the request.",
        18 => c"RM has detected an NVML/RM version mismatch.",
        19 => c"In use by another client",
        20 => c"Insufficient Memory",
        21 => c"No data",
        22 => c"The requested vgpu operation is not available on target device, because ECC is enabled",
        23 => c"Ran out of critical resources, other than memory",
        24 => c"The requested frequency is not supported",
        25 => c"Version mismatch between argument and NVML",
        26 => c"The requested functionality has been deprecated",
        27 => c"The system is not ready for the request",
        28 => c"GPU not found",
        29 => c"Invalid state",
        _ => c"Unknown Error",
    }
}

// ---------------------------------------------------------------------------
// System queries

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    guard(|| match system_query("driver_version") {
        Ok(st) => put_str(version, length, &st.driver_version),
        Err(code) => code,
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    guard(|| match system_query("nvml_version") {
        Ok(st) => put_str(version, length, &st.nvml_version()),
        Err(code) => code,
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(cuda_driver_version: *mut c_int) -> nvmlReturn_t {
    nvmlSystemGetCudaDriverVersion_v2(cuda_driver_version)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(cuda_driver_version: *mut c_int) -> nvmlReturn_t {
    guard(|| match system_query("cuda_driver_version") {
        Ok(st) => put(cuda_driver_version, st.cuda_driver_version),
        Err(code) => code,
    })
}

// ---------------------------------------------------------------------------
// Device enumeration

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(device_count: *mut c_uint) -> nvmlReturn_t {
    guard(|| {
        let st = match system_query("device_count") {
            Ok(st) => st,
            Err(code) => return code,
        };
        if device_count.is_null() {
            return INVALID_ARGUMENT;
        }
        match st.device_count_error {
            Some(code) if code != SUCCESS => code,
            _ => put(device_count, st.device_count()),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount(device_count: *mut c_uint) -> nvmlReturn_t {
    nvmlDeviceGetCount_v2(device_count)
}

/// Succeeds for a lost device (like the real library, which only fails when
/// the device is actually queried).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut nvmlDevice_t) -> nvmlReturn_t {
    guard(|| {
        let st = match system_query("handle") {
            Ok(st) => st,
            Err(code) => return code,
        };
        if device.is_null() {
            return INVALID_ARGUMENT;
        }
        let Some(dev) = st.device(index) else {
            return INVALID_ARGUMENT;
        };
        if let Some(code) = dev.forced_error("handle") {
            return code;
        }
        put(device, handle_for(index))
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex(index: c_uint, device: *mut nvmlDevice_t) -> nvmlReturn_t {
    nvmlDeviceGetHandleByIndex_v2(index, device)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(uuid: *const c_char, device: *mut nvmlDevice_t) -> nvmlReturn_t {
    guard(|| {
        let st = match system_query("handle") {
            Ok(st) => st,
            Err(code) => return code,
        };
        if uuid.is_null() || device.is_null() {
            return INVALID_ARGUMENT;
        }
        let wanted = CStr::from_ptr(uuid).to_string_lossy();
        let found = (0..st.device_count()).find(|&i| st.devices[i as usize].uuid(i) == wanted);
        let Some(index) = found else {
            return NOT_FOUND;
        };
        if let Err(code) = check_device(&st.devices[index as usize], "handle") {
            return code;
        }
        put(device, handle_for(index))
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> nvmlReturn_t {
    guard(|| rc(device_query(device, "index").map(|(_, i)| put(index, i))))
}

// ---------------------------------------------------------------------------
// Per-device queries. Each one: `device_query` (init, handle, delay, forced
// error, lost), then fill the out-parameters from the state.

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(device: nvmlDevice_t, name: *mut c_char, length: c_uint) -> nvmlReturn_t {
    guard(|| rc(device_query(device, "name").map(|(st, i)| put_str(name, length, &st.devices[i as usize].name(i)))))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(device: nvmlDevice_t, uuid: *mut c_char, length: c_uint) -> nvmlReturn_t {
    guard(|| rc(device_query(device, "uuid").map(|(st, i)| put_str(uuid, length, &st.devices[i as usize].uuid(i)))))
}

/// v1 layout: `used` includes the reserved memory, as in the real library.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(device: nvmlDevice_t, memory: *mut nvmlMemory_t) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "memory_info").map(|(st, i)| {
            let d = &st.devices[i as usize];
            let used = d.memory_used.saturating_add(d.memory_reserved);
            put(memory, nvmlMemory_t { total: d.memory_total, free: d.memory_total.saturating_sub(used), used })
        }))
    })
}

/// `nvmlMemory_v2` = sizeof(nvmlMemory_v2_t) | 2 << 24; the caller must set it.
const MEMORY_V2_VERSION: u32 = (std::mem::size_of::<nvmlMemory_v2_t>() as u32) | (2 << 24);

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "memory_info").map(|(st, i)| {
            if memory.is_null() {
                return INVALID_ARGUMENT;
            }
            if (*memory).version != MEMORY_V2_VERSION {
                return ARGUMENT_VERSION_MISMATCH;
            }
            let d = &st.devices[i as usize];
            put(
                memory,
                nvmlMemory_v2_t {
                    version: MEMORY_V2_VERSION,
                    total: d.memory_total,
                    reserved: d.memory_reserved,
                    free: d.memory_total.saturating_sub(d.memory_used.saturating_add(d.memory_reserved)),
                    used: d.memory_used,
                },
            )
        }))
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor_type: nvmlTemperatureSensors_t,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "temperature").map(|(st, i)| {
            if sensor_type != nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU {
                return INVALID_ARGUMENT;
            }
            put(temp, st.devices[i as usize].temperature)
        }))
    })
}

/// SHUTDOWN, SLOWDOWN and GPU_MAX (defaults to the slowdown value) are
/// answered; MEM_MAX only when `mem_max_temperature` is set; the acoustic /
/// GPS thresholds are NOT_SUPPORTED.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperatureThreshold(
    device: nvmlDevice_t,
    threshold_type: nvmlTemperatureThresholds_t,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "temperature_threshold").map(|(st, i)| {
            let d = &st.devices[i as usize];
            let value = match threshold_type {
                nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_SHUTDOWN => Some(d.shutdown_temperature),
                nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_SLOWDOWN => Some(d.slowdown_temperature),
                nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_GPU_MAX => {
                    Some(d.gpu_max_temperature.unwrap_or(d.slowdown_temperature))
                }
                nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_MEM_MAX => d.mem_max_temperature,
                t if t < nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_COUNT => None,
                _ => return INVALID_ARGUMENT,
            };
            match value {
                Some(v) => put(temp, v),
                None if temp.is_null() => INVALID_ARGUMENT,
                None => NOT_SUPPORTED,
            }
        }))
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "utilization").map(|(st, i)| {
            let d = &st.devices[i as usize];
            put(utilization, nvmlUtilization_t { gpu: d.utilization_gpu, memory: d.utilization_memory })
        }))
    })
}

/// Milliwatts.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: nvmlDevice_t, power: *mut c_uint) -> nvmlReturn_t {
    guard(|| rc(device_query(device, "power_usage").map(|(st, i)| put(power, st.devices[i as usize].power_usage_mw))))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(device: nvmlDevice_t, limit: *mut c_uint) -> nvmlReturn_t {
    guard(|| rc(device_query(device, "power_limit").map(|(st, i)| put(limit, st.devices[i as usize].power_limit_mw))))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerManagementLimit(device: nvmlDevice_t, limit: *mut c_uint) -> nvmlReturn_t {
    nvmlDeviceGetEnforcedPowerLimit(device, limit)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: nvmlDevice_t,
    clocks_throttle_reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "throttle_reasons")
            .map(|(st, i)| put(clocks_throttle_reasons, st.devices[i as usize].throttle_reasons)))
    })
}

/// Newer name of the same query (the bit values are identical).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksEventReasons(
    device: nvmlDevice_t,
    clocks_event_reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    nvmlDeviceGetCurrentClocksThrottleReasons(device, clocks_event_reasons)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: nvmlDevice_t,
    error_type: nvmlMemoryErrorType_t,
    counter_type: nvmlEccCounterType_t,
    ecc_counts: *mut c_ulonglong,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "ecc").map(|(st, i)| {
            let d = &st.devices[i as usize];
            let count = match (error_type, counter_type) {
                (
                    nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                    nvmlEccCounterType_enum_NVML_VOLATILE_ECC,
                ) => d.ecc_uncorrected_volatile,
                (
                    nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                    nvmlEccCounterType_enum_NVML_AGGREGATE_ECC,
                ) => d.ecc_uncorrected_aggregate,
                (
                    nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_CORRECTED,
                    nvmlEccCounterType_enum_NVML_VOLATILE_ECC,
                ) => d.ecc_corrected_volatile,
                (
                    nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_CORRECTED,
                    nvmlEccCounterType_enum_NVML_AGGREGATE_ECC,
                ) => d.ecc_corrected_aggregate,
                _ => return INVALID_ARGUMENT,
            };
            put(ecc_counts, count)
        }))
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetRetiredPagesPendingStatus(
    device: nvmlDevice_t,
    is_pending: *mut nvmlEnableState_t,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "retired_pages").map(|(st, i)| {
            let state = if st.devices[i as usize].retired_pages_pending {
                nvmlEnableState_enum_NVML_FEATURE_ENABLED
            } else {
                nvmlEnableState_enum_NVML_FEATURE_DISABLED
            };
            put(is_pending, state)
        }))
    })
}

/// The stand-in never has retired pages: the count is always 0.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetRetiredPages(
    device: nvmlDevice_t,
    cause: nvmlPageRetirementCause_t,
    page_count: *mut c_uint,
    _addresses: *mut c_ulonglong,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "retired_pages").map(|_| {
            if cause >= nvmlPageRetirementCause_enum_NVML_PAGE_RETIREMENT_CAUSE_COUNT {
                return INVALID_ARGUMENT;
            }
            put(page_count, 0)
        }))
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetRetiredPages_v2(
    device: nvmlDevice_t,
    cause: nvmlPageRetirementCause_t,
    page_count: *mut c_uint,
    addresses: *mut c_ulonglong,
    _timestamps: *mut c_ulonglong,
) -> nvmlReturn_t {
    nvmlDeviceGetRetiredPages(device, cause, page_count, addresses)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetRemappedRows(
    device: nvmlDevice_t,
    corr_rows: *mut c_uint,
    unc_rows: *mut c_uint,
    is_pending: *mut c_uint,
    failure_occurred: *mut c_uint,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "remapped_rows").map(|(st, i)| {
            let Some(rows) = &st.devices[i as usize].remapped_rows else {
                return NOT_SUPPORTED;
            };
            if corr_rows.is_null() || unc_rows.is_null() || is_pending.is_null() || failure_occurred.is_null() {
                return INVALID_ARGUMENT;
            }
            corr_rows.write(rows.correctable);
            unc_rows.write(rows.uncorrectable);
            is_pending.write(rows.pending as c_uint);
            failure_occurred.write(rows.failure as c_uint);
            SUCCESS
        }))
    })
}

// ---------------------------------------------------------------------------
// Events (see events.rs for the delivery rule)

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetSupportedEventTypes(
    device: nvmlDevice_t,
    event_types: *mut c_ulonglong,
) -> nvmlReturn_t {
    guard(|| {
        rc(device_query(device, "events").map(|(st, i)| put(event_types, st.devices[i as usize].supported_event_types)))
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    guard(|| events::create(set))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceRegisterEvents(
    device: nvmlDevice_t,
    event_types: c_ulonglong,
    set: nvmlEventSet_t,
) -> nvmlReturn_t {
    guard(|| events::register(device, event_types, set))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeoutms: c_uint,
) -> nvmlReturn_t {
    guard(|| events::wait(set, data, timeoutms))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetWait(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeoutms: c_uint,
) -> nvmlReturn_t {
    guard(|| events::wait(set, data, timeoutms))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    guard(|| events::free(set))
}
