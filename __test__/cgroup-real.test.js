'use strict'
// A real memory cgroup: a child Node process runs under a 512 MiB limit and must see
// 512 MiB as its total, then see pressure as it fills it; a supervised child at intervalMs
// 60000 must report the crossing within seconds (fast sampling or the kernel's event) and
// show the kernel source it watches. Needs root (as CI here has); skipped with the reason
// where no cgroup can be made.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')

const LIMIT = 512 * 1024 * 1024

/** Creates a memory cgroup with the limit; returns { dir, version } or { skip: reason }. */
function makeMemoryCgroup(name) {
  const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => {
    const [left, right] = l.split(' - ')
    if (!right) return null
    return { mountPoint: left.split(' ')[4], fsType: right.split(' ')[0], options: (right.split(' ')[2] || '').split(',') }
  }).filter(Boolean)
  const errors = []
  const v1 = mountinfo.find((m) => m.fsType === 'cgroup' && m.options.includes('memory'))
  if (v1) {
    const dir = path.join(v1.mountPoint, name)
    try {
      fs.mkdirSync(dir)
      fs.writeFileSync(path.join(dir, 'memory.limit_in_bytes'), String(LIMIT))
      return { dir, version: 1 }
    } catch (e) {
      errors.push(`v1 at ${v1.mountPoint}: ${e.message}`)
      try { fs.rmdirSync(dir) } catch {}
    }
  }
  const v2 = mountinfo.find((m) => m.fsType === 'cgroup2')
  if (v2) {
    const dir = path.join(v2.mountPoint, name)
    try {
      const controllers = fs.readFileSync(path.join(v2.mountPoint, 'cgroup.controllers'), 'utf8')
      if (!controllers.split(/\s+/).includes('memory')) throw new Error('memory controller not available')
      fs.writeFileSync(path.join(v2.mountPoint, 'cgroup.subtree_control'), '+memory')
      fs.mkdirSync(dir)
      fs.writeFileSync(path.join(dir, 'memory.max'), String(LIMIT))
      return { dir, version: 2 }
    } catch (e) {
      errors.push(`v2 at ${v2.mountPoint}: ${e.message}`)
      try { fs.rmdirSync(dir) } catch {}
    }
  }
  return { skip: `no memory cgroup could be made (${errors.join('; ') || 'no cgroup filesystem mounted'})` }
}

/** Runs `helper` as a child in `cgroup`; resolves its stdout once it exits 0. */
async function runInCgroup(cgroup, helper) {
  const child = spawn('/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$1" "$2" "$3"', cgroup.dir,
    process.execPath, path.join(__dirname, 'helpers', helper), String(LIMIT)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const status = await new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  assert.deepEqual(status, { code: 0, signal: null }, stderr)
  return stdout
}

/** A fresh cgroup for the test, removed after it; `null` when the test was skipped. */
function cgroupFor(t, name) {
  const cgroup = makeMemoryCgroup(`hpc-health-test-${name}-${process.pid}`)
  if (cgroup.skip) {
    console.log(`# skipped: ${cgroup.skip}`)
    t.skip(cgroup.skip)
    return null
  }
  t.after(() => { try { fs.rmdirSync(cgroup.dir) } catch {} })
  return cgroup
}

test('a child under a 512 MiB cgroup limit sees 512 MiB and then pressure', async (t) => {
  const cgroup = cgroupFor(t, 'limit')
  if (!cgroup) return
  const stdout = await runInCgroup(cgroup, 'cgroup-child.js')
  const samples = stdout.trim().split('\n').map((l) => JSON.parse(l))
  const first = samples[0]
  assert.notEqual(first.totalmem, LIMIT, 'os.totalmem() reports the host, not the limit')
  assert.equal(first.system_total, LIMIT)
  assert.equal(first.memory_limit_source, 'cgroup')
  assert.equal(first.cgroup.version, cgroup.version)
  assert.equal(first.cgroup.path, '/' + path.basename(cgroup.dir))
  assert.equal(first.system_pressure, false)
  const last = samples.at(-1)
  assert.equal(last.system_pressure, true, `no pressure after allocating ${last.allocated} bytes: ${JSON.stringify(last)}`)
  assert.ok(last.system_used > 0.8 * LIMIT)
  // Usage grew with what the child allocated.
  assert.ok(last.system_used - first.system_used >= last.allocated * 0.9)
  console.log(`# cgroup v${cgroup.version}: ${samples.length} samples, pressure at ${(last.system_used / 2 ** 20).toFixed(0)} MiB of ${LIMIT / 2 ** 20} MiB`)
})

test('a supervised child filling its cgroup is unhealthy within seconds at intervalMs 60000, and shows the kernel source it watches', async (t) => {
  const cgroup = cgroupFor(t, 'supervised')
  if (!cgroup) return
  const report = JSON.parse((await runInCgroup(cgroup, 'cgroup-supervised-child.js')).trim().split('\n').at(-1))
  // The kernel's events for this cgroup are watched (v1: pressure_level and oom_control;
  // v2: memory.events and the cgroup's PSI).
  const expected = cgroup.version === 1 ? 'cgroup_v1_pressure_level' : 'cgroup_v2_memory_events'
  assert.ok(report.detection.pressure_sources.includes(expected), JSON.stringify(report.detection))
  assert.equal(report.detection.fast_sample_ms, 1000)
  assert.ok(report.unhealthy, `no 'unhealthy' within 20 s at intervalMs 60000: ${JSON.stringify(report)}`)
  assert.ok(report.unhealthy.issues.some((i) => i.code === 'SYSTEM_MEMORY_PRESSURE' && i.device === null), JSON.stringify(report.unhealthy))
  assert.equal(report.state, 'unhealthy')
  console.log(`# cgroup v${cgroup.version}: unhealthy ${report.unhealthy.after_crossing_ms} ms after the crossing; sources ${report.detection.pressure_sources.join(', ')}`)
})
