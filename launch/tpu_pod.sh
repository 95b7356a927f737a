#!/usr/bin/env bash
# Trains on every host of a Cloud TPU VM pod slice at once.
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.key=value ...]
# WORKDIR and config.dataset.data_dir must be on storage all hosts share (e.g. gs://...); the
# hosts' service account needs read/write access to it.
# The repository must already be checked out at ~/brppnet_jax on every host. Each host runs
# `make setup ACCEL=tpu` (jax with libtpu; a no-op once done), prints what jax sees (a
# warning if the TPUs are not usable) and joins the run; a preempted slice stops all hosts at
# one step with a checkpoint, and the same command resumes it.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.key=value ...]" >&2
  exit 2
fi
tpu=$1 zone=$2 config=$3 workdir=$4
shift 4
printf -v extra ' %q' "$@"
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/brppnet_jax && make setup ACCEL=tpu && .venv/bin/python -m brppnet_jax.runtime.devices && \
.venv/bin/python -m brppnet_jax.main --config=$config --workdir=$workdir --config.distributed=True$extra"
