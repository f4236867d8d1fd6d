//! Running core work on libuv's thread pool: the JS thread only converts the result.

use napi::bindgen_prelude::*;
use napi::Task;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Core work that runs off the JS thread, and its conversion back on it.
pub trait OffThread: Send + 'static {
    type Output: Send + 'static;
    type Js: ToNapiValue + TypeName;
    fn run(&self) -> Self::Output;
    fn to_js(output: Self::Output) -> Self::Js;
}

/// A napi `Task` for an [`OffThread`] job. A panic in the job becomes a rejection with code
/// `ERR_INTERNAL` rather than crossing into JavaScript.
pub struct Job<W: OffThread>(pub W);

impl<W: OffThread> Task for Job<W> {
    type Output = W::Output;
    type JsValue = W::Js;

    fn compute(&mut self) -> Result<Self::Output> {
        catch_panic(|| self.0.run()).map_err(|message| Error::new(Status::GenericFailure, message))
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(W::to_js(output))
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<Self::JsValue> {
        Err(coded_error(&env, "ERR_INTERNAL", &err.reason))
    }
}

/// Runs `work`; a panic becomes `Err` with the message users see.
pub fn catch_panic<T>(work: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        format!("internal error in hpc-health: {detail}")
    })
}

/// The entry point that the tests make panic (`HPC_HEALTH_TEST_PANIC_IN=Class.member`), read
/// once. It proves through a real entry point that a panic never crosses into JavaScript.
fn panic_for_test(entry: &str) -> bool {
    static NAMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAMED.get_or_init(|| std::env::var("HPC_HEALTH_TEST_PANIC_IN").ok()).as_deref() == Some(entry)
}

/// Runs the body of the synchronous entry point `entry` (`Class.member`): a panic throws an
/// `Error` with code `ERR_INTERNAL` instead of aborting the process, and so does a failed napi
/// call (napi would throw it with its own status, `InvalidArg` and the like, as the code). What
/// the body threw itself (a pending exception, an error made from a JS value) passes as it is.
pub fn guarded<T>(env: &Env, entry: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let run = || {
        if panic_for_test(entry) {
            panic!("{entry} made to panic by HPC_HEALTH_TEST_PANIC_IN");
        }
        body()
    };
    match catch_panic(run) {
        Ok(Err(e)) if !matches!(e.status, Status::PendingException | Status::GenericFailure) => {
            Err(coded_error(env, "ERR_INTERNAL", &format!("internal error in hpc-health: {entry}: {}", e.reason)))
        }
        Ok(result) => result,
        Err(message) => {
            // Whatever the body left pending gives way to the internal error.
            // SAFETY: on the JS thread, with this call's environment.
            let _ = unsafe { super::engine::take_exception(env.raw()) };
            Err(coded_error(env, "ERR_INTERNAL", &message))
        }
    }
}

/// An `Error` whose `code` is one of the package's stable codes.
pub fn coded_error(env: &Env, code: &str, message: &str) -> Error {
    let build = || -> Result<Error> {
        let mut error = env.create_error(Error::new(Status::GenericFailure, message))?;
        error.set_named_property("code", code)?;
        Ok(Error::from(error.to_unknown()))
    };
    build().unwrap_or_else(|e| e)
}

#[cfg(test)]
mod tests {
    use super::catch_panic;

    #[test]
    fn a_panic_becomes_an_internal_error_message_and_a_value_passes_through() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        assert_eq!(catch_panic(|| -> u8 { panic!("boom") }), Err("internal error in hpc-health: boom".to_owned()));
        let detail = format!("index {}", 3);
        assert_eq!(
            catch_panic(|| -> u8 { panic!("{detail}") }),
            Err("internal error in hpc-health: index 3".to_owned())
        );
        assert_eq!(
            catch_panic(|| -> u8 { std::panic::panic_any(42) }),
            Err("internal error in hpc-health: unknown panic".to_owned())
        );
    }
}

/// Runs `work` on the async runtime; a failure rejects with its code.
pub fn spawn_settled<'env, T: ToNapiValue + Send + 'static>(
    env: &'env Env,
    work: impl std::future::Future<Output = crate::durable::Result<T>> + Send + 'static,
) -> Result<PromiseRaw<'env, T>> {
    env.spawn_future_with_callback(async move { Ok(work.await) }, |env, result| {
        result.map_err(|e| coded_error(env, e.code, &e.message))
    })
}

/// Runs blocking `work` (disk reads, rendering) off the JS thread; a failure rejects with
/// its code, a panic with `ERR_INTERNAL`.
pub fn spawn_blocking_settled<'env, T: ToNapiValue + Send + 'static>(
    env: &'env Env,
    work: impl FnOnce() -> crate::durable::Result<T> + Send + 'static,
) -> Result<PromiseRaw<'env, T>> {
    spawn_settled(env, async move {
        tokio::task::spawn_blocking(work).await.unwrap_or_else(|join| {
            Err(crate::durable::DurableError::new("ERR_INTERNAL", format!("internal error in hpc-health: {join}")))
        })
    })
}
