'use strict'
// `npm start`: runs the example service and prints which GPUs it sees (or why none), then a line
// per health check, recovery and incident (the supervisor's, checkpoints' and recoveries').
// SIGINT or SIGTERM shuts it down cleanly (exit 0); the same signal again later than
// REPEATED_SIGNAL_MS after the first exits at once with 128 + the signal's number.
//
// Environment:
//   HPC_HEALTH_INTERVAL_MS      health-check interval (default 5000)
//   HPC_HEALTH_CHECKS           stop after this many checks (for scripted runs)
//   HPC_HEALTH_STATE_DIR        checkpoints and incidents go here (default ./var)
//   HPC_WS_PORT, HPC_HTTP_PORT  listen on 127.0.0.1 at these ports (default 0: any free port)
//   HPC_HEALTH_RPC_TOKEN        the operator token: allows every control method over JSON-RPC/MCP
//                               (recoverSystem, reportAllocatorStats); none: nobody may call them
//   HPC_HEALTH_WORKER_TOKEN     the worker token: allows reportAllocatorStats only (for the CUDA
//                               worker's allocator reports). Either token goes in the WebSocket
//                               upgrade, or on each POST /mcp, as `Authorization: Bearer <token>`
//                               (or `?token=<token>`); without one only the read-only methods
//   HPC_HEALTH_EXPECTED_GPUS    fewer visible GPUs is unhealthy (GPU_MISSING)
//   HPC_SYNTHETIC_JOBS_MS       submit a synthetic job this often
//   HPC_JOB_DURATION_MS         how long a job runs unless it says otherwise (default 2000)
//   HPC_CHECKPOINT_INTERVAL_MS  checkpoint interval (default 60000)
//   HPC_HISTORY_STEP_MS         the metrics history's finest step (default 10000)
//   HPC_HEALTH_NVML_LIBRARY     the NVML library; point it at target/release/libnvml_standin.so
//                               to see (stand-in) GPUs on a machine without one
const os = require('node:os')
const { HPCServiceFactory, optionsFromEnv } = require('./HPCServiceFactory')

const time = (ms) => new Date(ms).toISOString()

/**
 * A second SIGINT or SIGTERM this soon after the first is the same Ctrl-C delivered twice: the
 * terminal signals the whole foreground group, and a parent such as `npm start` forwards it too.
 */
const REPEATED_SIGNAL_MS = 1000

/** Starts the service and reports on stdout until SIGINT/SIGTERM or `maxChecks` checks. */
async function run({ maxChecks = Infinity, ...options }) {
  const service = new HPCServiceFactory(options)
  const startedAt = Date.now()
  await service.initialize()
  const { supervisor, servers } = service
  console.log(`hpc-service: JSON-RPC and MCP on ${servers.wsUrl}`)
  console.log(`hpc-service: HTTP on ${servers.httpUrl} (/metrics /healthz /readyz /jobs /report)`)
  console.log(`hpc-service: what happened overnight: ${servers.httpUrl}/report (or: hpc-health report)`)
  console.log(`hpc-service: MCP (Streamable HTTP) on ${servers.mcpUrl}`)
  console.log(`hpc-service: state in ${service.stateDir}; a health check every ${service.options.intervalMs} ms`)
  // Which GPUs the service watches, or why it watches none (no driver, no NVML library, ...).
  console.log(`hpc-service: ${await describeGpuSide(service.gpuMonitor)}`)
  const incidents = incidentPrinter(service.incidentLog, startedAt)
  incidents.print()

  let checks = 0
  supervisor.on('health', (health) => {
    const codes = health.issues.map((i) => (i.device === null ? i.code : `${i.code}@gpu${i.device}`)).join(',') || '-'
    console.log(`${time(health.timestamp)} check ${health.healthy ? 'healthy' : 'UNHEALTHY'} issues=${codes} accepting=${health.accepting_requests}`)
    incidents.print()
    if (++checks === maxChecks) stopOnce(`${checks} checks done`)
  })
  supervisor.on('recovery', ({ actions }) => {
    for (const a of actions) {
      console.log(`${time(Date.now())} recovery ${a.type} ${a.issue ?? ''}${a.device === null ? '' : `@gpu${a.device}`} -> ${a.result}${a.detail ? ` (${a.detail})` : ''}`)
    }
    incidents.print()
  })
  // An incident the log took is printed from the log, with every other writer's (checkpoints,
  // recoveries); one the log could not take (no seq) only here.
  supervisor.on('incident', (incident) => (incident.seq === undefined ? console.log(incidentLine(Date.now(), incident)) : incidents.print()))
  supervisor.on('error', (error) => console.log(`${time(Date.now())} monitoring error: ${error.message}`))

  let stopping = null
  let firstSignalAt = 0
  async function stop(why) {
    console.log(`hpc-service: shutting down (${why})`)
    try {
      await service.shutdown({ beforeClosingLog: () => incidents.print() })
      console.log('hpc-service: stopped')
      // Nothing is left to keep the process alive: it exits on its own, with 0.
    } catch (error) {
      // Called from signal and event handlers: a rejection here would be unhandled.
      console.error(`hpc-service: shutdown failed: ${error.code ? `${error.code}: ` : ''}${error.message}`)
      process.exitCode = 1
    }
  }
  const stopOnce = (why) => (stopping ??= stop(why))
  const onSignal = (signal) => {
    if (stopping === null) {
      firstSignalAt = Date.now()
      return stopOnce(signal)
    }
    if (Date.now() - firstSignalAt < REPEATED_SIGNAL_MS) return
    // Asked again while shutting down: the operator does not want to wait for it.
    console.error(`hpc-service: ${signal} during shutdown: exiting now`)
    process.exit(128 + os.constants.signals[signal])
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  return service
}

/** One line per incident. */
const incidentLine = (timestamp, incident) => `${time(timestamp)} incident [${incident.severity}] ${incident.kind}: ${incident.message}`

/** The GPUs `gpuMonitor` sees, by index and name, or why the GPU side is unavailable. */
async function describeGpuSide(gpuMonitor) {
  try {
    const gpu = await gpuMonitor.checkGpuHealth()
    if (gpu.devices.length === 0) return `GPU side unavailable: ${gpu.gpu_error ?? 'no GPU visible'}`
    return `${gpu.devices.length} GPU(s): ${gpu.devices.map((d) => `${d.index} ${d.name ?? '?'}`).join(', ')}`
  } catch (error) {
    return `GPU side unavailable: ${error.code ? `${error.code}: ` : ''}${error.message}`
  }
}

/**
 * Prints the incidents every part of the service recorded (the supervisor, checkpoints,
 * recoveries) from `log`, each once and in order, from those of this run (`since`) on.
 */
function incidentPrinter(log, since) {
  let nextSeq = null
  let printing = Promise.resolve()
  const printNew = async () => {
    const records = await log.read(nextSeq === null ? { since } : { sinceSeq: nextSeq })
    for (const r of records) console.log(incidentLine(r.timestamp, r))
    if (records.length > 0) nextSeq = records.at(-1).seq + 1
  }
  return {
    /** Prints what is new; one read at a time. Resolves when done; never rejects. */
    print() {
      printing = printing.then(printNew).catch((error) => console.log(`${time(Date.now())} incident log: ${error.message}`))
      return printing
    },
  }
}

if (require.main === module) {
  const main = async () => run(optionsFromEnv(process.env))
  main().catch((error) => {
    console.error(`hpc-service: ${error.code ? `${error.code}: ` : ''}${error.message}`)
    process.exitCode = 1
  })
}

module.exports = { run }
