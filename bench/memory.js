'use strict'
// checkMemoryPressure() beside what a user would use instead, in one run:
// systeminformation.mem(), os.freemem()/os.totalmem(), and a bare readFileSync('/proc/meminfo')
// (the floor: the least work that reads the kernel's figure at all).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { monitorEventLoopDelay } = require('node:perf_hooks')
const { median, percentile, formatTable, ratio } = require('./stats')

const ROUNDS = Number(process.env.BENCH_ROUNDS || 15)
const CALLS = Number(process.env.BENCH_CALLS || 2000)

async function measure(name, fn) {
  for (let i = 0; i < 200; i++) await fn() // warm up
  const perCallUs = []
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < CALLS; i++) await fn()
    perCallUs.push(Number(process.hrtime.bigint() - start) / 1000 / CALLS)
  }
  histogram.disable()
  const us = median(perCallUs)
  return { name, us, callsPerSecond: 1e6 / us, loopDelayP99Ms: histogram.percentile(99) / 1e6 }
}

/** RSS of a child process that loads the package and keeps a monitor, minus a bare one. */
function residentCost() {
  const root = path.join(__dirname, '..')
  const probe = (body) => {
    const script = `${body}; setTimeout(() => { global.gc && gc(); process.stdout.write(String(process.memoryUsage().rss)) }, 300)`
    const samples = []
    for (let i = 0; i < 5; i++) samples.push(Number(execFileSync(process.execPath, ['--expose-gc', '-e', script])))
    return median(samples)
  }
  const bare = probe('globalThis.keep = []')
  const loaded = probe(`const { MemoryMonitor } = require(${JSON.stringify(root)}); globalThis.keep = new MemoryMonitor();
    (async () => { for (let i = 0; i < 100; i++) await keep.checkMemoryPressure() })()`)
  return { bare, loaded, added: loaded - bare }
}

async function run() {
  const si = require('systeminformation')
  const { MemoryMonitor } = require('..')
  const monitor = new MemoryMonitor()
  const rows = []
  rows.push(await measure('hpc-health checkMemoryPressure()', () => monitor.checkMemoryPressure()))
  rows.push(await measure('systeminformation.mem()', () => si.mem()))
  rows.push(await measure('os.freemem()/os.totalmem()', () => os.freemem() / os.totalmem()))
  rows.push(await measure("readFileSync('/proc/meminfo') (floor)", () => fs.readFileSync('/proc/meminfo', 'utf8')))
  const [ours, siRow, , floor] = rows
  const rss = residentCost()
  const table = formatTable(
    ['method', 'µs/call (median)', 'calls/s', 'loop delay p99 (ms)', 'vs hpc-health'],
    rows.map((r) => [r.name, r.us.toFixed(2), Math.round(r.callsPerSecond).toLocaleString('en-US'), r.loopDelayP99Ms.toFixed(2), ratio(r.us, ours.us)]),
  )
  const summary = [
    `hpc-health is ${(siRow.us / ours.us).toFixed(1)}x faster than systeminformation.mem() (goal: at least 6x)`,
    `hpc-health takes ${(ours.us / floor.us).toFixed(1)}x the floor (goal: within 4x)`,
    `resident memory added by loading hpc-health and keeping a monitor: ${(rss.added / 2 ** 20).toFixed(1)} MiB (goal: under 10 MiB; bare node ${(rss.bare / 2 ** 20).toFixed(1)} MiB)`,
  ]
  return { title: 'Memory pressure: checkMemoryPressure() and its peers', table, summary, rounds: `${ROUNDS} rounds of ${CALLS} sequential calls` }
}

module.exports = { run }
if (require.main === module) run().then((r) => console.log([r.title, r.table, ...r.summary].join('\n')))
