//! Attaching the durable-state classes to the supervisor.

use napi::bindgen_prelude::*;
use napi::Env;

use super::args::{type_error, OptionsObject};
use crate::supervisor::SupervisorParts;

/// Reads `checkpointManager` and `incidentLog` into the supervisor's parts.
pub fn attach_to_supervisor(env: &Env, options: &OptionsObject, _parts: &mut SupervisorParts) -> Result<()> {
    for key in ["checkpointManager", "incidentLog"] {
        if options.raw(key)?.is_some() {
            return Err(type_error(env, "ERR_INVALID_ARG_VALUE", format!("{key} is not available yet")));
        }
    }
    Ok(())
}
