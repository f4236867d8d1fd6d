'use strict'
// `npm start`: runs the example service and prints a line per health check, recovery and incident.
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
//                               upgrade as `Authorization: Bearer <token>` or `?token=<token>`;
//                               without one a connection may call only the read-only methods
//   HPC_HEALTH_EXPECTED_GPUS    fewer visible GPUs is unhealthy (GPU_MISSING)
//   HPC_SYNTHETIC_JOBS_MS       submit a synthetic job this often
//   HPC_JOB_DURATION_MS         how long a job runs unless it says otherwise (default 2000)
//   HPC_CHECKPOINT_INTERVAL_MS  checkpoint interval (default 60000)
//   HPC_HEALTH_NVML_LIBRARY     the NVML library; point it at target/release/libnvml_standin.so
//                               to see (stand-in) GPUs on a machine without one
const { HPCServiceFactory, optionsFromEnv } = require('./HPCServiceFactory')

const time = (ms) => new Date(ms).toISOString()

/** Starts the service and reports on stdout until SIGINT/SIGTERM or `maxChecks` checks. */
async function run({ maxChecks = Infinity, ...options }) {
  const service = new HPCServiceFactory(options)
  await service.initialize()
  const { supervisor, servers } = service
  console.log(`hpc-service: JSON-RPC and MCP on ${servers.wsUrl}`)
  console.log(`hpc-service: HTTP on ${servers.httpUrl} (/metrics /healthz /readyz /jobs)`)
  console.log(`hpc-service: state in ${service.stateDir}; a health check every ${service.options.intervalMs} ms`)

  let checks = 0
  supervisor.on('health', (health) => {
    const codes = health.issues.map((i) => (i.device === null ? i.code : `${i.code}@gpu${i.device}`)).join(',') || '-'
    console.log(`${time(health.timestamp)} check ${health.healthy ? 'healthy' : 'UNHEALTHY'} issues=${codes} accepting=${health.accepting_requests}`)
    if (++checks === maxChecks) stop(`${checks} checks done`)
  })
  supervisor.on('recovery', ({ actions }) => {
    for (const a of actions) {
      console.log(`${time(Date.now())} recovery ${a.type} ${a.issue ?? ''}${a.device === null ? '' : `@gpu${a.device}`} -> ${a.result}${a.detail ? ` (${a.detail})` : ''}`)
    }
  })
  supervisor.on('incident', (incident) => console.log(`${time(Date.now())} incident [${incident.severity}] ${incident.kind}: ${incident.message}`))
  supervisor.on('error', (error) => console.log(`${time(Date.now())} monitoring error: ${error.message}`))

  async function stop(why) {
    console.log(`hpc-service: shutting down (${why})`)
    try {
      await service.shutdown()
      console.log('hpc-service: stopped')
      // Nothing is left to keep the process alive: it exits on its own.
    } catch (error) {
      // Called from signal and event handlers: a rejection here would be unhandled.
      console.error(`hpc-service: shutdown failed: ${error.code ? `${error.code}: ` : ''}${error.message}`)
      process.exitCode = 1
    }
  }
  process.once('SIGINT', () => stop('SIGINT'))
  process.once('SIGTERM', () => stop('SIGTERM'))
  return service
}

if (require.main === module) {
  const main = async () => run(optionsFromEnv(process.env))
  main().catch((error) => {
    console.error(`hpc-service: ${error.code ? `${error.code}: ` : ''}${error.message}`)
    process.exitCode = 1
  })
}

module.exports = { run }
