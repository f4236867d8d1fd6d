'use strict'
// Stands in for the CUDA worker (a PyTorch process, say) that a real service drives over IPC.
// The recovery hooks talk to it; here each call is only counted, so that an operator (GET /jobs)
// and the tests can see which recovery reached the worker.
class SimulatedWorker {
  constructor(log = () => {}) {
    this.log = log
    this.calls = { empty_cache: 0, defragment: 0, reset_peak_memory_stats: 0, restart: 0 }
  }

  /** torch.cuda.empty_cache() in a real worker. */
  emptyCache() { this.#call('empty_cache') }

  /** gc.collect() then torch.cuda.empty_cache() in a real worker. */
  defragment() { this.#call('defragment') }

  /** torch.cuda.reset_peak_memory_stats() in a real worker. */
  resetPeakMemoryStats() { this.#call('reset_peak_memory_stats') }

  /** A real service restarts the worker process: a CUDA context that lost its device cannot be repaired in place. */
  restart() { this.#call('restart') }

  #call(name) {
    this.calls[name]++
    this.log(`worker: ${name}`)
  }
}

module.exports = { SimulatedWorker }
