'use strict'
// `npm run bench`: every side-by-side benchmark in one run; prints the tables and writes
// bench/RESULTS.md with the machine and versions they were measured on.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const SUITES = [require('./memory'), require('./gpu'), require('./durable'), require('./supervisor')]

async function main() {
  const sections = []
  for (const suite of SUITES) {
    const result = await suite.run()
    const text = [`## ${result.title}`, '', `Method: ${result.rounds}.`, '', result.table, '', ...result.summary.map((s) => `- ${s}`)].join('\n')
    console.log(text + '\n')
    sections.push(text)
  }
  const pkg = require('../package.json')
  const header = [
    '# Benchmark results',
    '',
    `Written by \`npm run bench\` on ${new Date().toISOString()}.`,
    `Machine: ${os.cpus()[0].model}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}.`,
    `Versions: hpc-health ${pkg.version}, Node ${process.version}, systeminformation ${require('systeminformation/package.json').version}.`,
    '',
  ].join('\n')
  fs.writeFileSync(path.join(__dirname, 'RESULTS.md'), header + '\n' + sections.join('\n\n') + '\n')
}

main().catch((e) => { console.error(e); process.exit(1) })
