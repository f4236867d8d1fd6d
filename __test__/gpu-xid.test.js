'use strict'
// Critical Xid events: the background watch on an NVML event set, the catalog's verdicts,
// aging out of the verdict, and re-arming after a device is lost.
const test = require('node:test')
const assert = require('node:assert/strict')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')

const devices = Array.from({ length: 8 }, (_, i) => device(i))
const standin = new StandinState({ devices, xid_events: [] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const { GPUHealthMonitor } = require('..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
let nextId = 1
const events = []
function emit(deviceIndex, xid, state = {}) {
  events.push({ device: deviceIndex, xid, id: nextId++ })
  standin.write({ devices, ...state, xid_events: events })
}
/** Polls `check` until `accept` holds or `deadlineMs` passes; returns the last health. */
async function until(monitor, accept, deadlineMs) {
  const start = Date.now()
  for (;;) {
    const health = await monitor.checkGpuHealth()
    if (accept(health)) return { health, ms: Date.now() - start }
    if (Date.now() - start > deadlineMs) return { health, ms: Date.now() - start, timedOut: true }
    await sleep(10)
  }
}
const xidIssues = (health, dev) => health.issues.filter((i) => i.code === 'XID' && i.device === dev)

const monitor = new GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })

test('the watch arms on every device', async () => {
  const { health, timedOut } = await until(monitor, (h) => h.xid_watch.state === 'watching', 5000)
  assert.ok(!timedOut, JSON.stringify(health.xid_watch))
  assert.deepEqual(health.xid_watch, { state: 'watching', devices: [0, 1, 2, 3, 4, 5, 6, 7], error: null })
  assert.equal(health.healthy, true)
})

test('an Xid delivered while checks run shows up within a second', async () => {
  // Checks keep running on other calls while the event arrives.
  let running = true
  const background = (async () => { while (running) await monitor.checkGpuHealth() })()
  emit(1, 79)
  const { health, timedOut, ms } = await until(monitor, (h) => xidIssues(h, 1).length > 0, 1000)
  running = false
  await background
  assert.ok(!timedOut, `no Xid issue after ${ms} ms`)
  const [issue] = xidIssues(health, 1)
  assert.deepEqual({ ...issue, message: undefined }, { code: 'XID', severity: 'fail', device: 1, message: undefined, action: 'reboot_node' })
  assert.match(issue.message, /^Xid 79 on GPU 1 \(GPU-5ca1ab1e-0000-4000-8000-000000000001\): GPU has fallen off the bus; seen 1 time\(s\), last at \d{4}-\d\d-\d\dT[\d:]+Z; NVIDIA's resolution: reboot the node$/)
  assert.equal(health.healthy, false)
  assert.equal(health.devices[1].status, 'fail')
  assert.equal(health.devices[1].xid_errors.length, 1)
  assert.equal(health.devices[1].xid_errors[0].code, 79)
  assert.equal(health.devices[1].xid_errors[0].action, 'reboot_node')
  assert.ok(Date.now() - health.devices[1].xid_errors[0].timestamp < 5000)
})

test('each Xid is judged by the catalog; an unknown one is a warning', async () => {
  emit(2, 48)
  emit(3, 13)
  emit(4, 94)
  emit(5, 777)
  const { health, timedOut } = await until(monitor, (h) => [2, 3, 4, 5].every((d) => xidIssues(h, d).length), 2000)
  assert.ok(!timedOut)
  const verdict = (d) => xidIssues(health, d).map((i) => `${i.severity}/${i.action}`)
  assert.deepEqual(verdict(2), ['fail/reset_gpu'])
  assert.deepEqual(verdict(3), ['warn/none'])
  assert.match(xidIssues(health, 3)[0].message, /an application error, not a GPU failure/)
  assert.deepEqual(verdict(4), ['fail/restart_app'])
  assert.deepEqual(verdict(5), ['warn/none'])
  assert.match(xidIssues(health, 5)[0].message, /not in this package's Xid catalog/)
  assert.deepEqual(health.devices.map((d) => d.status), ['pass', 'fail', 'fail', 'warn', 'fail', 'warn', 'pass', 'pass'])
})

test('an Xid ages out of the verdict after xidWindowMs, and health returns', async () => {
  const short = new GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, xidWindowMs: 1500 })
  // Everything before now is still in the default monitor's hour, but the short window
  // starts clean once 1.5 s have passed.
  await sleep(1600)
  assert.equal((await short.checkGpuHealth()).healthy, true)
  emit(6, 95)
  const seen = await until(short, (h) => xidIssues(h, 6).length > 0, 1000)
  assert.ok(!seen.timedOut)
  assert.equal(seen.health.healthy, false)
  const gone = await until(short, (h) => h.healthy, 3000)
  assert.ok(!gone.timedOut, 'health came back once the Xid left the window')
  assert.equal(gone.health.status, 'pass')
  assert.deepEqual(gone.health.devices[6].xid_errors, [])
  // The hour-long monitor still reports it.
  assert.equal(xidIssues(await monitor.checkGpuHealth(), 6).length, 1)
})

test('a device lost while watched: the others stay watched, and it is watched again when it returns', async () => {
  const lostState = { devices: devices.map((d, i) => (i === 7 ? { ...d, lost: true } : d)) }
  standin.write({ ...lostState, xid_events: events })
  const rearmed = await until(monitor, (h) => h.xid_watch.state === 'watching' && !h.xid_watch.devices.includes(7), 3000)
  assert.ok(!rearmed.timedOut, JSON.stringify(rearmed.health.xid_watch))
  emit(0, 74, lostState)
  const other = await until(monitor, (h) => xidIssues(h, 0).length > 0, 1000)
  assert.ok(!other.timedOut, 'an event on another device still arrives')
  standin.write({ devices, xid_events: events })
  const back = await until(monitor, (h) => h.xid_watch.devices.includes(7), 8000)
  assert.ok(!back.timedOut, 'the returned device is armed again')
  emit(7, 64)
  const onReturned = await until(monitor, (h) => xidIssues(h, 7).length > 0, 1000)
  assert.ok(!onReturned.timedOut)
  assert.equal(xidIssues(onReturned.health, 7)[0].action, 'reset_gpu')
})

test('the history per device is bounded', async () => {
  for (let i = 0; i < 100; i++) events.push({ device: 6, xid: 63, id: nextId++ })
  standin.write({ devices, xid_events: events })
  const { health } = await until(monitor, (h) => h.devices[6].xid_errors.filter((e) => e.code === 63).length >= 63, 3000)
  assert.equal(health.devices[6].xid_errors.length, 64)
  const [issue] = xidIssues(health, 6).filter((i) => /Xid 63/.test(i.message))
  assert.equal(issue.severity, 'warn')
})
