"""Folders and lists: every photo of a folder for the same request(s), or (image, request) rows.

    python -m brppnet_jax.protect --workdir=DIR --input_dir=PHOTOS --out_dir=OUT --text=...
    python -m brppnet_jax.protect --workdir=DIR --requests=list.csv --out_dir=OUT

Output names are predictable: OUT/<path below the input folder, or the list file's folder>
with the extension of --format. Rows naming the same image are one photo with several
people. A bad photo or request (unreadable, missing, no known word, nothing protected,
output exists without --overwrite) does not stop the others: it is listed with its reason
at the end and in OUT/protect_report.json, and the exit status is non-zero. Photos go
through the network in the predictor's batches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from PIL import Image
import tqdm

from brppnet_jax.protect import hiding
from brppnet_jax.protect import people
from brppnet_jax.protect import photo as photo_lib
from brppnet_jax.protect import requests as requests_lib

REPORT_FILE = "protect_report.json"
FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


@dataclasses.dataclass
class Options:
  method: str
  threshold: float = hiding.MASK_THRESHOLD
  margin: float | None = None
  allow_empty: bool = False
  overwrite: bool = False
  keep_metadata: bool = False
  max_pixels: int = photo_lib.MAX_PIXELS


@dataclasses.dataclass
class Job:
  """One photo: its requests, where it goes, and how it ended."""
  image: str
  texts: list[str]
  out: str
  where: str
  status: str = "pending"  # "written" or "failed".
  reason: str = ""
  shares: list[float] = dataclasses.field(default_factory=list)


def image_files(input_dir: str, exclude: str | None = None) -> list[str]:
  """Files under `input_dir` with an image extension, sorted; `exclude` (a folder) skipped."""
  extensions = set(Image.registered_extensions())
  found = []
  for root, dirs, files in os.walk(input_dir):
    if exclude is not None:
      dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) != exclude]
    dirs.sort()
    found += [os.path.join(root, f) for f in sorted(files)
              if os.path.splitext(f)[1].lower() in extensions]
  return found


def folder_jobs(input_dir: str, texts: list[str], out_dir: str, extension: str) -> list[Job]:
  files = image_files(input_dir, exclude=os.path.realpath(out_dir))
  if not files:
    raise ValueError(f"--input_dir={input_dir} holds no image files")
  return _name_outputs([(f, list(texts), os.path.relpath(f, input_dir)) for f in files],
                       input_dir, out_dir, extension)


def list_jobs(rows: list[requests_lib.Row], base_dir: str, out_dir: str,
              extension: str) -> list[Job]:
  """Rows grouped by image (first appearance first): one job per photo, its rows' requests."""
  grouped: dict[str, tuple[list[str], list[str]]] = {}
  for row in rows:
    texts, wheres = grouped.setdefault(os.path.normpath(row.image), ([], []))
    texts.append(row.request)
    wheres.append(row.where)
  return _name_outputs([(image, texts, ", ".join(wheres))
                        for image, (texts, wheres) in grouped.items()],
                       base_dir, out_dir, extension)


def _name_outputs(items, base_dir: str, out_dir: str, extension: str) -> list[Job]:
  jobs, taken = [], {}
  for image, texts, where in items:
    relative = os.path.relpath(image, base_dir)
    if relative.startswith(os.pardir):
      relative = os.path.basename(image)
    out = os.path.join(out_dir, os.path.splitext(relative)[0] + "." + extension)
    job = Job(image, texts, out, where)
    if os.path.exists(image) and os.path.exists(out) and os.path.samefile(image, out):
      _fail(job, f"its output {out} would overwrite the input")
    elif out in taken:
      _fail(job, f"its output {out} is already that of {taken[out]}")
    taken.setdefault(out, image)
    jobs.append(job)
  return jobs


def _fail(job: Job, reason: str) -> None:
  job.status, job.reason = "failed", " ".join(str(reason).split())


def run(predictor, jobs: list[Job], options: Options, report_path: str) -> int:
  """Protects every job (in batches of the predictor's size); returns the exit status."""
  start = time.perf_counter()
  batch_pairs = max(1, int(getattr(predictor, "max_batch_size", 8)))
  pending = [j for j in jobs if j.status == "pending"]
  with tqdm.tqdm(total=len(pending), unit="photo", disable=None, file=sys.stderr) as bar:
    chunk = []
    for job in pending:
      chunk.append(job)
      if sum(len(j.texts) for j in chunk) >= batch_pairs:
        _run_chunk(predictor, chunk, options)
        bar.update(len(chunk))
        chunk = []
    if chunk:
      _run_chunk(predictor, chunk, options)
      bar.update(len(chunk))
  seconds = time.perf_counter() - start
  return _report(jobs, seconds, report_path)


def _run_chunk(predictor, chunk: list[Job], options: Options) -> None:
  ready = []  # (job, photo, unknown words per request)
  for job in chunk:
    try:
      unknown = people.check_requests(predictor, job.texts)
      if os.path.exists(job.out) and not options.overwrite:
        raise ValueError(f"{job.out} exists (use --overwrite to replace it)")
      ready.append((job, photo_lib.read_photo(job.image, options.max_pixels), unknown))
    except (OSError, ValueError) as e:
      _fail(job, e)
  if not ready:
    return
  probs = people.predict(predictor, [p.rgb for _, p, _ in ready], [j.texts for j, _, _ in ready])
  for (job, photo, unknown), job_probs in zip(ready, probs):
    try:
      result = people.hide(photo.rgb, job_probs, job.texts, unknown, method=options.method,
                           threshold=options.threshold, margin=options.margin)
      job.shares = [r.share for r in result.requests]
      if result.empty() and not options.allow_empty:
        raise ValueError(people.nothing_protected_message(result.empty(), options.threshold))
      os.makedirs(os.path.dirname(os.path.abspath(job.out)), exist_ok=True)
      photo_lib.write_image(job.out, result.rgb, photo, options.keep_metadata)
      job.status = "written"
    except (OSError, ValueError) as e:
      _fail(job, e)


def _report(jobs: list[Job], seconds: float, report_path: str) -> int:
  written = [j for j in jobs if j.status == "written"]
  failed = [j for j in jobs if j.status != "written"]
  rate = len(written) / seconds if seconds > 0 else 0.0
  report = {"written": len(written), "failed": len(failed), "seconds": round(seconds, 3),
            "photos_per_second": round(rate, 3),
            "photos": [dataclasses.asdict(j) for j in jobs]}
  os.makedirs(os.path.dirname(os.path.abspath(report_path)), exist_ok=True)
  with open(report_path, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1)
  print(f"wrote {len(written)} of {len(jobs)} photos in {seconds:.1f} s ({rate:.2f} photos/s); "
        f"report: {report_path}")
  for job in failed:
    print(f"failed: {job.image} ({job.where}): {job.reason}", file=sys.stderr)
  return 1 if failed else 0
