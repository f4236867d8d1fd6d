'use strict'
// Debian's `chromium`, headless, driven over the DevTools protocol (one WebSocket to the
// browser, `ws` being the client Node 20 lacks), for the tests that look at a page as a
// person would: what it logs and throws, what it fetches, what it shows at a phone's width
// and in dark mode, what a click reveals, and a screenshot. The browser and its temporary
// profile are removed whatever happens. Chromium missing fails the test, naming the package,
// as promtool does (helpers/prometheus.js): CI installs it (.ci/run), and a green `npm test`
// means the page was looked at. HPC_HEALTH_SKIP_CHROMIUM=1 skips instead (never when CI is set).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const WebSocket = require('ws')

const DEFAULT_EXECUTABLE = '/usr/bin/chromium'
/** How long the browser may take to start, a command to answer, a page to load. */
const LAUNCH_TIMEOUT_MS = 30000
const COMMAND_TIMEOUT_MS = 30000
const LOAD_TIMEOUT_MS = 30000

/** `$CHROMIUM` where set (only it), else /usr/bin/chromium, else `chromium` on PATH; null when none is there. */
function findChromium() {
  const candidates = process.env.CHROMIUM
    ? [process.env.CHROMIUM]
    : [DEFAULT_EXECUTABLE, ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((d) => path.join(d, 'chromium'))]
  for (const candidate of candidates) {
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch { /* not here */ }
  }
  return null
}

/** Chromium's path; skips `t` where skipping is allowed, throws otherwise. */
function requireChromium(t) {
  const found = findChromium()
  if (found) return found
  const why = process.env.CHROMIUM
    ? `chromium not found at $CHROMIUM (${process.env.CHROMIUM})`
    : "chromium not found (/usr/bin/chromium, PATH): install Debian's chromium package (apt-get install chromium)"
  if (process.env.HPC_HEALTH_SKIP_CHROMIUM === '1' && !process.env.CI) {
    t.skip(`${why}; skipped (HPC_HEALTH_SKIP_CHROMIUM=1)`)
    return null
  }
  throw new Error(why)
}

/** Every browser this process started and has not closed: killed if the process exits first. */
const running = new Set()
process.on('exit', () => {
  for (const browser of running) browser.killNow()
})

