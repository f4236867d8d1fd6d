'use strict'
// Runs inside a memory-limited cgroup: a HealthSupervisor at intervalMs 60000 watches the
// cgroup while this process fills it past the 80% threshold. Prints one JSON line: the
// detection status at the start, and the 'unhealthy' event (or null) with its timing.
const { MemoryMonitor, HealthSupervisor } = require('../..')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main() {
  const limit = Number(process.argv[2])
  const monitor = new MemoryMonitor({ thresholds: { system_memory: 0.8 }, nvmlLibraryPath: '/nonexistent/libnvidia-ml.so.1' })
  const supervisor = new HealthSupervisor({ memoryMonitor: monitor, intervalMs: 60000, autoRecover: false })
  const healths = []
  let unhealthy = null
  supervisor.on('health', (h) => healths.push(h))
  supervisor.on('unhealthy', (h) => { unhealthy ??= { ...h, at: Date.now() } })
  supervisor.start()
  while (healths.length === 0) await sleep(20)
  const detection = supervisor.status().detection
  const hold = []
  const chunk = 16 * 1024 * 1024
  let crossedAt = null
  const deadline = Date.now() + 20000
  while (!unhealthy && Date.now() < deadline) {
    const m = (await monitor.checkMemoryPressure()).metrics
    if (crossedAt === null && m.system_used > 0.8 * m.system_total) crossedAt = Date.now()
    // Fill to 85% of the limit and hold there, well before the kernel's OOM killer.
    if (m.system_used < 0.85 * limit) hold.push(Buffer.alloc(chunk, 1)) // filled: resident
    await sleep(50)
  }
  const status = supervisor.status()
  await supervisor.stop()
  console.log(JSON.stringify({
    detection, after: status.detection, state: status.state, full_checks: healths.length, allocated: hold.length * chunk,
    unhealthy: unhealthy && { issues: unhealthy.issues, after_crossing_ms: crossedAt === null ? null : unhealthy.at - crossedAt },
  }))
}
main().catch((e) => { console.error(e); process.exit(1) })
