"""Share of each true person that the protected region leaves visible (`measure.margin`).

The library part of `python -m brppnet_jax.measure.margin`: its docstring says what is measured.
"""

from __future__ import annotations

import numpy as np

from brppnet_jax.data import transforms
from brppnet_jax.protect import hiding

VISIBLE_LIMIT = 0.05  # A person with more than this share visible counts as leaking.


def person_coverage(region: np.ndarray, person: np.ndarray) -> tuple[float, float]:
  """(share of the person outside region, background pixels in region / person pixels)."""
  size = max(1, int(np.count_nonzero(person)))
  visible = np.count_nonzero(person & ~region) / size
  extra = np.count_nonzero(region & ~person) / size
  return float(visible), float(extra)


def measure(predictor, source, margins, max_expressions: int) -> dict:
  """Per margin: mean visible share, share of people over VISIBLE_LIMIT, mean extra."""
  per_margin = {m: [] for m in margins}
  count = 0
  for index in range(len(source)):
    record = source[index]
    name = transforms.ref_name(record)
    rgb = transforms.decode_rgb(record["image"], name)
    person = transforms.decode_mask(record["mask"], name) > 0
    texts = transforms.sentences_of(record)
    if max_expressions:
      texts = texts[:max_expressions - count]
    for prob in predictor.predict_masks([rgb] * len(texts), texts):
      for m in margins:
        per_margin[m].append(person_coverage(hiding.dilate_mask(prob >= 0.5, m), person))
    count += len(texts)
    if max_expressions and count >= max_expressions:
      break
  out = {}
  for m, pairs in per_margin.items():
    visible, extra = np.asarray(pairs).T
    out[str(m)] = {"visible": float(visible.mean()),
                   "leaking": float(np.mean(visible > VISIBLE_LIMIT)),
                   "extra": float(extra.mean())}
  return {"expressions": count, "by_margin": out}
