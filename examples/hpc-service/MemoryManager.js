'use strict'
// Memory recovery for the service: the package's MemoryRecovery, with hooks that forward each
// step to the worker that holds the GPU memory.
const { MemoryRecovery } = require('../..')

class MemoryManager {
  constructor(memoryMonitor, worker, { incidentLog } = {}) {
    this.recovery = new MemoryRecovery(memoryMonitor, {
      clearGPUCache: () => worker.emptyCache(),
      defragmentMemory: () => worker.defragment(),
      // A step that failed or hung leaves the worker in an unknown state: restart it. Jobs it
      // was running stay in the journal and are resumed.
      emergencyCleanup: () => worker.restart(),
      incidentLog,
    })
  }

  /** True while a memory recovery keeps intake stopped; the job queue refuses new work then. */
  get pause_incoming() {
    return this.recovery.pause_incoming
  }
}

module.exports = { MemoryManager }
