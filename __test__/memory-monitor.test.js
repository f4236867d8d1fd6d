'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { MemoryMonitor } = require('..')
const { makeFakeRoot, writeFiles, V2_MOUNTINFO, V1_MOUNTINFO } = require('./helpers/fake-root')

// No NVML here: these tests are about the host side. The GPU side has its own file.
const NO_NVML = '/nonexistent/libnvidia-ml.so.1'
const GiB = 1024 ** 3
const MiB = 1024 ** 2

test('defaults are the requirements\' thresholds, frozen', () => {
  const monitor = new MemoryMonitor({ nvmlLibraryPath: NO_NVML })
  assert.deepEqual({ ...monitor.thresholds }, { gpu_memory: 0.85, system_memory: 0.8, warning_interval: 60000 })
  assert.ok(Object.isFrozen(monitor.thresholds))
  assert.throws(() => { 'use strict'; monitor.thresholds.gpu_memory = 0.1 }, TypeError)
  assert.equal(monitor.thresholds.gpu_memory, 0.85)
})

test('thresholds given to the constructor and by assignment', () => {
  const monitor = new MemoryMonitor({ thresholds: { gpu_memory: 0.9 }, nvmlLibraryPath: NO_NVML })
  assert.deepEqual({ ...monitor.thresholds }, { gpu_memory: 0.9, system_memory: 0.8, warning_interval: 60000 })
  monitor.thresholds = { system_memory: 0.5, warning_interval: 0 }
  assert.deepEqual({ ...monitor.thresholds }, { gpu_memory: 0.9, system_memory: 0.5, warning_interval: 0 })
  monitor.thresholds = { ...monitor.thresholds, gpu_memory: 1 }
  assert.equal(monitor.thresholds.gpu_memory, 1)
})

test('bad constructor input throws TypeError or RangeError naming the parameter', () => {
  const cases = [
    [5, TypeError, /^options must be an object, got 5$/],
    ['x', TypeError, /^options must be an object, got a string$/],
    [[], TypeError, /^options must be an object, got an array$/],
    [{ thresholds: 3 }, TypeError, /^thresholds must be an object, got 3$/],
    [{ thresholds: null }, TypeError, /^thresholds must be an object, got null$/],
    [{ thresholds: { gpu_memory: '0.5' } }, TypeError, /^thresholds\.gpu_memory must be a number, got a string$/],
    [{ thresholds: { gpu_memory: NaN } }, TypeError, /^thresholds\.gpu_memory must be a number, got NaN$/],
    [{ thresholds: { gpu_memory: 1.5 } }, RangeError, /^thresholds\.gpu_memory must be a number in \(0, 1\], got 1\.5$/],
    [{ thresholds: { gpu_memory: 0 } }, RangeError, /^thresholds\.gpu_memory must be a number in \(0, 1\], got 0$/],
    [{ thresholds: { system_memory: -0.2 } }, RangeError, /^thresholds\.system_memory must be a number in \(0, 1\], got -0\.2$/],
    [{ thresholds: { system_memory: Infinity } }, RangeError, /system_memory/],
    [{ thresholds: { warning_interval: -1 } }, RangeError, /^thresholds\.warning_interval must be an integer in \[0, 2147483647\], got -1$/],
    [{ thresholds: { warning_interval: 1.5 } }, RangeError, /warning_interval/],
    [{ thresholds: { warning_interval: 2 ** 31 } }, RangeError, /warning_interval/],
    [{ thresholds: { gpu: 0.5 } }, TypeError, /^thresholds has unknown option 'gpu'; known options are gpu_memory, system_memory, warning_interval$/],
    [{ treshold: {} }, TypeError, /unknown option 'treshold'/],
    [{ a: 1, b: 2 }, TypeError, /unknown options 'a', 'b'/],
    [{ nvmlLibraryPath: 42 }, TypeError, /^nvmlLibraryPath must be a string, got 42$/],
    [{ nvmlLibraryPath: '' }, TypeError, /nvmlLibraryPath must be a non-empty string/],
    [{ nvmlLibraryPath: 'a\0b' }, TypeError, /without NUL bytes/],
    [{ fsRoot: {} }, TypeError, /^fsRoot must be a string, got an object$/],
  ]
  for (const [options, type, message] of cases) {
    assert.throws(() => new MemoryMonitor(options), (err) => {
      assert.ok(err instanceof type, `${JSON.stringify(options)} threw ${err}`)
      assert.match(err.message, message)
      assert.equal(err.code, type === RangeError ? 'ERR_OUT_OF_RANGE' : err.code)
      assert.match(err.code, /^ERR_(INVALID_ARG_TYPE|INVALID_ARG_VALUE|OUT_OF_RANGE)$/)
      return true
    })
  }
  // undefined, null (as Node's own APIs take it) and an empty object mean the defaults.
  assert.ok(new MemoryMonitor(undefined))
  assert.equal(new MemoryMonitor(null).thresholds.gpu_memory, 0.85)
  assert.ok(new MemoryMonitor({}))
})

