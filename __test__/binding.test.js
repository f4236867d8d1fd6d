'use strict'
// The binding itself: data of any size and any keys comes back as it went in, a panic or a
// hostile value never crosses into the process, every class member refuses a foreign
// `this`, every class refuses a call without `new`, and hooks' thenables are awaited.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const h = require('..')
const { makeFakeRoot, writeFiles, V2_MOUNTINFO } = require('./helpers/fake-root')

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-binding-'))
const NO_NVML = '/nonexistent/libnvidia-ml.so.1'
const MiB = 1024 ** 2
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const ROOT = path.join(__dirname, '..')

/** Runs `script` in a fresh Node with `flags` and `env`; its stdout, stderr and status. */
function runChild(script, { flags = [], env = {} } = {}) {
  const child = spawnSync(process.execPath, [...flags, '-e', script], {
    cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000,
  })
  return { status: child.status, signal: child.signal, stdout: child.stdout, stderr: child.stderr }
}

/** `count` JSON values in under 2 bytes each: an array of digits. */
const digits = (count, offset = 0) => Array.from({ length: count - 1 }, (_, i) => (i + offset) % 10)

test('a checkpoint of 1.8 million JSON values and operations of 1.2 million are written, read back after a reopen and handed to the hooks whole', async () => {
  const directory = path.join(tempDir(), 'big')
  const state = { queue: digits(600_000) }
  const details = [0, 1, 2].map((n) => ({ job: n, weights: digits(400_000, n) }))
  const restored = {}
  const options = {
    directory,
    captureState: () => state,
    restoreMemoryState: (memoryState) => { restored.memoryState = memoryState },
    restoreOperations: (operations) => { restored.operations = operations },
  }
  let manager = new h.CheckpointManager(options)
  for (const [n, d] of details.entries()) await manager.beginOperation(`job-${n}`, d)
  const checkpoint = await manager.createCheckpoint()
  assert.deepEqual(checkpoint.state, state)
  assert.deepEqual(checkpoint.active_operations.map((o) => o.details), details)
  await manager.close()

  manager = new h.CheckpointManager(options)
  const operations = manager.getActiveOperations()
  assert.deepEqual(operations.map((o) => [o.id, o.details]), details.map((d, n) => [`job-${n}`, d]))
  const latest = await manager.latestCheckpoint()
  assert.equal(latest.id, checkpoint.id)
  assert.deepEqual(latest.state, state)
  assert.deepEqual(latest.active_operations.map((o) => o.details), details)
  const result = await manager.restoreFromCheckpoint()
  assert.deepEqual(result.checkpoint.state, state)
  assert.deepEqual(result.operations.map((o) => o.details), details)
  assert.deepEqual(restored.operations.map((o) => o.details), details, 'restoreOperations got every value')
  assert.deepEqual(restored.memoryState, latest.memory_state)
  await manager.close()
})

test('more than a million JSON values are taken from a hook and from an argument; what is refused is refused by size, with an ERR_ code', async () => {
  const wide = { flags: Array.from({ length: 1_100_000 }, () => 0) }
  const manager = new h.CheckpointManager({ directory: path.join(tempDir(), 'wide'), captureState: () => wide })
  assert.deepEqual((await manager.createCheckpoint()).state, wide)
  // 2.2 MB is over the journal's 1 MiB record limit: the journal's own refusal, not napi's count.
  await assert.rejects(manager.beginOperation('too-big', wide), { code: 'ERR_TOO_LARGE' })
  await manager.close()
})

const PROTO_JSON = '{"name":"x","__proto__":{"isAdmin":true}}'

