'use strict'
// The durability claim, proved by crashing the writer: a child creates checkpoints and
// journals operations as fast as it can and is killed with SIGKILL at random moments, 200
// times. After each kill a fresh manager must restore a checkpoint at least as new as the
// last one acknowledged (byte-identical when it is that one) and exactly the operations
// acknowledged as begun and not acknowledged as ended (give or take the one in flight).
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { CheckpointManager } = require('..')

const KILLS = Number(process.env.HPC_HEALTH_CRASH_KILLS || 200)
const WRITER = path.join(__dirname, 'helpers/crash-writer.js')

function runAndKill(directory, counter) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, directory, String(counter)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let killed = false
    child.stdout.on('data', (d) => {
      out += d
      // Kill at a random moment once it is past start-up and writing.
      if (!killed && out.includes('\nbegin ')) {
        killed = true
        setTimeout(() => child.kill('SIGKILL'), Math.random() * 40)
      }
    })
    child.stderr.on('data', (d) => { err += d })
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`writer ended by itself (${code}): ${err}`))
      resolve(out.split('\n').filter(Boolean))
    })
  })
}

test(`${KILLS} SIGKILLs mid-write lose nothing acknowledged`, { timeout: 600000 }, async () => {
  const directory = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-crash-')), 'state')
  let counter = 0
  let lastCheckpoint = null
  let acknowledgedActive = new Set()
  let checkpointsSeen = 0
  for (let kill = 0; kill < KILLS; kill++) {
    const lines = await runAndKill(directory, counter)
    let inFlight = null
    for (const line of lines) {
      const [kind, ...rest] = line.split(' ')
      if (kind === 'inflight') { inFlight = rest; continue }
      inFlight = null
      if (kind === 'begin') acknowledgedActive.add(rest[0])
      if (kind === 'end') acknowledgedActive.delete(rest[0])
      if (kind === 'checkpoint') { lastCheckpoint = rest.join(' '); checkpointsSeen++ }
    }
    // A fresh manager on the same directory, as a restarted service would open it.
    const manager = new CheckpointManager({ directory, retain: 2 })
    assert.deepEqual(manager.opened.skipped, [], `kill ${kill}: a checkpoint was torn`)
    const latest = await manager.latestCheckpoint()
    if (lastCheckpoint) {
      const acked = JSON.parse(lastCheckpoint)
      assert.ok(latest && latest.seq >= acked.seq, `kill ${kill}: checkpoint ${acked.seq} acknowledged, ${latest && latest.seq} restored`)
      if (latest.seq === acked.seq) assert.equal(JSON.stringify(latest), lastCheckpoint, `kill ${kill}: not byte-identical`)
    }
    const active = new Set(manager.getActiveOperations().map((o) => o.id))
    const inFlightEnd = inFlight && inFlight[0] === 'end' ? inFlight[1] : null
    for (const id of acknowledgedActive) {
      if (id !== inFlightEnd) assert.ok(active.has(id), `kill ${kill}: acknowledged operation ${id} lost`)
    }
    for (const id of active) {
      const inFlightBegin = inFlight && inFlight[0] === 'begin' && inFlight[1] === id
      assert.ok(acknowledgedActive.has(id) || inFlightBegin, `kill ${kill}: ${id} is active but was never acknowledged as begun`)
    }
    // An end that was in flight may or may not have landed: take what is on disk.
    acknowledgedActive = active
    if (latest) counter = Math.max(counter, latest.state.counter)
    counter += 1000
    // Let the next writer take the lock.
    await manager.close()
  }
  console.log(`# ${KILLS} kills, ${checkpointsSeen} checkpoints acknowledged, last one restored every time`)
  assert.ok(checkpointsSeen > 0)
})
