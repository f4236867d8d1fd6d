'use strict'
// Runs inside a memory-limited cgroup: reports what MemoryMonitor sees, then allocates
// until it reports pressure. One JSON line per sample on stdout.
const os = require('node:os')
const { MemoryMonitor } = require('../..')

async function main() {
  const monitor = new MemoryMonitor({ thresholds: { system_memory: 0.8 }, nvmlLibraryPath: '/nonexistent/libnvidia-ml.so.1' })
  const hold = []
  const chunk = 16 * 1024 * 1024
  const limit = Number(process.argv[2])
  for (;;) {
    const p = await monitor.checkMemoryPressure()
    const m = p.metrics
    console.log(JSON.stringify({
      totalmem: os.totalmem(), allocated: hold.length * chunk, system_total: m.system_total, system_used: m.system_used,
      memory_limit_source: m.memory_limit_source, system_pressure: p.system_pressure, cgroup: m.cgroup,
    }))
    // Stop at pressure, or well before the kernel's OOM killer would.
    if (p.system_pressure || hold.length * chunk > limit * 0.9) break
    hold.push(Buffer.alloc(chunk, 1)) // filled, so every page is really resident
  }
}
main().catch((e) => { console.error(e); process.exit(1) })