/** `value` holds `__proto__` as an own data property and has the ordinary prototype. */
function assertProtoKeptAsData(value, what) {
  assert.equal(Object.getPrototypeOf(value), Object.prototype, `${what}: prototype`)
  assert.ok(Object.prototype.hasOwnProperty.call(value, '__proto__'), `${what}: own __proto__ key`)
  assert.deepEqual(Object.getOwnPropertyDescriptor(value, '__proto__').value, { isAdmin: true }, `${what}: its value`)
  assert.equal(value.isAdmin, undefined, `${what}: nothing inherited`)
  assert.equal(value.name, 'x')
}

test('"__proto__" keys in journal details, checkpoint state, hook arguments and incident details come back as own data properties', async () => {
  const dir = tempDir()
  const hookArgs = []
  const options = {
    directory: path.join(dir, 'ck'),
    captureState: () => JSON.parse(PROTO_JSON),
    restoreOperations: (operations) => { hookArgs.push(operations[0].details) },
  }
  let manager = new h.CheckpointManager(options)
  await manager.beginOperation('job', JSON.parse(PROTO_JSON))
  assertProtoKeptAsData(manager.getActiveOperations()[0].details, 'getActiveOperations details')
  const checkpoint = await manager.createCheckpoint()
  assertProtoKeptAsData(checkpoint.state, 'createCheckpoint state')
  assertProtoKeptAsData(checkpoint.active_operations[0].details, 'createCheckpoint operation details')
  await manager.close()
  manager = new h.CheckpointManager(options)
  assertProtoKeptAsData((await manager.latestCheckpoint()).state, 'latestCheckpoint state')
  const restored = await manager.restoreFromCheckpoint()
  assertProtoKeptAsData(restored.checkpoint.state, 'restoreFromCheckpoint state')
  assertProtoKeptAsData(hookArgs[0], 'restoreOperations argument')
  await manager.close()

  const log = new h.IncidentLog({ directory: path.join(dir, 'incidents') })
  await log.record({ kind: 'probe', message: 'm', details: JSON.parse(PROTO_JSON) })
  assertProtoKeptAsData((await log.read({ kinds: ['probe'] }))[0].details, 'incident details')
  await log.close()
  assert.equal({}.isAdmin, undefined, 'Object.prototype untouched')
})

test('JSON data given to the binding keeps its refusals: functions, symbols, bigints and cycles are TypeErrors naming the parameter', async () => {
  const manager = new h.CheckpointManager({ directory: path.join(tempDir(), 'ck') })
  const cyclic = { a: 1 }
  cyclic.self = cyclic
  for (const bad of [{ f: () => {} }, [Symbol('s')], { n: 1n }, cyclic, () => {}]) {
    assert.throws(() => manager.beginOperation('a', bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /^details must be JSON-serialisable data: / })
  }
  const throwing = { get bad() { throw new Error('getter exploded') } }
  assert.throws(() => manager.beginOperation('a', throwing), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /getter exploded/ })
  // What JSON.stringify keeps is what is stored: toJSON, dates, undefined members.
  await manager.beginOperation('b', { at: new Date(0), gone: undefined, list: [undefined] })
  assert.deepEqual(manager.getActiveOperations()[0].details, { at: '1970-01-01T00:00:00.000Z', list: [null] })
  await manager.close()
})

