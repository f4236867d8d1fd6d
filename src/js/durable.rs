//! Attaching the checkpoint manager to the supervisor.

use std::sync::Arc;

use crate::durable::manager::CheckpointManager as ManagerCore;
use crate::incident::IncidentKind;
use crate::supervisor::{CheckpointFuture, Checkpointer};

/// The manager as the supervisor's periodic checkpointer.
struct PeriodicCheckpoints(Arc<ManagerCore>);

impl Checkpointer for PeriodicCheckpoints {
    fn checkpoint(&self) -> CheckpointFuture {
        let core = self.0.clone();
        Box::pin(async move { core.create().await.map_err(|e| format!("{}: {}", e.code, e.message)) })
    }

    fn incident_counts(&self) -> std::collections::BTreeMap<IncidentKind, u64> {
        self.0.incident_counts()
    }
}

/// The checkpoint manager as the supervisor's periodic checkpointer.
pub fn periodic_checkpoints(manager: Arc<ManagerCore>) -> Arc<dyn Checkpointer> {
    Arc::new(PeriodicCheckpoints(manager))
}
