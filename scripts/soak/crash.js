'use strict'
// Crashes at scale. (1) The crash loop of __test__/durable-crash.test.js, N times: a child
// writes checkpoints and journals operations and is killed with SIGKILL at a random moment;
// a fresh CheckpointManager must then restore a checkpoint at least as new as the last one
// acknowledged (byte-identical when it is that one) and exactly the operations acknowledged
// as begun and not as ended (give or take the one in flight). (2) Crash during recovery: a
// child is killed between `recovery_started` and `recovery_finished`; on restart the
// incident log shows the run as started and never finished.
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')

const WRITER = path.join(__dirname, 'crash-writer.js')
const RECOVERY_CHILD = path.join(__dirname, 'recovery-child.js')

function addon() {
  return require('../..')
}

/**
 * `recovery_started` records without a `recovery_finished` of the same `details.id`: runs
 * that a crash (or a kill) cut short. Records as `IncidentLog.read()` returns them.
 */
function unmatchedRecoveries(records) {
  const finished = new Set(records.filter((r) => r.kind === 'recovery_finished' && r.details).map((r) => r.details.id))
  return records.filter((r) => r.kind === 'recovery_started' && r.details && !finished.has(r.details.id))
}

/**
 * Opens the incident log in `directory` (as a restarted service would: it must not be held
 * by a live process), returns its unmatched `recovery_started` records and what opening
 * repaired, and closes it again.
 */
async function readUnmatchedRecoveries(directory) {
  const { IncidentLog } = addon()
  const log = new IncidentLog({ directory })
  try {
    const records = await log.read()
    return { unmatched: unmatchedRecoveries(records), records: records.length, problems: log.problems }
  } finally {
    await log.close()
  }
}

/** One line per unmatched record, for people. */
function describeUnmatched(record) {
  const d = record.details || {}
  const at = Number.isFinite(d.started_at) ? new Date(d.started_at).toISOString() : '?'
  return `unmatched recovery_started: seq ${record.seq}, id ${d.id}, type ${d.type}, started at ${at} (no recovery_finished)`
}

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
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`writer ended by itself (${code} ${signal}): ${err}`))
      resolve(out.split('\n').filter(Boolean))
    })
  })
}

/**
 * The crash loop, `kills` times, in `directory` (created by the first writer). Resolves
 * `{ kills, checkpoints_acknowledged, operations_acknowledged, duration_s, failures }`;
 * each failure names the kill it happened at.
 */
async function runCrashLoop({ directory, kills, onProgress = () => {} }) {
  const { CheckpointManager } = addon()
  const started = Date.now()
  const failures = []
  let counter = 0
  let lastCheckpoint = null
  let acknowledgedActive = new Set()
  let checkpointsSeen = 0
  let operationsSeen = 0
  let done = 0
  for (let kill = 0; kill < kills; kill++) {
    let lines
    try {
      lines = await runAndKill(directory, counter)
    } catch (e) {
      failures.push(`kill ${kill}: ${e.message}`)
      break
    }
    let inFlight = null
    for (const line of lines) {
      const [kind, ...rest] = line.split(' ')
      if (kind === 'inflight') { inFlight = rest; continue }
      inFlight = null
      if (kind === 'begin') { acknowledgedActive.add(rest[0]); operationsSeen++ }
      if (kind === 'end') acknowledgedActive.delete(rest[0])
      if (kind === 'checkpoint') { lastCheckpoint = rest.join(' '); checkpointsSeen++ }
    }
    // A fresh manager on the same directory, as a restarted service would open it.
    const manager = new CheckpointManager({ directory, retain: 2 })
    try {
      const check = (ok, message) => { if (!ok) failures.push(`kill ${kill}: ${message}`) }
      check(manager.opened.skipped.length === 0, `a checkpoint was torn: ${JSON.stringify(manager.opened.skipped)}`)
      const latest = await manager.latestCheckpoint()
      if (lastCheckpoint) {
        const acked = JSON.parse(lastCheckpoint)
        check(latest && latest.seq >= acked.seq, `checkpoint ${acked.seq} acknowledged, ${latest && latest.seq} restored`)
        if (latest && latest.seq === acked.seq) check(JSON.stringify(latest) === lastCheckpoint, `checkpoint ${acked.seq} not byte-identical`)
      }
      const active = new Set(manager.getActiveOperations().map((o) => o.id))
      const inFlightEnd = inFlight && inFlight[0] === 'end' ? inFlight[1] : null
      for (const id of acknowledgedActive) {
        if (id !== inFlightEnd) check(active.has(id), `acknowledged operation ${id} lost`)
      }
      for (const id of active) {
        const inFlightBegin = inFlight && inFlight[0] === 'begin' && inFlight[1] === id
        check(acknowledgedActive.has(id) || inFlightBegin, `${id} is active but was never acknowledged as begun`)
      }
      // An end that was in flight may or may not have landed: take what is on disk.
      acknowledgedActive = active
      if (latest) counter = Math.max(counter, latest.state.counter)
      counter += 1000
    } finally {
      // Let the next writer take the lock.
      await manager.close()
    }
    done++
    onProgress(done)
    if (failures.length > 20) break
  }
  if (kills > 0 && checkpointsSeen === 0) failures.push('no checkpoint was ever acknowledged')
  return {
    kills: done,
    checkpoints_acknowledged: checkpointsSeen,
    operations_acknowledged: operationsSeen,
    duration_s: (Date.now() - started) / 1000,
    failures,
  }
}

