'use strict'
// The requirements' service, wired to hpc-health: monitors, recoveries, durable state, the
// supervisor's health-check loop, a simulated GPU job queue, and the operator endpoints.
const fs = require('node:fs')
const path = require('node:path')
const {
  MemoryMonitor, GPUHealthMonitor, GPURecovery, CheckpointManager, IncidentLog, HealthSupervisor, renderReport,
} = require('../..')
const { MemoryManager } = require('./MemoryManager')
const { JobQueue } = require('./JobQueue')
const { SimulatedWorker } = require('./SimulatedWorker')
const { startServers } = require('./server')

/** The service's options from the environment; see main.js for what each variable means. */
function optionsFromEnv(env = process.env) {
  const number = (name) => {
    if (env[name] === undefined || env[name] === '') return undefined
    const value = Number(env[name])
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number, got ${JSON.stringify(env[name])}`)
    return value
  }
  return {
    stateDir: env.HPC_HEALTH_STATE_DIR,
    intervalMs: number('HPC_HEALTH_INTERVAL_MS'),
    wsPort: number('HPC_WS_PORT'),
    httpPort: number('HPC_HTTP_PORT'),
    rpcToken: env.HPC_HEALTH_RPC_TOKEN,
    workerToken: env.HPC_HEALTH_WORKER_TOKEN,
    expectedGpus: number('HPC_HEALTH_EXPECTED_GPUS'),
    syntheticJobsMs: number('HPC_SYNTHETIC_JOBS_MS'),
    jobDurationMs: number('HPC_JOB_DURATION_MS'),
    checkpointIntervalMs: number('HPC_CHECKPOINT_INTERVAL_MS'),
    historyStepMs: number('HPC_HISTORY_STEP_MS'),
    maxChecks: number('HPC_HEALTH_CHECKS'), // for main.js's run(), not the service
  }
}

const DEFAULTS = {
  stateDir: './var',
  intervalMs: 5000,
  wsPort: 0,
  httpPort: 0,
  checkpointIntervalMs: 60000,
}

class HPCServiceFactory {
  /** `options`: see `optionsFromEnv`; `log` gets one line per thing worth telling an operator. */
  constructor(options = {}, log = console.log) {
    const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))
    this.options = { ...DEFAULTS, ...given }
    this.log = log
  }

  async initialize() {
    await this.initializeService()
    this.memoryMonitor = new MemoryMonitor()
    this.gpuMonitor = new GPUHealthMonitor({ expectedGpus: this.options.expectedGpus ?? null })
    this.memoryManager = new MemoryManager(this.memoryMonitor, this.worker, { incidentLog: this.incidentLog })
    this.gpuRecovery = new GPURecovery(this.gpuMonitor, {
      emptyCache: () => this.worker.emptyCache(),
      resetPeakMemoryStats: () => this.worker.resetPeakMemoryStats(),
      reinitialize: () => this.worker.restart(),
      incidentLog: this.incidentLog,
    })
    this.checkpoints = new CheckpointManager({
      directory: path.join(this.stateDir, 'checkpoints'),
      memoryMonitor: this.memoryMonitor,
      gpuMonitor: this.gpuMonitor,
      incidentLog: this.incidentLog,
      captureState: () => ({ pending_jobs: this.jobs.pending() }),
    })
    for (const skipped of this.checkpoints.opened.skipped) this.log(`checkpoints: skipped ${skipped.id}: ${skipped.reason}`)
    this.supervisor = new HealthSupervisor({
      memoryMonitor: this.memoryMonitor,
      gpuMonitor: this.gpuMonitor,
      memoryRecovery: this.memoryManager.recovery,
      gpuRecovery: this.gpuRecovery,
      checkpointManager: this.checkpoints,
      incidentLog: this.incidentLog,
      intervalMs: this.options.intervalMs,
      checkpointIntervalMs: this.options.checkpointIntervalMs,
      restartProcess: () => this.worker.restart(),
      // The metrics history `hpc-health report` and GET /report read (without the lock).
      historyDir: path.join(this.stateDir, 'history'),
      historyStepMs: this.options.historyStepMs,
    })
    this.jobs = new JobQueue({
      checkpoints: this.checkpoints,
      pausedReasons: () => this.pausedReasons(),
      jobDurationMs: this.options.jobDurationMs,
      syntheticJobsMs: this.options.syntheticJobsMs,
      log: this.log,
    })
    this.jobs.resume(await this.interruptedJobs())
    this.servers = await startServers({
      supervisor: this.supervisor,
      jobs: this.jobs,
      wsPort: this.options.wsPort,
      httpPort: this.options.httpPort,
      rpcToken: this.options.rpcToken,
      workerToken: this.options.workerToken,
      report: (options) => this.report(options),
      log: this.log,
    })
    this.startHealthCheck()
    return this
  }

  /** Opens the state directory (0700: checkpoints and incidents may describe the workload) and the worker. */
  async initializeService() {
    this.stateDir = path.resolve(this.options.stateDir)
    await fs.promises.mkdir(this.stateDir, { recursive: true, mode: 0o700 })
    this.incidentLog = new IncidentLog({ directory: path.join(this.stateDir, 'incidents') })
    this.worker = new SimulatedWorker(this.log)
  }

  /** The jobs that were running when the last process died, from the newest checkpoint and the journal. */
  async interruptedJobs() {
    try {
      const { checkpoint, operations } = await this.checkpoints.restoreFromCheckpoint()
      this.log(`checkpoints: restored ${checkpoint.id}`)
      return operations
    } catch (error) {
      if (error.code !== 'ERR_NOT_FOUND') throw error
      // No checkpoint yet (the first run, or a crash before the first one): the journal alone knows.
      return this.checkpoints.getActiveOperations()
    }
  }

  startHealthCheck() {
    this.supervisor.start()
  }

  /**
   * The morning report on this service's state directory (what `hpc-health report` reads),
   * with the thresholds this service judges by; `options` as `renderReport` takes them.
   */
  report(options) {
    const { gpu_memory, system_memory } = this.memoryMonitor.thresholds
    const { temperature } = this.gpuMonitor.thresholds
    return renderReport(this.stateDir, { ...options, thresholds: { gpu_memory, system_memory, temperature } })
  }

  checkSystemHealth(checkType) {
    return this.supervisor.checkSystemHealth(checkType)
  }

  triggerRecovery(health) {
    return this.supervisor.triggerRecovery(health)
  }

  /**
   * Why the service takes no work, the real cause first (a lost GPU, then health nobody has
   * confirmed lately, then intake pauses), one line per reason; empty while ready.
   */
  pausedReasons() {
    return this.supervisor.status().not_ready_reasons
  }

  /**
   * Stops taking work, stops the loop, and releases the state directories (another process may
   * open them then). Unfinished jobs stay open in the journal for the next start. Idempotent.
   * `beforeClosingLog` runs once nothing writes incidents any more (main.js prints the last).
   */
  async shutdown({ beforeClosingLog } = {}) {
    this.closing ??= (async () => {
      this.jobs?.stop()
      await this.servers?.close()
      await this.supervisor?.stop() // no more checks, recoveries or checkpoints write to the state now
      await this.checkpoints?.close() // waits for a job's endOperation in flight
      await beforeClosingLog?.()
      await this.incidentLog?.close()
    })()
    return this.closing
  }
}

module.exports = { HPCServiceFactory, optionsFromEnv }
