//! Attaching the durable-state classes to the recoveries and the supervisor.

use napi::bindgen_prelude::*;
use napi::Env;
use std::sync::Arc;

use super::args::OptionsObject;
use super::checkpoint_manager::CheckpointManager;
use super::hooks::read_instance;
use super::incident_log::IncidentLog;
use crate::durable::manager::CheckpointManager as ManagerCore;
use crate::incident::IncidentSink;
use crate::supervisor::{CheckpointFuture, Checkpointer, SupervisorParts};

/// The manager as the supervisor's periodic checkpointer.
struct PeriodicCheckpoints(Arc<ManagerCore>);

impl Checkpointer for PeriodicCheckpoints {
    fn checkpoint(&self) -> CheckpointFuture {
        let core = self.0.clone();
        Box::pin(async move { core.create().await.map_err(|e| format!("{}: {}", e.code, e.message)) })
    }
}

/// The `incidentLog` option, as the sink recoveries and the supervisor write to.
pub fn read_incident_log(env: &Env, options: &OptionsObject) -> Result<Option<Arc<dyn IncidentSink>>> {
    options
        .raw("incidentLog")?
        .map(|v| {
            read_instance(env, Some(v), "incidentLog", "IncidentLog", |l: &IncidentLog| {
                l.core.clone() as Arc<dyn IncidentSink>
            })
        })
        .transpose()
}

/// Reads `checkpointManager` and `incidentLog` into the supervisor's parts.
pub fn attach_to_supervisor(env: &Env, options: &OptionsObject, parts: &mut SupervisorParts) -> Result<()> {
    parts.incidents = read_incident_log(env, options)?;
    parts.checkpointer = options
        .raw("checkpointManager")?
        .map(|v| {
            read_instance(env, Some(v), "checkpointManager", "CheckpointManager", |m: &CheckpointManager| {
                Arc::new(PeriodicCheckpoints(m.core.clone())) as Arc<dyn Checkpointer>
            })
        })
        .transpose()?;
    Ok(())
}
