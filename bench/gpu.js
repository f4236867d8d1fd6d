'use strict'
// checkGpuHealth() on 8 stand-in devices beside what every nvidia-smi based monitor pays at
// the least: starting one child process (here /bin/true, which does nothing; nvidia-smi
// itself then spends tens to hundreds of milliseconds talking to the driver), and
// systeminformation.graphics() as it runs on this machine.
const path = require('node:path')
const { execFile } = require('node:child_process')
const { median, formatTable } = require('./stats')

const ROUNDS = Number(process.env.BENCH_ROUNDS || 15)
const CALLS = Number(process.env.BENCH_GPU_CALLS || 200)

async function timeCalls(fn, calls) {
  for (let i = 0; i < 10; i++) await fn()
  const perCallUs = []
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) await fn()
    perCallUs.push(Number(process.hrtime.bigint() - start) / 1000 / calls)
  }
  return median(perCallUs)
}

async function run() {
  const { StandinState, device, STANDIN_LIBRARY } = require('../__test__/helpers/standin')
  const standin = new StandinState({ devices: Array.from({ length: 8 }, (_, i) => device(i)) })
  process.env.HPC_HEALTH_STANDIN_STATE = standin.file
  const { GPUHealthMonitor } = require('..')
  const si = require('systeminformation')
  const monitor = new GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, expectedGpus: 8 })
  const spawnTrue = () => new Promise((resolve, reject) => execFile('/bin/true', (e) => (e ? reject(e) : resolve())))
  const rows = [
    ['hpc-health checkGpuHealth(), 8 devices', await timeCalls(() => monitor.checkGpuHealth(), CALLS)],
    ['start one child process (/bin/true)', await timeCalls(spawnTrue, Math.max(10, CALLS / 4))],
    ['systeminformation.graphics() (no nvidia-smi here)', await timeCalls(() => si.graphics(), 5)],
  ]
  const ours = rows[0][1]
  const table = formatTable(
    ['method', 'µs/call (median)', 'vs hpc-health'],
    rows.map(([name, us]) => [name, us.toFixed(1), `${(us / ours).toFixed(1)}x`]),
  )
  const summary = [
    `one checkGpuHealth() over 8 devices (every signal, issues judged) takes 1/${(rows[1][1] / ours).toFixed(1)} of the time it takes just to start the process an nvidia-smi based monitor would start`,
    `the stand-in answers each query after one stat() of its state file; on real GPUs each query's cost is the driver's, and some (power, ECC) take longer`,
  ]
  return { title: 'GPU health: checkGpuHealth() and process-spawning monitors', table, summary, rounds: `${ROUNDS} rounds of sequential calls; medians over rounds; library ${path.basename(STANDIN_LIBRARY)}` }
}

module.exports = { run }
if (require.main === module) run().then((r) => console.log([r.title, r.table, ...r.summary].join('\n')))
