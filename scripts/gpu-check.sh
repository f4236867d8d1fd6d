#!/usr/bin/env bash
# Real-GPU check: hpc-health against the machine's own NVIDIA driver (libnvidia-ml.so.1),
# not the stand-in the test suite uses. Run it on an NVIDIA machine after `npm install`
# (once, online) and a build; it needs no network itself.
#
#   scripts/gpu-check.sh                 # test suites, then the device check
#   scripts/gpu-check.sh --device-only   # only the device check
#   scripts/gpu-check.sh --seconds 30    # watch the Xid event thread for longer (default 10)
#
# 1. Driver present? (exit 2 with a message if not)
# 2. The Rust tests (`cargo test --workspace --offline`) and the Node tests that do not
#    use the stand-in NVML (their files do not mention it or the soak), all with
#    HPC_HEALTH_NVML_LIBRARY pointing at the real library.
# 3. The device check: MemoryMonitor and GPUHealthMonitor on the real library; prints a
#    device table (index, name, uuid, temperature, memory, power, throttle reasons, ECC,
#    status), asserts gpu_available and that the devices are the ones nvidia-smi lists,
#    then runs checkGpuHealth for a few seconds and asserts the Xid event watch is
#    'watching' every device.
#
# Exit: 0 all passed; 1 a check failed; 2 no NVIDIA driver; 3 not set up (addon not built).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEVICE_ONLY=0
SECONDS_TO_WATCH=10
while [ $# -gt 0 ]; do
  case "$1" in
    --device-only) DEVICE_ONLY=1 ;;
    --seconds) SECONDS_TO_WATCH="${2:?--seconds needs a number}"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 1 ;;
  esac
  shift
done

export HPC_HEALTH_NVML_LIBRARY="${HPC_HEALTH_NVML_LIBRARY:-libnvidia-ml.so.1}"
export CARGO_NET_OFFLINE=true

say() { printf '\n== %s\n' "$*"; }
fail() { echo "gpu-check: FAILED: $*" >&2; exit 1; }

