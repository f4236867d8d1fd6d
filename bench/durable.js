'use strict'
// Durable state beside what a user would write instead, in one run:
// - a checkpoint of 1 MiB of state, beside write-file-atomic (with fsync) of the same bytes;
// - operation-journal records per second at concurrency 1, 16, 64 and 256, beside a naive
//   append + fdatasync per record.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { median, formatTable } = require('./stats')

const ROUNDS = Number(process.env.BENCH_ROUNDS || 15)
const RECORDS = Number(process.env.BENCH_JOURNAL_RECORDS || 2000)

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

async function journal(concurrency) {
  const { CheckpointManager } = require('..')
  const manager = new CheckpointManager({ directory: path.join(tempDir(), 'j') })
  let next = 0
  const start = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < RECORDS) {
      const i = next++
      await manager.beginOperation(`op-${i}`, { i })
    }
  }))
  const ours = RECORDS / (Number(process.hrtime.bigint() - start) / 1e9)
  await manager.close()

  const handle = await fs.promises.open(path.join(tempDir(), 'naive.log'), 'a')
  next = 0
  const naiveStart = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < RECORDS) {
      const i = next++
      await handle.write(JSON.stringify({ op: 'begin', id: `op-${i}`, details: { i } }) + '\n')
      await handle.datasync()
    }
  }))
  const naive = RECORDS / (Number(process.hrtime.bigint() - naiveStart) / 1e9)
  await handle.close()
  return { ours, naive }
}

async function run() {
  const ck = await checkpoints()
  const rows = [[`checkpoint of 1 MiB state`, `${ck.ours.toFixed(2)} ms`, `${ck.peer.toFixed(2)} ms (write-file-atomic, fsync)`, `${(ck.ours / ck.peer).toFixed(2)}x the time`]]
  const ratios = {}
  for (const concurrency of [1, 16, 64, 256]) {
    const j = await journal(concurrency)
    ratios[concurrency] = j.ours / j.naive
    rows.push([`journal records/s, concurrency ${concurrency}`, Math.round(j.ours).toLocaleString('en-US'), `${Math.round(j.naive).toLocaleString('en-US')} (append + fdatasync each)`, `${ratios[concurrency].toFixed(1)}x as many`])
  }
  return {
    title: 'Durable state: checkpoints and the operation journal',
    table: formatTable(['what', 'hpc-health', 'peer', 'ratio'], rows),
    summary: [
      `a 1 MiB checkpoint takes ${(ck.ours / ck.peer).toFixed(2)}x the time of write-file-atomic with fsync (goal: within 1.5x), while also capturing the monitors and operations, checksumming, and fsyncing the directory`,
      `group commit gives ${ratios[64].toFixed(1)}x (64) and ${ratios[256].toFixed(1)}x (256) the records per second of a naive append + fdatasync per record (goal: 10x at 64 and above)`,
      `fsync cost depends on the disk: these figures are from ${os.tmpdir()} on this machine`,
    ],
    rounds: `${ROUNDS} checkpoints after 3 of warm-up, medians; ${RECORDS} journal records per concurrency`,
  }
}

module.exports = { run }
if (require.main === module) run().then((r) => console.log([r.title, r.table, ...r.summary].join('\n')))
