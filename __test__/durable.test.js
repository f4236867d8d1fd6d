'use strict'
// CheckpointManager and IncidentLog: round trip, the restore flow, safety of the directory,
// torn and corrupt files, validation, and the incident log's filters and rate limiting.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const h = require('..')

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-durable-'))
const NO_NVML = '/nonexistent/libnvidia-ml.so.1'

test('round trip: createCheckpoint captures everything, restore runs the hooks in order with what was active at death', async () => {
  const directory = path.join(tempDir(), 'checkpoints')
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: NO_NVML })
  const calls = []
  const options = {
    directory, memoryMonitor,
    captureState: async () => ({ queue: ['a', 'b'], cursor: 7 }),
    cleanCurrentState: () => { calls.push(['clean']) },
    restoreMemoryState: (memoryState) => { calls.push(['memory', memoryState.memory_limit_source]) },
    restoreOperations: async (operations) => { calls.push(['operations', operations.map((o) => o.id)]) },
  }
  const manager = new h.CheckpointManager(options)
  assert.equal(fs.statSync(directory).mode & 0o777, 0o700)
  await manager.beginOperation('job-1', { model: 'llama' })
  await manager.beginOperation('job-2')
  const checkpoint = await manager.createCheckpoint()
  assert.deepEqual(Object.keys(checkpoint).sort(), ['active_operations', 'gpu_state', 'id', 'memory_state', 'seq', 'state', 'timestamp'])
  assert.equal(checkpoint.id, 'checkpoint-00000000000000000001')
  assert.deepEqual(checkpoint.state, { queue: ['a', 'b'], cursor: 7 })
  assert.deepEqual(checkpoint.active_operations.map((o) => [o.id, o.details]), [['job-1', { model: 'llama' }], ['job-2', null]])
  assert.equal(typeof checkpoint.memory_state.system_total, 'number')
  assert.deepEqual(checkpoint.gpu_state, { absent: 'no gpuMonitor was given' })
  // After the checkpoint: job-1 ends, job-3 starts; then the process "dies".
  await manager.endOperation('job-1', { ok: true })
  await manager.beginOperation('job-3')
  await manager.close()
  await assert.rejects(manager.beginOperation('x'), { code: 'ERR_CLOSED' })

  const restarted = new h.CheckpointManager(options)
  assert.deepEqual(JSON.stringify(await restarted.latestCheckpoint()), JSON.stringify(checkpoint), 'byte-identical')
  const restored = await restarted.restoreFromCheckpoint()
  assert.deepEqual(calls, [['clean'], ['memory', checkpoint.memory_state.memory_limit_source], ['operations', ['job-2', 'job-3']]])
  assert.deepEqual(restored.operations.map((o) => o.id), ['job-2', 'job-3'])
  assert.deepEqual(restored.skipped, [])
  assert.equal(restored.checkpoint.id, checkpoint.id)
  assert.deepEqual(await restarted.listCheckpoints(), [{ id: checkpoint.id, seq: 1, timestamp: checkpoint.timestamp, bytes: fs.statSync(path.join(directory, `${checkpoint.id}.ckpt`)).size, valid: true }])
  await restarted.close()
})

