'use strict'
// MemoryRecovery and GPURecovery: the flows, hooks that are sync, async, throw, reject or
// never settle, single flight, lost devices coming back or not, and a 10,000-run stress.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { STANDIN_LIBRARY, StandinState, device, GiB } = require('./helpers/standin')
const { makeFakeRoot, writeFiles, V2_MOUNTINFO } = require('./helpers/fake-root')

const standin = new StandinState({ devices: [device(0), device(1)] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const { MemoryMonitor, MemoryRecovery, GPUHealthMonitor, GPURecovery } = require('..')

const MiB = 1024 ** 2
const NO_NVML = '/nonexistent/libnvidia-ml.so.1'
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A monitor over a fake 1 GiB cgroup whose usage `setUsed(mib)` changes. */
function containerMonitor(usedMib) {
  const root = makeFakeRoot({
    'proc/self/cgroup': '0::/svc\n',
    'proc/self/mountinfo': V2_MOUNTINFO,
    'sys/fs/cgroup/svc/memory.max': `${1024 * MiB}\n`,
    'sys/fs/cgroup/svc/memory.current': `${usedMib * MiB}\n`,
    'sys/fs/cgroup/svc/memory.stat': 'inactive_file 0\n',
  })
  const monitor = new MemoryMonitor({ fsRoot: root, nvmlLibraryPath: NO_NVML })
  monitor.setUsed = (mib) => writeFiles(root, { 'sys/fs/cgroup/svc/memory.current': `${mib * MiB}\n` })
  return monitor
}

test('the flow runs in order with intake paused during every step, and resumes when pressure is gone', async () => {
  const monitor = containerMonitor(900) // 88% of the limit: pressure
  const seen = []
  const recovery = new MemoryRecovery(monitor, {
    clearGPUCache: () => { seen.push(['clearGPUCache', recovery.pause_incoming]) },
    defragmentMemory: async () => {
      seen.push(['defragmentMemory', recovery.pause_incoming])
      monitor.setUsed(300) // the worker freed memory
    },
    emergencyCleanup: () => { seen.push(['emergencyCleanup']) },
  })
  assert.equal(recovery.pause_incoming, false)
  assert.equal(recovery.lastOutcome, null)
  assert.equal(await recovery.recoverFromPressure(), true)
  assert.deepEqual(seen, [['clearGPUCache', true], ['defragmentMemory', true]])
  assert.equal(recovery.pause_incoming, false)
  const outcome = recovery.lastOutcome
  assert.equal(outcome.result, 'recovered')
  assert.equal(outcome.type, 'memory')
  assert.deepEqual(outcome.steps.map((s) => [s.name, s.status]), [
    ['pause_intake', 'ok'], ['measure', 'ok'], ['clear_gpu_cache', 'ok'], ['defragment_memory', 'ok'], ['release_native_heap', 'ok'], ['verify', 'ok'],
  ])
  assert.equal(outcome.pressure_before.system_pressure, true)
  assert.equal(outcome.pressure_after.system_pressure, false)
  assert.ok(outcome.started_at <= outcome.finished_at)
  assert.equal(typeof outcome.steps[4].detail.released_bytes, 'number')
  for (const step of outcome.steps) assert.equal(typeof step.duration_ms, 'number')
})

test('pressure that stays resolves false and keeps intake paused until resume()', async () => {
  const recovery = new MemoryRecovery(containerMonitor(1000), { clearGPUCache: async () => {} })
  assert.equal(await recovery.recoverFromPressure(), false)
  assert.equal(recovery.pause_incoming, true)
  assert.equal(recovery.lastOutcome.result, 'not_recovered')
  recovery.resume()
  assert.equal(recovery.pause_incoming, false)
})

test('a hook that throws, rejects or never settles runs emergencyCleanup(error) and rejects with the step error', async () => {
  const cases = [
    ['throws', { clearGPUCache: () => { throw new Error('cache clear exploded') } }, 'ERR_STEP_FAILED', 'clear_gpu_cache', /cache clear exploded/],
    ['rejects', { defragmentMemory: () => Promise.reject(new RangeError('defrag refused')) }, 'ERR_STEP_FAILED', 'defragment_memory', /defrag refused/],
    ['never settles', { clearGPUCache: () => new Promise(() => {}) }, 'ERR_STEP_TIMEOUT', 'clear_gpu_cache', /did not finish within 150 ms/],
  ]
  for (const [label, hooks, code, step, message] of cases) {
    const cleanups = []
    const recovery = new MemoryRecovery(containerMonitor(100), {
      ...hooks, stepTimeoutMs: 150, emergencyCleanup: (error) => { cleanups.push(error) },
    })
    const started = Date.now()
    await assert.rejects(recovery.recoverFromPressure(), (err) => {
      assert.equal(err.code, code, label)
      assert.equal(err.step, step)
      assert.match(err.message, message)
      assert.equal(err.cleanupError, null)
      assert.equal(err.outcome.result, 'failed')
      return true
    })
    assert.ok(Date.now() - started < 5000, `${label}: bounded by the step timeout`)
    assert.equal(cleanups.length, 1, label)
    assert.ok(cleanups[0] instanceof Error)
    assert.equal(cleanups[0].code, code)
    assert.equal(cleanups[0].step, step)
    assert.match(cleanups[0].message, message)
    assert.equal(recovery.pause_incoming, true, 'a failed recovery leaves intake paused')
    const statuses = recovery.lastOutcome.steps.map((s) => s.status)
    assert.equal(statuses.at(-1), 'ok', 'the cleanup step ran')
    assert.equal(recovery.lastOutcome.steps.at(-1).name, 'emergency_cleanup')
    assert.ok(statuses.includes(code === 'ERR_STEP_TIMEOUT' ? 'timed_out' : 'failed'))
  }
})

test('a promise rejected with a non-Error, or settled after its step timed out, is handled', async () => {
  for (const [reason, message] of [['plain string', /failed: plain string$/], [{ no: 'message' }, /failed: rejected with an object$/], [undefined, /failed: rejected with undefined$/], [7, /failed: rejected with 7$/]]) {
    const recovery = new MemoryRecovery(containerMonitor(100), { defragmentMemory: () => Promise.reject(reason), stepTimeoutMs: 1000 })
    await assert.rejects(recovery.recoverFromPressure(), (err) => err.code === 'ERR_STEP_FAILED' && message.test(err.message))
  }
  // Settles 200 ms after its 50 ms timeout: the late settle finds nobody waiting, and the
  // hook's next call (which settles in time) is not confused with it.
  let calls = 0
  const recovery = new MemoryRecovery(containerMonitor(100), {
    clearGPUCache: () => new Promise((resolve, reject) => (++calls === 1 ? setTimeout(() => reject(new Error('late')), 250) : resolve())),
    stepTimeoutMs: 50,
  })
  await assert.rejects(recovery.recoverFromPressure(), { code: 'ERR_STEP_TIMEOUT' })
  assert.equal(await recovery.recoverFromPressure(), true)
  await sleep(300)
  assert.equal(await recovery.recoverFromPressure(), true)
  assert.equal(calls, 3)
})

test('a cleanup that throws or hangs is reported beside the step error', async () => {
  for (const emergencyCleanup of [async () => { throw new Error('cleanup broke') }, () => new Promise(() => {})]) {
    const recovery = new MemoryRecovery(containerMonitor(100), {
      clearGPUCache: () => { throw new Error('first failure') }, emergencyCleanup, stepTimeoutMs: 100,
    })
    await assert.rejects(recovery.recoverFromPressure(), (err) => {
      assert.equal(err.code, 'ERR_STEP_FAILED')
      assert.match(err.message, /first failure; emergency cleanup failed too: /)
      assert.match(err.cleanupError, /cleanup broke|did not finish within 100 ms/)
      return true
    })
  }
})

test('50 concurrent calls run the hooks once and all get the same answer', async () => {
  let calls = 0
  const recovery = new MemoryRecovery(containerMonitor(100), {
    clearGPUCache: async () => { calls++; await sleep(50) },
  })
  const results = await Promise.all(Array.from({ length: 50 }, () => recovery.recoverFromPressure()))
  assert.equal(calls, 1)
  assert.deepEqual(new Set(results), new Set([true]))
  // The next call after it finished is a new run.
  await recovery.recoverFromPressure()
  assert.equal(calls, 2)
})

test('bad constructor input throws TypeError or RangeError', () => {
  const monitor = containerMonitor(100)
  const cases = [
    [[], TypeError, /^monitor must be a MemoryMonitor, got undefined$/],
    [[{}], TypeError, /^monitor must be a MemoryMonitor, got an object$/],
    [[new GPUHealthMonitor({ nvmlLibraryPath: NO_NVML, watchXid: false })], TypeError, /monitor must be a MemoryMonitor/],
    [[monitor, { clearGPUCache: 'empty_cache' }], TypeError, /^clearGPUCache must be a function, got a string$/],
    [[monitor, { emergencyCleanup: {} }], TypeError, /^emergencyCleanup must be a function, got an object$/],
    [[monitor, { stepTimeoutMs: -1 }], RangeError, /^stepTimeoutMs must be an integer in \[1, 2147483647\], got -1$/],
    [[monitor, { stepTimeoutMs: 0 }], RangeError, /stepTimeoutMs/],
    [[monitor, { stepTimeoutMs: '10' }], TypeError, /^stepTimeoutMs must be a number, got a string$/],
    [[monitor, { clearCache: () => {} }], TypeError, /unknown option 'clearCache'/],
    [[monitor, 7], TypeError, /^options must be an object, got 7$/],
  ]
  for (const [args, type, message] of cases) {
    assert.throws(() => new MemoryRecovery(...args), (err) => err instanceof type && message.test(err.message), String(message))
  }
  const gpu = new GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false })
  const gpuCases = [
    [[monitor], TypeError, /^gpu must be a GPUHealthMonitor, got an object$/],
    [[gpu, { reinitialize: 1 }], TypeError, /^reinitialize must be a function, got 1$/],
    [[gpu, { deviceWaitMs: -5 }], RangeError, /^deviceWaitMs must be an integer/],
    [[gpu, { memoryThreshold: 2 }], RangeError, /^memoryThreshold must be a number in \(0, 1\], got 2$/],
  ]
  for (const [args, type, message] of gpuCases) {
    assert.throws(() => new GPURecovery(...args), (err) => err instanceof type && message.test(err.message), String(message))
  }
})

