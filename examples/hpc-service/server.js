'use strict'
// The service's two listeners, both on 127.0.0.1 only:
// - a WebSocket JSON-RPC 2.0 / MCP endpoint answered by supervisor.handleJsonRpc, where the
//   control methods need a token (CONTROL_METHODS) and each connection is bounded (LIMITS);
// - plain HTTP for the orchestrator and Prometheus: /metrics, /healthz, /readyz, /jobs, and
//   MCP's Streamable HTTP transport at /mcp (mcpHttp.js), with the same tokens.
// Both refuse a request whose Origin is a page elsewhere (403, httpGuards.originAllowed), and
// one whose Host is not a name of this machine (421, httpGuards.hostAllowed: DNS rebinding).
const http = require('node:http')
const { timingSafeEqual } = require('node:crypto')
const { WebSocketServer } = require('ws')
const { originAllowed, hostAllowed, readBody, httpError, sendJson } = require('./httpGuards')
const { createMcpEndpoint } = require('./mcpHttp')

const HOST = '127.0.0.1'

/**
 * What one peer may cost the service. A WebSocket connection is read only while it has fewer
 * than `maxInFlightPerConnection` requests being answered AND fewer than
 * `maxBufferedBytesPerConnection` bytes of answers waiting to be sent; past either, its socket
 * is not read (TCP pushes back on the client) until answers go out. One whose answers stay over
 * the byte bound for `drainTimeoutMs` does not read them: it is closed with 1008 and logged.
 */
const LIMITS = Object.freeze({
  maxMessageBytes: 1024 * 1024, // the dispatcher refuses more anyway; ws closes earlier (1009)
  maxJobBodyBytes: 64 * 1024,
  maxInFlightPerConnection: 16,
  // A soft bound: checked before reading more, so one answer larger than it still goes out.
  maxBufferedBytesPerConnection: 256 * 1024,
  drainTimeoutMs: 30000,
  // After the 1008 close frame (queued behind the unread answers), the socket is destroyed.
  closeGraceMs: 1000,
  // Per listener; past it a new connection is closed as soon as it is accepted. With the
  // bounds above, all WebSocket connections together hold at most about 256 MiB of answers.
  maxConnections: 1024,
  // MCP over HTTP (/mcp): sessions live at once (each a few hundred bytes), and how long one
  // may go unused before it ends (its client then gets 404 and initializes again).
  maxMcpSessions: 256,
  mcpSessionIdleMs: 30 * 60 * 1000,
  // GET /report renders at once (each render holds a report of up to 7 days in memory, tens of
  // MiB for 8 GPUs); more are answered 503 with Retry-After rather than queued.
  maxReportsInFlight: 2,
})
const MAX_IN_FLIGHT_PER_CONNECTION = LIMITS.maxInFlightPerConnection

/** Which tokens may call each control method. Every other method is read-only: no token needed. */
const CONTROL_METHODS = Object.freeze({
  recoverSystem: ['operator'],
  reportAllocatorStats: ['operator', 'worker'],
})

/** The status a malformed request gets where it is not 400 (as Node itself would answer). */
const CLIENT_ERROR_STATUS = Object.freeze({ HPE_HEADER_OVERFLOW: 431, ERR_HTTP_REQUEST_TIMEOUT: 408 })

/**
 * The request target as a URL, or null unless it is origin-form (`/path?query`, RFC 9112 3.2.1):
 * the only form a client of this origin server sends. Absolute-form, authority-form (CONNECT),
 * `*`, anything unparsable, and a request with more than one Host (RFC 9112 3.2) are refused
 * with 400 by the callers.
 */
function requestTarget(request) {
  if (typeof request.url !== 'string' || !request.url.startsWith('/')) return null
  if ((request.headersDistinct.host?.length ?? 0) > 1) return null
  try {
    return new URL(`http://${HOST}${request.url}`)
  } catch {
    return null
  }
}

