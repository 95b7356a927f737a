#!/usr/bin/env bash
# N JAX processes on this machine, each with its own CPU devices: a pod in miniature, to try
# multi-host code paths without a cluster.
#   launch/local_multiprocess.sh 2 4 configs/synthetic.py WORKDIR [--config.key=value ...]
set -euo pipefail
procs=${1:?processes} devices=${2:?devices per process} config=${3:?config} workdir=${4:?workdir}
shift 4
port=$(.venv/bin/python -c "import portpicker; print(portpicker.pick_unused_port())")
pids=()
for ((i = 0; i < procs; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$devices" JAX_PLATFORMS=cpu \
    .venv/bin/python -m brppnet_jax.main --config="$config" --workdir="$workdir" \
    --coordinator_address="localhost:$port" --num_processes="$procs" --process_id="$i" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
