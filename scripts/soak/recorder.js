'use strict'
// Listens to every event of the supervisor and keeps what the soak asserts on, in constant
// memory: counters by kind, the longest gaps between health checks, the recovery runs'
// intervals (checked for overlap as they arrive), the budget's takes (checked over sliding
// windows as they arrive), and the events since the last cut, which the fault schedule
// reads to judge the fault under way and then cuts away.
const { EventEmitter } = require('node:events')

const EVENTS = ['health', 'unhealthy', 'warning', 'recovery', 'incident', 'error']
const LIST_CAP = 50

function pushCapped(list, item) {
  if (list.length < LIST_CAP) list.push(item)
}

class Recorder extends EventEmitter {
  /**
   * `budget`: `{ max, windowMs, toleranceMs }`; `gapLimitMs`: the longest allowed gap between
   * two health events, unless `allowGap(from, to)` (the schedule) says the gap is explained.
   */
  constructor({ budget, gapLimitMs, allowGap = () => null, recoveries = {} }) {
    super()
    this.budget = budget
    this.gapLimitMs = gapLimitMs
    this.allowGap = allowGap
    this.recoveries = recoveries // { memory: MemoryRecovery, gpu: GPURecovery }
    this.started = null
    this.checks = 0
    this.unhealthyChecks = 0
    this.checkDurationSum = 0
    this.checkDurationMax = 0
    this.lastHealthAt = null
    this.maxGap = { ms: 0, at: null, explained_by: null }
    this.maxUnexplainedGap = { ms: 0, at: null }
    this.gapViolations = []
    this.explainedGaps = 0
    this.lastUnhealthy = null
    this.byEvent = Object.fromEntries(EVENTS.map((e) => [e, 0]))
    this.incidentsByKind = {}
    this.warningsByCode = {}
    this.errorsByKind = {}
    this.recoveriesByTypeResult = {}
    this.recoveryEvents = 0
    // Budget: the latest `max + 1` takes, and what the sliding window saw.
    this.takes = []
    this.budgetMinSpan = null
    this.budgetViolations = []
    // Runs of the recoveries (by id), checked for overlap with each other as they arrive.
    this.runsSeen = new Set()
    this.runsSeenOrder = []
    this.runIntervals = 0
    this.lastRunEnd = null
    this.lastRunId = null
    this.overlapsFound = []
    this.intervalsPending = []
    // The events since the last cut: what the schedule judges a fault with.
    this.window = []
  }

  attach(supervisor) {
    for (const name of EVENTS) supervisor.on(name, (payload) => this.on_(name, payload))
  }

  on_(name, payload) {
    const at = Date.now()
    this.byEvent[name]++
    switch (name) {
      case 'health': return this.health(at, payload)
      case 'unhealthy':
        this.lastUnhealthy = { at, timestamp: payload.timestamp, issues: payload.issues }
        this.emit('unhealthy', payload)
        return
      case 'warning':
        this.warningsByCode[payload.code] = (this.warningsByCode[payload.code] || 0) + 1
        this.window.push({ name, at, code: payload.code, device: payload.device, severity: payload.severity })
        return
      case 'recovery': return this.recovery(at, payload)
      case 'incident': {
        this.incidentsByKind[payload.kind] = (this.incidentsByKind[payload.kind] || 0) + 1
        const details = payload.details || {}
        this.window.push({ name, at, kind: payload.kind, severity: payload.severity, code: details.code, device: details.device, message: payload.message })
        this.emit('incident', payload)
        return
      }
      case 'error': {
        const kind = payload.kind || 'unknown'
        this.errorsByKind[kind] = (this.errorsByKind[kind] || 0) + 1
        this.window.push({ name, at, kind, message: payload.message })
        return
      }
    }
  }

  health(at, payload) {
    if (this.started === null) this.started = at
    this.checks++
    if (!payload.healthy) this.unhealthyChecks++
    this.checkDurationSum += payload.duration_ms
    if (payload.duration_ms > this.checkDurationMax) this.checkDurationMax = payload.duration_ms
    if (this.lastHealthAt !== null) {
      const gap = at - this.lastHealthAt
      if (gap > this.maxGap.ms) this.maxGap = { ms: gap, at, explained_by: null }
      if (gap > this.gapLimitMs) {
        const explanation = this.allowGap(this.lastHealthAt, at, gap)
        if (explanation) {
          this.explainedGaps++
          if (gap === this.maxGap.ms) this.maxGap.explained_by = explanation
        } else {
          pushCapped(this.gapViolations, { ms: gap, from: this.lastHealthAt, to: at })
        }
      }
      if (gap > this.maxUnexplainedGap.ms && !(gap > this.gapLimitMs && this.allowGap(this.lastHealthAt, at, gap))) {
        this.maxUnexplainedGap = { ms: gap, at }
      }
    }
    this.lastHealthAt = at
  }