test('bad threshold assignment throws and leaves thresholds unchanged', () => {
  const monitor = new MemoryMonitor({ nvmlLibraryPath: NO_NVML })
  assert.throws(() => { monitor.thresholds = { gpu_memory: 2 } }, RangeError)
  assert.throws(() => { monitor.thresholds = 'high' }, TypeError)
  assert.throws(() => { monitor.thresholds = undefined }, TypeError)
  assert.throws(() => { monitor.thresholds = { gpu_memory: 0.5, system_memory: 7 } }, RangeError)
  assert.deepEqual({ ...monitor.thresholds }, { gpu_memory: 0.85, system_memory: 0.8, warning_interval: 60000 })
})

test('getMemoryMetrics on this machine has every contract field', async () => {
  const monitor = new MemoryMonitor({ nvmlLibraryPath: NO_NVML })
  const before = Date.now()
  const m = await monitor.getMemoryMetrics()
  assert.ok(m.timestamp >= before - 1 && m.timestamp <= Date.now() + 1)
  assert.equal(m.gpu_used, 0)
  assert.equal(m.gpu_total, 0)
  assert.equal(m.gpu_available, false)
  assert.match(m.gpu_error, /NVML library could not be loaded/)
  assert.deepEqual(m.gpus, [])
  assert.ok(m.system_total > 0 && m.system_total <= os.totalmem())
  assert.ok(m.system_used > 0 && m.system_used < m.system_total)
  assert.ok(['host', 'cgroup'].includes(m.memory_limit_source))
  if (m.memory_limit_source === 'host') assert.equal(m.system_total, os.totalmem())
  assert.ok(m.psi === null || (typeof m.psi.some_avg10 === 'number' && typeof m.psi.full_avg10 === 'number'))
  assert.equal(m.system_error, null)
})

test('cgroup v2: a 4 GiB container limit on a bigger host is the total, usage minus inactive file', async () => {
  const root = makeFakeRoot({
    'proc/self/cgroup': '0::/kubepods/pod7/ctr\n',
    'proc/self/mountinfo': V2_MOUNTINFO,
    'sys/fs/cgroup/cgroup.controllers': 'cpu memory pids\n',
    'sys/fs/cgroup/kubepods/memory.max': 'max\n',
    'sys/fs/cgroup/kubepods/pod7/memory.max': `${4 * GiB}\n`,
    'sys/fs/cgroup/kubepods/pod7/memory.current': `${3 * GiB}\n`,
    'sys/fs/cgroup/kubepods/pod7/memory.stat': `anon 1\nactive_file 5\ninactive_file ${512 * MiB}\n`,
    'sys/fs/cgroup/kubepods/pod7/ctr/memory.max': 'max\n',
    'proc/pressure/memory': 'some avg10=12.50 avg60=1 avg300=0 total=9\nfull avg10=4.25 avg60=0 avg300=0 total=3\n',
  })
  const monitor = new MemoryMonitor({ fsRoot: root, nvmlLibraryPath: NO_NVML })
  const m = await monitor.getMemoryMetrics()
  // The limit only wins where it is below the RAM this machine has.
  assert.ok(os.totalmem() > 4 * GiB, 'test needs a host with more than 4 GiB')
  assert.equal(m.memory_limit_source, 'cgroup')
  assert.equal(m.system_total, 4 * GiB)
  assert.equal(m.system_used, 3 * GiB - 512 * MiB)
  assert.deepEqual(m.psi, { some_avg10: 12.5, full_avg10: 4.25 })
  assert.deepEqual(m.cgroup, { version: 2, path: '/kubepods/pod7/ctr', limit: 4 * GiB, error: null })
  const p = await monitor.checkMemoryPressure()
  assert.equal(p.system_ratio, (3 * GiB - 512 * MiB) / (4 * GiB))
  assert.equal(p.system_pressure, false)
  // The container fills up: pressure turns on at the threshold, not before.
  writeFiles(root, { 'sys/fs/cgroup/kubepods/pod7/memory.current': `${4 * GiB - 100 * MiB}\n` })
  const p2 = await monitor.checkMemoryPressure()
  assert.equal(p2.system_pressure, true)
  assert.equal(p2.metrics.system_used, 4 * GiB - 612 * MiB)
})

