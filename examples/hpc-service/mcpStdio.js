'use strict'
// MCP's stdio transport (https://modelcontextprotocol.io/specification/2025-11-25/basic/transports#stdio):
// one JSON-RPC message per line on `input`, each answer one line on `output`, nothing else on
// `output` (logs go to stderr). Answered by supervisor.handleJsonRpc, like the WebSocket.
//
// Bounded like a WebSocket connection: a line over `maxMessageBytes` is answered with -32600
// and skipped up to its newline without being kept; `input` is not read while
// `maxInFlight` messages are being answered or `output` is not draining.

const INVALID_REQUEST = -32600
const NEWLINE = 0x0a

/**
 * Serves `input` until it ends; resolves once every message read has been answered.
 * `authorize` is handleJsonRpc's (who may call the control tools).
 */
function serveStdio({ supervisor, input, output, authorize, maxMessageBytes, maxInFlight, log }) {
  let line = [] // the current line's chunks, while it is within maxMessageBytes
  let lineBytes = 0
  let skipping = false // the current line went over maxMessageBytes: dropped up to its newline
  const waiting = [] // whole lines read while busy
  let inFlight = 0
  let outputFull = false
  let ended = false
  let finish
  const finished = new Promise((resolve) => { finish = resolve })

  const send = (message) => {
    if (!output.write(JSON.stringify(message) + '\n')) outputFull = true
  }
  const busy = () => inFlight >= maxInFlight || outputFull

  async function answer(text) {
    inFlight++
    try {
      const response = await supervisor.handleJsonRpc(text, { authorize })
      if (response !== null) send(response) // null: only notifications
    } catch (error) {
      log(`mcp stdio: ${error.message}`)
    } finally {
      inFlight--
      readMore()
    }
  }

  function readMore() {
    while (waiting.length > 0 && !busy()) answer(waiting.shift())
    if (ended && waiting.length === 0 && inFlight === 0) return finish()
    if (busy()) input.pause()
    else if (!ended) input.resume()
  }

  function endLine() {
    if (!skipping) {
      const text = Buffer.concat(line, lineBytes).toString('utf8').trim()
      if (text !== '') waiting.push(text) // blank lines (and a trailing \r) carry no message
    }
    line = []
    lineBytes = 0
    skipping = false
  }

  function take(piece) {
    if (skipping) return
    if (lineBytes + piece.length > maxMessageBytes) {
      skipping = true
      line = []
      lineBytes = 0
      send({ jsonrpc: '2.0', error: { code: INVALID_REQUEST, message: `Invalid Request: message over the ${maxMessageBytes}-byte limit` }, id: null })
      return
    }
    line.push(piece)
    lineBytes += piece.length
  }

  input.on('data', (chunk) => {
    let start = 0
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      take(chunk.subarray(start, end))
      endLine()
      start = end + 1
    }
    if (start < chunk.length) take(chunk.subarray(start))
    readMore()
  })
  input.on('end', () => {
    if (lineBytes > 0) endLine() // a last message without its newline
    ended = true
    readMore()
  })
  input.on('error', (error) => {
    log(`mcp stdio: input: ${error.message}`)
    ended = true
    readMore()
  })
  output.on('drain', () => {
    outputFull = false
    readMore()
  })
  // The host went away: nothing can be answered any more.
  output.on('error', (error) => {
    log(`mcp stdio: output: ${error.message}`)
    waiting.splice(0)
    ended = true
    input.destroy()
    readMore()
  })
  return finished
}

module.exports = { serveStdio }
