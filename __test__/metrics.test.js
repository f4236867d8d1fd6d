'use strict'
// metrics(): Prometheus text exposition, checked by an independent parser of the format.
const test = require('node:test')
const assert = require('node:assert/strict')
const parsePrometheus = require('parse-prometheus-text-format')
const { STANDIN_LIBRARY, StandinState, device, GiB } = require('./helpers/standin')

const standin = new StandinState({ devices: [device(0, { temperature: 61, throttle_reasons: 0x40 }), device(1, { memory_used: 2 * GiB })] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const h = require('..')

test('the exposition parses, every family is hpc_health_ with HELP and TYPE, GPUs carry index and uuid labels', async () => {
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const memoryRecovery = new h.MemoryRecovery(memoryMonitor, {})
  const supervisor = new h.HealthSupervisor({ memoryMonitor, gpuMonitor, memoryRecovery })
  await supervisor.checkSystemHealth('full')
  await supervisor.recoverSystem('memory')
  const text = supervisor.metrics()
  const families = parsePrometheus(text)
  const byName = Object.fromEntries(families.map((f) => [f.name, f]))
  for (const family of families) {
    assert.match(family.name, /^hpc_health_[a-z0-9_]+$/)
    assert.ok(family.help.length > 0, `${family.name} has HELP`)
    assert.ok(['GAUGE', 'COUNTER'].includes(family.type), `${family.name} has TYPE`)
  }
  for (const name of ['healthy', 'accepting_requests', 'system_memory_used_bytes', 'system_memory_total_bytes', 'system_memory_pressure',
    'gpu_memory_used_bytes', 'gpu_memory_total_bytes', 'gpu_temperature_celsius', 'gpu_power_watts', 'gpu_thermal_throttle',
    'gpu_xid_errors_total', 'recoveries_total', 'incidents_total', 'checks_total', 'check_duration_seconds']) {
    assert.ok(byName[`hpc_health_${name}`], `hpc_health_${name} is exposed`)
  }
  const temps = byName.hpc_health_gpu_temperature_celsius.metrics
  assert.deepEqual(temps.map((m) => [m.labels.index, m.labels.uuid, m.value]), [['0', device(0).uuid, '61'], ['1', device(1).uuid, '40']])
  assert.deepEqual(byName.hpc_health_gpu_thermal_throttle.metrics.map((m) => m.value), ['1', '0'])
  assert.equal(byName.hpc_health_gpu_memory_used_bytes.metrics[1].value, String(2 * GiB))
  assert.equal(byName.hpc_health_healthy.metrics[0].value, '1')
  assert.deepEqual(byName.hpc_health_recoveries_total.metrics.map((m) => [m.labels.type, m.labels.result, m.value]), [['memory', 'recovered', '1']])
  assert.equal(byName.hpc_health_system_memory_total_bytes.metrics[0].labels.source, 'host')
  assert.ok(text.endsWith('\n'))
})

test('hpc_health_process_heap_bytes counts a live native allocation as in use, and its release', async () => {
  const supervisor = new h.HealthSupervisor({ memoryMonitor: new h.MemoryMonitor({}) })
  const inUse = () => {
    const family = parsePrometheus(supervisor.metrics()).find((f) => f.name === 'hpc_health_process_heap_bytes')
    assert.ok(family, 'hpc_health_process_heap_bytes is exposed')
    assert.deepEqual(family.metrics.map((m) => m.labels.state), ['in_use', 'free'])
    return Number(family.metrics[0].value)
  }
  const MiB = 1024 * 1024
  const before = inUse()
  // Buffer.alloc of this size is one malloc'd (mmapped) block outside V8's heap.
  let block = Buffer.alloc(64 * MiB, 1)
  const during = inUse()
  assert.ok(during - before >= 48 * MiB, `in use ${before} then ${during} with 64 MiB allocated`)
  block = null
  // V8 may free a large backing store on a background thread after the collection: poll.
  let after = during
  for (let i = 0; i < 50 && during - after < 48 * MiB; i++) {
    global.gc()
    await new Promise((resolve) => setTimeout(resolve, 100))
    after = inUse()
  }
  assert.ok(during - after >= 48 * MiB, `in use ${during} then ${after} once the 64 MiB were released`)
  assert.equal(block, null)
})
