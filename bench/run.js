'use strict'
// `npm run bench`: every side-by-side benchmark in one run; prints the tables and writes
// bench/RESULTS.md with the machine and versions they were measured on.
// `node bench/run.js detection [...]`: only the named suites; their sections of RESULTS.md
// are replaced (or added) and the others kept as they were measured.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const SUITES = { memory: './memory', gpu: './gpu', durable: './durable', supervisor: './supervisor', detection: './detection', history: './history' }
const RESULTS = path.join(__dirname, 'RESULTS.md')

function section(result) {
  return [`## ${result.title}`, '', `Method: ${result.rounds}.`, '', result.table, '', ...result.summary.map((s) => `- ${s}`)].join('\n')
}

function machine() {
  const pkg = require('../package.json')
  return [
    `Machine: ${os.cpus()[0].model}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}.`,
    `Versions: hpc-health ${pkg.version}, Node ${process.version}, systeminformation ${require('systeminformation/package.json').version}.`,
  ]
}

/** RESULTS.md with the sections of `results` replaced or added, the rest kept. */
function updated(previous, results, names) {
  const [head, ...sections] = previous.trimEnd().split(/\n(?=## )/)
  const lines = head.split('\n').filter((l) => !results.some((r) => l.startsWith(`Section "${r.title}"`)))
  const at = lines.findIndex((l) => l.startsWith('Versions:')) + 1
  const notes = results.map((r) => `Section "${r.title}" measured by \`node bench/run.js ${names.join(' ')}\` on ${new Date().toISOString()} (${machine().join(' ')})`)
  lines.splice(at, 0, ...notes)
  for (const result of results) {
    const text = section(result)
    const i = sections.findIndex((s) => s.startsWith(`## ${result.title}\n`))
    if (i >= 0) sections[i] = text
    else sections.push(text)
  }
  return [lines.join('\n').trimEnd(), '', sections.join('\n\n'), ''].join('\n')
}

async function main() {
  const names = process.argv.slice(2)
  const unknown = names.filter((n) => !SUITES[n])
  if (unknown.length) throw new Error(`unknown suite ${unknown.join(', ')}; the suites are ${Object.keys(SUITES).join(', ')}`)
  const results = []
  for (const name of names.length ? names : Object.keys(SUITES)) {
    const result = await require(SUITES[name]).run()
    console.log(section(result) + '\n')
    results.push(result)
  }
  if (names.length && fs.existsSync(RESULTS)) {
    fs.writeFileSync(RESULTS, updated(fs.readFileSync(RESULTS, 'utf8'), results, names))
    return
  }
  const header = ['# Benchmark results', '', `Written by \`npm run bench\` on ${new Date().toISOString()}.`, ...machine(), ''].join('\n')
  fs.writeFileSync(RESULTS, header + '\n' + results.map(section).join('\n\n') + '\n')
}

module.exports = { updated }
if (require.main === module) main().catch((e) => { console.error(e); process.exit(1) })
