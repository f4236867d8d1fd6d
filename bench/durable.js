'use strict'
// Durable state beside what a user would write instead, in one run:
// - a checkpoint of 1 MiB of state, beside write-file-atomic (with fsync) of the same bytes;
// - operation-journal records per second at concurrency 1, 16, 64 and 256, beside a naive
//   append + fdatasync per record, and what each record costs the JS thread: the
//   synchronous part of the call (argument conversion, queueing) and the event loop's
//   busy time over the whole run (calls, promise settlement, continuations) per record.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { performance } = require('node:perf_hooks')
const { median, formatTable } = require('./stats')

const ROUNDS = Number(process.env.BENCH_ROUNDS || 15)
const RECORDS = Number(process.env.BENCH_JOURNAL_RECORDS || 2000)
const JOURNAL_ROUNDS = Number(process.env.BENCH_JOURNAL_ROUNDS || 7)

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-bench-'))

async function checkpoints() {
  const { CheckpointManager } = require('..')
  const writeFileAtomic = require('write-file-atomic')
  const state = { blob: 'x'.repeat(1 << 20) }
  const bytes = JSON.stringify(state)
  const manager = new CheckpointManager({ directory: path.join(tempDir(), 'ck'), retain: 2, captureState: () => state })
  const target = path.join(tempDir(), 'state.json')
  const time = async (fn) => {
    for (let i = 0; i < 3; i++) await fn()
    const samples = []
    for (let r = 0; r < ROUNDS; r++) {
      const start = process.hrtime.bigint()
      await fn()
      samples.push(Number(process.hrtime.bigint() - start) / 1e6)
    }
    return median(samples)
  }
  const ours = await time(() => manager.createCheckpoint())
  const peer = await time(() => writeFileAtomic(target, bytes, { fsync: true }))
  await manager.close()
  return { ours, peer }
}

/** Runs `append(i)` for RECORDS records, `concurrency` at a time: records per second,
 * and the JS thread's cost per record in µs (the synchronous call; the event loop busy). */
async function appendRecords(concurrency, append) {
  let next = 0
  const callUs = []
  const elu = performance.eventLoopUtilization()
  const start = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < RECORDS) {
      const i = next++
      const called = process.hrtime.bigint()
      const done = append(i)
      callUs.push(Number(process.hrtime.bigint() - called) / 1e3)
      await done
    }
  }))
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  const busy = performance.eventLoopUtilization(elu)
  return { perSecond: RECORDS / seconds, callUs: median(callUs), busyUs: (busy.active * 1e3) / RECORDS }
}

/** Medians over JOURNAL_ROUNDS rounds, hpc-health and the naive peer taking turns so that
 * both see the same load on the machine. */
async function journal(concurrency) {
  const { CheckpointManager } = require('..')
  const manager = new CheckpointManager({ directory: path.join(tempDir(), 'j') })
  const handle = await fs.promises.open(path.join(tempDir(), 'naive.log'), 'a')
  const ours = []
  const naive = []
  for (let round = 0; round < JOURNAL_ROUNDS; round++) {
    ours.push(await appendRecords(concurrency, (i) => manager.beginOperation(`op-${round}-${i}`, { i })))
    naive.push(await appendRecords(concurrency, async (i) => {
      await handle.write(JSON.stringify({ op: 'begin', id: `op-${round}-${i}`, details: { i } }) + '\n')
      await handle.datasync()
    }))
  }
  await manager.close()
  await handle.close()
  const medians = (runs) => ({
    perSecond: median(runs.map((r) => r.perSecond)),
    callUs: median(runs.map((r) => r.callUs)),
    busyUs: median(runs.map((r) => r.busyUs)),
  })
  return { ours: medians(ours), naive: medians(naive) }
}

async function run() {
  const ck = await checkpoints()
  const rows = [[`checkpoint of 1 MiB state`, `${ck.ours.toFixed(2)} ms`, `${ck.peer.toFixed(2)} ms (write-file-atomic, fsync)`, `${(ck.ours / ck.peer).toFixed(2)}x the time`]]
  const costRows = []
  const ratios = {}
  const results = {}
  for (const concurrency of [1, 16, 64, 256]) {
    const j = await journal(concurrency)
    results[concurrency] = j
    ratios[concurrency] = j.ours.perSecond / j.naive.perSecond
    rows.push([`journal records/s, concurrency ${concurrency}`, Math.round(j.ours.perSecond).toLocaleString('en-US'), `${Math.round(j.naive.perSecond).toLocaleString('en-US')} (append + fdatasync each)`, `${ratios[concurrency].toFixed(1)}x as many`])
    costRows.push([`concurrency ${concurrency}`, j.ours.callUs.toFixed(1), j.ours.busyUs.toFixed(1), j.naive.callUs.toFixed(1), j.naive.busyUs.toFixed(1)])
  }
  const costTable = formatTable(['journal, JS thread per record (µs)', 'hpc-health: call (median)', 'hpc-health: event loop busy', 'naive: call (median)', 'naive: event loop busy'], costRows)
  const j64 = results[64].ours
  return {
    title: 'Durable state: checkpoints and the operation journal',
    table: formatTable(['what', 'hpc-health', 'peer', 'ratio'], rows) + '\n\n' + costTable,
    summary: [
      `a 1 MiB checkpoint takes ${(ck.ours / ck.peer).toFixed(2)}x the time of write-file-atomic with fsync (goal: within 1.5x), while also capturing the monitors and operations, checksumming, and fsyncing the directory`,
      `group commit gives ${ratios[64].toFixed(1)}x (64) and ${ratios[256].toFixed(1)}x (256) the records per second of a naive append + fdatasync per record (goal: 5x at 64): one writer thread writes every record queued while the previous fdatasync ran with one write and one fdatasync`,
      `each journal record costs the JS thread ${j64.callUs.toFixed(1)} µs in the call (converting the arguments, encoding and queueing the record) and ${j64.busyUs.toFixed(1)} µs of event-loop time in all at concurrency 64 (the call, settling its promise, the caller's continuation); no thread waits per record`,
      `at 64 in flight the JS thread alone allows ${Math.round(1e6 / j64.busyUs).toLocaleString('en-US')} records/s (${(1e6 / j64.busyUs / results[64].naive.perSecond).toFixed(1)}x the naive peer); each round of 64 is the JS thread's work plus one fdatasync, one after the other, since the writer gathers the records its last commit answered before it commits`,
      `fsync cost depends on the disk: these figures are from ${os.tmpdir()} on this machine`,
    ],
    rounds: `${ROUNDS} checkpoints after 3 of warm-up, medians; journal: ${JOURNAL_ROUNDS} rounds of ${RECORDS} records per concurrency, hpc-health and the naive peer taking turns, medians; event-loop busy time from performance.eventLoopUtilization() over each round`,
  }
}

module.exports = { run }
if (require.main === module) run().then((r) => console.log([r.title, r.table, ...r.summary].join('\n')))