test('GPURecovery: out-of-memory flow, unknown error types and bad ones', async () => {
  standin.write({ devices: [device(0, { memory_used: 79 * GiB }), device(1)] })
  const gpu = new GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false })
  const order = []
  const recovery = new GPURecovery(gpu, {
    emptyCache: () => { order.push('emptyCache'); standin.write({ devices: [device(0, { memory_used: 10 * GiB }), device(1)] }) },
    resetPeakMemoryStats: async () => { order.push('resetPeakMemoryStats') },
  })
  assert.equal(await recovery.handleGpuError('out_of_memory'), true)
  assert.deepEqual(order, ['emptyCache', 'resetPeakMemoryStats'])
  const outcome = recovery.lastOutcome
  assert.equal(outcome.type, 'out_of_memory')
  assert.deepEqual(outcome.steps.map((s) => s.name), ['measure', 'empty_cache', 'reset_peak_memory_stats', 'verify_memory'])
  assert.equal(outcome.before.devices[0].used, 79 * GiB)
  assert.equal(outcome.after.devices[0].used, 10 * GiB)
  // Memory that stays above the threshold is not a recovery.
  standin.write({ devices: [device(0, { memory_used: 79 * GiB }), device(1)] })
  assert.equal(await new GPURecovery(gpu, {}).recoverFromOom(), false)
  assert.equal(await recovery.handleGpuError('thermal'), false)
  assert.equal(await recovery.handleGpuError(''), false)
  assert.throws(() => recovery.handleGpuError(42), { name: 'TypeError', message: 'errorType must be a string, got 42' })
  standin.write({ devices: [device(0), device(1)] })
  assert.equal(await recovery.verifyGpuState(), true)
  standin.write({ devices: [device(0), device(1, { ecc_uncorrected_volatile: 1 })] })
  assert.equal(await recovery.verifyGpuState(), false)
  standin.write({ devices: [device(0), device(1)] })
})

