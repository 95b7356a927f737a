"""Referring expressions for synthetic people, each true of exactly one person in its scene.

A description names a shirt colour, a superlative (leftmost, rightmost, middle, tallest,
shortest, in front, in the back) or both. A superlative only counts when its person beats
the runner-up by a clear margin. With a colour, the superlative ranks the people wearing
that colour ("the man in red on the left" among two people in red); a colour worn by one
person only takes a superlative that also holds among everyone, so every reading is true.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses

import numpy as np

from brppnet_jax.data import records
from brppnet_jax.data.synthetic_scene import Person

NOUNS = ("person", "man", "woman", "guy", "lady")
_COLOURED = ("{noun} in {colour} shirt", "{noun} in the {colour} shirt",
             "{noun} wearing {colour}", "{colour} shirt {noun}")
# name: (attribute, +1 largest / -1 smallest, templates around the person phrase {x}).
_SUPERLATIVES = {
    "left": ("cx", -1, ("{x} on the left", "leftmost {x}", "{x} on the far left")),
    "right": ("cx", 1, ("{x} on the right", "rightmost {x}", "{x} on the far right")),
    "tallest": ("height", 1, ("tallest {x}", "biggest {x}")),
    "shortest": ("height", -1, ("shortest {x}", "smallest {x}")),
    "front": ("feet", 1, ("{x} in front", "closest {x}", "{x} nearest to us")),
    "back": ("feet", -1, ("{x} in the back", "farthest {x}", "{x} at the back")),
}
_MIDDLE = ("{x} in the middle", "middle {x}", "{x} in the center")
# Least gap to the runner-up, as a share of image width (cx), the taller
# person's height (height) or image height (feet).
_MARGINS = {"cx": 0.08, "height": 0.1, "feet": 0.06}


@dataclasses.dataclass(frozen=True)
class Description:
  colour: str | None
  superlative: str | None  # A key of _SUPERLATIVES, "middle" or None.


def _gap(attribute: str, a: Person, b: Person, size: tuple[int, int]) -> float:
  scale = {"cx": size[0], "height": max(a.height, b.height), "feet": size[1]}[attribute]
  return abs(getattr(a, attribute) - getattr(b, attribute)) / scale


def _extreme(group: Sequence[int], people: Sequence[Person], name: str,
             size: tuple[int, int]) -> int | None:
  """The index in `group` that is clearly the `name` superlative, if any."""
  if name == "middle":
    if len(group) != 3:
      return None
    ranked = sorted(group, key=lambda i: people[i].cx)
    lo, mid, hi = (people[i] for i in ranked)
    clear = min(_gap("cx", lo, mid, size), _gap("cx", mid, hi, size)) >= _MARGINS["cx"]
    return ranked[1] if clear else None
  attribute, sign, _ = _SUPERLATIVES[name]
  ranked = sorted(group, key=lambda i: -sign * getattr(people[i], attribute))
  first, second = people[ranked[0]], people[ranked[1]]
  return ranked[0] if _gap(attribute, first, second, size) >= _MARGINS[attribute] else None


def descriptions(people: Sequence[Person], size: tuple[int, int]) -> list[list[Description]]:
  """For each person, every description that is true of that person only."""
  everyone = range(len(people))
  names = list(_SUPERLATIVES) + ["middle"]
  overall = {}
  if len(people) >= 2:
    overall = {n: _extreme(everyone, people, n, size) for n in names}
  result = []
  for i, person in enumerate(people):
    same = [j for j in everyone if people[j].shirt == person.shirt]
    found = [Description(None, n) for n in names if overall.get(n) == i]
    if len(same) == 1:
      found.append(Description(person.shirt, None))
      found += [Description(person.shirt, d.superlative) for d in found[:-1]]
    else:
      found += [Description(person.shirt, n) for n in names
                if _extreme(same, people, n, size) == i]
    result.append(found)
  return result


def phrase(description: Description, rng: np.random.Generator) -> str:
  """One wording of `description`, with the RP-IPP prefix."""
  x = str(rng.choice(NOUNS))
  if description.colour is not None:
    x = str(rng.choice(_COLOURED)).format(noun=x, colour=description.colour)
  if description.superlative == "middle":
    x = str(rng.choice(_MIDDLE)).format(x=x)
  elif description.superlative is not None:
    x = str(rng.choice(_SUPERLATIVES[description.superlative][2])).format(x=x)
  article = "the " if rng.random() < 0.5 else ""
  return records.PREFIX + article + x


def expressions(found: Sequence[Description], rng: np.random.Generator) -> list[str]:
  """1 to 3 distinct expressions from the person's true descriptions."""
  count = min(int(rng.integers(1, 4)), len(found))
  chosen = rng.choice(len(found), size=count, replace=False)
  texts = []
  for i in sorted(chosen):
    text = phrase(found[i], rng)
    if text not in texts:
      texts.append(text)
  return texts
