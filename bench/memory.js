'use strict'
// checkMemoryPressure() beside what a user would use instead, in one run:
// systeminformation.mem(), os.freemem()/os.totalmem(), and a bare readFileSync('/proc/meminfo')
// (the floor: the least work that reads the kernel's figure at all).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { median, percentile, formatTable, ratio } = require('./stats')

const ROUNDS = Number(process.env.BENCH_ROUNDS || 15)
const CALLS = Number(process.env.BENCH_CALLS || 2000)

const CONCURRENCY = 64

/**
 * Latency: `CALLS` calls one after another, per round; the median round's µs per call.
 * Throughput: the same number of calls with `CONCURRENCY` in flight (what a busy service
 * sees). JS-thread time: how long each call holds the JS thread before it returns (for a
 * synchronous call, all of it), p99 over every call; the event loop can do nothing else then.
 */
async function measure(name, fn) {
  for (let i = 0; i < 200; i++) await fn() // warm up
  const perCallUs = []
  const callsPerSecond = []
  const blockedUs = []
  for (let r = 0; r < ROUNDS; r++) {
    let start = process.hrtime.bigint()
    for (let i = 0; i < CALLS; i++) await fn()
    perCallUs.push(Number(process.hrtime.bigint() - start) / 1000 / CALLS)
    start = process.hrtime.bigint()
    let next = 0
    const worker = async () => { while (next++ < CALLS) await fn() }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    callsPerSecond.push(CALLS / (Number(process.hrtime.bigint() - start) / 1e9))
    for (let i = 0; i < CALLS / 10; i++) {
      const t0 = process.hrtime.bigint()
      const pending = fn()
      blockedUs.push(Number(process.hrtime.bigint() - t0) / 1000)
      await pending
    }
  }
  return { name, us: median(perCallUs), callsPerSecond: median(callsPerSecond), blockedUs: [median(blockedUs), percentile(blockedUs, 99)] }
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
  // Not a peer: the cost of one trip through libuv's thread pool, which any call that keeps
  // the event loop free pays (hpc-health's included), shown so the figures can be read.
  rows.push(await measure("fs.promises.access('/') (one thread-pool round trip)", () => fs.promises.access('/')))
  const [ours, siRow, , floor, hop] = rows
  const rss = residentCost()
  const table = formatTable(
    ['method', 'µs/call, sequential (median)', `calls/s, ${CONCURRENCY} in flight`, 'JS thread held per call, median / p99 (µs)', 'latency vs hpc-health'],
    rows.map((r) => [r.name, r.us.toFixed(2), Math.round(r.callsPerSecond).toLocaleString('en-US'), r.blockedUs.map((v) => v.toFixed(1)).join(' / '), ratio(r.us, ours.us)]),
  )
  const summary = [
    `hpc-health is ${(siRow.us / ours.us).toFixed(1)}x faster than systeminformation.mem() (goal: at least 6x)`,
    `hpc-health takes ${(ours.us / floor.us).toFixed(1)}x the floor (goal: within 4x); of its ${ours.us.toFixed(0)} µs, ${hop.us.toFixed(0)} µs is the thread-pool round trip that keeps the event loop free`,
    `at ${CONCURRENCY} calls in flight hpc-health answers ${(ours.callsPerSecond / siRow.callsPerSecond).toFixed(1)}x as many calls per second as systeminformation.mem()`,
    `resident memory added by loading hpc-health and keeping a monitor: ${(rss.added / 2 ** 20).toFixed(1)} MiB (goal: under 10 MiB; bare node ${(rss.bare / 2 ** 20).toFixed(1)} MiB)`,
  ]
  return { title: 'Memory pressure: checkMemoryPressure() and its peers', table, summary, rounds: `${ROUNDS} rounds, each ${CALLS} calls one after another and then ${CALLS} calls ${CONCURRENCY} at a time; medians over rounds` }
}

module.exports = { run }
if (require.main === module) run().then((r) => console.log([r.title, r.table, ...r.summary].join('\n')))