test('GPURecovery: a device lost, then back after 500 ms, is re-initialised; every monitor sees the new session', async () => {
  const devices = [device(0), device(1)]
  standin.write({ devices })
  const gpu = new GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false })
  const memory = new MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  assert.equal((await gpu.checkGpuHealth()).healthy, true)
  let reinitialized = 0
  const recovery = new GPURecovery(gpu, { reinitialize: async () => { reinitialized++ }, deviceWaitMs: 5000 })
  standin.write({ devices: [device(0), device(1, { lost: true })] })
  assert.equal((await gpu.checkGpuHealth()).devices[1].lost, true)
  setTimeout(() => standin.write({ devices }), 500)
  const started = Date.now()
  assert.equal(await recovery.handleGpuError('device_lost'), true)
  assert.ok(Date.now() - started >= 400, 'it waited for the device')
  assert.equal(reinitialized, 1)
  const outcome = recovery.lastOutcome
  assert.deepEqual(outcome.steps.map((s) => [s.name, s.status]), [['reopen_nvml', 'ok'], ['wait_for_devices', 'ok'], ['reinitialize', 'ok'], ['verify', 'ok']])
  assert.ok(outcome.steps[1].detail.waited_ms >= 400)
  assert.deepEqual(outcome.before.known_devices, [device(0).uuid, device(1).uuid])
  assert.equal((await gpu.checkGpuHealth()).healthy, true)
  assert.equal((await memory.getMemoryMetrics()).gpus.length, 2)
})

