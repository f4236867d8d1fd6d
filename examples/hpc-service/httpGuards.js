'use strict'
// What every HTTP request to the service passes through, whichever listener and route: the
// Host and Origin checks, and a bounded body read.

/** Host names of this machine as a browser writes them in an Origin. */
const LOCAL_HOSTNAMES = new Set(['localhost', '127.0.0.1', '[::1]'])

/**
 * Whether a request with this `Origin` header may be served. Browsers send an Origin on
 * cross-site requests and WebSocket upgrades; a page elsewhere (a site the operator visits, or a
 * DNS-rebound name) must not drive a service bound to 127.0.0.1, so only a missing Origin (not
 * a browser: curl, Prometheus, MCP hosts) or one on this machine is served; anything else,
 * `null` included, gets 403. MCP's Streamable HTTP transport requires this check.
 */
function originAllowed(origin) {
  if (origin === undefined) return true
  let url
  try {
    url = new URL(origin)
  } catch {
    return false
  }
  return (url.protocol === 'http:' || url.protocol === 'https:') && LOCAL_HOSTNAMES.has(url.hostname)
}

/**
 * Whether a request naming this `Host` may be served: only a name of this machine. A page
 * that rebinds its own name to 127.0.0.1 sends its same-origin requests (no Origin header)
 * with its own name as the Host; refused (421), it cannot read what the service answers.
 */
function hostAllowed(host) {
  if (host === undefined) return true // HTTP/1.0; Node answers 400 for an HTTP/1.1 request without one
  let url
  try {
    url = new URL(`http://${host}`)
  } catch {
    return false
  }
  return LOCAL_HOSTNAMES.has(url.hostname) && url.pathname === '/' && url.username === '' && url.search === ''
}

/** An Error carrying the HTTP status to answer with. */
const httpError = (status, message) => Object.assign(new Error(message), { status })

/**
 * The request body as a Buffer; rejects with status 413 as soon as it is over `maxBytes`
 * (a Content-Length over it is refused before anything is read).
 */
async function readBody(req, maxBytes) {
  const tooLarge = () => httpError(413, `body over ${maxBytes} bytes`)
  if (Number(req.headers['content-length']) > maxBytes) throw tooLarge()
  let size = 0
  const chunks = []
  for await (const chunk of req) {
    size += chunk.length
    if (size > maxBytes) throw tooLarge()
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body) + '\n')
}

module.exports = { originAllowed, hostAllowed, readBody, httpError, sendJson }
