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
        catch_unwind(AssertUnwindSafe(|| self.0.run())).map_err(|panic| {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Error::new(Status::GenericFailure, format!("internal error in hpc-health: {detail}"))
        })
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(W::to_js(output))
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<Self::JsValue> {
        Err(coded_error(&env, "ERR_INTERNAL", &err.reason))
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
