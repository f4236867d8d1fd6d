'use strict'
// The service under soak, wired as a real one would be: MemoryMonitor and GPUHealthMonitor on
// the stand-in GPUs, MemoryRecovery and GPURecovery whose hooks stand for the CUDA worker
// (and consult the fault schedule: they succeed, throw or hang as it says), a
// CheckpointManager and an IncidentLog in a state directory, a HealthSupervisor with
// autoRecover, a recovery budget and periodic checkpoints, and a little request workload
// that honours intake and journals each request as an operation.
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { GiB } = require('../../__test__/helpers/standin')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A state directory for checkpoints on a small tmpfs, so that the schedule can fill the
 * disk; `null` (and why) where mounting is not possible (not root, no CAP_SYS_ADMIN).
 */
function mountTinyTmpfs(mountPoint, sizeBytes) {
  fs.mkdirSync(mountPoint, { recursive: true, mode: 0o700 })
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'soak-checkpoints', mountPoint], { stdio: 'pipe' })
    return { mounted: true, reason: null }
  } catch (e) {
    return { mounted: false, reason: String(e.stderr || e.message).trim().split('\n')[0] }
  }
}

function unmount(mountPoint) {
  try {
    execFileSync('umount', [mountPoint], { stdio: 'pipe' })
  } catch {
    try { execFileSync('umount', ['-l', mountPoint], { stdio: 'pipe' }) } catch { /* left for the reader */ }
  }
}

/**
 * The hooks' view of the worker and of the fault schedule. `hookMode` is what the next
 * clearGPUCache does: 'ok' (the worker frees its cache), 'fail' (it throws), 'hang' (it does
 * not answer within the step timeout), 'relapse' (it frees the cache, and the memory comes back).
 */
class Worker {
  constructor({ gpus, gpuMonitor, stepTimeoutMs, recorder }) {
    this.gpus = gpus
    this.gpuMonitor = gpuMonitor
    this.stepTimeoutMs = stepTimeoutMs
    this.recorder = recorder
    this.hookMode = 'ok'
    this.relapse = null // { device, memoryUsed, afterMs } while hookMode is 'relapse'
    this.allocator = new Map() // device -> { allocated, reserved }
    this.calls = { clearGPUCache: 0, defragmentMemory: 0, emergencyCleanup: 0, emptyCache: 0, resetPeakMemoryStats: 0, reinitialize: 0, restartProcess: 0 }
    this.failedHooks = 0
    this.hungHooks = 0
    this.cleanups = [] // since the last cut: { at, code, step }
    this.reinitialized = [] // since the last cut: times
    this.restarts = [] // since the last cut: times
  }

  report(device, allocated, reserved) {
    this.allocator.set(device, { allocated, reserved })
    this.gpuMonitor.reportAllocatorStats({ device, allocated, reserved, pid: process.pid })
  }

  // MemoryRecovery
  clearGPUCache() {
    this.calls.clearGPUCache++
    if (this.hookMode === 'fail') {
      this.failedHooks++
      throw new Error('the CUDA worker did not answer empty_cache (injected fault)')
    }
    if (this.hookMode === 'hang') {
      this.hungHooks++
      // Answers long after the step timeout: the step is abandoned, not awaited.
      return sleep(this.stepTimeoutMs * 2)
    }
    this.gpus.releaseMemory()
    if (this.hookMode === 'relapse') {
      // Freed now, so the recovery verifies; back moments later (the schedule's memory_relapse).
      const { device, memoryUsed, afterMs } = this.relapse
      setTimeout(() => { if (this.hookMode === 'relapse') this.gpus.set(device, { memory_used: memoryUsed }) }, afterMs)
    }
    return sleep(1)
  }

  defragmentMemory() {
    this.calls.defragmentMemory++
  }

  emergencyCleanup(error) {
    this.calls.emergencyCleanup++
    this.cleanups.push({ at: Date.now(), code: error && error.code, step: error && error.step })
    // Restarting the worker releases everything it held.
    this.gpus.releaseMemory()
  }

  // GPURecovery
  emptyCache() {
    this.calls.emptyCache++
    for (const [device, { allocated }] of this.allocator) this.report(device, allocated, Math.round(allocated * 1.05))
  }

  resetPeakMemoryStats() {
    this.calls.resetPeakMemoryStats++
  }

  reinitialize() {
    this.calls.reinitialize++
    this.reinitialized.push(Date.now())
  }

  // HealthSupervisor
  async restartProcess() {
    this.calls.restartProcess++
    const start = Date.now()
    this.restarts.push(start)
    await sleep(2)
    this.recorder.noteRun({ id: `process-${start}-${this.calls.restartProcess}`, type: 'process', start, end: Date.now() })
  }
}

/** Requests: while intake is open each is journalled as an operation, begun and ended. */
class Workload {
  constructor({ manager, supervisor, everyMs, faults }) {
    this.manager = manager
    this.supervisor = supervisor
    this.everyMs = everyMs
    this.faults = faults // tells whether a journal failure is expected now
    this.n = 0
    this.begun = 0
    this.ended = 0
    this.refused = 0
    this.writeFailures = 0
    this.unexpectedFailures = []
    this.toEnd = []
    this.timer = null
    this.busy = false
  }

