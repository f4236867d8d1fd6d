'use strict'
// The morning report's HTML page, looked at in headless Chromium as a person would, from a
// compressed fault night recorded by the real supervisor on the stand-in GPUs: the charts
// with one series per GPU and the thresholds drawn, one marker per incident of the span, a
// click on the lost GPU's marker showing its details, nothing logged as an error, nothing
// fetched but the page itself, no sideways scrolling at a phone's width, a dark background
// in dark mode. Once from a file (renderReport), once served live by the example service.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')
const { recordNight, HOT_C } = require('./helpers/night')
const { withPage, requireChromium, findChromium } = require('./helpers/chromium')
const { startService, stopAll } = require('./helpers/service')

const h = require('..')

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-report-page-'))
const stateDir = path.join(root, 'var')
const PHONE_WIDTH = 375
const DESKTOP_WIDTH = 1280
/** The charts the page draws, by their data-chart key. */
const CHARTS = ['state', 'gpu-memory', 'host-memory', 'temperature', 'utilization', 'power']

let night
test.before(async () => {
  // Without a browser both tests skip (or fail, in CI) before looking for a night.
  if (findChromium()) night = await recordNight({ stateDir })
})
test.after(() => {
  stopAll()
  fs.rmSync(root, { recursive: true, force: true })
})

/** The GPU-lost incident of the night (a gpu_issue with code GPU_LOST). */
function lostIncident() {
  const found = night.incidents.find((i) => i.kind === 'gpu_issue' && i.details?.code === 'GPU_LOST')
  assert.ok(found, `the night logged a GPU_LOST incident: ${night.incidents.map((i) => i.kind).join(', ')}`)
  return found
}

/** A CSS colour's relative luminance in [0, 1] (rgb()/rgba() as getComputedStyle writes it). */
function luminance(colour) {
  const [r, g, b] = /rgba?\(([^)]+)\)/.exec(colour)[1].split(',').slice(0, 3).map((c) => Number(c) / 255)
  const linear = (c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
  return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
}

/** The page's background as painted: the body's, else the root element's, else white. */
const BACKGROUND = `(() => {
  for (const el of [document.body, document.documentElement]) {
    const c = getComputedStyle(el).backgroundColor
    if (c && c !== 'transparent' && !/rgba\\([^)]*,\\s*0\\)$/.test(c)) return c
  }
  return 'rgb(255, 255, 255)'
})()`

/** The width and height a PNG's header gives. */
function pngSize(png) {
  assert.equal(png.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'a PNG')
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) }
}

/**
 * What a person checks on the loaded page. `expectedSeqs`: the incidents the span holds;
 * `pageUrl`: the one URL the page may request.
 */
