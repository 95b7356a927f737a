"""Tests for the offline speech path: bigram ARPA model, WAV loading, recognition, prefix."""

import itertools
import math
import wave

import numpy as np
import pocketsphinx
import pytest
from scipy import signal

from brppnet_jax.protect import language_model
from brppnet_jax.protect import speech

import espeak_voice

COLOURS = ("red", "blue", "green", "white", "black", "yellow")
POSITIONS = ("left", "right", "middle")
PEOPLE = ("man", "woman", "guy", "girl", "person")
CLOTHES = ("shirt", "jacket")
TEMPLATES = (
    "protect privacy of the {who} on the {where} in the {colour} {clothes}",
    "protect privacy of {who} in {colour} {clothes} on {where}",
    "protect privacy of {where} {who} wearing {colour} {clothes}",
)
REQUESTS = (
    "protect privacy of the man on the left in the red shirt",
    "protect privacy of woman in blue jacket on right",
    "protect privacy of middle guy wearing green shirt",
    "protect privacy of the girl on the right in the yellow jacket",
    "protect privacy of left person wearing black jacket",
)
# log10 of pocketsphinx's logmath base (1.0001): its scores are in these units.
_LOGMATH_LOG10 = math.log10(1.0001)


def training_expressions():
  """180 RefCOCO-style person expressions: every combination, one template each, in turn."""
  combos = itertools.product(COLOURS, POSITIONS, PEOPLE, CLOTHES)
  return [TEMPLATES[i % len(TEMPLATES)].format(colour=c, where=p, who=w, clothes=k)
          for i, (c, p, w, k) in enumerate(combos)] + list(REQUESTS)


def parse_arpa(text):
  """Returns ({word: (log10 p, log10 backoff)}, {(history, word): log10 p})."""
  unigrams, bigrams, section = {}, {}, None
  for line in text.splitlines():
    if line.startswith("\\"):
      section = line
    elif line.strip() and section == "\\1-grams:":
      fields = line.split()
      unigrams[fields[1]] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    elif line.strip() and section == "\\2-grams:":
      log_prob, history, word = line.split()
      bigrams[history, word] = float(log_prob)
  return unigrams, bigrams


def conditional(unigrams, bigrams, history, word):
  """P(word | history) of a backoff bigram model."""
  if (history, word) in bigrams:
    return 10 ** bigrams[history, word]
  return 10 ** (unigrams[history][1] + unigrams[word][0])


def write_wav(path, samples, rate, width=2):
  samples = np.asarray(samples)
  with wave.open(str(path), "wb") as f:
    f.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
    f.setsampwidth(width)
    f.setframerate(rate)
    f.writeframes(samples.tobytes())


# Language model.


def test_arpa_contexts_sum_to_one():
  arpa = language_model.build_bigram_arpa(training_expressions())
  unigrams, bigrams = parse_arpa(arpa)
  header = dict(line.split("=") for line in arpa.splitlines() if line.startswith("ngram "))
  assert header == {"ngram 1": str(len(unigrams)), "ngram 2": str(len(bigrams))}
  predicted = [w for w in unigrams if w != language_model.BOS]
  assert unigrams[language_model.BOS][0] == -99.0
  for history in unigrams:
    total = sum(conditional(unigrams, bigrams, history, w) for w in predicted)
    assert total == pytest.approx(1.0, abs=1e-4), history


def test_arpa_unigrams_are_relative_frequencies():
  arpa = language_model.build_bigram_arpa(["Red man", "red woman"])
  unigrams, bigrams = parse_arpa(arpa)
  # 6 predicted tokens: red x2, man, woman, </s> x2.
  assert 10 ** unigrams["red"][0] == pytest.approx(2 / 6, rel=1e-5)
  assert 10 ** unigrams["</s>"][0] == pytest.approx(2 / 6, rel=1e-5)
  # "<s> red" is the only continuation of <s>: all but the backoff share goes to it.
  assert conditional(unigrams, bigrams, "<s>", "red") > 0.5
  assert conditional(unigrams, bigrams, "<s>", "man") < conditional(unigrams, bigrams, "red", "man")