test('a panic in a synchronous entry point throws an Error with code ERR_INTERNAL and the process goes on', () => {
  const cases = [
    ['MemoryMonitor.thresholds', 'const m = new h.MemoryMonitor({ nvmlLibraryPath: NO_NVML }); m.thresholds'],
    ['MemoryMonitor.constructor', 'new h.MemoryMonitor({ nvmlLibraryPath: NO_NVML })'],
    ['CheckpointManager.createCheckpoint', 'new h.CheckpointManager({ directory: fs.mkdtempSync(path.join(os.tmpdir(), "p-")) }).createCheckpoint()'],
    ['HealthSupervisor.status', 'new h.HealthSupervisor().status()'],
    ['readHistory', 'h.readHistory(fs.mkdtempSync(path.join(os.tmpdir(), "p-")))'],
    ['readIncidents', 'h.readIncidents(fs.mkdtempSync(path.join(os.tmpdir(), "p-")))'],
    ['readReport', 'h.readReport(fs.mkdtempSync(path.join(os.tmpdir(), "p-")))'],
    ['renderReport', 'h.renderReport(fs.mkdtempSync(path.join(os.tmpdir(), "p-")))'],
  ]
  for (const [entry, code] of cases) {
    const script = `
      const h = require('.'), fs = require('fs'), os = require('os'), path = require('path')
      const NO_NVML = ${JSON.stringify(NO_NVML)}
      try { ${code}; console.log('no error') } catch (e) {
        console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message }))
      }
      console.log('alive', typeof new h.GPUHealthMonitor({ nvmlLibraryPath: NO_NVML, watchXid: false }).thresholds.temperature === 'number')`
    const child = runChild(script, { env: { HPC_HEALTH_TEST_PANIC_IN: entry } })
    assert.equal(child.status, 0, `${entry}: ${child.stderr}`)
    const [first, second] = child.stdout.trim().split('\n')
    assert.notEqual(first, 'no error', entry)
    const error = JSON.parse(first)
    assert.equal(error.name, 'Error', entry)
    assert.equal(error.code, 'ERR_INTERNAL', entry)
    assert.match(error.message, new RegExp(`^internal error in hpc-health: ${entry} made to panic`))
    assert.equal(second, 'alive true', entry)
  }
})

test('a hook value that throws while it is read rejects that call only, even under --force-node-api-uncaught-exceptions-policy', () => {
  const script = `
    const h = require('.'), fs = require('fs'), os = require('os'), path = require('path')
    const { makeFakeRoot, V2_MOUNTINFO } = require('./__test__/helpers/fake-root')
    process.on('uncaughtException', (e) => { console.log('UNCAUGHT', e && e.message); process.exit(3) })
    process.on('unhandledRejection', (e) => { console.log('UNHANDLED', e && e.message); process.exit(4) })
    const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'hook-'))
    const getter = () => ({ get bad() { throw new Error('getter exploded') } })
    const results = []
    const outcome = (label, p) => p.then((v) => results.push([label, 'resolved']), (e) => results.push([label, e.code, e.message]))
    const monitor = () => new h.MemoryMonitor({ fsRoot: makeFakeRoot({
      'proc/self/cgroup': '0::/svc\\n', 'proc/self/mountinfo': V2_MOUNTINFO,
      'sys/fs/cgroup/svc/memory.max': '1073741824\\n', 'sys/fs/cgroup/svc/memory.current': '104857600\\n',
      'sys/fs/cgroup/svc/memory.stat': 'inactive_file 0\\n' }), nvmlLibraryPath: ${JSON.stringify(NO_NVML)} })
    ;(async () => {
      await outcome('sync getter', new h.CheckpointManager({ directory: dir(), captureState: getter }).createCheckpoint())
      await outcome('async getter', new h.CheckpointManager({ directory: dir(), captureState: async () => getter() }).createCheckpoint())
      await outcome('toJSON', new h.CheckpointManager({ directory: dir(), captureState: () => ({ toJSON() { throw new Error('toJSON exploded') } }) }).createCheckpoint())
      await outcome('then getter', new h.CheckpointManager({ directory: dir(), captureState: () => ({ get then() { throw new Error('then getter exploded') } }) }).createCheckpoint())
      const restoring = new h.CheckpointManager({ directory: dir(), restoreMemoryState: getter })
      await restoring.createCheckpoint()
      await outcome('restore hook', restoring.restoreFromCheckpoint())
      await outcome('recovery then getter', new h.MemoryRecovery(monitor(), { clearGPUCache: () => ({ get then() { throw new Error('then getter exploded') } }) }).recoverFromPressure())
      await outcome('recovery then throws', new h.MemoryRecovery(monitor(), { clearGPUCache: () => ({ then() { throw new Error('then exploded') } }) }).recoverFromPressure())
      await outcome('good', new h.CheckpointManager({ directory: dir(), captureState: () => ({ n: 1 }) }).createCheckpoint())
      console.log(JSON.stringify(results))
    })()`
  const child = runChild(script, { flags: ['--force-node-api-uncaught-exceptions-policy=true'] })
  assert.equal(child.status, 0, `died: ${child.signal} ${child.stdout} ${child.stderr}`)
  const results = JSON.parse(child.stdout.trim().split('\n').pop())
  assert.deepEqual(results, [
    ['sync getter', 'ERR_STEP_FAILED', 'captureState failed: getter exploded'],
    ['async getter', 'ERR_STEP_FAILED', 'captureState failed: getter exploded'],
    ['toJSON', 'ERR_STEP_FAILED', 'captureState failed: toJSON exploded'],
    ['then getter', 'ERR_STEP_FAILED', 'captureState failed: then getter exploded'],
    ['restore hook', 'ERR_STEP_FAILED', 'restoreMemoryState failed: getter exploded'],
    ['recovery then getter', 'ERR_STEP_FAILED', 'recovery step clear_gpu_cache failed: then getter exploded'],
    ['recovery then throws', 'ERR_STEP_FAILED', 'recovery step clear_gpu_cache failed: then exploded'],
    ['good', 'resolved'],
  ])
})

