"""What a request names, for breaking evaluation results down (`analysis.breakdown`).

`synthetic` reads the synthetic twin's requests, whose words come from fixed templates
(data/synthetic_text.py): the shirt colour, the position or size superlative and the number of
people in the image. `rpcoco` reads free RefCOCO-style text with word lists: the length after
the prefix, and whether it names a location, a colour or an action. The lists are heuristics
written for RefCOCO's vocabulary: "wearing" counts as clothing, not as an action, and an
"-ing" word counts as an action unless it is a noun such as "building" or "clothing".
"""

from __future__ import annotations

from brppnet_jax.data import records
from brppnet_jax.data import synthetic_scene
from brppnet_jax.data import vocab

_PREFIX = tuple(records.PREFIX.split())
# Superlative group -> the words the synthetic templates use for it.
_SYNTHETIC_POSITION = {
    "left": {"left", "leftmost"}, "right": {"right", "rightmost"},
    "middle": {"middle", "center"}, "front": {"front", "closest", "nearest"},
    "back": {"back", "farthest"},
}
_SYNTHETIC_SIZE = {"tallest": {"tallest", "biggest"}, "shortest": {"shortest", "smallest"}}
_LENGTH_BUCKETS = ((1, 3), (4, 6), (7, 9))  # Words after the prefix; longer is "10+".

LOCATION_WORDS = frozenset("""
    left right leftmost rightmost middle center centre front back behind background foreground
    top bottom upper lower corner side edge near nearest closest far farthest furthest first
    second third last next beside between above below under over""".split())
COLOUR_WORDS = frozenset("""
    red blue green yellow white black gray grey brown pink purple orange tan beige navy maroon
    teal gold silver blond blonde""".split())
_ACTION_VERBS = frozenset("""
    holds sits stands walks runs eats drinks plays rides looks throws swings hits bends leans
    reaches carries kneels jumps talks cuts serves watches waits""".split())
_NOT_ACTIONS = frozenset("""
    wearing thing nothing something anything everything clothing building ceiling morning
    evening king ring wing string spring during railing icing frosting""".split())


def words_after_prefix(sentence: str) -> list[str]:
  """The request's words (lower case), without a leading "protect privacy of"."""
  words = vocab.split_words(sentence)
  return words[len(_PREFIX):] if tuple(words[:len(_PREFIX)]) == _PREFIX else words


def _group(words: set[str], groups: dict[str, set[str]]) -> str:
  found = [name for name, members in groups.items() if words & members]
  return "+".join(found) if found else "none"


def synthetic(sentence: str, num_people: int) -> dict[str, str]:
  """colour, position, size and people of a synthetic-twin request; "none" where unnamed."""
  words = set(words_after_prefix(sentence))
  colours = [c for c in synthetic_scene.SHIRT_COLOURS if c in words]
  return {"colour": "+".join(colours) if colours else "none",
          "position": _group(words, _SYNTHETIC_POSITION),
          "size": _group(words, _SYNTHETIC_SIZE),
          "people": str(num_people)}


def length_bucket(num_words: int) -> str:
  for low, high in _LENGTH_BUCKETS:
    if low <= num_words <= high:
      return f"{low}-{high}"
  return "0" if num_words < 1 else f"{_LENGTH_BUCKETS[-1][1] + 1}+"


def names_action(words: list[str]) -> bool:
  return any(w in _ACTION_VERBS or (w.endswith("ing") and len(w) > 4 and w not in _NOT_ACTIONS)
             for w in words)


def rpcoco(sentence: str) -> dict[str, str]:
  """length (words after the prefix), location, colour and action ("yes"/"no")."""
  words = words_after_prefix(sentence)
  yes_no = lambda flag: "yes" if flag else "no"
  return {"length": length_bucket(len(words)),
          "location": yes_no(any(w in LOCATION_WORDS for w in words)),
          "colour": yes_no(any(w in COLOUR_WORDS for w in words)),
          "action": yes_no(names_action(words))}


def for_dataset(name: str):
  """The aspects function `analysis.breakdown` takes for a dataset name (config.dataset.name)."""
  if name.split("/")[-1] == "synthetic":
    return lambda r: synthetic(r.sentence, r.num_people)
  return lambda r: rpcoco(r.sentence)
