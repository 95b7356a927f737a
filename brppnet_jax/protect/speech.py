"""Offline speech input: a spoken request in a WAV file -> the text the network reads.

    transcriber = Transcriber(training_expressions)
    request = restore_prefix(transcriber("request.wav"))

Decoding uses pocketsphinx's English acoustic model with a bigram language model of the
training expressions (brppnet_jax/language_model.py) and a pronunciation dictionary cut down to
that model's words, so the decoder loads in milliseconds instead of seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
import difflib
import hashlib
import math
import os
import re
import tempfile
import wave

import numpy as np
import pocketsphinx
from scipy import signal

from brppnet_jax.protect.language_model import build_bigram_arpa

PREFIX = "protect privacy of "
SAMPLE_RATE = 16000  # What the acoustic model was trained on.
# Synthetic and gated audio has stretches of digital silence (exact zeros); on such audio the
# recogniser took the first and last words for silence ("protect" lost in 30 of 30 espeak-ng
# requests). Dither plus a -60 dBFS noise floor, about that of a quiet room and no louder than
# real recordings, fixed it.
NOISE_FLOOR_STD = 32768 * 10 ** (-60 / 20)
# Words of a transcript searched for the mangled prefix, and how close (difflib ratio) they must
# be to it to be replaced.
_PREFIX_SEARCH_WORDS = 5
_PREFIX_MIN_SIMILARITY = 0.45
_DICTIONARY = pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
_ALTERNATIVE = re.compile(r"\(\d+\)$")  # "the(2)": second pronunciation of "the".


def load_wav(path: str | os.PathLike) -> np.ndarray:
  """Reads a 16-bit PCM WAV file as mono int16 samples at 16 kHz.

  Any sample rate and channel count: channels are averaged, then resampled with a polyphase
  filter. Raises FileNotFoundError if `path` is missing and ValueError("unsupported audio: ...")
  for anything else that is not non-empty 16-bit PCM WAV.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"audio file not found: {path}")
  try:
    with wave.open(os.fspath(path), "rb") as f:
      channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
      data = f.readframes(f.getnframes())
  except (wave.Error, EOFError) as e:
    raise ValueError(f"unsupported audio: {path} is not a PCM WAV file ({e})") from None
  if width != 2:
    raise ValueError(f"unsupported audio: {path} has {8 * width}-bit samples; "
                     "only 16-bit PCM WAV is supported")
  samples = np.frombuffer(data[:len(data) // (2 * channels) * 2 * channels], "<i2")
  if samples.size == 0:
    raise ValueError(f"unsupported audio: {path} has no samples")
  mono = samples.reshape(-1, channels).astype(np.float64).mean(axis=1)
  common = math.gcd(rate, SAMPLE_RATE)
  return _to_int16(signal.resample_poly(mono, SAMPLE_RATE // common, rate // common))


def _to_int16(samples: np.ndarray) -> np.ndarray:
  return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


def read_dictionary(path: str = _DICTIONARY) -> dict[str, list[str]]:
  """Pronunciation dictionary lines ("word PH ON ES") grouped by word, alternatives included."""
  entries = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        word = _ALTERNATIVE.sub("", line.split(maxsplit=1)[0])
        entries.setdefault(word, []).append(line.rstrip("\n") + "\n")
  return entries


def build_model_files(sentences: Iterable[str], cache_dir: str | os.PathLike | None = None
                      ) -> tuple[str, str]:
  """Writes (once) the language model and its dictionary; returns (arpa_path, dict_path).

  Files are named by a hash of the sentences, so a changed training set gets new files and an
  unchanged one is reused. The default cache is a folder in the system temp dir.
  """
  sentences = list(sentences)
  digest = hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()[:16]
  cache_dir = os.fspath(cache_dir or os.path.join(tempfile.gettempdir(), "brppnet_speech"))
  arpa_path = os.path.join(cache_dir, f"{digest}.arpa")
  dict_path = os.path.join(cache_dir, f"{digest}.dict")
  if os.path.isfile(arpa_path) and os.path.isfile(dict_path):
    return arpa_path, dict_path
  os.makedirs(cache_dir, exist_ok=True)
  pronunciations = read_dictionary()
  arpa = build_bigram_arpa(sentences, known_words=pronunciations)
  words = sorted(set(arpa.split()) & pronunciations.keys())
  _write_atomically(dict_path, "".join(line for w in words for line in pronunciations[w]))
  _write_atomically(arpa_path, arpa)
  return arpa_path, dict_path


def _write_atomically(path: str, text: str) -> None:
  """Writes via a private temp file, so concurrent builders never see half a file."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


class Transcriber:
  """Recognises spoken requests with a language model of the given training expressions."""

  def __init__(self, sentences: Iterable[str], cache_dir: str | os.PathLike | None = None):
    self.lm_path, self.dict_path = build_model_files(sentences, cache_dir)
    self._decoder = pocketsphinx.Decoder(lm=self.lm_path, dict=self.dict_path, dither=True,
                                         loglevel="ERROR")

  def __call__(self, wav_path: str | os.PathLike) -> str:
    """Returns the words heard in `wav_path`, lower-case and space-separated."""
    samples = load_wav(wav_path).astype(np.float64)
    noise = np.random.default_rng(0).normal(0.0, NOISE_FLOOR_STD, samples.shape)
    self._decoder.start_utt()
    self._decoder.process_raw(_to_int16(samples + noise).tobytes(), full_utt=True)
    self._decoder.end_utt()
    hypothesis = self._decoder.hyp()
    if hypothesis is None or not hypothesis.hypstr.strip():
      raise ValueError(f"no speech recognised in {wav_path}")
    return hypothesis.hypstr


def transcribe(wav_path: str | os.PathLike, sentences: Iterable[str],
               cache_dir: str | os.PathLike | None = None) -> str:
  """One-off `Transcriber(sentences, cache_dir)(wav_path)`."""
  return Transcriber(sentences, cache_dir)(wav_path)


def restore_prefix(transcript: str) -> str:
  """Replaces whatever the recogniser heard for "protect privacy of " with the exact prefix.

  Of the first few words, the leading run that reads most like the prefix, letter for letter
  ("a privacy on", "the privacy of", "privacy"), is cut if it is similar enough; the prefix is
  then put in front. Text that already starts with the prefix comes back unchanged.
  """
  words = transcript.split()
  target = PREFIX.strip()
  best_cut, best_similarity = 0, _PREFIX_MIN_SIMILARITY
  for cut in range(1, min(len(words), _PREFIX_SEARCH_WORDS) + 1):
    heard = " ".join(words[:cut]).lower()
    similarity = difflib.SequenceMatcher(None, heard, target).ratio()
    if similarity > best_similarity:
      best_cut, best_similarity = cut, similarity
  return (PREFIX + " ".join(words[best_cut:])).rstrip()