test('hooks that return thenables are awaited like promises', async () => {
  const later = (value, ms = 30) => ({ then(resolve) { setTimeout(() => resolve(value), ms) } })
  const order = []
  const manager = new h.CheckpointManager({
    directory: path.join(tempDir(), 'ck'),
    captureState: () => later({ n: 1 }),
    cleanCurrentState: () => ({ then(resolve) { setTimeout(() => { order.push('cleaned'); resolve() }, 30) } }),
    restoreMemoryState: () => { order.push('memory') },
  })
  const checkpoint = await manager.createCheckpoint()
  assert.deepEqual(checkpoint.state, { n: 1 })
  await manager.restoreFromCheckpoint()
  assert.deepEqual(order, ['cleaned', 'memory'])
  const rejecting = new h.CheckpointManager({ directory: path.join(tempDir(), 'ck'), captureState: () => ({ then(_, reject) { reject(new Error('no state')) } }) })
  await assert.rejects(rejecting.createCheckpoint(), { code: 'ERR_STEP_FAILED', message: 'captureState failed: no state' })
  // A thenable that resolves with another thenable is adopted, as await does.
  const nested = new h.CheckpointManager({ directory: path.join(tempDir(), 'ck'), captureState: () => later(later({ deep: true })) })
  assert.deepEqual((await nested.createCheckpoint()).state, { deep: true })

  const root = makeFakeRoot({
    'proc/self/cgroup': '0::/svc\n', 'proc/self/mountinfo': V2_MOUNTINFO,
    'sys/fs/cgroup/svc/memory.max': `${1024 * MiB}\n`, 'sys/fs/cgroup/svc/memory.current': `${900 * MiB}\n`,
    'sys/fs/cgroup/svc/memory.stat': 'inactive_file 0\n',
  })
  const steps = []
  const recovery = new h.MemoryRecovery(new h.MemoryMonitor({ fsRoot: root, nvmlLibraryPath: NO_NVML }), {
    clearGPUCache: () => ({ then(resolve) { setTimeout(() => { steps.push('cache cleared'); resolve() }, 50) } }),
    defragmentMemory: () => {
      steps.push('defragment')
      writeFiles(root, { 'sys/fs/cgroup/svc/memory.current': `${300 * MiB}\n` })
    },
  })
  assert.equal(await recovery.recoverFromPressure(), true)
  assert.deepEqual(steps, ['cache cleared', 'defragment'])
  await manager.close()
})