function runRecoveryChild(directory, mode, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RECOVERY_CHILD, directory, mode], { stdio: ['ignore', 'pipe', 'pipe'], env })
    let out = ''
    let err = ''
    let id = null
    let finished = null
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`recovery child (${mode}) gave no sign in 20 s: ${out} ${err}`)) }, 20000)
    child.stdout.on('data', (d) => {
      out += d
      const started = /^started (\S+)$/m.exec(out)
      if (started && !id) {
        id = started[1]
        // Between recovery_started and recovery_finished: the hook holds the run.
        if (mode === 'hang') setTimeout(() => child.kill('SIGKILL'), Math.random() * 20)
      }
      const done = /^finished (\S+)/m.exec(out)
      if (done && !finished) {
        finished = done[1]
        child.kill('SIGKILL')
      }
    })
    child.stderr.on('data', (d) => { err += d })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (signal !== 'SIGKILL') return reject(new Error(`recovery child (${mode}) ended by itself (${code}): ${err}`))
      resolve({ id, finished })
    })
  })
}

/**
 * Crash during recovery, `rounds` times in one incident-log directory, each hung round
 * followed by a round that finishes (the control). After each kill the log is opened as a
 * restarted service would, and its unmatched `recovery_started` records must be exactly the
 * runs killed mid-flight. Resolves `{ rounds, killed_mid_recovery, unmatched, failures }`.
 */
async function runCrashDuringRecovery({ directory, rounds, env = process.env }) {
  const started = Date.now()
  const failures = []
  const killedIds = []
  let last = { unmatched: [], records: 0, problems: [] }
  let controls = 0
  for (let round = 0; round < rounds; round++) {
    for (const mode of ['hang', 'finish']) {
      let result
      try {
        result = await runRecoveryChild(directory, mode, env)
      } catch (e) {
        failures.push(`round ${round} (${mode}): ${e.message}`)
        continue
      }
      if (!result.id) { failures.push(`round ${round} (${mode}): the run never reached its hook`); continue }
      if (mode === 'hang') killedIds.push(result.id)
      else {
        controls++
        if (result.finished !== result.id) failures.push(`round ${round}: the control run ${result.id} did not finish (${result.finished})`)
      }
      last = await readUnmatchedRecoveries(directory)
      const found = last.unmatched.map((r) => r.details.id).sort()
      const expected = [...killedIds].sort()
      if (JSON.stringify(found) !== JSON.stringify(expected)) {
        failures.push(`round ${round} (${mode}): unmatched recovery_started ${JSON.stringify(found)}, expected ${JSON.stringify(expected)}`)
      }
    }
  }
  return {
    rounds,
    killed_mid_recovery: killedIds.length,
    finished_controls: controls,
    records: last.records,
    repairs_on_open: last.problems.length,
    unmatched: last.unmatched.map((r) => ({ seq: r.seq, id: r.details.id, type: r.details.type, started_at: r.details.started_at })),
    unmatched_lines: last.unmatched.map(describeUnmatched),
    duration_s: (Date.now() - started) / 1000,
    failures,
  }
}

function freshDirectory(root, name) {
  const dir = path.join(root, name)
  fs.rmSync(dir, { recursive: true, force: true })
  return dir
}

module.exports = { unmatchedRecoveries, readUnmatchedRecoveries, describeUnmatched, runCrashLoop, runCrashDuringRecovery, freshDirectory }
