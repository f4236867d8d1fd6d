'use strict'
// The metrics history: a HealthSupervisor on the stand-in records every full check into
// `historyDir` (one record per source and step, however often it checks); `readHistory`
// reads it back while the supervisor runs and holds the directory's lock.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { STANDIN_LIBRARY, StandinState, device, GiB } = require('./helpers/standin')

const standin = new StandinState({ devices: [device(0), device(1)] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const h = require('..')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-history-'))

function supervise(options) {
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false })
  const supervisor = new h.HealthSupervisor({ memoryMonitor, gpuMonitor, intervalMs: 5, autoRecover: false, ...options })
  const health = []
  const errors = []
  supervisor.on('health', (payload) => health.push(payload))
  supervisor.on('error', (payload) => errors.push(payload))
  return { supervisor, health, errors }
}

async function waitFor(what, predicate, ms = 10000) {
  const deadline = Date.now() + ms
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

test('a running supervisor records its checks; readHistory reads them while it runs', async () => {
  standin.write({ devices: [device(0, { memory_used: 10 * GiB }), device(1)] })
  const dir = path.join(tempDir(), 'history')
  const { supervisor, health, errors } = supervise({ historyDir: dir, historyStepMs: 100 })
  supervisor.start()
  const read = () => h.readHistory(dir)
  await waitFor('three closed buckets', async () => (await read()).host.length >= 3)
  // GPU 1 heats up: the history shows the peak and the unhealthy state.
  standin.write({ devices: [device(0, { memory_used: 10 * GiB }), device(1, { temperature: 95 })] })
  await waitFor('the hot bucket', async () => (await read()).gpus[1]?.points.some((p) => p.temperature_c?.max === 95))
  await waitFor('the unhealthy state', async () => (await read()).host.some((p) => p.states_seen.includes('unhealthy')))
  // GPU 0 is lost: flagged, its memory unknown in the buckets where it was lost only.
  standin.write({ devices: [device(0, { lost: true }), device(1)] })
  await waitFor('a bucket wholly lost', async () => (await read()).gpus[0].points.some((p) => p.lost_last && p.memory_used_mib === null))
  assert.ok((await read()).gpus[0].points.every((p) => !p.lost_last || p.lost), 'lost at the last sample is lost in the bucket')
  standin.write({ devices: [device(0, { memory_used: 10 * GiB }), device(1)] })
  await waitFor('GPU 0 back', async () => {
    const last = (await read()).gpus[0].points.at(-1)
    return !last.lost && last.memory_used_mib !== null
  })

  const history = await read()
  assert.equal(history.skipped_records, 0)
  assert.deepEqual(history.gpus.map((g) => g.index), [0, 1])
  const checks = health.length
  const samples = history.host.reduce((n, p) => n + p.samples, 0)
  assert.ok(samples <= checks, `${samples} samples recorded, ${checks} checks made`)
  // At most one record per step: checks every 5 ms fold into 100 ms buckets.
  const starts = history.host.map((p) => p.t)
  assert.deepEqual(starts, [...new Set(starts)].sort((a, b) => a - b), 'one point per bucket, in order')
  assert.ok(starts.every((t) => t % 100 === 0))
  assert.ok(history.host.some((p) => p.samples > 1), 'several checks a bucket fold into one record')
  const gpu0 = history.gpus[0].points.at(-1)
  assert.deepEqual(gpu0.memory_used_mib, { min: 10240, max: 10240, last: 10240 })
  assert.equal(gpu0.memory_total_mib.last, 80 * 1024)
  assert.equal(gpu0.temperature_c.last, 40)
  assert.equal(gpu0.power_w.last, 70)
  assert.equal(gpu0.step_ms, 100)
  assert.ok(history.host.at(-1).memory_total_mib.last > 0, 'host memory recorded')
  assert.equal(typeof history.host.at(-1).intake_closed, 'boolean')

  // `since` leaves out what ended before it.
  const since = starts.at(-2)
  const recent = await h.readHistory(dir, { since })
  assert.ok(recent.host.length >= 1 && recent.host.every((p) => p.t + p.step_ms > since))

  // A second writer is refused while the supervisor records.
  assert.throws(() => supervise({ historyDir: dir }), { code: 'ERR_HISTORY_LOCKED' })
  await supervisor.stop()
  assert.deepEqual(errors, [])

  // Stopped, the supervisor has written its open buckets and released the directory: another
  // may record there, and the first starts again only once that one has stopped.
  const stoppedAt = Date.now()
  assert.ok((await read()).host.at(-1).t + 100 >= stoppedAt - 100, 'the last bucket is on disk when stop resolves')
  const second = supervise({ historyDir: dir, historyStepMs: 100 })
  assert.throws(() => supervisor.start(), { code: 'ERR_HISTORY_LOCKED' })
  second.supervisor.start()
  await second.supervisor.stop()
  supervisor.start()
  const before = (await read()).host.length
  await waitFor('records after the restart', async () => (await read()).host.length > before)
  await supervisor.stop()
  assert.deepEqual(errors, [])
})

test('options and readHistory arguments are validated', async () => {
  const dir = tempDir()
  assert.throws(() => new h.HealthSupervisor({ historyDir: 1 }), { name: 'TypeError', message: /historyDir/ })
  assert.throws(() => new h.HealthSupervisor({ historyDir: '' }), { name: 'TypeError', message: /historyDir/ })
  assert.throws(() => new h.HealthSupervisor({ historyDir: dir, historyStepMs: 50 }), { name: 'RangeError', message: /historyStepMs/ })
  assert.throws(() => new h.HealthSupervisor({ historyDir: dir, historyStepMs: 1.5 }), { name: 'RangeError', message: /historyStepMs/ })
  assert.throws(() => new h.HealthSupervisor({ historyStepMs: 1000 }), { name: 'TypeError', message: /historyStepMs needs a historyDir/ })
  // A step no check falls in would read as "no record".
  assert.throws(() => new h.HealthSupervisor({ historyDir: dir, intervalMs: 60000, historyStepMs: 10000 }),
    { name: 'RangeError', message: /^historyStepMs \(10000\) must be at least intervalMs \(60000\)/ })
  fs.chmodSync(dir, 0o755)
  assert.throws(() => new h.HealthSupervisor({ historyDir: dir }), { code: 'ERR_UNSAFE_DIRECTORY' })
  await assert.rejects(h.readHistory(dir), { code: 'ERR_UNSAFE_DIRECTORY' })
  assert.throws(() => h.readHistory(), { name: 'TypeError', message: /directory/ })
  assert.throws(() => h.readHistory(''), { name: 'TypeError', message: /directory/ })
  assert.throws(() => h.readHistory(dir, { since: -1 }), { name: 'RangeError', message: /options\.since/ })
  assert.throws(() => h.readHistory(dir, { sinse: 1 }), { name: 'TypeError', message: /sinse/ })
  await assert.rejects(h.readHistory(path.join(dir, 'missing')), { code: 'ERR_NOT_FOUND' })
  const empty = path.join(tempDir(), 'empty')
  fs.mkdirSync(empty, { mode: 0o700 })
  assert.deepEqual(await h.readHistory(empty), { host: [], gpus: [], skipped_records: 0, unreadable_files: [] })
})

test('readIncidents reads an incident log a live IncidentLog holds, and validates its arguments', async () => {
  const dir = path.join(tempDir(), 'incidents')
  const log = new h.IncidentLog({ directory: dir })
  await log.record({ kind: 'gpu_issue', severity: 'error', message: 'hot' })
  await log.record({ kind: 'recovery_started', severity: 'info', message: 'recovering' })
  assert.deepEqual(await h.readIncidents(dir), await log.read())
  assert.deepEqual((await h.readIncidents(dir, { kinds: ['recovery_started'] })).map((r) => r.seq), [2])
  assert.deepEqual((await h.readIncidents(dir, { since: '1h' })).map((r) => r.seq), [1, 2], 'since as text: an hour ago')
  assert.deepEqual(await h.readIncidents(dir, { since: new Date(Date.now() + 60000).toISOString() }), [])
  assert.throws(() => new h.IncidentLog({ directory: dir }), { code: 'ERR_INCIDENT_LOG_LOCKED' })
  assert.throws(() => h.readIncidents(), { name: 'TypeError', message: /directory/ })
  assert.throws(() => h.readIncidents(dir, { limit: -1 }), { name: 'RangeError', message: /limit/ })
  assert.throws(() => h.readIncidents(dir, { since: 'yesterday' }), { name: 'RangeError', message: /filter\.since must be a duration/ })
  assert.throws(() => h.readIncidents(dir, { since: true }), { name: 'TypeError', message: /filter\.since must be a number or a string/ })
  await assert.rejects(h.readIncidents(path.join(dir, 'missing')), { code: 'ERR_NOT_FOUND' })
  await log.close()
})

test('a check that hangs is recorded as the supervisor saw it (unknown, blind), not as a gap', async () => {
  standin.write({ devices: [device(0)] })
  const dir = path.join(tempDir(), 'history')
  const { supervisor, health, errors } = supervise({ historyDir: dir, historyStepMs: 100, intervalMs: 20, checkTimeoutMs: 150 })
  supervisor.start()
  await waitFor('a check', () => health.length > 0)
  standin.write({ devices: [device(0)], delay_ms: { memory_info: 1000 } })
  await waitFor('a hung check', () => errors.some((e) => e.kind === 'monitoring'))
  await supervisor.stop()
  standin.write({ devices: [device(0)] })
  const { host } = await h.readHistory(dir)
  const blind = host.filter((p) => p.states_seen.includes('unknown'))
  assert.ok(blind.length > 0, `the unknown state is in the history: ${JSON.stringify(host.map((p) => p.states_seen))}`)
  assert.ok(blind.every((p) => p.memory_used_mib === null || p.samples > 1), 'a failed check measured nothing')
  await sleep(1000) // the hung sample finishes before the next test
})

test('a supervisor that never started releases its history directory on stop()', async () => {
  const dir = path.join(tempDir(), 'history')
  const { supervisor } = supervise({ historyDir: dir })
  assert.throws(() => supervise({ historyDir: dir }), { code: 'ERR_HISTORY_LOCKED' })
  await supervisor.stop()
  const other = supervise({ historyDir: dir })
  await other.supervisor.stop()
})

test('the step defaults to the check interval where that is longer than 10 s', async () => {
  standin.write({ devices: [device(0)] })
  const dir = path.join(tempDir(), 'history')
  const { supervisor, health } = supervise({ historyDir: dir, intervalMs: 15000 })
  supervisor.start()
  await waitFor('the first check', () => health.length > 0)
  await supervisor.stop()
  const { host } = await h.readHistory(dir)
  assert.deepEqual(host.map((p) => p.step_ms), [15000])
})

test('off by default: a supervisor without historyDir writes nothing', async () => {
  const cwd = process.cwd()
  const dir = tempDir()
  process.chdir(dir)
  try {
    const { supervisor, health } = supervise({})
    supervisor.start()
    await waitFor('a check', () => health.length > 0)
    await supervisor.stop()
    assert.deepEqual(fs.readdirSync(dir), [])
  } finally {
    process.chdir(cwd)
  }
})
