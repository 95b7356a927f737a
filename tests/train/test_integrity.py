"""The reason a failed write gives, in words, from the storage library's real error (a full
disk: tests/train/test_faults_storage.py; a bucket that refuses writes: tests/runtime/
test_bucket.py)."""

import numpy as np
import pytest
import tensorstore as ts

from brppnet_jax.train import integrity

from conftest import free_port


def test_an_unreachable_bucket_is_named_so_without_the_libraries_spec(monkeypatch):
  monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", f"http://127.0.0.1:{free_port()}")
  monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "offline")
  spec = {"driver": "zarr", "kvstore": {"driver": "gcs", "bucket": "bucket", "path": "run/"},
          # Orbax's default retries for a minute or more; the error is the same after one.
          "context": {"gcs_request_retries": {"max_retries": 1, "initial_delay": "10ms",
                                              "max_delay": "20ms"}}}
  with pytest.raises(ValueError) as raised:
    ts.open(spec, create=True, dtype=ts.float32, shape=[4]).result().write(
        np.ones(4, np.float32)).result()
  assert "tensorstore_spec" in str(raised.value)  # What the user must not be shown.
  assert integrity.plain_reason(raised.value) == "storage unreachable"