  recovery(at, payload) {
    this.recoveryEvents++
    // The take happened right after the 'unhealthy' event of the same check.
    const take = this.lastUnhealthy && this.lastUnhealthy.at <= at ? this.lastUnhealthy.timestamp : at
    this.noteTake(take)
    for (const a of payload.actions) {
      const key = `${a.type}/${a.result}`
      this.recoveriesByTypeResult[key] = (this.recoveriesByTypeResult[key] || 0) + 1
    }
    for (const recovery of Object.values(this.recoveries)) {
      const outcome = recovery.lastOutcome
      if (outcome) this.noteRun({ id: outcome.id, type: outcome.type, start: outcome.started_at, end: outcome.finished_at })
    }
    this.window.push({ name: 'recovery', at, take, actions: payload.actions.map((a) => ({ type: a.type, issue: a.issue, device: a.device, result: a.result, detail: a.detail })) })
    this.emit('recovery', payload)
  }

  noteTake(t) {
    const { max, windowMs, toleranceMs } = this.budget
    this.takes.push(t)
    this.takes.sort((a, b) => a - b)
    if (this.takes.length > max + 1) this.takes.shift()
    if (this.takes.length === max + 1) {
      const span = this.takes[max] - this.takes[0]
      if (this.budgetMinSpan === null || span < this.budgetMinSpan) this.budgetMinSpan = span
      if (span < windowMs - toleranceMs) pushCapped(this.budgetViolations, { from: this.takes[0], to: this.takes[max], count: max + 1, span_ms: span })
    }
    this.budgetTakes = (this.budgetTakes || 0) + 1
  }

  /**
   * A recovery run or a restartProcess call `{ id, type, start, end }`, seen once. Runs are
   * serialised by the supervisor, so each must start after the previous one ended.
   */
  noteRun(run) {
    if (this.runsSeen.has(run.id)) return
    this.runsSeen.add(run.id)
    this.runsSeenOrder.push(run.id)
    if (this.runsSeenOrder.length > 64) this.runsSeen.delete(this.runsSeenOrder.shift())
    this.intervalsPending.push(run)
    this.runIntervals++
  }

  /** Checks pending intervals for overlap (called at each cut, when all of them are in). */
  checkOverlaps() {
    const pending = this.intervalsPending.sort((a, b) => a.start - b.start)
    this.intervalsPending = []
    for (const run of pending) {
      if (this.lastRunEnd !== null && run.start < this.lastRunEnd) {
        pushCapped(this.overlapsFound, { first: this.lastRunId, second: run.id, by_ms: this.lastRunEnd - run.start })
      }
      if (this.lastRunEnd === null || run.end > this.lastRunEnd) {
        this.lastRunEnd = run.end
        this.lastRunId = run.id
      }
    }
  }

  /** Events in the window between `from` and `to` (ms) matching `filter`. */
  find(from, to, filter) {
    return this.window.filter((e) => e.at >= from && e.at <= to && filter(e))
  }

  /** Forgets the window's events up to `t` (after the schedule judged them). */
  cut(t) {
    this.checkOverlaps()
    this.window = this.window.filter((e) => e.at > t)
  }

  figures() {
    return {
      checks_seen: this.checks,
      unhealthy_checks: this.unhealthyChecks,
      mean_check_ms: this.checks ? this.checkDurationSum / this.checks : null,
      max_check_ms: this.checkDurationMax,
      events: this.byEvent,
      max_gap_ms: this.maxGap.ms,
      max_gap_explained_by: this.maxGap.explained_by,
      max_unexplained_gap_ms: this.maxUnexplainedGap.ms,
      explained_gaps: this.explainedGaps,
      gap_violations: this.gapViolations,
      incidents_by_kind: this.incidentsByKind,
      warnings_by_code: this.warningsByCode,
      errors_by_kind: this.errorsByKind,
      recoveries_by_type_result: this.recoveriesByTypeResult,
      recovery_events: this.recoveryEvents,
      budget: {
        ...this.budget,
        takes: this.budgetTakes || 0,
        min_span_of_max_plus_one_ms: this.budgetMinSpan,
        violations: this.budgetViolations,
      },
      runs: { seen: this.runIntervals, overlaps: this.overlapsFound },
    }
  }
}

module.exports = { Recorder, EVENTS }
