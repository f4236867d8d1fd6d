'use strict'
// The final figures as a Markdown table, for pasting into the README.

const fmt = (n, digits = 0) => (n === null || n === undefined || Number.isNaN(n) ? 'n/a' : Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }))

function duration(seconds) {
  if (seconds === null || seconds === undefined) return 'n/a'
  const s = Math.round(seconds)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const r = s % 60
  return h ? `${h} h ${m} min ${r} s` : m ? `${m} min ${r} s` : `${r} s`
}

function byKey(object) {
  const entries = Object.entries(object || {}).sort((a, b) => b[1] - a[1])
  return entries.length ? entries.map(([k, v]) => `${k} ${fmt(v)}`).join(', ') : 'none'
}

function table(f) {
  const rows = []
  const row = (what, value) => rows.push(`| ${what} | ${value} |`)
  row('result', f.ok ? '**pass**' : `**FAIL** (${f.failures.length} assertion(s))`)
  row('mode', f.mode === 'compressed'
    ? `time-compressed: intervalMs ${f.config.intervalMs}, T = ${f.config.T} ms`
    : `real time: intervalMs ${f.config.intervalMs}`)
  row('checks', `${fmt(f.checks)} in ${duration(f.loop_s)}` + (f.mode === 'compressed' ? ` (≈ ${fmt(f.equivalent_days_at_one_per_minute, 1)} days of once-a-minute checking)` : ''))
  row('checks per second', `${fmt(f.pace.achieved_per_s, 1)} achieved, ${fmt(f.pace.interval_per_s, 1)} the interval allows; mean check ${fmt(f.recorder.mean_check_ms, 3)} ms, slowest ${fmt(f.recorder.max_check_ms, 1)} ms`)
  row('longest gap between checks', `${fmt(f.recorder.max_gap_ms)} ms${f.recorder.max_gap_explained_by ? ` (${f.recorder.max_gap_explained_by})` : ''}; longest unexplained ${fmt(f.recorder.max_unexplained_gap_ms)} ms (limit ${fmt(f.config.gapLimitMs)} ms)`)
  row('faults injected / verified', `${fmt(f.faults.injected)} / ${fmt(f.faults.verified)} in ${fmt(f.faults.cycles)} cycles: ` +
    Object.entries(f.faults.by_kind).map(([k, c]) => `${k} ${c.verified}/${c.injected}${c.aborted ? ` (+${c.aborted} cut short at the end)` : ''}`).join(', '))
  row('incidents by kind', byKey(f.recorder.incidents_by_kind))
  row('recoveries by type/result', byKey(f.recorder.recoveries_by_type_result))
  row('recovery budget', `max ${f.config.budgetMax} per ${fmt(f.config.budgetWindowMs)} ms: ${fmt(f.recorder.budget.takes)} taken, exhausted ${fmt(f.recorder.incidents_by_kind.recovery_budget_exhausted || 0)} time(s), shortest span of ${f.config.budgetMax + 1} takes ${fmt(f.recorder.budget.min_span_of_max_plus_one_ms)} ms, violations ${f.recorder.budget.violations.length}`)
  row('recovery runs overlapping', `${f.recorder.runs.overlaps.length + f.incident_log.overlaps.length} (${fmt(f.recorder.runs.seen)} runs and restarts seen live, ${fmt(f.incident_log.runs)} runs in the incident log)`)
  const restarts = Object.entries(f.faults.notes.xid_storm_restarts).map(([n, storms]) => `${n} in ${storms} storm(s)`).join(', ')
  if (restarts) row('restartProcess per Xid storm', `${restarts} (each storm has two Xid 94 events: at most one restart each)`)
  if (f.report) row('the morning report on the run', `${f.report.status.toUpperCase()}: ${f.report.verdict}; ${fmt(f.report.recoveries)} recoveries (the log began ${fmt(f.report.recovery_started_in_log)}), no record for ${fmt(f.report.no_data_ms)} ms, history ${fmt(f.report.history_bytes / 2 ** 20, 1)} MiB, read and judged in ${fmt(f.report.ms)} ms`)
  row('checkpoints', `${fmt(f.checkpoints.listed)} kept; full disk by ${f.checkpoints.disk_method}; failures reported ${fmt(f.recorder.errors_by_kind.checkpoint || 0)}; degraded ${f.checkpoints.degraded}`)
  row('requests (journal)', `${fmt(f.workload.requests_begun)} begun and ended, ${fmt(f.workload.refused_while_paused)} refused while intake was paused, ${fmt(f.workload.journal_write_failures)} journal writes failed on the full disk (in ${fmt(f.faults.notes.disk_windows_with_journal_failures)} of ${fmt(f.faults.by_kind.disk_full.injected)} windows), none outside it`)
  const s = f.samples
  if (s) {
    row('RSS', `${fmt(s.rss_start_mib, 1)} MiB at start, ${fmt(s.rss_after_warmup_mib, 1)} after warm-up (${fmt(s.warmup_s)} s), ${fmt(s.rss_end_mib, 1)} at end; slope ${fmt(s.rss_slope_mib_per_h, 2)} MiB/h over ${fmt(s.samples_after_warmup)} samples (${duration(s.span_after_warmup_s)}; halves ${fmt(s.rss_slope_first_half_mib_per_h, 2)} then ${fmt(s.rss_slope_second_half_mib_per_h, 2)} MiB/h), ${fmt(s.rss_kib_per_million_checks, 0)} KiB per million checks; of the slope, V8's heap size ${fmt(s.heap_total_slope_mib_per_h, 2)} MiB/h (live objects ${fmt(s.heap_used_slope_mib_per_h, 2)}, young generation ${fmt(s.new_space_slope_mib_per_h, 2)}) and the rest ${fmt(s.outside_v8_heap_slope_mib_per_h, 2)} MiB/h (anonymous ${fmt(s.anon_outside_v8_heap_slope_mib_per_h, 2)}, file-backed ${fmt(s.file_backed_slope_mib_per_h, 2)}); ${s.rss_note}`)
    const heldIs = s.held_source === 'allocator' ? "C allocator's bytes in use plus V8's live objects" : "anonymous RSS less V8's free heap"
    const beside = s.held_source === 'allocator' ? `; beside it, anonymous RSS less V8's free heap ${fmt(s.anon_held_slope_mib_per_h, 2)} MiB/h and the allocator's free bytes ${fmt(s.malloc_free_slope_mib_per_h, 2)} MiB/h` : ''
    row('memory holding data', `${heldIs}: ${fmt(s.held_after_warmup_mib, 1)} MiB after warm-up, ${fmt(s.held_end_mib, 1)} at end; slope ${fmt(s.held_slope_mib_per_h, 2)} MiB/h (halves ${fmt(s.held_slope_first_half_mib_per_h, 2)} then ${fmt(s.held_slope_second_half_mib_per_h, 2)})${beside}; file-backed pages grew ${fmt(s.file_backed_growth_after_warmup_mib, 2)} MiB after warm-up`)
    row('open file descriptors', `${s.fds.start} at start, ${s.fds.end} at end; after warm-up ${s.fds.min}–${s.fds.max}`)
    row('threads', `${s.threads.start} at start, ${s.threads.end} at end; after warm-up ${s.threads.min}–${s.threads.max}`)
  }
  if (f.crash) row('crash loop (SIGKILL)', `${fmt(f.crash.kills)} kills, ${fmt(f.crash.checkpoints_acknowledged)} checkpoints and ${fmt(f.crash.operations_acknowledged)} operations acknowledged, nothing acknowledged lost; ${duration(f.crash.duration_s)}`)
  if (f.crash_recovery) row('crash during recovery', `${f.crash_recovery.killed_mid_recovery} runs killed between recovery_started and recovery_finished, ${f.crash_recovery.unmatched.length} found unmatched on restart; ${f.crash_recovery.finished_controls} finished runs matched`)
  row('duration', duration(f.duration_s))
  return ['| figure | value |', '|---|---|', ...rows].join('\n')
}

module.exports = { table, duration, fmt }
