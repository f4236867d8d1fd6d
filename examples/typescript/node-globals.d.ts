// The few Node.js globals the example uses. A stand-in for @types/node, which this
// package does not depend on; a real service would install @types/node instead.

declare const console: {
  log(...data: unknown[]): void
  error(...data: unknown[]): void
}

declare const process: {
  readonly pid: number
  readonly env: Record<string, string | undefined>
  exitCode: number | undefined
}
