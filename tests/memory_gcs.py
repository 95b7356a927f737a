"""An offline, in-memory `gs://` for tests, honoured by every library that touches the workdir.

One store (fsspec's in-memory filesystem) is reached two ways:
- etils `epath` (Orbax's metadata, our `paths`, JAX's compilation cache) through fsspec, with
  EPATH_USE_TF=false and `MemoryGcsFileSystem` registered for the gs/gcs protocols;
- TensorStore (Orbax's arrays) through its real GCS driver, pointed by TENSORSTORE_GCS_HTTP_URL
  at `serve()`, a small HTTP server that speaks the part of the GCS JSON API it uses (objects
  read with generations and byte ranges, conditional writes and deletes, prefix listings).

`install()` must run before TensorStore, Orbax or etils first touch a gs:// path.
TensorFlow's own GCS client (TensorBoard summaries) has no endpoint to point elsewhere.
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import threading
import urllib.parse

import fsspec
from fsspec.implementations import memory

_GENERATIONS = itertools.count(1)
_LOCK = threading.Lock()
# Keys under these prefixes answer writes and deletes with 403, as a bucket whose write
# permission was taken away mid-run.
DENIED_PREFIXES: list[str] = []


class MemoryGcsFileSystem(memory.MemoryFileSystem):
  """fsspec's in-memory filesystem under gs://bucket/... (keys "/bucket/...")."""
  protocol = ("gs", "gcs")

  @classmethod
  def _strip_protocol(cls, path):
    path = os.fspath(path)
    for prefix in ("gs://", "gcs://"):
      if path.startswith(prefix):
        path = path[len(prefix):]
    return "/" + path.strip("/") if path.strip("/") else ""


def _store() -> dict:
  return memory.MemoryFileSystem.store


def generation(key: str) -> int | None:
  """The object's generation, new for every new content (files are replaced, not changed)."""
  blob = _store().get(key)
  if blob is None:
    return None
  if getattr(blob, "gcs_generation", None) is None:
    blob.gcs_generation = next(_GENERATIONS)
  return blob.gcs_generation


def _put(key: str, data: bytes) -> int:
  blob = memory.MemoryFile(None, key, data)
  blob.gcs_generation = next(_GENERATIONS)
  _store()[key] = blob
  return blob.gcs_generation


def _resource(bucket: str, name: str) -> dict:
  key = f"/{bucket}/{name}"
  return {"kind": "storage#object", "bucket": bucket, "name": name,
          "size": str(len(_store()[key].getvalue())), "generation": str(generation(key)),
          "metageneration": "1"}


