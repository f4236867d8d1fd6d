#!/usr/bin/env node
'use strict'
// The README's picture of the morning report: records a compressed fault night (the real
// supervisor on two stand-in GPUs, as the page test does, only longer per phase so that the
// charts read well) into a temporary state directory, renders its HTML report, and
// screenshots the whole page in headless Chromium, 1280 px wide, light colours.
//
//   node scripts/report-screenshot.js [--out FILE] [--checks-per-phase N]
//   defaults: docs/report.png, 40 checks a phase; needs the addon and the stand-in built
//   (npm run build, npm run build:standin) and Debian's chromium (or $CHROMIUM).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
const { recordNight } = require('../__test__/helpers/night')
const { withPage, findChromium } = require('../__test__/helpers/chromium')

const WIDTH = 1280
const DEFAULTS = { out: path.join(__dirname, '../docs/report.png'), checksPerPhase: 40 }

function parseArgs(argv) {
  const options = { ...DEFAULTS }
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1]
    if (argv[i] === '--out' && value) options.out = path.resolve(value)
    else if (argv[i] === '--checks-per-phase' && /^[1-9]\d*$/.test(value ?? '')) options.checksPerPhase = Number(value)
    else throw new RangeError(`unknown or incomplete argument ${JSON.stringify(argv[i])}; usage: report-screenshot.js [--out FILE] [--checks-per-phase N]`)
    i++
  }
  return options
}

async function main() {
  const { out, checksPerPhase } = parseArgs(process.argv.slice(2))
  if (!findChromium()) throw new Error("chromium not found ($CHROMIUM, /usr/bin/chromium, PATH): install Debian's chromium package")
  const { renderReport } = require('..')
  if (typeof renderReport !== 'function') throw new Error('this build of the addon has no renderReport: rebuild it (npm run build)')
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-report-shot-'))
  try {
    const stateDir = path.join(root, 'var')
    const night = await recordNight({ stateDir, checksPerPhase })
    const file = path.join(root, 'report.html')
    fs.writeFileSync(file, await renderReport(stateDir, { format: 'html', since: night.since }))
    const png = await withPage(async (page) => {
      await page.setViewport(WIDTH)
      await page.setColorScheme(false)
      await page.goto(pathToFileURL(file).href)
      if (page.errors.length) throw new Error(`the page logged errors: ${page.errors.join('; ')}`)
      return page.screenshot()
    })
    fs.mkdirSync(path.dirname(out), { recursive: true })
    fs.writeFileSync(out, png)
    console.log(`${out}: ${png.length} bytes, ${night.incidents.length} incidents over ${((night.until - night.since) / 1000).toFixed(1)} s`)
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error.stack ?? error)
  process.exit(1)
})
