'use strict'
// Runs the example service (examples/hpc-service/main.js) as a child process and talks to it:
// over WebSocket (plain JSON-RPC, or the MCP SDK through a small Transport) and HTTP.
// Every wait is bounded, and every child is killed by `stopAll`.
const path = require('node:path')
const { spawn } = require('node:child_process')
const WebSocket = require('ws')

const MAIN = path.join(__dirname, '../../examples/hpc-service/main.js')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const children = new Set()

async function waitFor(what, predicate, ms = 10000) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(25)
  }
}

/** Starts the service with `env`; resolves once it printed both addresses. */
async function startService(env) {
  const child = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const service = { child, output: '' }
  child.stdout.on('data', (chunk) => { service.output += chunk })
  child.stderr.on('data', (chunk) => { service.output += chunk })
  service.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    children.delete(child)
    resolve({ code, signal })
  }))
  let exited = false
  service.exited.then(() => { exited = true })
  await waitFor('the service to print its addresses', () => {
    if (/HTTP on (http:\S+)/.test(service.output) && /MCP on (ws:\S+)/.test(service.output)) return true
    if (exited) throw new Error(`the service exited early:\n${service.output}`)
    return false
  })
  service.httpUrl = /HTTP on (http:\S+)/.exec(service.output)[1]
  service.wsUrl = /MCP on (ws:\S+)/.exec(service.output)[1]
  return service
}

/** Kills every service still running (a test that failed half way leaves one). */
function stopAll() {
  for (const child of children) child.kill('SIGKILL')
}

/** An open WebSocket whose messages are queued, so that none is missed between awaits. */
async function connect(url, options = {}, protocols = []) {
  const socket = new WebSocket(url, protocols, options)
  const received = []
  socket.on('message', (data) => received.push(JSON.parse(data.toString('utf8'))))
  await new Promise((resolve, reject) => {
    socket.once('open', resolve)
    socket.once('error', reject)
  })
  return {
    socket,
    received,
    /** Sends `message` and resolves the response with `id`. */
    async call(message, id = message.id) {
      socket.send(typeof message === 'string' ? message : JSON.stringify(message))
      return waitFor(`response ${id}`, () => received.find((r) => !Array.isArray(r) && r.id === id), 5000)
    },
    close: () => socket.close(),
  }
}

/**
 * The smallest MCP Transport over a `ws` socket (the SDK's own WebSocket transport needs the
 * global WebSocket that Node 20 does not have).
 */
class WsTransport {
  constructor(socket) {
    this.socket = socket
  }

  async start() {
    this.socket.on('message', (data) => this.onmessage?.(JSON.parse(data.toString('utf8'))))
    this.socket.on('close', () => this.onclose?.())
    this.socket.on('error', (error) => this.onerror?.(error))
  }

  async send(message) {
    this.socket.send(JSON.stringify(message))
  }

  async close() {
    this.socket.close()
  }
}

async function http(url, init = {}) {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) })
  const text = await response.text()
  let json = null
  try { json = JSON.parse(text) } catch { /* not JSON: /metrics, /healthz */ }
  return { status: response.status, headers: response.headers, text, json }
}

const postJob = (service, body) => http(`${service.httpUrl}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

module.exports = { startService, stopAll, connect, WsTransport, http, postJob, waitFor, sleep }