test('GPURecovery: a device that never comes back resolves false after deviceWaitMs, without reinitialize', async () => {
  const devices = [device(0), device(1)]
  standin.write({ devices })
  const gpu = new GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false })
  await gpu.checkGpuHealth()
  let reinitialized = 0
  const recovery = new GPURecovery(gpu, { reinitialize: () => { reinitialized++ }, deviceWaitMs: 600 })
  standin.write({ devices: [device(0), device(1, { lost: true })] })
  const started = Date.now()
  assert.equal(await recovery.reinitializeGpu(), false)
  assert.ok(Date.now() - started < 5000)
  assert.equal(reinitialized, 0)
  const wait = recovery.lastOutcome.steps.find((s) => s.name === 'wait_for_devices')
  assert.equal(wait.status, 'timed_out')
  assert.match(wait.error, new RegExp(`not back within 600 ms: ${device(1).uuid}`))
  assert.equal(recovery.lastOutcome.result, 'not_recovered')
  standin.write({ devices })
})

test('10,000 recoveries in a loop: resident memory and open descriptors stay flat', async () => {
  const monitor = containerMonitor(100)
  let hookCalls = 0
  const recovery = new MemoryRecovery(monitor, { clearGPUCache: () => { hookCalls++ }, defragmentMemory: async () => {} })
  const fds = () => fs.readdirSync('/proc/self/fd').length
  for (let i = 0; i < 500; i++) await recovery.recoverFromPressure() // warm up
  // `npm test` runs node with --expose-gc, so heap figures are after collection.
  global.gc?.()
  const before = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed, fds: fds() }
  const started = Date.now()
  for (let i = 0; i < 10000; i++) assert.equal(await recovery.recoverFromPressure(), true)
  global.gc?.()
  const after = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed, fds: fds() }
  const growthMiB = (after.rss - before.rss) / MiB
  const heapGrowthMiB = (after.heap - before.heap) / MiB
  console.log(`# 10000 recoveries in ${Date.now() - started} ms; RSS ${(before.rss / MiB).toFixed(1)} -> ${(after.rss / MiB).toFixed(1)} MiB; ` +
    `JS heap ${(before.heap / MiB).toFixed(1)} -> ${(after.heap / MiB).toFixed(1)} MiB; fds ${before.fds} -> ${after.fds}`)
  assert.equal(hookCalls, 10500)
  assert.ok(after.fds <= before.fds, `descriptors grew from ${before.fds} to ${after.fds}`)
  // A leak of even 4 KiB a run would be 40 MiB; allocator noise stays well below that.
  assert.ok(growthMiB < 32, `RSS grew ${growthMiB.toFixed(1)} MiB over 10000 recoveries`)
  if (global.gc) assert.ok(heapGrowthMiB < 2, `JS heap grew ${heapGrowthMiB.toFixed(1)} MiB`)
})
