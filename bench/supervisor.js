'use strict'
// What the supervisor costs a service: CPU time and resident memory of a process running the
// loop (memory + 8 stand-in GPUs, full checks, Xid watch off) at intervalMs 1000 and 10, each over a minute,
// beside the same process idle; and checkSystemHealth('quick') latency.
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { median, formatTable } = require('./stats')

const SECONDS = Number(process.env.BENCH_SUPERVISOR_SECONDS || 60)

function child(intervalMs) {
  const { StandinState, device, STANDIN_LIBRARY } = require('../__test__/helpers/standin')
  const standin = new StandinState({ devices: Array.from({ length: 8 }, (_, i) => device(i)) })
  const script = `
    const h = require(${JSON.stringify(path.join(__dirname, '..'))})
    const lib = ${JSON.stringify(STANDIN_LIBRARY)}
    let supervisor
    if (${intervalMs} > 0) {
      const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: lib })
      // Xid watching off: the stand-in's event wait polls its state file, where the real
      // driver's nvmlEventSetWait sleeps in the kernel; its cost here would be the stand-in's.
      const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: lib, watchXid: false })
      supervisor = new h.HealthSupervisor({ memoryMonitor, gpuMonitor, intervalMs: ${intervalMs} })
      supervisor.start()
    }
    const keepAlive = setInterval(() => {}, 1000)
    setTimeout(async () => {
      const cpu = process.cpuUsage(); const before = { cpu, rss: process.memoryUsage().rss }
      setTimeout(async () => {
        const used = process.cpuUsage(before.cpu)
        const checks = supervisor ? supervisor.status().checks : 0
        if (supervisor) await supervisor.stop()
        clearInterval(keepAlive)
        console.log(JSON.stringify({ cpuMs: (used.user + used.system) / 1000, rss: process.memoryUsage().rss, checks }))
      }, ${SECONDS * 1000})
    }, 2000)
  `
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { env: standin.env(), encoding: 'utf8' }))
}

async function quickLatency() {
  const { StandinState, device, STANDIN_LIBRARY } = require('../__test__/helpers/standin')
  const standin = new StandinState({ devices: Array.from({ length: 8 }, (_, i) => device(i)) })
  process.env.HPC_HEALTH_STANDIN_STATE = standin.file
  const h = require('..')
  const supervisor = new h.HealthSupervisor({
    memoryMonitor: new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY }),
    gpuMonitor: new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false }),
  })
  for (let i = 0; i < 100; i++) await supervisor.checkSystemHealth('quick')
  const rounds = []
  for (let r = 0; r < 9; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < 300; i++) await supervisor.checkSystemHealth('quick')
    rounds.push(Number(process.hrtime.bigint() - start) / 1000 / 300)
  }
  return median(rounds)
}

async function run() {
  const idle = child(0)
  const perSecond = child(1000)
  const fast = child(10)
  const share = (c) => c.cpuMs / (SECONDS * 1000)
  const rows = [
    ['idle process (no supervisor)', idle],
    ['supervisor, intervalMs 1000', perSecond],
    ['supervisor, intervalMs 10', fast],
  ].map(([name, c]) => [
    name,
    String(c.checks),
    ((c.cpuMs - idle.cpuMs) / SECONDS * 3.6).toFixed(2),
    `${((share(c) - share(idle)) * 100).toFixed(3)}%`,
    ((c.rss - idle.rss) / 2 ** 20).toFixed(1),
  ])
  const quick = await quickLatency()
  const table = formatTable(['process', 'checks', 'CPU s per hour above idle', 'share of one core above idle', 'RSS above idle (MiB)'], rows)
  const oneASecond = (share(perSecond) - share(idle)) * 100
  return {
    title: 'Supervisor overhead',
    table: `${table}\n\n| call | µs/call (median) |\n| --- | --- |\n| checkSystemHealth('quick'), memory + 8 GPUs | ${quick.toFixed(1)} |`,
    summary: [
      `at one full check a second the supervisor costs ${oneASecond.toFixed(3)}% of one core (goal: under 0.1%)`,
      `checkSystemHealth('quick') takes ${quick.toFixed(0)} µs, most of it the thread-pool round trip (see the memory table)`,
    ],
    rounds: `${SECONDS} s per process after 2 s of warm-up; CPU from process.cpuUsage() inside each process`,
  }
}

module.exports = { run }
if (require.main === module) run().then((r) => console.log([r.title, r.table, ...r.summary].join('\n')))
