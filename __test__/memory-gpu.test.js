'use strict'
// MemoryMonitor's GPU side, through the real nvml-wrapper code path against the project's
// stand-in libnvidia-ml.so.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { STANDIN_LIBRARY, StandinState, device, runChild, GiB } = require('./helpers/standin')

// The stand-in reads its state file on every call; set where it is before NVML is loaded.
const standin = new StandinState({ devices: [device(0)] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const { MemoryMonitor } = require('..')
const PACKAGE = JSON.stringify(path.join(__dirname, '..'))

const monitor = () => new MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })

test('no GPU devices: gpu_available false with the reason, nothing throws', async () => {
  standin.write({ devices: [] })
  const m = await monitor().getMemoryMetrics()
  assert.equal(m.gpu_available, false)
  assert.match(m.gpu_error, /no GPU devices/)
  assert.deepEqual(m.gpus, [])
  assert.equal(m.gpu_total, 0)
  const p = await monitor().checkMemoryPressure()
  assert.equal(p.gpu_pressure, false)
  assert.equal(p.gpu_ratio, 0)
})

test('one device: memory, name and UUID as NVML reports them', async () => {
  standin.write({ devices: [device(0, { memory_used: 60 * GiB })] })
  const m = await monitor().getMemoryMetrics()
  assert.equal(m.gpu_available, true)
  assert.equal(m.gpu_error, null)
  assert.deepEqual(m.gpus, [{
    index: 0, uuid: device(0).uuid, name: device(0).name, used: 60 * GiB, total: 80 * GiB, lost: false, error: null,
  }])
  assert.equal(m.gpu_used, 60 * GiB)
  assert.equal(m.gpu_total, 80 * GiB)
  const p = await monitor().checkMemoryPressure()
  assert.equal(p.gpu_pressure, false)
  assert.equal(p.gpu_ratio, 0.75)
  standin.write({ devices: [device(0, { memory_used: 70 * GiB })] })
  const full = await monitor().checkMemoryPressure()
  assert.equal(full.gpu_pressure, true, '87.5% is above the 85% default')
  assert.deepEqual(full.gpus, [{ index: 0, ratio: 0.875, pressure: true }])
})

test('eight devices: one full device is pressure although the sum is low', async () => {
  const devices = Array.from({ length: 8 }, (_, i) => device(i, { memory_used: i === 3 ? 72 * GiB : 2 * GiB }))
  standin.write({ devices })
  const p = await monitor().checkMemoryPressure()
  assert.equal(p.metrics.gpus.length, 8)
  assert.deepEqual(p.metrics.gpus.map((g) => g.uuid), devices.map((d) => d.uuid))
  assert.equal(p.metrics.gpu_total, 8 * 80 * GiB)
  assert.equal(p.metrics.gpu_used, 72 * GiB + 7 * 2 * GiB)
  assert.ok(p.metrics.gpu_used / p.metrics.gpu_total < 0.85)
  assert.equal(p.gpu_pressure, true)
  assert.equal(p.gpu_ratio, 0.9)
  assert.deepEqual(p.gpus.map((g) => g.pressure), [false, false, false, true, false, false, false, false])
})

test('a device lost mid-run is marked on its own, keeps its UUID, and comes back', async () => {
  const devices = Array.from({ length: 4 }, (_, i) => device(i, { memory_used: 10 * GiB }))
  standin.write({ devices })
  const m = monitor()
  assert.equal((await m.getMemoryMetrics()).gpus[2].lost, false)
  standin.write({ devices: devices.map((d, i) => (i === 2 ? { ...d, lost: true } : d)) })
  const lost = await m.checkMemoryPressure()
  assert.equal(lost.metrics.gpu_available, true)
  assert.deepEqual(lost.metrics.gpus.map((g) => g.lost), [false, false, true, false])
  assert.equal(lost.metrics.gpus[2].uuid, devices[2].uuid, 'the UUID it had before it was lost')
  assert.equal(lost.metrics.gpus[1].used, 10 * GiB, 'the others still answer')
  assert.equal(lost.metrics.gpu_total, 3 * 80 * GiB, 'a lost device counts in no sum')
  assert.deepEqual(lost.gpus[2], { index: 2, ratio: null, pressure: false })
  standin.write({ devices })
  const back = await m.getMemoryMetrics()
  assert.deepEqual(back.gpus.map((g) => g.lost), [false, false, false, false])
  assert.equal(back.gpu_total, 4 * 80 * GiB)
})

test('a device whose memory query is not supported reports the error, not a failure', async () => {
  standin.write({ devices: [device(0), device(1, { errors: { memory_info: 3 } })] })
  const p = await monitor().checkMemoryPressure()
  assert.equal(p.metrics.gpus[1].lost, false)
  assert.match(p.metrics.gpus[1].error, /not supported/i)
  assert.equal(p.gpus[1].ratio, null)
  assert.equal(p.metrics.gpus[0].used, 1 * GiB)
})

test('no library at the given path: gpu_available false and why', async () => {
  const m = await new MemoryMonitor({ nvmlLibraryPath: '/nonexistent/libnvidia-ml.so.1' }).getMemoryMetrics()
  assert.equal(m.gpu_available, false)
  assert.match(m.gpu_error, /could not be loaded.*nonexistent/)
})

test('nvmlInit failing (driver not loaded) gives gpu_available false and the reason', () => {
  const failing = new StandinState({ init_error: 9, devices: [device(0)] })
  const result = runChild(`
    const { MemoryMonitor } = require(${PACKAGE})
    new MemoryMonitor({ nvmlLibraryPath: ${JSON.stringify(STANDIN_LIBRARY)} }).getMemoryMetrics().then((m) => console.log(JSON.stringify(m)))
  `, failing.env())
  assert.equal(result.gpu_available, false)
  assert.match(result.gpu_error, /driver is not loaded/)
})

test('HPC_HEALTH_NVML_LIBRARY picks the library; every monitor shares one NVML session', () => {
  const shared = new StandinState({ devices: [device(0), device(1)] })
  const result = runChild(`
    const { MemoryMonitor } = require(${PACKAGE})
    const monitors = Array.from({ length: 5 }, () => new MemoryMonitor())
    Promise.all(monitors.flatMap((m) => [m.getMemoryMetrics(), m.checkMemoryPressure()]))
      .then((all) => console.log(JSON.stringify(all.map((r) => (r.metrics || r).gpus.length))))
  `, shared.env({ HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY }))
  assert.deepEqual(result, Array(10).fill(2))
  const inits = shared.logLines().filter((l) => l.startsWith('init'))
  assert.equal(inits.length, 1, `one nvmlInit for the whole process, got: ${shared.logLines()}`)
})

test('a process that used the GPU monitor exits on its own', () => {
  const result = runChild(`
    const { MemoryMonitor } = require(${PACKAGE})
    new MemoryMonitor({ nvmlLibraryPath: ${JSON.stringify(STANDIN_LIBRARY)} }).checkMemoryPressure()
      .then((p) => console.log(JSON.stringify(p.metrics.gpu_available)))
  `, standin.env())
  assert.equal(result, true)
})
