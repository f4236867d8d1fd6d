'use strict'
// Debian's `prometheus` package (promtool and the server) for the tests that run the shipped
// rules. Missing tools fail the test, naming the package to install: CI installs it
// (.ci/run), and a green `npm test` means the rules were tested. On a developer machine
// without it, HPC_HEALTH_SKIP_PROMETHEUS=1 skips these tests instead (never when CI is set).
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')

const RULES = path.join(__dirname, '../../deploy/prometheus/hpc-health.rules.yml')
const RULE_TESTS = path.join(__dirname, '../../deploy/prometheus/hpc-health.rules.test.yml')
const DASHBOARD = path.join(__dirname, '../../deploy/grafana/hpc-health.json')

/** The absolute path of `name` on PATH, or null. */
function which(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, name)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch { /* not here */ }
  }
  return null
}

/** The tool's path; skips `t` where skipping is allowed, throws otherwise. */
function requireTool(t, name) {
  const found = which(name)
  if (found) return found
  const why = `${name} not found on PATH: install Debian's prometheus package (apt-get install prometheus)`
  if (process.env.HPC_HEALTH_SKIP_PROMETHEUS === '1' && !process.env.CI) {
    t.skip(`${why}; skipped (HPC_HEALTH_SKIP_PROMETHEUS=1)`)
    return null
  }
  throw new Error(why)
}

/** A free TCP port on 127.0.0.1 (free when asked; the caller binds it at once). */
async function freePort() {
  const server = net.createServer()
  await new Promise((resolve, reject) => server.listen(0, '127.0.0.1', resolve).once('error', reject))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** The names of the series an exposition exports. */
function exportedNames(exposition) {
  return new Set(exposition.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)[0]))
}

/** Every PromQL expression of a Grafana dashboard: its panels' (rows' too) and its variables'. */
function dashboardExpressions(dashboard) {
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])])
  const targets = panels.flatMap((p) => p.targets ?? []).map((t) => t.expr)
  const variables = dashboard.templating.list.filter((v) => v.type === 'query').map((v) => v.query.query ?? v.query)
  return [...targets, ...variables]
}

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan'])

/**
 * The metric names a PromQL expression selects: identifiers that are not functions, keywords,
 * label names (in matchers and in by/without/on/ignoring/group_* lists) or Grafana variables.
 * `label_values(metric, label)` (a Grafana variable query) names its first argument.
 */
function metricNames(expr) {
  const stripped = expr
    .replace(/label_values\(\s*([^,)]+)\s*,[^)]*\)/g, ' $1 ')
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\w+/g, ' ')
  const names = [...stripped.matchAll(/(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()/g)].map((m) => m[1])
  return [...new Set(names.filter((n) => !PROMQL_KEYWORDS.has(n.toLowerCase())))]
}

module.exports = { RULES, RULE_TESTS, DASHBOARD, which, requireTool, freePort, exportedNames, dashboardExpressions, metricNames }