class _Handler(http.server.BaseHTTPRequestHandler):
  """The GCS JSON API calls that TensorStore's gcs driver makes."""
  protocol_version = "HTTP/1.1"

  def log_message(self, *args):  # Quiet unless MEMORY_GCS_LOG is set.
    if os.environ.get("MEMORY_GCS_LOG"):
      super().log_message(*args)

  def _reply(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
    self.send_response(code)
    for name, value in (headers or {}).items():
      self.send_header(name, value)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if body and self.command != "HEAD":
      self.wfile.write(body)

  def _json(self, code: int, value: dict) -> None:
    self._reply(code, json.dumps(value).encode(), {"Content-Type": "application/json"})

  def _parse(self):
    url = urllib.parse.urlsplit(self.path.removeprefix("/download"))
    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    parts = url.path.split("/")
    return parts, query

  def _denied(self, key: str) -> bool:
    if any(key.startswith(prefix) for prefix in DENIED_PREFIXES):
      self._json(403, {"error": {"code": 403, "message": f"no write permission for {key}"}})
      return True
    return False

  def _precondition_failed(self, key: str, query: dict) -> int | None:
    current = generation(key) or 0
    if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != current:
      return 412
    if "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == current:
      return 304
    return None

  def do_GET(self):  # pylint: disable=invalid-name
    parts, query = self._parse()
    # /storage/v1/b/{bucket}/o[/{object}]
    if len(parts) < 6 or parts[1:4] != ["storage", "v1", "b"] or parts[5] != "o":
      if len(parts) == 5 and parts[1:4] == ["storage", "v1", "b"]:
        return self._json(200, {"kind": "storage#bucket", "name": parts[4]})
      return self._json(404, {"error": {"code": 404, "message": self.path}})
    bucket = parts[4]
    if len(parts) == 6 or not parts[6]:
      return self._list(bucket, query)
    name = urllib.parse.unquote("/".join(parts[6:]))
    key = f"/{bucket}/{name}"
    with _LOCK:
      if key not in _store():
        return self._json(404, {"error": {"code": 404, "message": f"no {key}"}})
      failed = self._precondition_failed(key, query)
      if failed:
        return self._reply(failed)
      if query.get("alt") != "media":
        return self._json(200, _resource(bucket, name))
      data, gen = _store()[key].getvalue(), generation(key)
    headers = {"x-goog-generation": str(gen), "Content-Type": "application/octet-stream"}
    wanted = self.headers.get("Range")
    if wanted:
      first, _, last = wanted.removeprefix("bytes=").partition("-")
      start = int(first) if first else max(0, len(data) - int(last))
      end = int(last) + 1 if (first and last) else len(data)
      if start >= len(data) and len(data) > 0:
        return self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
      headers["Content-Range"] = f"bytes {start}-{max(start, end - 1)}/{len(data)}"
      return self._reply(206, data[start:end], headers)
    return self._reply(200, data, headers)

  def _list(self, bucket: str, query: dict) -> None:
    prefix = f"/{bucket}/"
    with _LOCK:
      names = sorted(k[len(prefix):] for k in _store() if k.startswith(prefix))
      want = query.get("prefix", "")
      names = [n for n in names if n.startswith(want)]
      if "startOffset" in query:
        names = [n for n in names if n >= query["startOffset"]]
      if query.get("endOffset"):
        names = [n for n in names if n < query["endOffset"]]
      items = [_resource(bucket, n) for n in names]
    return self._json(200, {"kind": "storage#objects", "items": items})

  def do_POST(self):  # pylint: disable=invalid-name
    parts, query = self._parse()
    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
    # /upload/storage/v1/b/{bucket}/o?uploadType=media&name=...
    if parts[1:5] != ["upload", "storage", "v1", "b"] or query.get("uploadType") != "media":
      return self._json(501, {"error": {"code": 501, "message": f"unsupported {self.path}"}})
    bucket, name = parts[5], query["name"]
    key = f"/{bucket}/{name}"
    if self._denied(key):
      return None
    with _LOCK:
      failed = self._precondition_failed(key, query)
      if failed:
        return self._reply(412)
      _put(key, body)
      resource = _resource(bucket, name)
    return self._json(200, resource)

  def do_DELETE(self):  # pylint: disable=invalid-name
    parts, query = self._parse()
    bucket, name = parts[4], urllib.parse.unquote("/".join(parts[6:]))
    key = f"/{bucket}/{name}"
    if self._denied(key):
      return None
    with _LOCK:
      if key not in _store():
        return self._reply(404)
      failed = self._precondition_failed(key, query)
      if failed:
        return self._reply(412)
      del _store()[key]
    return self._reply(204)


class _Server(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def handle_error(self, request, client_address):
    del request, client_address  # A client that hangs up mid-reply (ranged reads do) is fine.


def serve() -> str:
  """Starts the server on a free localhost port (daemon thread); returns its base URL."""
  server = _Server(("127.0.0.1", 0), _Handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return f"http://127.0.0.1:{server.server_address[1]}"


def install() -> str:
  """Routes gs:// of epath, fsspec and TensorStore to the in-memory store; returns the URL."""
  url = serve()
  os.environ["TENSORSTORE_GCS_HTTP_URL"] = url
  os.environ["GOOGLE_AUTH_TOKEN_FOR_TESTING"] = "offline"
  os.environ["EPATH_USE_TF"] = "false"
  os.environ["STORAGE_EMULATOR_HOST"] = url  # google-cloud-storage (Orbax asks for the bucket).
  os.environ["CLOUD_STORAGE_EMULATOR_ENDPOINT"] = url  # google-cloud-cpp in ArrayRecord.
  for protocol in ("gs", "gcs"):
    fsspec.register_implementation(protocol, MemoryGcsFileSystem, clobber=True)
  return url


def list_keys(prefix: str = "/") -> list[str]:
  return sorted(k for k in _store() if k.startswith(prefix))


def _copy_tree(local_dir: str, url: str) -> None:
  fs = fsspec.filesystem("gs")
  for root, _, files in os.walk(local_dir):
    for name in files:
      source = os.path.join(root, name)
      with open(source, "rb") as src, fs.open(f"{url}/{os.path.relpath(source, local_dir)}",
                                                "wb") as dst:
        dst.write(src.read())


def train_and_evaluate_in_bucket(local_data_dir: str, image: str, overrides: dict) -> dict:
  """configs/synthetic.py trained and evaluated with data, workdir, compilation cache and a
  photo all in gs://bucket; then trained on for two steps after the bucket stopped accepting
  the checkpoints' arrays. Returns what landed where, and the second run's error."""
  install()
  # pylint: disable=g-import-not-at-top  (after install: the libraries read its settings)
  from clu import metric_writers

  from brppnet_jax.evaluation import checkpoint
  from brppnet_jax.protect import predictor as predictor_lib
  from brppnet_jax.runtime import compilation_cache
  from brppnet_jax.runtime import paths
  from brppnet_jax.train import checkpoints
  from brppnet_jax.train import loop
  from brppnet_jax.train import writers
  from configs import synthetic
  _copy_tree(local_data_dir, "gs://bucket/tfds")
  _copy_tree(os.path.dirname(image), "gs://bucket/photos")
  config = synthetic.get_config()
  config.dataset.data_dir = "gs://bucket/tfds"
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  workdir = "gs://bucket/run"
  # TensorBoard files go through TensorFlow's GCS client, which cannot be pointed at this
  # server: keep the logdir it is given and log instead.
  summary_dirs = []

  def logging_summary_writer(logdir, **kwargs):
    del kwargs
    summary_dirs.append(os.fspath(logdir))
    return metric_writers.LoggingWriter()

  writers.metric_writers.SummaryWriter = logging_summary_writer
  compilation_cache.enable(config, workdir)
  loop.train_and_evaluate(config, workdir)
  evaluated = checkpoint.evaluate_checkpoint(config, workdir)
  predictor = predictor_lib.Predictor.from_workdir(workdir)
  photo_url = f"gs://bucket/photos/{os.path.basename(image)}"
  mask = predictor.predict_mask(photo_url, "protect privacy of man in red shirt")
  result = {"keys": list_keys(), "summary_dirs": list(summary_dirs),
            "eval_metrics": paths.read_lines(f"{workdir}/{loop.EVAL_METRICS_FILE}"),
            "eval_mode": paths.read_lines(f"{workdir}/{checkpoint.EVAL_MODE_FILE}"),
            "evaluated_step": evaluated["step"], "predictor_step": predictor.step,
            "mask_shape": list(mask.shape)}
  # Write permission lost: TensorStore's array writes are refused from now on.
  DENIED_PREFIXES.append("/bucket/run/checkpoints/")
  config.total_steps += config.checkpoint_every_steps
  try:
    loop.train_and_evaluate(config, workdir)
    result["denied_error"] = None
  except checkpoints.WriteError as e:
    result["denied_error"] = str(e)
  result["checkpoint_keys_after_denial"] = list_keys("/bucket/run/checkpoints/")
  return result


if __name__ == "__main__":
  # memory_gcs.py LOCAL_TFDS_DIR IMAGE OUT_JSON '{"total_steps": 4, ...}'
  import sys
  result = train_and_evaluate_in_bucket(sys.argv[1], sys.argv[2], json.loads(sys.argv[4]))
  with open(sys.argv[3], "w", encoding="utf-8") as out:
    json.dump(result, out)
