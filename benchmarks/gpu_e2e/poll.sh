#!/usr/bin/env bash
# Watch the background jobs for up to $1 seconds (default 540); return early when a job failed or all ended.
# Prints each job's state and the last lines of its log, then GPU memory.
limit=${1:-540}; t0=$(date +%s)
while :; do
  failed=0; running=0
  for rc in /tmp/jobs/*.log; do n=${rc%.log}; [ -e "$n.rc" ] || running=$((running+1)); [ -e "$n.rc" ] && [ "$(cat $n.rc)" != 0 ] && failed=1; done
  [ $failed = 1 ] || [ $running = 0 ] || [ $(( $(date +%s) - t0 )) -ge "$limit" ] && break
  sleep 10
done
for log in /tmp/jobs/*.log; do
  n=${log%.log}; state=$( [ -e "$n.rc" ] && echo "rc=$(cat $n.rc)" || echo running )
  echo "=== $(basename $n) $state"
  grep -v "^\s*$" "$log" | grep -v "it/s\]\|s/it\]\|Warning\|warn(" | tail -${TAIL:-6} | cut -c1-300
done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
echo "polled $(( $(date +%s) - t0 )) s"