test('cgroup v1: unlimited means the host, a parent limit binds the child', async () => {
  const unlimited = '9223372036854771712\n'
  const root = makeFakeRoot({
    'proc/self/cgroup': '9:name=systemd:/\n4:memory:/batch/job1\n0::/\n',
    'proc/self/mountinfo': V1_MOUNTINFO,
    'sys/fs/cgroup/memory/memory.limit_in_bytes': unlimited,
    'sys/fs/cgroup/memory/batch/memory.limit_in_bytes': unlimited,
    'sys/fs/cgroup/memory/batch/job1/memory.limit_in_bytes': unlimited,
  })
  const monitor = new MemoryMonitor({ fsRoot: root, nvmlLibraryPath: NO_NVML })
  let m = await monitor.getMemoryMetrics()
  assert.equal(m.memory_limit_source, 'host')
  assert.equal(m.system_total, os.totalmem())
  assert.equal(m.psi, null)
  assert.equal(m.cgroup.version, 1)
  assert.equal(m.cgroup.limit, null)
  writeFiles(root, {
    'sys/fs/cgroup/memory/batch/memory.limit_in_bytes': `${GiB}\n`,
    'sys/fs/cgroup/memory/batch/memory.usage_in_bytes': `${900 * MiB}\n`,
    'sys/fs/cgroup/memory/batch/memory.stat': `cache 1\ninactive_file 7\ntotal_inactive_file ${50 * MiB}\n`,
  })
  // Limits are re-read once a second; a new monitor reads them at once.
  const fresh = new MemoryMonitor({ fsRoot: root, nvmlLibraryPath: NO_NVML })
  m = await fresh.getMemoryMetrics()
  assert.equal(m.memory_limit_source, 'cgroup')
  assert.equal(m.system_total, GiB)
  assert.equal(m.system_used, 850 * MiB)
  const p = await fresh.checkMemoryPressure()
  assert.equal(p.system_pressure, true)
})

test('malformed cgroup files fall back to the host and say why', async () => {
  const root = makeFakeRoot({
    'proc/self/cgroup': '0::/svc\n',
    'proc/self/mountinfo': V2_MOUNTINFO,
    'sys/fs/cgroup/cgroup.controllers': 'memory\n',
    'sys/fs/cgroup/svc/memory.max': 'lots\n',
    'proc/pressure/memory': 'garbage\n',
  })
  const m = await new MemoryMonitor({ fsRoot: root, nvmlLibraryPath: NO_NVML }).getMemoryMetrics()
  assert.equal(m.memory_limit_source, 'host')
  assert.equal(m.system_total, os.totalmem())
  assert.match(m.cgroup.error, /malformed .*memory\.max/)
  assert.equal(m.psi, null)
})

test('a root with no /proc at all still answers from the host', async () => {
  const m = await new MemoryMonitor({ fsRoot: '/nonexistent-root', nvmlLibraryPath: NO_NVML }).getMemoryMetrics()
  assert.equal(m.memory_limit_source, 'host')
  assert.match(m.cgroup.error, /cannot read .*proc\/self\/cgroup/)
})

test('1000 concurrent calls all resolve, and the event loop keeps turning', async () => {
  const monitor = new MemoryMonitor({ nvmlLibraryPath: NO_NVML })
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  const results = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => (i % 2 ? monitor.checkMemoryPressure() : monitor.getMemoryMetrics())),
  )
  clearInterval(timer)
  assert.equal(results.length, 1000)
  for (const [i, r] of results.entries()) {
    const metrics = i % 2 ? r.metrics : r
    assert.ok(metrics.system_total > 0)
  }
  assert.ok(ticks > 0, 'timers ran while the samples were taken')
})

test('a script that only creates monitors and samples exits on its own', () => {
  const script = `
    const { MemoryMonitor } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const a = new MemoryMonitor(), b = new MemoryMonitor({ nvmlLibraryPath: ${JSON.stringify(NO_NVML)} })
    Promise.all([a.checkMemoryPressure(), b.getMemoryMetrics()]).then(([p]) => console.log('sampled', typeof p.system_pressure))
  `
  const child = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' })
  assert.equal(child.error, undefined, 'the child exited by itself before the timeout')
  assert.equal(child.status, 0, child.stderr)
  assert.equal(child.stdout.trim(), 'sampled boolean')
})
