'use strict'
// Crash during recovery, the child: a MemoryRecovery with an IncidentLog attached runs once.
// Its clearGPUCache hook reads the log for the run's `recovery_started` record (on disk
// before the first step acts), prints `started <id>`, and then, with `hang`, never settles:
// the parent kills the process between recovery_started and recovery_finished. With
// `finish`, the hook returns and the child prints `finished <id>` once the run resolved.
const h = require('../..')

const [directory, mode] = process.argv.slice(2)
const log = new h.IncidentLog({ directory })
const monitor = new h.MemoryMonitor()
let startedId = null
const recovery = new h.MemoryRecovery(monitor, {
  incidentLog: log,
  stepTimeoutMs: 600000,
  clearGPUCache: async () => {
    const started = await log.read({ kinds: ['recovery_started'] })
    startedId = started[started.length - 1].details.id
    process.stdout.write(`started ${startedId}\n`)
    if (mode === 'hang') await new Promise(() => {}) // the worker never answers
  },
})
// Hooks are called through weak handles: something has to keep the process up until the
// parent's SIGKILL.
const keepAlive = setInterval(() => {}, 1000)
recovery
  .recoverFromPressure()
  .then(() => process.stdout.write(`finished ${recovery.lastOutcome.id}\n`))
  .catch((e) => process.stdout.write(`finished ${recovery.lastOutcome && recovery.lastOutcome.id} ${e.code}\n`))
// The parent ends it with SIGKILL in both modes.
void keepAlive
