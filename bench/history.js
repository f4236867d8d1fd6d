'use strict'
// The metrics history beside a naive JSON-lines log of the same samples: what recording
// one full check (the host and 8 GPUs) costs, what a durable write costs, the bytes a day
// takes, and reading 24 h of 8 GPUs back. Measured in Rust (`scripts/history-bench.rs`,
// built in release), where the recording happens.
const { execFileSync } = require('node:child_process')
const path = require('node:path')
const { formatTable } = require('./stats')

function run() {
  const out = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'history-bench'], {
    cwd: path.join(__dirname, '..'),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const r = JSON.parse(out.trim().split('\n').at(-1))
  const perDay = (bytes, perSecond) => `${((bytes * perSecond * 86400) / 2 ** 20).toFixed(1)} MiB`
  const rows = [
    ['one sample (a full check), thread cost', `${r.fold_us_per_sample.toFixed(2)} µs (folded in memory; written once per 10 s step)`, `${r.naive_append_us_per_sample.toFixed(0)} µs (append + fdatasync)`],
    ['one durable write', `${r.bucket_write_ms.toFixed(2)} ms per bucket of ${r.bucket_bytes} bytes (writer thread)`, `${(r.naive_append_us_per_sample / 1000).toFixed(2)} ms per sample of ${r.naive_line_bytes} bytes`],
    ['disk, 24 h at one check a second', `${(r.day_bytes / 2 ** 20).toFixed(1)} MiB (fine tier; 7 days in ${(r.disk_bound_bytes_8_gpus / 2 ** 20).toFixed(1)} MiB at most)`, perDay(r.naive_line_bytes, 1)],
    ['reading 24 h of 8 GPUs', `${r.day_read_ms.toFixed(1)} ms (${r.day_records} records)`, `${r.naive_day_read_parse_ms.toFixed(0)} ms (read and parse ${(r.naive_day_bytes / 2 ** 20).toFixed(0)} MiB of lines)`],
    ['the report on 24 h of 8 GPUs: read and judged', `${r.report_read_ms.toFixed(1)} ms`, '-'],
    ['… rendered for a terminal', `${r.report_text_ms.toFixed(1)} ms`, '-'],
    ['… rendered as a page', `${r.report_html_ms.toFixed(1)} ms (${(r.report_html_bytes / 1024).toFixed(0)} KiB)`, '-'],
  ]
  const reportMs = r.report_read_ms + r.report_html_ms
  return {
    title: 'Metrics history: recording, reading and the report',
    rounds: 'scripts/history-bench.rs in release: 100000 samples folded at 10 a step; 300 bucket writes, medians; 300 naive appends, medians; 5 reads of a full fine tier, 5 reports on it and 5 reads of the naive day, medians',
    table: formatTable(['what', 'hpc-health', 'naive JSON lines'], rows),
    summary: [
      `A full check costs its thread ${r.fold_us_per_sample.toFixed(2)} µs of history, ${Math.round(r.naive_append_us_per_sample / r.fold_us_per_sample)}x less than the naive append; the disk sees one ${r.bucket_bytes}-byte append per step instead of one line per check, and a day takes ${((r.naive_line_bytes * 86400) / r.day_bytes).toFixed(0)}x less disk.`,
      `The disk bound for 8 GPUs over 7 days is ${r.disk_bound_bytes_8_gpus} bytes, whatever the clock does.`,
      `The whole page on 24 h of 8 GPUs (read, judged, drawn) takes ${reportMs.toFixed(0)} ms: ${(r.naive_day_read_parse_ms / reportMs).toFixed(1)}x faster than only reading and parsing the naive log of the same day (${r.naive_day_read_parse_ms.toFixed(0)} ms); hpc-health does it off the JS thread.`,
    ],
  }
}

module.exports = { run }
if (require.main === module) {
  const r = run()
  console.log([r.title, r.table, ...r.summary].join('\n'))
}
