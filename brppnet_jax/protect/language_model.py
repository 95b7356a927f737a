"""Backoff bigram language model in ARPA text, built from the training expressions.

The recogniser's stock model knows general English; the requests it hears are drawn from a tiny
domain ("protect privacy of man in blue shirt ..."), so a bigram model of the expressions the
network was trained on steers it to words the network understands.

Smoothing is interpolated absolute discounting, written as an ARPA backoff model:

    P(w | h) = max(c(h, w) - D, 0) / c(h) + lambda(h) * P1(w),
    lambda(h) = D * N1+(h .) / c(h),

where P1 is the maximum-likelihood unigram distribution. Seen bigrams list the full interpolated
P(w | h), and the backoff weight of h is lambda(h), so P(. | h) sums to 1 exactly.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable
import math
import string

from brppnet_jax.data.vocab import split_words

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
# log10 probability ARPA files use for "never": the sentence start is never predicted.
_LOG10_ZERO = -99.0


def lm_tokens(sentence: str, known_words: Collection[str] | None = None) -> list[str]:
  """The words of `sentence` the language model counts.

  Tokens made only of punctuation ("," "-" "&") are dropped: nobody says them. With
  `known_words`, other words outside it become `<unk>`: the recogniser cannot produce them, but
  keeping a placeholder stops the model from inventing bigrams across the gap.
  """
  words = [w for w in split_words(sentence) if w.strip(string.punctuation)]
  if known_words is not None:
    words = [w if w in known_words else UNK for w in words]
  return words


def default_discount(bigram_counts: collections.Counter) -> float:
  """Ney's estimate n1 / (n1 + 2 n2) from counts-of-counts, 0.5 when it is undefined."""
  counts_of_counts = collections.Counter(bigram_counts.values())
  n1, n2 = counts_of_counts[1], counts_of_counts[2]
  if n1 == 0 or n2 == 0:
    return 0.5
  return n1 / (n1 + 2 * n2)


def build_bigram_arpa(sentences: Iterable[str], known_words: Collection[str] | None = None,
                      discount: float | None = None) -> str:
  """Returns the ARPA text of a backoff bigram model of `sentences`.

  Args:
    sentences: training expressions; lower-cased and split as the vocabulary does.
    known_words: the recogniser's dictionary; other words are counted as `<unk>`.
    discount: absolute discount D in (0, 1); by default Ney's estimate from the counts.
  """
  unigram_counts = collections.Counter()
  bigram_counts = collections.Counter()
  for sentence in sentences:
    words = [BOS] + lm_tokens(sentence, known_words) + [EOS]
    if len(words) == 2:
      continue
    unigram_counts.update(words[1:])  # <s> is never predicted.
    bigram_counts.update(zip(words[:-1], words[1:]))
  if not bigram_counts:
    raise ValueError("cannot build a language model: no sentence has a word")
  if discount is None:
    discount = default_discount(bigram_counts)
  if not 0.0 < discount < 1.0:
    raise ValueError(f"absolute discount must lie in (0, 1), got {discount}")

  total = sum(unigram_counts.values())
  unigram_prob = {w: n / total for w, n in unigram_counts.items()}
  context_counts = collections.Counter()
  followers = collections.Counter()
  for (history, _), n in bigram_counts.items():
    context_counts[history] += n
    followers[history] += 1
  backoff = {h: discount * followers[h] / context_counts[h] for h in context_counts}

  words = sorted(unigram_counts) + [BOS]
  lines = ["\\data\\", f"ngram 1={len(words)}", f"ngram 2={len(bigram_counts)}", "",
           "\\1-grams:"]
  for w in words:
    log_prob = math.log10(unigram_prob[w]) if w in unigram_prob else _LOG10_ZERO
    if w in backoff:
      lines.append(f"{log_prob:.6f} {w} {math.log10(backoff[w]):.6f}")
    else:
      lines.append(f"{log_prob:.6f} {w}")
  lines += ["", "\\2-grams:"]
  for history, w in sorted(bigram_counts):
    prob = ((bigram_counts[history, w] - discount) / context_counts[history]
            + backoff[history] * unigram_prob[w])
    lines.append(f"{math.log10(prob):.6f} {history} {w}")
  lines += ["", "\\end\\", ""]
  return "\n".join(lines)