/** The token a request presented: `Authorization: Bearer <token>` or `?token=`. */
function presentedToken(request, target) {
  const header = /^Bearer (.+)$/i.exec(request.headers.authorization || '')
  if (header) return header[1].trim()
  return target.searchParams.get('token')
}

/** Constant-time comparison; a token that is not configured matches nothing. */
function tokenMatches(expected, presented) {
  if (!expected || !presented) return false
  const a = Buffer.from(expected)
  const b = Buffer.from(presented)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** 'operator', 'worker' or null (read-only), from the token presented. */
function roleOf(presented, { rpcToken, workerToken }) {
  if (tokenMatches(rpcToken, presented)) return 'operator'
  if (tokenMatches(workerToken, presented)) return 'worker'
  return null
}

/** `authorize` for handleJsonRpc: whether `role` may call the control method `method`. */
const mayCall = (role, method) => Object.hasOwn(CONTROL_METHODS, method) && CONTROL_METHODS[method].includes(role)

/** handleJsonRpc's `authorize` for the caller of `request`, by the token it presented. */
function authorizeFor(request, target, tokens) {
  const role = roleOf(presentedToken(request, target), tokens)
  return ({ method }) => mayCall(role, method)
}

/** Answers a raw socket (no HTTP response object: a client error, CONNECT or a refused upgrade) and closes it. */
function refuseSocket(socket, status = 400) {
  socket.on('error', () => {}) // the peer may be gone already; nothing to tell it
  // bytesWritten > 0: a response is under way on this socket; a status line now would corrupt it.
  if (!socket.writable || socket.bytesWritten > 0) return socket.destroy()
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy())
}

/** What both listeners do with requests they cannot parse, and with CONNECT; and their connection limit. */
function guard(server) {
  server.maxConnections = LIMITS.maxConnections
  // Malformed requests (bad method, bad header, headers over the size limit, ...): 400 and close.
  server.on('clientError', (error, socket) => refuseSocket(socket, CLIENT_ERROR_STATUS[error.code] ?? 400))
  server.on('connect', (request, socket) => refuseSocket(socket)) // this is not a proxy
  return server
}

function listen(server, port, log) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, HOST, () => {
      server.off('error', reject)
      server.on('error', (error) => log(`listener on ${port}: ${error.message}`)) // e.g. EMFILE on accept
      resolve(server.address().port)
    })
  })
}

/**
 * Answers one connection's messages through `supervisor`, reading more only while both per-
 * connection bounds hold (see LIMITS).
 */
function serveConnection({ socket, request, authorize, supervisor, limits, log }) {
  let inFlight = 0
  // Messages ws had already read when the socket was paused; bounded by what one read holds.
  const waiting = []
  let drainTimer = null
  const overBytes = () => socket.bufferedAmount > limits.maxBufferedBytesPerConnection
  const busy = () => inFlight >= limits.maxInFlightPerConnection || overBytes()

  const answer = async (data) => {
    inFlight++
    try {
      const response = await supervisor.handleJsonRpc(data.toString('utf8'), { authorize })
      // null: only notifications, which JSON-RPC answers with nothing.
      if (response !== null && socket.readyState === socket.OPEN) socket.send(JSON.stringify(response))
    } catch (error) {
      log(`ws: ${error.message}`)
    } finally {
      inFlight--
      readMore()
    }
  }

  const notDraining = () => {
    drainTimer = null
    if (!overBytes() || socket.readyState !== socket.OPEN) return
    log(`ws: closing a connection that left ${socket.bufferedAmount} bytes of answers unread for ${limits.drainTimeoutMs} ms (1008)`)
    socket.close(1008, 'answers not read')
    setTimeout(() => socket.terminate(), limits.closeGraceMs).unref()
  }

  // Called whenever a bound may have changed: a message came, an answer went out, the socket drained.
  function readMore() {
    if (socket.readyState !== socket.OPEN) return void waiting.splice(0) // no answer can go out now
    while (waiting.length > 0 && !busy()) answer(waiting.shift())
    if (overBytes()) {
      drainTimer ??= setTimeout(notDraining, limits.drainTimeoutMs).unref()
    } else {
      clearTimeout(drainTimer)
      drainTimer = null
    }
    if (busy()) socket.pause()
    else socket.resume()
  }

  socket.on('error', (error) => log(`ws: ${error.message}`)) // e.g. a message over maxPayload; ws closes the socket
  socket.on('message', (data) => {
    waiting.push(data)
    readMore()
  })
  request.socket.on('drain', readMore) // ws and this socket share it; 'drain': everything written went out
  socket.on('close', () => clearTimeout(drainTimer))
}

