"""The web app: a page on 127.0.0.1:7860 to hide people in a photo, and the same as an API.

    python -m brppnet_jax.protect.app --workdir=DIR [--host=127.0.0.1] [--port=7860]
    python -m brppnet_jax.protect.app --model=FILE.tflite

Offline by design: no analytics, no share link, nothing fetched from outside this machine.
Gradio's temporary files go to a private folder that is removed when the server stops;
uploads are deleted once read (or, if never submitted, after --forget_after_s), results are
sent inside the response. A workdir without a checkpoint fails at start with one line.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile

from absl import app
from absl import flags

from brppnet_jax.protect import network
from brppnet_jax.protect import photo
from brppnet_jax.runtime import cli

FLAGS = flags.FLAGS
network.define_network_flags(exported=True)
flags.adopt_module_key_flags(network)
flags.DEFINE_string("host", "127.0.0.1", "Address to serve on (0.0.0.0: every interface).")
flags.DEFINE_integer("port", 7860, "Port to serve on.")
flags.DEFINE_integer("max_pixels", photo.MAX_PIXELS, "Larger photos are refused before "
                     "decoding (decompression bombs).")
flags.DEFINE_integer("forget_after_s", 120, "An upload never submitted is deleted, and a "
                     "tab's decoded photo forgotten, after this many seconds.")
flags.DEFINE_string("temp_dir", None, "Where the private temporary folder goes (default: the "
                    "system's).")

MAX_FILE_SIZE = "50mb"  # Uploads over this are refused by the server before they are stored.


def _private_dir() -> str:
  """A fresh folder only this user can read, removed at exit."""
  folder = tempfile.mkdtemp(prefix="brppnet-app-", dir=FLAGS.temp_dir)
  atexit.register(shutil.rmtree, folder, ignore_errors=True)
  # `kill` (SIGTERM) ends the server like Ctrl-C, so the folder is removed then too.
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  return folder


def serve() -> None:
  predictor = network.open_predictor(FLAGS.workdir, FLAGS.model, FLAGS.step)
  folder = _private_dir()
  # Before Gradio is imported: it reads these once.
  os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
  os.environ["GRADIO_TEMP_DIR"] = os.path.join(folder, "gradio")
  from brppnet_jax.protect import app_service  # pylint: disable=g-import-not-at-top
  from brppnet_jax.protect import app_ui  # pylint: disable=g-import-not-at-top  (Gradio)
  service = app_service.Service(predictor, FLAGS.max_pixels,
                                cache_dir=os.path.join(folder, "speech"))
  page = app_ui.build(service, FLAGS.forget_after_s)
  print(network.description(predictor), flush=True)
  page.queue(default_concurrency_limit=2).launch(
      server_name=FLAGS.host, server_port=FLAGS.port, share=False, show_error=False,
      max_file_size=MAX_FILE_SIZE, quiet=False, footer_links=["api"])


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  with cli.one_line_errors(OSError, log=False):
    network.check_source(FLAGS.workdir, FLAGS.model)
    serve()


if __name__ == "__main__":
  app.run(main)