def test_pocketsphinx_reads_the_same_model(tmp_path):
  arpa = language_model.build_bigram_arpa(training_expressions())
  unigrams, bigrams = parse_arpa(arpa)
  path = tmp_path / "lm.arpa"
  path.write_text(arpa)
  model = pocketsphinx.NGramModel.readfile(str(path))
  for history, word in [("<s>", "protect"), ("of", "middle"), ("red", "jacket"),
                        ("red", "man"), ("jacket", "</s>"), ("<s>", "girl")]:
    ours = math.log10(conditional(unigrams, bigrams, history, word))
    theirs = model.prob([word, history]) * _LOGMATH_LOG10  # Most recent word first.
    assert theirs == pytest.approx(ours, abs=1e-3), (history, word)


def test_oov_words_become_unk_and_punctuation_is_dropped():
  tokens = language_model.lm_tokens("Man , in purp shirt - left", known_words={"man", "in", "shirt",
                                                                             "left"})
  assert tokens == ["man", "in", "<unk>", "shirt", "left"]
  arpa = language_model.build_bigram_arpa(["man in purp shirt"], known_words={"man", "in", "shirt"})
  unigrams, bigrams = parse_arpa(arpa)
  assert "purp" not in unigrams and "<unk>" in unigrams
  assert ("in", "shirt") not in bigrams  # No bigram invented across the unknown word.


def test_arpa_rejects_bad_input():
  with pytest.raises(ValueError, match="no sentence has a word"):
    language_model.build_bigram_arpa(["", " , "])
  with pytest.raises(ValueError, match="discount"):
    language_model.build_bigram_arpa(["red man"], discount=1.0)


# Prefix restoration.


@pytest.mark.parametrize("heard, expected_rest", [
    ("a privacy on the man on the left in the red shirt", "the man on the left in the red shirt"),
    ("privacy of the man on the left", "the man on the left"),
    ("the privacy of guy in blue shirt on left", "guy in blue shirt on left"),
    ("protect privacy the man in red", "the man in red"),
    ("perfect privacy of man", "man"),
    ("private see of woman in red", "woman in red"),
    ("protect privacy off left girl", "left girl"),
    ("Protect Privacy Of man in red", "man in red"),
    ("man on the left", "man on the left"),
    ("person in the middle", "person in the middle"),
])
def test_restore_prefix(heard, expected_rest):
  restored = speech.restore_prefix(heard)
  assert restored == speech.PREFIX + expected_rest
  assert speech.restore_prefix(restored) == restored


# Audio loading.


def test_load_wav_downmixes_and_resamples(tmp_path):
  rate, seconds = 44100, 0.5
  t = np.arange(int(rate * seconds)) / rate
  tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
  write_wav(tmp_path / "stereo.wav", np.stack([tone, np.zeros_like(tone)], axis=1), rate)
  samples = speech.load_wav(tmp_path / "stereo.wav")
  assert samples.dtype == np.int16
  assert len(samples) == int(speech.SAMPLE_RATE * seconds)
  # Averaging a silent channel halves the amplitude; the pitch survives resampling.
  assert np.abs(samples[1000:-1000]).max() == pytest.approx(4000, rel=0.02)
  spectrum = np.abs(np.fft.rfft(samples))
  assert np.argmax(spectrum) * speech.SAMPLE_RATE / len(samples) == pytest.approx(440, abs=2)


def test_load_wav_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.wav"):
    speech.load_wav(tmp_path / "missing.wav")
  text = tmp_path / "notes.wav"
  text.write_text("protect privacy of the man on the left\n")
  with pytest.raises(ValueError, match=r"unsupported audio: .*notes\.wav is not a PCM WAV"):
    speech.load_wav(text)
  write_wav(tmp_path / "8bit.wav", np.full(1600, 128, np.uint8), 16000, width=1)
  with pytest.raises(ValueError, match=r"unsupported audio: .*8bit\.wav has 8-bit samples"):
    speech.load_wav(tmp_path / "8bit.wav")
  write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16), 16000)
  with pytest.raises(ValueError, match=r"unsupported audio: .*empty\.wav has no samples"):
    speech.load_wav(tmp_path / "empty.wav")
  # A float WAV (format 3) is a WAV, but not PCM.
  header = (b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + (3).to_bytes(2, "little") + (1).to_bytes(2, "little")
            + (16000).to_bytes(4, "little") + (64000).to_bytes(4, "little")
            + (4).to_bytes(2, "little") + (32).to_bytes(2, "little") + b"data" + bytes(4))
  (tmp_path / "float.wav").write_bytes(header)
  with pytest.raises(ValueError, match=r"unsupported audio: .*float\.wav is not a PCM WAV"):
    speech.load_wav(tmp_path / "float.wav")