# ---- 1. the driver -----------------------------------------------------------------------
library_found() {
  case "$HPC_HEALTH_NVML_LIBRARY" in
    */*) [ -e "$HPC_HEALTH_NVML_LIBRARY" ] ;;
    *)
      local cache
      cache="$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)"
      grep -qF "$HPC_HEALTH_NVML_LIBRARY" <<<"$cache"
      ;;
  esac
}
if ! library_found; then
  cat >&2 <<EOF
gpu-check: no NVIDIA driver here: $HPC_HEALTH_NVML_LIBRARY is not known to the dynamic
loader (ldconfig -p)$( [ -r /proc/driver/nvidia/version ] || printf ' and /proc/driver/nvidia/version is missing').
This check needs a machine with an NVIDIA GPU and its driver installed (or
HPC_HEALTH_NVML_LIBRARY set to the path of libnvidia-ml.so.1). The regular test suite
(npm test) uses a stand-in NVML and needs no GPU.
EOF
  exit 2
fi
if [ -r /proc/driver/nvidia/version ]; then
  say "driver: $(head -1 /proc/driver/nvidia/version)"
else
  say "driver: $HPC_HEALTH_NVML_LIBRARY found (no /proc/driver/nvidia/version: a container?)"
fi
NVSMI=""
if command -v nvidia-smi >/dev/null 2>&1; then
  NVSMI="$(nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits 2>/dev/null || true)"
  printf '%s\n' "$NVSMI" | sed 's/^/nvidia-smi: /'
fi
export NVSMI

# ---- the addon ---------------------------------------------------------------------------
if ! node -e "require('./')" >/dev/null 2>&1; then
  if [ -x node_modules/.bin/napi ] && command -v cargo >/dev/null 2>&1; then
    say "building the addon (offline)"
    npm run --silent build || { echo "gpu-check: could not build the addon offline; run npm run build with network once" >&2; exit 3; }
  else
    echo "gpu-check: the addon is not built and cannot be here: run npm install && npm run build first" >&2
    exit 3
  fi
fi

# ---- 2. the test suites ------------------------------------------------------------------
if [ "$DEVICE_ONLY" = 0 ]; then
  say "Rust tests (cargo test --workspace --offline)"
  cargo test --workspace --offline || fail "Rust tests"

  NODE_TESTS=()
  for file in __test__/*.test.js; do
    grep -qE 'standin|soak' "$file" || NODE_TESTS+=("$file")
  done
  say "Node tests without the stand-in: ${NODE_TESTS[*]}"
  node --expose-gc --test "${NODE_TESTS[@]}" || fail "Node tests"
fi

# ---- 3. the device check -----------------------------------------------------------------
say "device check against $HPC_HEALTH_NVML_LIBRARY (${SECONDS_TO_WATCH}s of checkGpuHealth)"
SECONDS_TO_WATCH="$SECONDS_TO_WATCH" node - <<'JS' || fail "device check"
'use strict'
const { MemoryMonitor, GPUHealthMonitor } = require(process.cwd())

const library = process.env.HPC_HEALTH_NVML_LIBRARY
const seconds = Number(process.env.SECONDS_TO_WATCH)
const GiB = 1024 ** 3
const problems = []
const check = (ok, message) => { if (!ok) problems.push(message) }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const show = (value, unit = '') => (value === null || value === undefined ? '-' : `${value}${unit}`)

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)))
  for (const row of rows) console.log(row.map((cell, i) => String(cell).padEnd(widths[i])).join('  '))
}

async function main() {
  const memory = new MemoryMonitor({ nvmlLibraryPath: library })
  const gpu = new GPUHealthMonitor({ nvmlLibraryPath: library, watchXid: true })

  const metrics = await memory.getMemoryMetrics()
  if (!metrics.gpu_available) throw new Error(`MemoryMonitor: gpu_available is false: ${metrics.gpu_error}`)
  const health = await gpu.checkGpuHealth()
  if (!health.gpu_available) throw new Error(`GPUHealthMonitor: gpu_available is false: ${health.gpu_error}`)
  if (health.devices.length === 0) throw new Error('GPUHealthMonitor: no devices')

  table([
    ['index', 'name', 'uuid', 'temp', 'memory used/total', 'power/limit', 'throttle reasons', 'ECC uncorr', 'retired pending', 'remapped', 'status'],
    ...health.devices.map((d) => [
      d.index,
      d.name ?? '-',
      d.uuid ?? '-',
      show(d.temperature, '°C'),
      `${(d.memory_used / GiB).toFixed(1)}/${(d.memory_total / GiB).toFixed(1)} GiB`,
      `${show(d.power_watts && Math.round(d.power_watts), 'W')}/${show(d.power_limit_watts && Math.round(d.power_limit_watts), 'W')}`,
      d.throttle_reasons === null ? '-' : d.throttle_reasons.join(',') || 'none',
      show(d.ecc_uncorrected),
      show(d.retired_pages_pending),
      d.remapped_rows ? `${d.remapped_rows.correctable}c/${d.remapped_rows.uncorrectable}u${d.remapped_rows.pending ? ' pending' : ''}` : '-',
      d.status + (d.error ? ` (${d.error})` : ''),
    ]),
  ])
  for (const issue of health.issues) console.log(`issue: ${issue.severity} ${issue.code} on ${issue.device}: ${issue.message}`)
  const pressure = await memory.checkMemoryPressure()
  console.log(`memory: system ${pressure.system_ratio.toFixed(3)}, gpu ${pressure.gpu_ratio.toFixed(3)}; ${metrics.gpus.length} GPU(s) seen by MemoryMonitor`)

  // What was read is plausible and is the machine's hardware.
  for (const d of health.devices) {
    check(!d.lost && d.error === null, `device ${d.index}: ${d.lost ? 'lost' : d.error}`)
    check(d.uuid && d.uuid.startsWith('GPU-'), `device ${d.index}: uuid ${d.uuid}`)
    check(d.memory_total > 0 && d.memory_used <= d.memory_total, `device ${d.index}: memory ${d.memory_used}/${d.memory_total}`)
    check(d.temperature === null || (d.temperature > 0 && d.temperature < 130), `device ${d.index}: temperature ${d.temperature}`)
  }
  const fromMemory = metrics.gpus.map((g) => g.uuid).sort()
  const fromHealth = health.devices.map((d) => d.uuid).sort()
  check(JSON.stringify(fromMemory) === JSON.stringify(fromHealth), `the monitors disagree on devices: ${fromMemory} vs ${fromHealth}`)
  const smi = (process.env.NVSMI || '').trim().split('\n').filter(Boolean).map((line) => {
    const [index, uuid, name, totalMiB] = line.split(',').map((s) => s.trim())
    return { index: Number(index), uuid, name, totalMiB: Number(totalMiB) }
  })
  if (smi.length > 0) {
    check(JSON.stringify(smi.map((s) => s.uuid).sort()) === JSON.stringify(fromHealth), `nvidia-smi lists ${smi.map((s) => s.uuid)}, hpc-health ${fromHealth}`)
    for (const s of smi) {
      const d = health.devices.find((x) => x.uuid === s.uuid)
      if (!d) continue
      check(d.name === s.name, `device ${s.uuid}: name ${d.name} vs nvidia-smi ${s.name}`)
      const mib = d.memory_total / 1024 ** 2
      check(Math.abs(mib - s.totalMiB) <= Math.max(2, s.totalMiB * 0.01), `device ${s.uuid}: ${mib} MiB vs nvidia-smi ${s.totalMiB}`)
    }
  } else {
    console.log('(nvidia-smi not available: devices not cross-checked)')
  }

  // The Xid event watch: it starts, reaches 'watching' on every device and stays there.
  const states = []
  let watchingSince = null
  const deadline = Date.now() + seconds * 1000
  while (Date.now() < deadline) {
    const h = await gpu.checkGpuHealth()
    const watch = h.xid_watch
    const state = watch ? watch.state : 'off'
    if (states.at(-1) !== state) {
      states.push(state)
      console.log(`xid watch: ${state} on [${watch ? watch.devices.join(',') : ''}]${watch && watch.error ? ` (${watch.error})` : ''}`)
    }
    if (state === 'watching') {
      watchingSince ??= Date.now()
      const all = health.devices.map((d) => d.index).sort()
      check(JSON.stringify([...watch.devices].sort((a, b) => a - b)) === JSON.stringify(all), `xid watch covers ${watch.devices}, devices are ${all}`)
    } else if (watchingSince !== null) {
      problems.push(`xid watch left 'watching' for '${state}'${watch && watch.error ? `: ${watch.error}` : ''}`)
      break
    }
    for (const d of h.devices) for (const x of d.xid_errors) console.log(`xid ${x.code} on device ${d.index} at ${new Date(x.timestamp).toISOString()} → ${x.action}`)
    await sleep(500)
  }
  check(watchingSince !== null, `xid watch never reached 'watching' in ${seconds}s (states: ${states.join(' → ')})`)
  console.log(`gpu healthy: ${await gpu.isGpuHealthy()}`)

  if (problems.length > 0) throw new Error(`\n  - ${[...new Set(problems)].join('\n  - ')}`)
  console.log('device check passed')
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`device check: ${error.message}`)
    process.exit(1)
  },
)
JS

say "gpu-check passed"
