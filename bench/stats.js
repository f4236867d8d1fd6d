'use strict'
// Small helpers shared by the benchmarks.

function median(values) {
  return percentile(values, 50)
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

/** `x` relative to `base`, as `2.5x`. */
function ratio(x, base) {
  return `${(x / base).toFixed(2)}x`
}

/** A Markdown table. */
function formatTable(header, rows) {
  const lines = [header, header.map(() => '---'), ...rows]
  return lines.map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

module.exports = { median, percentile, ratio, formatTable }