test('a torn or corrupt newest checkpoint is skipped, reported, set aside, and the older one restored', async () => {
  const directory = path.join(tempDir(), 'ck')
  const log = new h.IncidentLog({ directory: path.join(path.dirname(directory), 'incidents') })
  let manager = new h.CheckpointManager({ directory, captureState: () => ({ n: 1 }), retain: 3 })
  const first = await manager.createCheckpoint()
  const second = await manager.createCheckpoint()
  await manager.close()
  const file = path.join(directory, `${second.id}.ckpt`)
  const bytes = fs.readFileSync(file)
  bytes[bytes.length - 3] ^= 0x20 // one bit in the payload
  fs.writeFileSync(file, bytes)
  manager = new h.CheckpointManager({ directory, incidentLog: log })
  assert.equal(manager.opened.skipped.length, 1)
  assert.equal(manager.opened.skipped[0].id, second.id)
  assert.match(manager.opened.skipped[0].reason, /CRC|checksum/i)
  const restored = await manager.restoreFromCheckpoint()
  assert.equal(restored.checkpoint.id, first.id)
  assert.ok(fs.readdirSync(directory).some((n) => n.startsWith('corrupt-')), 'set aside')
  const incidents = await log.read({ kinds: ['checkpoint_corrupt'] })
  assert.equal(incidents.length, 1)
  assert.match(incidents[0].message, new RegExp(second.id))
  // A truncated file is torn: skipped the same way.
  const third = await manager.createCheckpoint()
  await manager.close()
  const thirdFile = path.join(directory, `${third.id}.ckpt`)
  fs.truncateSync(thirdFile, fs.statSync(thirdFile).size - 10)
  manager = new h.CheckpointManager({ directory })
  assert.equal(manager.opened.skipped[0].id, third.id)
  assert.equal((await manager.latestCheckpoint()).id, first.id)
  await manager.close()
  await log.close()
})

test('the directory is safe: 0700, no symlink, no group/other access, one owner, ids cannot escape', async () => {
  const root = tempDir()
  const open = path.join(root, 'open')
  fs.mkdirSync(open, { mode: 0o755 })
  fs.chmodSync(open, 0o755)
  assert.throws(() => new h.CheckpointManager({ directory: open }), { code: 'ERR_UNSAFE_DIRECTORY' })
  const real = path.join(root, 'real')
  fs.mkdirSync(real, { mode: 0o700 })
  fs.symlinkSync(real, path.join(root, 'link'))
  assert.throws(() => new h.CheckpointManager({ directory: path.join(root, 'link') }), { code: 'ERR_UNSAFE_DIRECTORY' })
  const directory = path.join(root, 'state')
  const manager = new h.CheckpointManager({ directory })
  assert.throws(() => new h.CheckpointManager({ directory }), { code: 'ERR_CHECKPOINT_LOCKED' })
  const other = spawnSync(process.execPath, ['-e', `
    try { new (require(${JSON.stringify(path.join(__dirname, '..'))}).CheckpointManager)({ directory: ${JSON.stringify(directory)} }) }
    catch (e) { console.log(e.code) }`], { encoding: 'utf8' })
  assert.equal(other.stdout.trim(), 'ERR_CHECKPOINT_LOCKED', 'a second process is refused')
  for (const id of ['../../etc/passwd', '/etc/passwd', 'checkpoint-1', 'checkpoint-0000000000000000000x', '..']) {
    await assert.rejects(manager.restoreFromCheckpoint(id), { code: 'ERR_INVALID_ID' }, id)
  }
  await assert.rejects(manager.restoreFromCheckpoint(), { code: 'ERR_NOT_FOUND' })
  await assert.rejects(manager.restoreFromCheckpoint({ id: '../x' }), { code: 'ERR_INVALID_ID' })
  await manager.close()
})