  start() {
    this.timer = setInterval(() => this.tick(), this.everyMs)
  }

  async tick() {
    if (this.busy) return
    this.busy = true
    try {
      // Ends that failed (a full disk) are retried first.
      for (const id of this.toEnd.splice(0)) await this.end(id)
      if (!this.supervisor.status().accepting_requests) {
        this.refused++
        return
      }
      const id = `request-${++this.n}`
      try {
        await this.manager.beginOperation(id, { n: this.n })
        this.begun++
      } catch (e) {
        return this.failed('begin', e)
      }
      await this.end(id)
    } finally {
      this.busy = false
    }
  }

  async end(id) {
    try {
      await this.manager.endOperation(id, { ok: true })
      this.ended++
    } catch (e) {
      if (e.code === 'ERR_NOT_FOUND') return
      this.toEnd.push(id)
      this.failed('end', e)
    }
  }

  failed(what, e) {
    this.writeFailures++
    if (!this.faults.journalFailureExpected(Date.now())) {
      if (this.unexpectedFailures.length < 20) this.unexpectedFailures.push(`${what}: ${e.code} ${e.message}`)
    }
  }

  async stop() {
    clearInterval(this.timer)
    while (this.busy) await sleep(5)
    for (const id of this.toEnd.splice(0)) await this.end(id)
  }

  figures() {
    return { requests_begun: this.begun, requests_ended: this.ended, refused_while_paused: this.refused, journal_write_failures: this.writeFailures, pending_ends: this.toEnd.length, unexpected_failures: this.unexpectedFailures }
  }
}

/**
 * Builds the service. `config` holds the mode's timings; `faults` answers the hooks'
 * questions about the schedule (`oversizeCheckpoint()`, `journalFailureExpected(t)`).
 */
function buildService({ h, library, gpus, dirs, config, recorder, faults }) {
  const memoryMonitor = new h.MemoryMonitor({
    nvmlLibraryPath: library,
    thresholds: { warning_interval: config.warningIntervalMs },
  })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: library, expectedGpus: gpus.count, xidWindowMs: config.xidWindowMs })
  const incidentLog = new h.IncidentLog({ directory: dirs.incidents, rateLimit: { max: 100000, windowMs: 60000 } })
  const worker = new Worker({ gpus, gpuMonitor, stepTimeoutMs: config.stepTimeoutMs, recorder })
  const memoryRecovery = new h.MemoryRecovery(memoryMonitor, {
    clearGPUCache: () => worker.clearGPUCache(),
    defragmentMemory: () => worker.defragmentMemory(),
    emergencyCleanup: (error) => worker.emergencyCleanup(error),
    stepTimeoutMs: config.stepTimeoutMs,
    incidentLog,
  })
  const gpuRecovery = new h.GPURecovery(gpuMonitor, {
    emptyCache: () => worker.emptyCache(),
    resetPeakMemoryStats: () => worker.resetPeakMemoryStats(),
    reinitialize: () => worker.reinitialize(),
    stepTimeoutMs: config.stepTimeoutMs,
    deviceWaitMs: config.deviceWaitMs,
    incidentLog,
  })
  const service = { started: Date.now(), checkpointsCaptured: 0 }
  const checkpointManager = new h.CheckpointManager({
    directory: dirs.checkpoints,
    retain: 3,
    maxBytes: config.checkpointMaxBytes,
    memoryMonitor,
    gpuMonitor,
    incidentLog,
    stepTimeoutMs: config.stepTimeoutMs,
    captureState: () => {
      service.checkpointsCaptured++
      const state = { uptime_ms: Date.now() - service.started, checks: recorder.checks, hook_calls: worker.calls }
      // Without a tmpfs to fill, a full disk is a state larger than maxBytes.
      if (faults.oversizeCheckpoint()) state.pad = 'x'.repeat(config.checkpointMaxBytes)
      return state
    },
  })
  const supervisor = new h.HealthSupervisor({
    memoryMonitor,
    gpuMonitor,
    memoryRecovery,
    gpuRecovery,
    checkpointManager,
    incidentLog,
    intervalMs: config.intervalMs,
    autoRecover: true,
    recoveryBudget: { max: config.budgetMax, windowMs: config.budgetWindowMs },
    checkpointIntervalMs: config.checkpointIntervalMs,
    checkTimeoutMs: config.checkTimeoutMs,
    restartProcess: () => worker.restartProcess(),
    historyDir: dirs.history,
    historyStepMs: config.historyStepMs,
  })
  recorder.recoveries = { memory: memoryRecovery, gpu: gpuRecovery }
  recorder.attach(supervisor)
  const workload = new Workload({ manager: checkpointManager, supervisor, everyMs: config.workloadEveryMs, faults })
  return { memoryMonitor, gpuMonitor, incidentLog, memoryRecovery, gpuRecovery, checkpointManager, supervisor, worker, workload, service }
}

module.exports = { buildService, mountTinyTmpfs, unmount, Worker, Workload, GiB, sleep }
