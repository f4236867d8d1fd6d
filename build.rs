//! What `napi_build::setup()` emits for this crate's targets (Linux), less one line:
//! `rerun-if-env-changed=NAPI_FORCE_BUILD_HPC_HEALTH`. @napi-rs/cli sets that variable (to the
//! time) only when its type-definition folder has no file for the crate yet, i.e. on a first
//! build; cargo reruns a build script whenever a variable it tracks changes, so the next build,
//! where the variable is unset again, recompiled the whole crate (a second `npm install` took
//! minutes with nothing changed). The type-definition folder itself is still tracked, so a new
//! folder (another profile, flags or checkout) still recompiles and writes the typings.
use std::env;

fn main() {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        // The package is built for Linux only (package.json "os"); elsewhere napi-build knows best.
        return napi_build::setup();
    }
    // napi's own cfgs, declared on every target so that `unexpected_cfgs` stays quiet.
    println!("cargo::rustc-check-cfg=cfg(napi_wasi_threads)");
    println!("cargo::rustc-check-cfg=cfg(napi_wasi_no_heap_sync)");
    for var in [
        "DEBUG_GENERATED_CODE",
        "TYPE_DEF_TMP_PATH",
        "CARGO_CFG_NAPI_RS_CLI_VERSION",
        "NAPI_DEBUG_GENERATED_CODE",
        "NAPI_TYPE_DEF_TMP_FOLDER",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        // As napi-build: glibc must not unload the addon while thread-local destructors remain
        // (sourceware bugs 21031/21032, rust-lang/rust#134820).
        println!("cargo:rustc-link-arg=-Wl,-z,nodelete");
    }
}
