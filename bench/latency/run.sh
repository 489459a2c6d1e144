#!/usr/bin/env bash
# Job time against round-trip time, dealer mode against OT mode, for programs
# of 2, 10 and 20 layers (issue 15, item 8). Reproduces the tables in
# docs/benchmarks.md ("Deep programs against round-trip time").
#
#   sudo bench/latency/run.sh [driver flags...]    # e.g. --runs 7 --parties 2
#
# Needs root: each worker runs in its own network namespace (cohort-lat-p<i>),
# joined to this namespace by a veth pair only, with no route between
# namespaces, so the user-space delay line in the driver
# (e2e/examples/latency.rs) is the only path between parties. The kernel
# needs no netem. Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

PREFIX=cohort-lat
PARTIES=3
args=("$@")
for ((k = 0; k < ${#args[@]}; k++)); do
  if [[ ${args[k]} == --parties ]]; then PARTIES=${args[k + 1]}; fi
done

if [[ $(id -u) -ne 0 ]]; then
  echo "run.sh needs root (ip netns add); try: sudo $0 $*" >&2
  exit 1
fi

# Release workers and dealer (what is measured); the driver only submits
# jobs and forwards bytes, so its dev build (shared with the e2e tests) is
# enough. NO_BUILD=1 uses what is built; BIN_DIR picks other binaries.
BIN_DIR=${BIN_DIR:-target/release}
if [[ -z ${NO_BUILD:-} ]]; then
  cargo build --release --locked -p cohort-worker --bins
  cargo build --locked -p cohort-e2e --example latency
fi

cleanup() {
  for ((i = 0; i < PARTIES; i++)); do
    ip netns del "$PREFIX-p$i" 2>/dev/null || true
    ip link del "clat$i" 2>/dev/null || true
  done
}
trap cleanup EXIT
cleanup
for ((i = 0; i < PARTIES; i++)); do
  ns="$PREFIX-p$i"
  ip netns add "$ns"
  ip link add "clat$i" type veth peer name eth0 netns "$ns"
  ip addr add "10.77.$i.1/24" dev "clat$i"
  ip link set "clat$i" up
  ip -n "$ns" addr add "10.77.$i.2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done

mkdir -p bench/latency/results
out="bench/latency/results/$(date -u +%Y%m%dT%H%M%SZ)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out.txt"
target/debug/examples/latency --netns "$PREFIX" --bin-dir "$BIN_DIR" --json "$out.json" "${args[@]}" \
  | tee -a "$out.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out.txt"
echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- worker || echo ' (worker/ modified)'), binaries: $BIN_DIR" \
  | tee -a "$out.txt"
echo "written: $out.txt, $out.json" >&2