test('bad input throws TypeError or RangeError; operational failures carry codes', async () => {
  const directory = path.join(tempDir(), 's')
  const cases = [
    [undefined, TypeError, /^options must be an object/],
    [{}, TypeError, /^directory must be a string, got undefined$/],
    [{ directory, retain: 1 }, RangeError, /^retain must be an integer in \[2, 1000\], got 1$/],
    [{ directory, maxBytes: -1 }, RangeError, /maxBytes/],
    [{ directory, captureState: 'state' }, TypeError, /^captureState must be a function, got a string$/],
    [{ directory, memoryMonitor: {} }, TypeError, /^memoryMonitor must be a MemoryMonitor/],
    [{ directory, dir: 'x' }, TypeError, /unknown option 'dir'/],
  ]
  for (const [options, type, message] of cases) {
    assert.throws(() => new h.CheckpointManager(options), (e) => e instanceof type && message.test(e.message), String(message))
  }
  const manager = new h.CheckpointManager({ directory, maxBytes: 2048, captureState: () => ({ big: 'x'.repeat(5000) }) })
  assert.throws(() => manager.beginOperation(5), { name: 'TypeError', message: 'id must be a string, got 5' })
  assert.throws(() => manager.beginOperation(''), { name: 'RangeError' })
  assert.throws(() => manager.beginOperation('x'.repeat(257)), { name: 'RangeError' })
  assert.throws(() => manager.beginOperation('a', { f: () => {} }), { name: 'TypeError' })
  await manager.beginOperation('a')
  await assert.rejects(manager.beginOperation('a'), { code: 'ERR_DUPLICATE' })
  await assert.rejects(manager.endOperation('zzz'), { code: 'ERR_NOT_FOUND' })
  await assert.rejects(manager.createCheckpoint(), { code: 'ERR_TOO_LARGE' })
  assert.throws(() => manager.restoreFromCheckpoint(42), { name: 'TypeError' })
  const throwing = new h.CheckpointManager({ directory: path.join(tempDir(), 't'), captureState: () => { throw new Error('no state') } })
  await assert.rejects(throwing.createCheckpoint(), { code: 'ERR_STEP_FAILED', message: 'captureState failed: no state' })
  await manager.close()
  await throwing.close()
})

test('beginOperation under concurrency: all durable, group-committed', async () => {
  const manager = new h.CheckpointManager({ directory: path.join(tempDir(), 'g') })
  await Promise.all(Array.from({ length: 256 }, (_, i) => manager.beginOperation(`op-${i}`, { i })))
  assert.equal(manager.getActiveOperations().length, 256)
  await Promise.all(Array.from({ length: 128 }, (_, i) => manager.endOperation(`op-${i * 2}`)))
  // Oldest first; concurrent begins land in the order the group commit took them.
  assert.deepEqual(new Set(manager.getActiveOperations().map((o) => o.id)), new Set(Array.from({ length: 128 }, (_, i) => `op-${i * 2 + 1}`)))
  await manager.close()
})

test('journal records waiting for their fdatasync hold no thread each', async () => {
  const threads = () => Number(/^Threads:\s+(\d+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1])
  const manager = new h.CheckpointManager({ directory: path.join(tempDir(), 't') })
  await manager.beginOperation('warm-up') // the runtime and the journal's writer are running
  const before = threads()
  let most = before
  await Promise.all(Array.from({ length: 256 }, async (_, i) => {
    const done = manager.beginOperation(`op-${i}`, { i })
    most = Math.max(most, threads())
    await done
    most = Math.max(most, threads())
  }))
  assert.equal(manager.getActiveOperations().length, 257)
  // One writer thread commits everything queued; 256 records in flight are not 256 threads.
  assert.ok(most - before < 16, `${most - before} threads added for 256 records in flight`)
  await manager.close()
})

