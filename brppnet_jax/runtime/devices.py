"""What JAX runs on here: backend, devices, processes; and a clear warning when the machine
has an accelerator that the installed jax cannot use (the CPU build on a GPU or TPU host).

    python -m brppnet_jax.runtime.devices        # or `make devices`

Training calls `warn_if_accelerator_unused()` at start, so a pod that was set up with the
CPU build says so in its first lines instead of training slowly on the hosts' CPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import glob
import os
import platform
import resource
import shutil
import sys

from absl import app

# Set on Cloud TPU VMs (by the VM image or the TPU runtime); any one means TPUs are attached.
TPU_ENV_VARS = ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "TPU_NAME", "TPU_WORKER_ID",
                "CLOUD_TPU_TASK_ID")
SETUP_COMMAND = {"gpu": "make setup ACCEL=cuda", "tpu": "make setup ACCEL=tpu"}


def visible_accelerators(environ: Mapping[str, str] | None = None,
                         glob_fn: Callable[[str], list[str]] = glob.glob,
                         which: Callable[[str], str | None] = shutil.which) -> dict[str, str]:
  """Accelerators the machine shows, whatever jax sees: {"gpu"|"tpu": the evidence}."""
  environ = os.environ if environ is None else environ
  found = {}
  nvidia = glob_fn("/dev/nvidia[0-9]*")
  if nvidia:
    found["gpu"] = f"{len(nvidia)} NVIDIA device file(s) ({', '.join(sorted(nvidia)[:4])})"
  elif which("nvidia-smi"):
    found["gpu"] = "nvidia-smi is installed"
  tpu_vars = [name for name in TPU_ENV_VARS if environ.get(name)]
  if tpu_vars:
    found["tpu"] = f"environment {', '.join(tpu_vars)}"
  elif glob_fn("/dev/accel[0-9]*") or glob_fn("/dev/vfio/[0-9]*"):
    found["tpu"] = "TPU device files (/dev/accel* or /dev/vfio/*)"
  return found


def unused_accelerator_warnings(backend: str, accelerators: Mapping[str, str]) -> list[str]:
  """One line per accelerator that is there while jax runs on `backend` (e.g. "cpu")."""
  lines = []
  for kind, evidence in accelerators.items():
    if backend != kind:
      lines.append(f"WARNING: this machine has a {kind.upper()} ({evidence}) but jax runs on "
                   f"'{backend}': the installed jax cannot use it. Run `{SETUP_COMMAND[kind]}`.")
  return lines


def warn_if_accelerator_unused() -> list[str]:
  """Logs (and returns) the warnings for this machine; call after jax is initialised."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  lines = unused_accelerator_warnings(jax.default_backend(), visible_accelerators())
  for line in lines:
    logging.warning("%s", line)
  return lines


def describe() -> list[str]:
  """Backend, jax version, processes and every device, one per line."""
  import jax  # pylint: disable=g-import-not-at-top
  lines = [f"jax {jax.__version__}, backend {jax.default_backend()}",
           f"process {jax.process_index()} of {jax.process_count()}; "
           f"{jax.local_device_count()} local of {jax.device_count()} devices"]
  for device in jax.local_devices():
    lines.append(f"  {device.id}: {device.device_kind} ({device.platform})")
  return lines


def cpu_model() -> str:
  """The processor's name as /proc/cpuinfo gives it (platform's guess elsewhere)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()


def machine() -> dict:
  """What a measurement ran on, for its JSON record: enough to tell a 2-core CPU from a pod."""
  import jax  # pylint: disable=g-import-not-at-top
  return {"host": platform.node(), "processor": cpu_model(), "cpus": os.cpu_count(),
          "jax": jax.__version__,
          "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}


def peak_memory_gb() -> float:
  """Peak memory of the first local device; on the CPU, the process's peak resident size."""
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**30
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux.


def main(argv) -> None:
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  print("\n".join(describe()))
  for line in unused_accelerator_warnings(jax.default_backend(), visible_accelerators()):
    print(line, file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
