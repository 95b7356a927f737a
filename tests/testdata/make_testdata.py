"""Writes tests/testdata/rpcoco: a tiny manual dir in the released RPCOCO layout.

    .venv/bin/python tests/testdata/make_testdata.py

rpcocom: 3 train refs on 2 images, 2 testA refs on 1 image (drawn rectangles, 40x30 and
36x28 JPEGs); synthetic: 2 train and 2 test scenes from the generator, seed 0.
"""

import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from brppnet_jax.data import records  # pylint: disable=g-import-not-at-top
from brppnet_jax.data import synthetic  # pylint: disable=g-import-not-at-top

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rpcoco")
# image id: (width, height, [(segment_id, box, sentences)]).
SCENES = {
    "train": {
        581282: (40, 30, [(45, (2, 5, 14, 28), ["guy holding purp umbrella in corner near us",
                                                 "black shirt person holding umbrella"]),
                          (46, (20, 3, 35, 29), ["woman on right"])]),
        581283: (36, 28, [(47, (10, 4, 25, 26), ["man in white"])]),
    },
    "testA": {
        581300: (40, 30, [(101, (0, 0, 12, 30), ["left person", "person on the far left",
                                                  "guy in red"]),
                          (102, (26, 6, 40, 30), ["right guy"])]),
    },
}


def main():
  shutil.rmtree(ROOT, ignore_errors=True)
  for sub in ("anns/rpcocom", "masks/rpcocom", records.IMAGES_DIR):
    os.makedirs(os.path.join(ROOT, sub))
  rng = np.random.default_rng(0)
  sent_id = 1000
  for split, images in SCENES.items():
    entries = []
    for image_id, (w, h, people) in images.items():
      name = f"COCO_train2014_{image_id:012d}.jpg"
      pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
      for segment_id, (x0, y0, x1, y1), texts in people:
        pixels[y0:y1, x0:x1] = (200, 30, 30)
        mask = np.zeros((h, w), np.uint8)
        mask[y0:y1, x0:x1] = 255
        Image.fromarray(mask).save(os.path.join(ROOT, f"masks/rpcocom/{segment_id}.png"))
        sentences = []
        for idx, text in enumerate(texts):
          sentences.append({"idx": idx, "sent_id": sent_id, "sent": records.PREFIX + text})
          sent_id += 1
        entries.append({"bbox": [x0, y0, x1, y1], "cat": 0, "segment_id": segment_id,
                        "img_name": name, "sentences": sentences,
                        "sentences_num": len(sentences)})
      Image.fromarray(pixels).save(os.path.join(ROOT, records.IMAGES_DIR, name), quality=90)
    with open(os.path.join(ROOT, f"anns/rpcocom/{split}.json"), "w") as f:
      json.dump(entries, f)
  print(synthetic.generate(ROOT, seed=0, num_train=2, num_test=2))


if __name__ == "__main__":
  main()