async function lookAtPage(page, { expectedSeqs, pageUrl }) {
  // The charts are there, with one series per GPU (and one for the host), thresholds drawn.
  const charts = await page.evaluate(`[...document.querySelectorAll('svg.chart[data-chart]')].map((svg) => ({
    key: svg.dataset.chart,
    series: [...svg.querySelectorAll('path.series[data-series]')].map((p) => ({ name: p.dataset.series, points: (p.getAttribute('d') || '').split(/[ML]/i).filter((s) => s.trim()).length })),
    thresholds: svg.querySelectorAll('.threshold').length,
    width: svg.getBoundingClientRect().width,
  }))`)
  const chart = (key) => {
    const found = charts.find((c) => c.key === key)
    assert.ok(found, `a chart "${key}" (charts: ${charts.map((c) => c.key).join(', ')})`)
    return found
  }
  for (const key of CHARTS) assert.ok(chart(key).width > 0, `chart ${key} is laid out`)
  const gpus = night.gpus
  assert.equal(chart('gpu-memory').series.length, gpus, 'one GPU memory series per GPU')
  assert.equal(chart('temperature').series.length, gpus, 'one temperature series per GPU')
  assert.equal(chart('host-memory').series.length, 1, 'one host memory series')
  for (const key of ['gpu-memory', 'host-memory', 'temperature']) {
    assert.ok(chart(key).thresholds >= 1, `the ${key} chart draws its threshold`)
    for (const s of chart(key).series) assert.ok(s.points >= 5, `${key} series ${s.name} has points: ${s.points}`)
  }

  // One marker per incident of the span, no more, no fewer.
  const seqs = await page.evaluate(`[...document.querySelectorAll('g.marker[data-seq]')].map((m) => Number(m.dataset.seq))`)
  assert.deepEqual([...seqs].sort((a, b) => a - b), [...new Set(seqs)].sort((a, b) => a - b), 'one marker per incident')
  assert.deepEqual([...new Set(seqs)].sort((a, b) => a - b), expectedSeqs, 'the markers are the incident log\'s seqs for the span')
  const rows = await page.evaluate(`[...document.querySelectorAll('[id^="incident-"]')].map((r) => r.id)`)
  for (const seq of expectedSeqs) assert.ok(rows.includes(`incident-${seq}`), `a table row #incident-${seq}`)

  // The pointer reaches the markers (nothing is drawn over them): hovering the GPU-lost
  // marker's centre hovers a marker (a neighbour logged in the same instant may lie on top).
  const lost = lostIncident()
  const marker = `g.marker[data-seq="${lost.seq}"]`
  assert.equal(await page.hover(marker), true, 'the GPU-lost marker is on the page')
  assert.equal(await page.evaluate(`document.querySelector('g.marker:hover') !== null`), true, 'a marker is under the pointer')

  // A click on the GPU-lost marker shows its details: text that was not visible before.
  await page.evaluate(`(() => {
    window.__before = new Map([...document.querySelectorAll('body *')].filter((el) => el.checkVisibility()).map((el) => [el, el.textContent]))
  })()`)
  assert.equal(await page.click(marker), true)
  const shown = await page.evaluate(`[...document.querySelectorAll('body *')]
    .filter((el) => el.checkVisibility() && window.__before.get(el) !== el.textContent && !el.closest('svg'))
    .map((el) => el.innerText).join('\\n')`)
  assert.ok(shown.includes(lost.message), `the details of incident ${lost.seq} appear on click; newly shown text: ${JSON.stringify(shown.slice(0, 500))}`)

  // Nothing fetched but the page itself (data: URLs are no fetch); nothing logged as an error.
  // Served over HTTP, a page that declares no icon makes the browser ask for /favicon.ico.
  const fetched = page.requests.filter((url) => !url.startsWith('data:'))
  assert.deepEqual([...new Set(fetched)], [pageUrl], 'the page fetches nothing (an inline <link rel="icon"> spares the /favicon.ico request)')
  assert.deepEqual(page.errors, [], 'no console errors, exceptions or error log entries')

  // A phone's width: no sideways scrolling.
  await page.setViewport(PHONE_WIDTH, 800, { mobile: true })
  const scrollWidth = await page.evaluate('document.documentElement.scrollWidth')
  assert.ok(scrollWidth <= PHONE_WIDTH, `no horizontal overflow at ${PHONE_WIDTH} px: scrollWidth ${scrollWidth}`)
  await page.setViewport(DESKTOP_WIDTH)

  // Dark mode paints a dark background; light mode a light one.
  await page.setColorScheme(false)
  const light = await page.evaluate(BACKGROUND)
  await page.setColorScheme(true)
  const dark = await page.evaluate(BACKGROUND)
  assert.notEqual(dark, light, 'dark mode changes the background')
  assert.ok(luminance(dark) < luminance(light) && luminance(dark) < 0.2, `dark background ${dark}, light ${light}`)
  await page.setColorScheme(false)
  assert.deepEqual(page.errors, [], 'no errors after resizing and switching the colour scheme')
}