function startWebSocket({ supervisor, port, tokens, limits, log }) {
  const httpServer = guard(http.createServer((req, res) => {
    const status = requestTarget(req) === null ? 400 : 426
    res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(status === 426 ? 'WebSocket only\n' : 'bad request target\n')
  }))
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxMessageBytes,
    // Pings are bounded by ws itself: a peer with 60 pongs unsent is terminated (maxPendingAutoPongs).
    // The MCP SDK's WebSocket transport asks for the "mcp" subprotocol; plain JSON-RPC clients ask for none.
    handleProtocols: (protocols) => (protocols.has('mcp') ? 'mcp' : false),
  })
  httpServer.on('upgrade', (request, socket, head) => {
    const target = requestTarget(request)
    if (target === null) return refuseSocket(socket)
    // Browsers let any page open a WebSocket to 127.0.0.1; only the Origin tells them apart.
    if (!hostAllowed(request.headers.host)) return refuseSocket(socket, 421)
    if (!originAllowed(request.headers.origin)) return refuseSocket(socket, 403)
    const authorize = authorizeFor(request, target, tokens)
    // ws answers a bad handshake (Sec-WebSocket-Key, version, ...) with 400 itself.
    wss.handleUpgrade(request, socket, head, (ws) => serveConnection({ socket: ws, request, authorize, supervisor, limits, log }))
  })
  return { httpServer, wss, port: listen(httpServer, port, log) }
}

async function readJson(req, maxBytes) {
  const text = (await readBody(req, maxBytes)).toString('utf8')
  let body
  try {
    body = text.trim() === '' ? {} : JSON.parse(text)
  } catch {
    throw httpError(400, 'body is not JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw httpError(400, 'body must be a JSON object')
  return body
}

/**
 * The page's own policy: nothing is loaded from anywhere (the page is self-contained), its
 * inline style and script run, and no other site may frame it.
 */
const REPORT_HEADERS = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
})