/** One instance of every class, and the arguments that construct it. */
function everyClass() {
  const dir = tempDir()
  const memory = new h.MemoryMonitor({ nvmlLibraryPath: NO_NVML })
  const gpu = new h.GPUHealthMonitor({ nvmlLibraryPath: NO_NVML, watchXid: false })
  const args = {
    MemoryMonitor: () => [{ nvmlLibraryPath: NO_NVML }],
    GPUHealthMonitor: () => [{ nvmlLibraryPath: NO_NVML, watchXid: false }],
    MemoryRecovery: () => [memory],
    GPURecovery: () => [gpu],
    CheckpointManager: () => [{ directory: fs.mkdtempSync(path.join(dir, 'ck-')) }],
    IncidentLog: () => [{ directory: fs.mkdtempSync(path.join(dir, 'log-')) }],
    HealthSupervisor: () => [{}],
  }
  // Classes, not the plain functions (readHistory, readIncidents, the report): those have no instances to guard.
  const functions = new Set([h.readHistory, h.readIncidents, h.readReport, h.renderReport])
  const classes = [...new Set(Object.values(h).filter((v) => typeof v === 'function' && v.prototype && !functions.has(v)))]
  assert.deepEqual(classes.map((c) => c.name).sort(), Object.keys(args).sort(), 'every exported class is covered')
  return classes.map((Class) => ({ Class, args: args[Class.name], instance: new Class(...args[Class.name]()) }))
}

test('every method and accessor called on a foreign this, or an instance of another class, throws a TypeError with ERR_INVALID_ARG_TYPE', async () => {
  const all = everyClass()
  let checked = 0
  for (const { Class } of all) {
    const other = all.find((c) => c.Class !== Class).instance
    for (const name of Object.getOwnPropertyNames(Class.prototype)) {
      if (name === 'constructor') continue
      const descriptor = Object.getOwnPropertyDescriptor(Class.prototype, name)
      for (const fn of [descriptor.value, descriptor.get, descriptor.set].filter(Boolean)) {
        for (const receiver of [{}, other, undefined, 7, Object.create(Class.prototype)]) {
          assert.throws(() => fn.call(receiver, undefined), (e) => {
            assert.equal(e.name, 'TypeError', `${Class.name}.${name}`)
            assert.equal(e.code, 'ERR_INVALID_ARG_TYPE', `${Class.name}.${name}`)
            assert.match(e.message, new RegExp(`^${Class.name}\\.${name} must be called on a ${Class.name}, got `))
            return true
          })
          checked++
        }
      }
    }
  }
  assert.ok(checked > 150, `${checked} calls checked`)
  // Members still work on their own instances, subclasses included.
  const [memory] = all
  assert.equal(typeof memory.instance.thresholds.gpu_memory, 'number')
  class Watched extends h.MemoryMonitor {}
  const watched = new Watched({ nvmlLibraryPath: NO_NVML })
  assert.ok(watched instanceof h.MemoryMonitor)
  assert.equal(typeof (await watched.getMemoryMetrics()).system_total, 'number')
  watched.thresholds = { gpu_memory: 0.5 }
  assert.equal(watched.thresholds.gpu_memory, 0.5)
  for (const { instance } of all) if (typeof instance.close === 'function') await instance.close()
})

test('every class called without new throws a TypeError and wraps nothing', async () => {
  const all = everyClass()
  for (const { Class, args, instance } of all) {
    for (const receiver of [undefined, h, globalThis, {}, instance]) {
      assert.throws(() => Class.call(receiver, ...args()), {
        name: 'TypeError', code: 'ERR_CONSTRUCT_CALL_REQUIRED', message: `Class constructor ${Class.name} cannot be invoked without 'new'`,
      }, Class.name)
    }
  }
  // Nothing was wrapped by those calls: every class still constructs.
  for (const { Class, args } of everyClass()) assert.ok(new Class(...args()) instanceof Class)
  for (const { instance } of all) if (typeof instance.close === 'function') await instance.close()
})
