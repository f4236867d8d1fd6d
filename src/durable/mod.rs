//! Durable state: one persistence module owns every file protocol; checkpoints, the operation journal and the incident log build on it.