test('the report page of a recorded night, as a person would look at it', async (t) => {
  if (!requireChromium(t)) return
  assert.equal(typeof h.renderReport, 'function', 'the binding exports renderReport')
  // The helper's log and a reader's agree.
  // The night holds what the page must show: every fault's incident and recovery, the lost
  // GPU flagged and the hot one's peak in the history.
  const logged = await h.readIncidents(path.join(stateDir, 'incidents'))
  assert.deepEqual(logged, night.incidents)
  const codes = logged.map((i) => `${i.kind}${i.details?.code ? `:${i.details.code}` : ''}${i.kind === 'recovery_finished' ? `:${i.message.split(' ')[0]}` : ''}`)
  for (const expected of ['memory_pressure:GPU_MEMORY_PRESSURE', 'gpu_issue:GPU_LOST', 'gpu_issue:TEMPERATURE_HIGH', 'recovery_finished:memory', 'recovery_finished:device_lost']) {
    assert.ok(codes.includes(expected), `the night logged ${expected}: ${codes.join(', ')}`)
  }
  const history = await h.readHistory(path.join(stateDir, 'history'), { since: night.since })
  assert.deepEqual(history.gpus.map((g) => g.index), [0, 1])
  assert.ok(history.gpus[night.lostGpu].points.some((p) => p.lost), 'the lost GPU is flagged in the history')
  assert.ok(history.gpus[night.hotGpu].points.some((p) => p.temperature_c?.max >= HOT_C), 'the hot GPU\'s peak is in the history')
  const expectedSeqs = logged.filter((i) => i.timestamp >= night.since).map((i) => i.seq).sort((a, b) => a - b)

  const html = await h.renderReport(stateDir, { format: 'html', since: night.since })
  assert.equal(typeof html, 'string')
  const file = path.join(root, 'report.html')
  fs.writeFileSync(file, html)
  const pageUrl = pathToFileURL(file).href
  await withPage(async (page) => {
    await page.setViewport(DESKTOP_WIDTH)
    await page.setColorScheme(false)
    await page.goto(pageUrl)
    await lookAtPage(page, { expectedSeqs, pageUrl })
    const png = await page.screenshot()
    const shot = path.join(root, 'report.png')
    fs.writeFileSync(shot, png)
    const { width, height } = pngSize(png)
    assert.equal(width, DESKTOP_WIDTH)
    assert.ok(height > 400, `a full-page screenshot: ${width}×${height}`)
  })
})

test('GET /report on the example service: the same page, served live', async (t) => {
  if (!requireChromium(t)) return
  // The service opens the night's state directory (its history and incident log) and keeps
  // running on a healthy stand-in; the page covers the night and whatever it logged since.
  // What the route must do: GET /report?since=<ISO time or ms> answers 200 text/html without
  // a token, the page renderReport(HPC_HEALTH_STATE_DIR, { format: 'html', since }) makes,
  // declaring its own icon so that the browser fetches nothing else.
  const standin = new StandinState({ devices: [device(0), device(1)] })
  const service = await startService(standin.env({
    HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY,
    HPC_HEALTH_STATE_DIR: stateDir,
    HPC_HEALTH_INTERVAL_MS: '100',
    HPC_HISTORY_STEP_MS: '100', // the night's step: the service records on into the same history
    HPC_HEALTH_RPC_TOKEN: 'report-page-token',
  }))
  try {
    const pageUrl = `${service.httpUrl.replace(/\/$/, '')}/report?since=${encodeURIComponent(new Date(night.since).toISOString())}`
    const answer = await fetch(pageUrl)
    assert.equal(answer.status, 200, `GET /report answers 200: ${answer.status}`)
    assert.match(answer.headers.get('content-type') ?? '', /^text\/html\b/)
    await withPage(async (page) => {
      await page.setViewport(DESKTOP_WIDTH)
      await page.goto(pageUrl)
      // The service may log incidents of its own while the page loads: the page shows those
      // the log held when it was rendered, which include the whole night.
      const after = (await h.readIncidents(path.join(stateDir, 'incidents'))).filter((i) => i.timestamp >= night.since).map((i) => i.seq)
      const seqs = await page.evaluate(`[...document.querySelectorAll('g.marker[data-seq]')].map((m) => Number(m.dataset.seq)).sort((a, b) => a - b)`)
      for (const i of night.incidents) assert.ok(seqs.includes(i.seq), `the live page marks the night's incident ${i.seq} (${i.kind})`)
      const expectedSeqs = seqs.filter((seq) => after.includes(seq))
      assert.deepEqual(seqs, expectedSeqs, 'every marker is an incident of the log')
      await lookAtPage(page, { expectedSeqs, pageUrl })
    })
  } finally {
    service.child.kill('SIGTERM')
    await service.exited
    fs.rmSync(standin.dir, { recursive: true, force: true })
  }
})
