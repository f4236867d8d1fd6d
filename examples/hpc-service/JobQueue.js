'use strict'
// A small simulated GPU job queue. Every accepted job is journaled (beginOperation) before the
// submitter hears "accepted", and ended (endOperation) once it is done, so the journal always
// names the jobs that were accepted and not finished: after a crash those are resumed. Jobs
// "run" for their duration with a timer; at most `concurrency` at a time, the rest wait queued.
const { randomUUID } = require('node:crypto')

const KEEP_COMPLETED = 100 // finished jobs shown by GET /jobs; older ones are forgotten
const MAX_DURATION_MS = 10 * 60 * 1000

/** The fields a job request may have, each with the name it has in a job (`duration_ms`) and any alias. */
const JOB_FIELDS = Object.freeze({ name: 'name', duration_ms: 'durationMs', durationMs: 'durationMs' })

const describe = (value) => (typeof value === 'string' ? JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value) : String(value))

/**
 * A job request's fields as `{ name, durationMs }` (undefined where not given), checked: only
 * known fields, `duration_ms` or its alias `durationMs` (not both), a whole number of ms in
 * [0, MAX_DURATION_MS].
 */
function jobRequest(body) {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new RangeError('a job must be an object')
  const request = {}
  for (const [field, value] of Object.entries(body)) {
    if (value === undefined) continue // in process: not given (JSON has no undefined)
    if (!Object.hasOwn(JOB_FIELDS, field)) throw new RangeError(`unknown field ${JSON.stringify(field)}: a job has ${Object.keys(JOB_FIELDS).join(', ')}`)
    if (request[JOB_FIELDS[field]] !== undefined) throw new RangeError('give duration_ms or durationMs, not both')
    if (JOB_FIELDS[field] === 'durationMs' && (!Number.isInteger(value) || value < 0 || value > MAX_DURATION_MS)) {
      throw new RangeError(`${field} must be a whole number of milliseconds in [0, ${MAX_DURATION_MS}], got ${describe(value)}`)
    }
    request[JOB_FIELDS[field]] = value
  }
  return request
}

class JobQueue {
  /**
   * @param {object} options
   * @param {import('../..').CheckpointManager} options.checkpoints the journal
   * @param {() => string[]} options.pausedReasons why intake is paused (empty when accepting)
   * @param {number} [options.jobDurationMs] how long a job runs unless it says otherwise
   * @param {number} [options.concurrency] jobs running at once
   * @param {number} [options.maxQueued] jobs waiting at most; more are refused
   * @param {number} [options.syntheticJobsMs] submit a synthetic job this often (none when unset)
   * @param {(line: string) => void} [options.log]
   */
  constructor({ checkpoints, pausedReasons, jobDurationMs = 2000, concurrency = 2, maxQueued = 100, syntheticJobsMs, log = () => {} }) {
    this.checkpoints = checkpoints
    this.pausedReasons = pausedReasons
    this.jobDurationMs = jobDurationMs
    this.concurrency = concurrency
    this.maxQueued = maxQueued
    this.log = log
    this.queued = []
    this.running = new Map() // id -> { job, timer }
    this.completed = []
    this.refused = 0
    this.stopped = false
    if (syntheticJobsMs) {
      // A stand-in for traffic, so that `npm start` shows intake being paused and resumed.
      this.syntheticTimer = setInterval(() => {
        this.submit({ name: 'synthetic' }).catch((error) => this.log(`jobs: synthetic job not accepted: ${error.message}`))
      }, syntheticJobsMs)
      this.syntheticTimer.unref() // the service's servers keep the process alive, not this timer
    }
  }

  /**
   * Accepts a job unless intake is paused. `body` is what POST /jobs took: `{ name?, duration_ms? }`
   * (`durationMs` is accepted for `duration_ms`). Resolves `{ job }` once the job is journaled, or
   * `{ refused: reasons }`; the HTTP handler turns a refusal into a 503. Bad input, an unknown
   * field included, throws a RangeError naming the field (a 400).
   */
  async submit(body = {}) {
    const { name = 'job', durationMs = this.jobDurationMs } = jobRequest(body)
    if (typeof name !== 'string' || name.length > 100) throw new RangeError(`name must be a string of at most 100 characters, got ${describe(name)}`)
    const reasons = this.pausedReasons()
    if (this.queued.length >= this.maxQueued) reasons.push(`queue: ${this.queued.length} jobs are waiting already`)
    if (reasons.length > 0) {
      this.refused++
      return { refused: reasons }
    }
    const job = { id: randomUUID(), name, duration_ms: durationMs, submitted_at: Date.now(), resumed: false }
    await this.checkpoints.beginOperation(job.id, { name: job.name, duration_ms: job.duration_ms, submitted_at: job.submitted_at })
    this.#enqueue(job)
    return { job }
  }

  /**
   * Re-runs the jobs that were accepted but not finished when the last process died (the
   * operations the journal still has open). They were accepted once, so a pause does not
   * refuse them, and they are already journaled.
   */
  resume(operations) {
    for (const { id, started_at: startedAt, details } of operations) {
      this.#enqueue({ id, name: details?.name ?? 'job', duration_ms: details?.duration_ms ?? this.jobDurationMs, submitted_at: startedAt, resumed: true })
    }
    if (operations.length > 0) this.log(`jobs: resumed ${operations.length} from before the restart: ${operations.map((o) => o.id).join(' ')}`)
  }

  /** The jobs not finished yet: what a checkpoint keeps (`captureState`). */
  pending() {
    return [...[...this.running.values()].map((r) => ({ ...r.job, state: 'running' })), ...this.queued.map((job) => ({ ...job, state: 'queued' }))]
  }

  /** The queue as GET /jobs shows it. */
  snapshot() {
    return { paused_reasons: this.pausedReasons(), refused: this.refused, pending: this.pending(), completed: this.completed }
  }

  /**
   * Stops running jobs without ending them: they stay open in the journal, so the next start
   * resumes them, exactly as after a crash.
   */
  stop() {
    this.stopped = true
    clearInterval(this.syntheticTimer)
    for (const { timer } of this.running.values()) clearTimeout(timer)
  }

  #enqueue(job) {
    this.queued.push(job)
    this.#pump()
  }

  #pump() {
    while (!this.stopped && this.running.size < this.concurrency && this.queued.length > 0) {
      const job = this.queued.shift()
      job.started_at = Date.now()
      const timer = setTimeout(() => this.#finish(job), job.duration_ms)
      this.running.set(job.id, { job, timer })
    }
  }

  async #finish(job) {
    const result = { ok: true, ran_ms: Date.now() - job.started_at }
    let journaled = true
    try {
      await this.checkpoints.endOperation(job.id, result)
    } catch (error) {
      // Not recorded as done: the job stays open in the journal and runs again after a restart.
      journaled = false
      this.log(`jobs: ${job.id} finished but could not be journaled: ${error.message}`)
    }
    this.running.delete(job.id)
    this.completed.push({ ...job, ...result, journaled, finished_at: Date.now() })
    if (this.completed.length > KEEP_COMPLETED) this.completed.shift()
    this.#pump()
  }
}

module.exports = { JobQueue }