def test_silence_is_not_a_request(tmp_path):
  write_wav(tmp_path / "silence.wav", np.zeros(16000, np.int16), 16000)
  transcriber = speech.Transcriber(training_expressions(), cache_dir=tmp_path)
  with pytest.raises(ValueError, match=r"no speech recognised in .*silence\.wav"):
    transcriber(tmp_path / "silence.wav")


def test_model_files_are_cached_by_content(tmp_path):
  first = speech.build_model_files(["protect privacy of man in red"], tmp_path)
  again = speech.build_model_files(["protect privacy of man in red"], tmp_path)
  other = speech.build_model_files(["protect privacy of girl in blue"], tmp_path)
  assert first == again and first != other
  with open(first[1]) as f:
    entries = [line.split() for line in f]
  assert sorted({fields[0] for fields in entries}) == ["in", "man", "of", "privacy", "protect",
                                                       "red"]
  assert ["privacy", "P", "R", "AY", "V", "AH", "S", "IY"] in entries


# Recognition of synthetic speech.


@pytest.fixture(scope="module")
def spoken_requests(tmp_path_factory):
  espeak_voice.require_espeak()
  folder = tmp_path_factory.mktemp("speech")
  paths = []
  for i, request in enumerate(REQUESTS):
    path = folder / f"request{i}.wav"
    espeak_voice.speak(request, path)
    paths.append(path)
  return paths


def word_errors(said: str, heard: str) -> int:
  """Word-level edit distance (substitutions + insertions + deletions)."""
  said, heard = said.split(), heard.split()
  row = list(range(len(heard) + 1))
  for i, word in enumerate(said, 1):
    diagonal, row[0] = row[0], i
    for j, other in enumerate(heard, 1):
      diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (word != other))
  return row[-1]


def test_word_errors_counts_edits():
  assert word_errors("a b c", "a b c") == 0
  assert word_errors("a b c", "a x c") == 1
  assert word_errors("a b c", "a c") == 1
  assert word_errors("a b c", "b c d e") == 3


def test_spoken_requests_are_recognised_word_for_word(spoken_requests, tmp_path):
  """espeak-ng (1.51, en-us, 120 wpm) + pocketsphinx gave every one of these five requests back
  word for word (0 errors in 49 words; measured 2026-11-27). Unseen synthetic expressions do
  worse (16 word errors in 302, mostly "leftmost"/"rightmost"), so these are the requests
  of the language model's text, as a user's request would be.
  """
  transcriber = speech.Transcriber(training_expressions(), cache_dir=tmp_path)
  heard = [speech.restore_prefix(transcriber(path)) for path in spoken_requests]
  errors = sum(word_errors(said, got) for said, got in zip(REQUESTS, heard))
  print(f"word errors: {errors} in {sum(len(r.split()) for r in REQUESTS)} words")
  assert [h.split() for h in heard] == [r.split() for r in REQUESTS]


def test_stereo_44k_request_is_recognised_alike(spoken_requests, tmp_path):
  with wave.open(str(spoken_requests[1])) as f:
    rate, mono = f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), np.int16)
  upsampled = signal.resample_poly(mono.astype(np.float64), 2, 1)
  upsampled = np.clip(np.round(upsampled), -32768, 32767).astype(np.int16)
  write_wav(tmp_path / "stereo.wav", np.stack([upsampled, upsampled], axis=1), 2 * rate)
  transcriber = speech.Transcriber(training_expressions(), cache_dir=tmp_path)
  heard = speech.restore_prefix(transcriber(tmp_path / "stereo.wav"))
  assert heard.split() == REQUESTS[1].split()