test('IncidentLog: durable records, filters, rate limiting with a summary, sequence continues, one owner', async () => {
  const directory = path.join(tempDir(), 'incidents')
  let log = new h.IncidentLog({ directory, rateLimit: { max: 3, windowMs: 300 } })
  assert.equal(fs.statSync(directory).mode & 0o777, 0o700)
  const first = await log.record({ kind: 'memory_pressure', severity: 'warn', message: 'high', details: { ratio: 0.9 } })
  assert.equal(first.seq, 1)
  assert.equal(first.suppressed, false)
  for (let i = 0; i < 5; i++) await log.record({ kind: 'gpu_issue', message: `hot ${i}` })
  const limited = await log.record({ kind: 'gpu_issue', message: 'one more' })
  assert.equal(limited.suppressed, true)
  assert.equal(limited.seq, null)
  await new Promise((resolve) => setTimeout(resolve, 350))
  await log.record({ kind: 'gpu_issue', message: 'after the window' })
  const gpu = await log.read({ kinds: ['gpu_issue'] })
  assert.deepEqual(gpu.map((r) => r.message), ['hot 0', 'hot 1', 'hot 2', '3 suppressed', 'after the window'])
  assert.equal(gpu[3].details.suppressed, 3)
  assert.deepEqual((await log.read({ sinceSeq: 3, limit: 2 })).map((r) => r.seq), [3, 4])
  assert.deepEqual((await log.read({ kinds: ['memory_pressure'] }))[0].details, { ratio: 0.9 })
  assert.throws(() => new h.IncidentLog({ directory }), { code: 'ERR_INCIDENT_LOG_LOCKED' })
  assert.throws(() => log.record({ kind: 'x' }), { name: 'TypeError', message: 'incident.message must be a string, got undefined' })
  assert.throws(() => log.record({ kind: 'x', message: 'm', severity: 'fatal' }), { name: 'RangeError' })
  assert.throws(() => log.read({ kinds: 'x' }), { name: 'TypeError' })
  const last = (await log.read()).at(-1).seq
  await log.close()
  // A torn tail (a half-written line) is repaired on open and the sequence continues.
  const segment = fs.readdirSync(directory).find((n) => n.startsWith('incidents-'))
  fs.appendFileSync(path.join(directory, segment), '{"seq":99,"timest')
  log = new h.IncidentLog({ directory })
  assert.equal(log.problems[0].kind, 'torn_tail')
  assert.equal((await log.record({ kind: 'k', message: 'after restart' })).seq, last + 1)
  await log.close()
})

test('a state directory swapped for a symlink after open, and names planted in it, neither redirect nor stop durable state', async () => {
  const root = tempDir()
  const directory = path.join(root, 'ck')
  const manager = new h.CheckpointManager({ directory, captureState: () => ({ n: 1 }) })
  await manager.createCheckpoint()
  // Someone with access to the parent swaps the directory for a symlink to another one.
  const moved = path.join(root, 'ck-moved')
  const elsewhere = path.join(root, 'elsewhere')
  fs.renameSync(directory, moved)
  fs.mkdirSync(elsewhere, { mode: 0o700 })
  fs.symlinkSync(elsewhere, directory)
  const second = await manager.createCheckpoint()
  await manager.beginOperation('job-1')
  await manager.close()
  assert.deepEqual(fs.readdirSync(elsewhere), [], 'nothing lands in the symlink\'s target')
  assert.ok(fs.existsSync(path.join(moved, `${second.id}.ckpt`)), 'the checkpoint is in the directory checked at open')

  // Planted names: an aside name past every sequence number, a symlink named like the journal.
  const planted = path.join(root, 'planted')
  fs.mkdirSync(planted, { mode: 0o700 })
  fs.writeFileSync(path.join(planted, 'corrupt-checkpoint-18446744073709551615.ckpt-1'), 'planted')
  fs.writeFileSync(path.join(root, 'outside'), '')
  fs.symlinkSync(path.join(root, 'outside'), path.join(planted, 'journal-00000000000000000099.log'))
  const reopened = new h.CheckpointManager({ directory: planted, captureState: () => ({ n: 2 }) })
  assert.deepEqual(reopened.opened.journal_problems.map((p) => [p.kind, p.file]), [['foreign_file', 'journal-00000000000000000099.log']])
  assert.match(reopened.opened.journal_problems[0].set_aside_as, /^corrupt-journal-00000000000000000099\.log-\d+$/)
  assert.equal((await reopened.createCheckpoint()).seq, 1)
  await reopened.close()

  const incidents = path.join(root, 'incidents')
  fs.mkdirSync(incidents, { mode: 0o700 })
  fs.symlinkSync(path.join(root, 'outside'), path.join(incidents, 'incidents-00000000000000000001.jsonl'))
  const log = new h.IncidentLog({ directory: incidents })
  assert.deepEqual(log.problems.map((p) => p.kind), ['foreign_file'])
  assert.equal((await log.record({ kind: 'k', message: 'still logging' })).seq, 1)
  await log.close()
  assert.equal(fs.readFileSync(path.join(root, 'outside'), 'utf8'), '', 'the symlink\'s target is untouched')
})