class Browser {
  /** Starts headless Chromium with a fresh temporary profile; resolves once its DevTools socket is open. */
  static async launch({ executable = findChromium() } = {}) {
    if (!executable) throw new Error('chromium not found')
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-chromium-'))
    const child = spawn(executable, [
      '--headless', '--remote-debugging-port=0', `--user-data-dir=${profile}`, '--no-sandbox',
      '--no-first-run', '--no-default-browser-check', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-extensions', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--mute-audio', '--hide-scrollbars', 'about:blank',
    ], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] })
    const browser = new Browser(child, profile)
    running.add(browser)
    try {
      const endpoint = await browser.endpoint()
      await browser.connect(endpoint)
      return browser
    } catch (error) {
      await browser.close()
      throw error
    }
  }

  constructor(child, profile) {
    this.child = child
    this.profile = profile
    this.stderr = ''
    this.nextId = 1
    this.pending = new Map()
    this.listeners = new Map() // sessionId -> (method, params) => void
    this.exited = new Promise((resolve) => child.once('exit', resolve))
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => {
      // Keep the start (the DevTools line) and a bounded tail for error messages.
      this.stderr = this.stderr.length < 64 * 1024 ? this.stderr + chunk : this.stderr
    })
  }

  /** The browser's DevTools WebSocket URL, from the line Chromium prints on stderr. */
  endpoint() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`chromium printed no DevTools URL within ${LAUNCH_TIMEOUT_MS} ms; stderr: ${this.stderr.slice(-2000)}`)), LAUNCH_TIMEOUT_MS)
      const onData = () => {
        const match = /DevTools listening on (ws:\/\/\S+)/.exec(this.stderr)
        if (match) finish(null, match[1])
      }
      const onExit = (code, signal) => finish(new Error(`chromium exited (${code ?? signal}) before listening; stderr: ${this.stderr.slice(-2000)}`))
      const finish = (error, url) => {
        clearTimeout(timer)
        this.child.stderr.off('data', onData)
        this.child.off('exit', onExit)
        if (error) reject(error)
        else resolve(url)
      }
      this.child.stderr.on('data', onData)
      this.child.once('exit', onExit)
      onData()
    })
  }

  async connect(url) {
    this.socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 })
    await new Promise((resolve, reject) => {
      this.socket.once('open', resolve)
      this.socket.once('error', reject)
    })
    this.socket.on('message', (data) => this.receive(JSON.parse(data.toString('utf8'))))
    this.socket.on('close', () => {
      for (const { reject, timer } of this.pending.values()) {
        clearTimeout(timer)
        reject(new Error('the DevTools connection closed'))
      }
      this.pending.clear()
    })
  }

  receive(message) {
    if (message.id !== undefined) {
      const call = this.pending.get(message.id)
      if (!call) return
      this.pending.delete(message.id)
      clearTimeout(call.timer)
      if (message.error) call.reject(new Error(`${call.method}: ${message.error.message} ${message.error.data ?? ''}`.trim()))
      else call.resolve(message.result)
      return
    }
    this.listeners.get(message.sessionId ?? null)?.(message.method, message.params)
  }

  /** Sends a DevTools command (to a page's session when `sessionId` is given). */
  send(method, params = {}, sessionId) {
    if (this.socket?.readyState !== WebSocket.OPEN) return Promise.reject(new Error(`${method}: the DevTools connection is not open`))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${method}: no answer within ${COMMAND_TIMEOUT_MS} ms`))
      }, COMMAND_TIMEOUT_MS)
      this.pending.set(id, { resolve, reject, timer, method })
      this.socket.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }))
    })
  }

  /** A new tab with Runtime, Log, Network and Page enabled. */
  async newPage() {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' })
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true })
    const page = new Page(this, sessionId)
    this.listeners.set(sessionId, (method, params) => page.onEvent(method, params))
    await Promise.all(['Runtime.enable', 'Log.enable', 'Network.enable', 'Page.enable'].map((m) => page.send(m)))
    return page
  }

  killNow() {
    try {
      process.kill(-this.child.pid, 'SIGKILL') // the browser and its zygote, renderer, utility processes
    } catch { /* gone already */ }
  }

  /** Closes the browser (its whole process group) and removes the profile. Idempotent. */
  async close() {
    this.closing ??= (async () => {
      try {
        if (this.socket?.readyState === WebSocket.OPEN) {
          await Promise.race([this.send('Browser.close').catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000))])
        }
      } finally {
        this.socket?.terminate()
        this.killNow()
        if (this.child.exitCode === null && this.child.signalCode === null) {
          await Promise.race([this.exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())])
        }
        running.delete(this)
        fs.rmSync(this.profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
      }
    })()
    return this.closing
  }
}

class Page {
  constructor(browser, sessionId) {
    this.browser = browser
    this.sessionId = sessionId
    /** Console errors, uncaught exceptions and error log entries, as text. */
    this.errors = []
    /** The URL of every request the page made (Network.requestWillBeSent). */
    this.requests = []
    this.waiters = new Set()
  }

  send(method, params) {
    return this.browser.send(method, params, this.sessionId)
  }

  onEvent(method, params) {
    if (method === 'Runtime.consoleAPICalled' && (params.type === 'error' || params.type === 'assert')) {
      this.errors.push(`console.${params.type}: ${params.args.map((a) => a.value ?? a.description ?? a.type).join(' ')}`)
    } else if (method === 'Runtime.exceptionThrown') {
      const d = params.exceptionDetails
      this.errors.push(`exception: ${d.exception?.description ?? d.text} at ${d.url ?? ''}:${d.lineNumber}:${d.columnNumber}`)
    } else if (method === 'Log.entryAdded' && params.entry.level === 'error') {
      this.errors.push(`log (${params.entry.source}): ${params.entry.text} ${params.entry.url ?? ''}`.trim())
    } else if (method === 'Network.requestWillBeSent') {
      this.requests.push(params.request.url)
    }
    for (const waiter of this.waiters) waiter(method, params)
  }

  /** Resolves with the params of the next `method` event; rejects after `ms`. */
  next(method, ms = LOAD_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const waiter = (name, params) => {
        if (name !== method) return
        this.waiters.delete(waiter)
        clearTimeout(timer)
        resolve(params)
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        reject(new Error(`no ${method} within ${ms} ms`))
      }, ms)
      this.waiters.add(waiter)
    })
  }

  /** Loads `url` and resolves once its load event fired; rejects when navigation fails. */
  async goto(url) {
    const loaded = this.next('Page.loadEventFired')
    const result = await this.send('Page.navigate', { url })
    if (result.errorText) {
      loaded.catch(() => {})
      throw new Error(`loading ${url}: ${result.errorText}`)
    }
    await loaded
  }

  /** The value of `expression` in the page (a promise is awaited); an exception rejects. */
  async evaluate(expression) {
    const { result, exceptionDetails } = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })
    if (exceptionDetails) throw new Error(`evaluating ${expression}: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`)
    return result.value
  }

  /** A viewport `width` CSS pixels wide (a phone's when `mobile`). */
  setViewport(width, height = 800, { mobile = false } = {}) {
    return this.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile })
  }

  /** prefers-color-scheme: dark when `dark`, light otherwise. */
  setColorScheme(dark) {
    return this.send('Emulation.setEmulatedMedia', { features: [{ name: 'prefers-color-scheme', value: dark ? 'dark' : 'light' }] })
  }

  /** Clicks the first element matching `selector` (a bubbling click event); false when there is none. */
  click(selector) {
    return this.evaluate(`(() => {
      const el = document.querySelector(${JSON.stringify(selector)})
      if (!el) return false
      el.dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true, view: window }))
      return true
    })()`)
  }

  /** Moves the mouse over the centre of the first element matching `selector`; false when there is none. */
  async hover(selector) {
    const box = await this.evaluate(`(() => {
      const el = document.querySelector(${JSON.stringify(selector)})
      if (!el) return null
      el.scrollIntoView({ block: 'center', inline: 'center' })
      const r = el.getBoundingClientRect()
      return { x: r.left + r.width / 2, y: r.top + r.height / 2 }
    })()`)
    if (!box) return false
    await this.send('Input.dispatchMouseEvent', { type: 'mouseMoved', x: box.x, y: box.y })
    return true
  }

  /** A PNG of the whole page (not only the viewport), as a Buffer. */
  async screenshot() {
    const { cssContentSize, contentSize } = await this.send('Page.getLayoutMetrics')
    const size = cssContentSize ?? contentSize
    const { data } = await this.send('Page.captureScreenshot', {
      format: 'png', captureBeyondViewport: true,
      clip: { x: 0, y: 0, width: Math.ceil(size.width), height: Math.ceil(size.height), scale: 1 },
    })
    return Buffer.from(data, 'base64')
  }
}

/** Runs `fn(page, browser)` in a fresh headless Chromium, closed and removed afterwards whatever happens. */
async function withPage(fn, options) {
  const browser = await Browser.launch(options)
  try {
    return await fn(await browser.newPage(), browser)
  } finally {
    await browser.close()
  }
}

module.exports = { Browser, Page, withPage, findChromium, requireChromium }
