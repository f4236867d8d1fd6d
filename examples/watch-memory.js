'use strict'
// `npm start`: watch this machine's memory and GPUs, one line per check.
// HPC_HEALTH_NVML_LIBRARY picks the NVML library (the tests' stand-in on a machine without a GPU).
// Stops on Ctrl-C, or after HPC_HEALTH_CHECKS checks when that is set.
const { MemoryMonitor } = require('..')

const intervalMs = Number(process.env.HPC_HEALTH_INTERVAL_MS || 5000)
const maxChecks = Number(process.env.HPC_HEALTH_CHECKS || Infinity)
const monitor = new MemoryMonitor()
const gib = (bytes) => (bytes / 2 ** 30).toFixed(2)

console.log(`hpc-health: checking memory every ${intervalMs} ms (thresholds ${JSON.stringify(monitor.thresholds)})`)
let checks = 0
async function check() {
  const p = await monitor.checkMemoryPressure()
  const m = p.metrics
  const psi = m.psi ? ` psi some=${m.psi.some_avg10}% full=${m.psi.full_avg10}%` : ''
  const gpus = m.gpu_available
    ? m.gpus.map((g) => `gpu${g.index}=${g.lost ? 'LOST' : `${gib(g.used)}/${gib(g.total)}GiB`}`).join(' ')
    : `gpu: ${m.gpu_error}`
  console.log(`${new Date(m.timestamp).toISOString()} system ${gib(m.system_used)}/${gib(m.system_total)}GiB (${m.memory_limit_source})` +
    `${psi} pressure system=${p.system_pressure} gpu=${p.gpu_pressure} ${gpus}`)
  if (++checks < maxChecks) setTimeout(check, intervalMs)
}
check()