function startHttp({ supervisor, jobs, report, port, tokens, limits, log }) {
  let reportsInFlight = 0
  const mcp = createMcpEndpoint({ supervisor, authorizeFor: (req, target) => authorizeFor(req, target, tokens), limits })
  const routes = {
    'GET /metrics': (req, res) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(supervisor.metrics()),
    // Liveness: answering at all is the signal; a failing GPU is for readiness, not for a restart loop.
    'GET /healthz': (req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'),
    'GET /readyz': (req, res) => {
      const reasons = jobs.pausedReasons()
      sendJson(res, reasons.length === 0 ? 200 : 503, { ready: reasons.length === 0, state: supervisor.status().state, reasons })
    },
    'GET /jobs': (req, res) => sendJson(res, 200, jobs.snapshot()),
    // The morning report, live: ?since=12h (the default), an ISO date or time, or ms since the epoch.
    // Rendered off the event loop; a bad `since` is a RangeError, answered 400.
    'GET /report': async (req, res, target) => {
      if (!report) return sendJson(res, 404, { error: 'no report: this server has no state directory' })
      if (reportsInFlight >= limits.maxReportsInFlight) {
        return sendJson(res, 503, { error: `${reportsInFlight} reports are being rendered; try again shortly` }, { 'retry-after': '5' })
      }
      // Held until the page has gone out (or the connection closed): a client that does not
      // read keeps its page in memory, so it keeps its slot.
      reportsInFlight++
      res.once('close', () => reportsInFlight--)
      // No `since`: the package's default span (12 h).
      const page = await report({ since: target.searchParams.get('since') || undefined, format: 'html' })
      res.writeHead(200, REPORT_HEADERS).end(page)
    },
    'POST /jobs': async (req, res) => {
      const body = await readJson(req, limits.maxJobBodyBytes)
      const submitted = await jobs.submit(body)
      if (submitted.refused) return sendJson(res, 503, { error: 'intake paused', reasons: submitted.refused }, { 'retry-after': '30' })
      sendJson(res, 202, submitted.job)
    },
  }
  const server = guard(http.createServer(async (req, res) => {
    const target = requestTarget(req)
    if (target === null) return sendJson(res, 400, { error: 'bad request target' }, { connection: 'close' })
    if (!hostAllowed(req.headers.host)) return sendJson(res, 421, { error: 'Host not allowed: only names of this machine (localhost, 127.0.0.1, [::1]) are served' })
    if (!originAllowed(req.headers.origin)) return sendJson(res, 403, { error: 'Origin not allowed: only pages on this machine may call the service' })
    const route = target.pathname === '/mcp' ? mcp : routes[`${req.method} ${target.pathname}`]
    if (!route) return sendJson(res, 404, { error: `no route ${req.method} ${target.pathname}` })
    try {
      await route(req, res, target)
    } catch (error) {
      const status = error.status || (error instanceof RangeError ? 400 : 500)
      if (status === 500) log(`http: ${req.method} ${target.pathname}: ${error.stack}`)
      // 413: the rest of the body is not read; the connection cannot carry another request.
      if (!res.headersSent) sendJson(res, status, { error: error.message }, status === 413 ? { connection: 'close' } : {})
      else res.destroy() // half a response: the client must not take it for a whole one
    }
  }))
  return { server, port: listen(server, port, log) }
}

/**
 * Starts both listeners; resolves `{ wsUrl, httpUrl, close }`. Port 0 picks a free port.
 * `rpcToken` (operator) may call every control method, `workerToken` only reportAllocatorStats
 * (see CONTROL_METHODS). `limits` overrides some of LIMITS (tests use short timeouts).
 * `report(options)` renders the morning report for GET /report (as `renderReport`).
 */
async function startServers({ supervisor, jobs, report, wsPort = 0, httpPort = 0, rpcToken, workerToken, limits = {}, log = () => {} }) {
  const tokens = { rpcToken, workerToken }
  const bounds = { ...LIMITS, ...limits }
  const ws = startWebSocket({ supervisor, port: wsPort, tokens, limits: bounds, log })
  const web = startHttp({ supervisor, jobs, report, port: httpPort, tokens, limits: bounds, log })
  async function close() {
    for (const client of ws.wss.clients) client.terminate()
    ws.wss.close()
    web.server.closeAllConnections()
    await Promise.all([new Promise((resolve) => ws.httpServer.close(resolve)), new Promise((resolve) => web.server.close(resolve))])
  }
  const [wsBound, httpBound] = await Promise.allSettled([ws.port, web.port])
  const failed = [wsBound, httpBound].find((r) => r.status === 'rejected')
  if (failed) {
    await close() // the one that did start must not keep the process alive
    throw failed.reason
  }
  const httpUrl = `http://${HOST}:${httpBound.value}`
  return { wsUrl: `ws://${HOST}:${wsBound.value}`, httpUrl, mcpUrl: `${httpUrl}/mcp`, close }
}

module.exports = { startServers, LIMITS, MAX_IN_FLIGHT_PER_CONNECTION }
