"""`python -m brppnet_jax.runtime.devices`: what jax runs on, and a warning for an unused
accelerator."""

import os
import subprocess

from brppnet_jax.runtime import devices

from conftest import PYTHON


def no_files(pattern):
  del pattern
  return []


def test_gpu_is_seen_from_device_files_or_nvidia_smi():
  files = lambda pattern: ["/dev/nvidia0", "/dev/nvidia1"] if "nvidia" in pattern else []
  found = devices.visible_accelerators({}, glob_fn=files, which=lambda name: None)
  assert list(found) == ["gpu"] and "2 NVIDIA device file(s)" in found["gpu"]
  found = devices.visible_accelerators({}, glob_fn=no_files, which=lambda name: "/usr/bin/" + name)
  assert found == {"gpu": "nvidia-smi is installed"}


def test_tpu_is_seen_from_its_environment_or_device_files():
  found = devices.visible_accelerators({"TPU_ACCELERATOR_TYPE": "v4-8"}, glob_fn=no_files,
                                       which=lambda name: None)
  assert found == {"tpu": "environment TPU_ACCELERATOR_TYPE"}
  files = lambda pattern: ["/dev/accel0"] if "accel" in pattern else []
  assert list(devices.visible_accelerators({}, glob_fn=files, which=lambda name: None)) == ["tpu"]
  assert devices.visible_accelerators({}, glob_fn=no_files, which=lambda name: None) == {}


def test_warns_only_when_jax_does_not_run_on_the_accelerator():
  gpu = {"gpu": "nvidia-smi is installed"}
  [line] = devices.unused_accelerator_warnings("cpu", gpu)
  assert "GPU" in line and "'cpu'" in line and "make setup ACCEL=cuda" in line
  assert devices.unused_accelerator_warnings("gpu", gpu) == []
  [line] = devices.unused_accelerator_warnings("cpu", {"tpu": "environment TPU_NAME"})
  assert "make setup ACCEL=tpu" in line
  assert devices.unused_accelerator_warnings("cpu", {}) == []


def test_module_runs_from_any_directory_and_reports_the_cpu_build_on_a_tpu_host(tmp_path):
  env = {**os.environ, "TPU_ACCELERATOR_TYPE": "v4-8", "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "TF_CPP_MIN_LOG_LEVEL": "2"}
  proc = subprocess.run([PYTHON, "-m", "brppnet_jax.runtime.devices"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300, check=True)
  lines = proc.stdout.splitlines()
  assert "backend cpu" in lines[0]
  assert lines[1] == "process 0 of 1; 8 local of 8 devices"
  assert len(lines) == 2 + 8 and all("(cpu)" in line for line in lines[2:])
  warnings = [l for l in proc.stderr.splitlines()
              if l.startswith("WARNING: this machine has a TPU")]
  assert len(warnings) == 1 and "make setup ACCEL=tpu" in warnings[0], proc.stderr
