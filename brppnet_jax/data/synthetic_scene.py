"""Scenes of the synthetic twin: 1 to 4 drawn people on a varied background.

A person is a head, a shirt (torso and arms) in one of `SHIRT_COLOURS`, and two legs.
People further back (feet higher up) are drawn first, so people in front occlude them.
`render` returns the RGB image and a label map (0 background, i + 1 person i visible),
from which each person's mask is exact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image
from PIL import ImageDraw

SHIRT_COLOURS = {
    "red": (210, 35, 35),
    "green": (40, 160, 60),
    "blue": (35, 75, 215),
    "yellow": (235, 215, 40),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
    "orange": (240, 130, 20),
    "purple": (130, 50, 165),
}
_TROUSERS = ((70, 70, 80), (95, 70, 45), (45, 55, 95), (150, 140, 110))
_SKIN = ((241, 194, 160), (224, 172, 105), (198, 134, 66), (141, 85, 36))
_HAIR = ((40, 30, 20), (90, 60, 30), (15, 15, 15), (200, 170, 90))
_PEOPLE_PER_SCENE = (0.1, 0.3, 0.3, 0.3)  # P(1), ..., P(4): most scenes need the text.
_SAME_COLOUR = 0.25  # Chance a person copies an earlier person's shirt colour.
_MIN_VISIBLE = 0.5  # Share of a person's pixels that must stay visible.


@dataclasses.dataclass(frozen=True)
class Person:
  cx: float  # Horizontal centre, pixels.
  feet: float  # y of the soles; larger is nearer the camera.
  height: float  # Pixels from the top of the head to the soles.
  build: float  # Width factor around 1.
  shirt: str  # A key of SHIRT_COLOURS.
  trousers: tuple[int, int, int]
  skin: tuple[int, int, int]
  hair: tuple[int, int, int]

  @property
  def width(self) -> float:
    return 0.4 * self.height * self.build


@dataclasses.dataclass(frozen=True)
class Scene:
  background: np.ndarray  # uint8 [H, W, 3].
  people: tuple[Person, ...]  # Back to front (drawing order).

  @property
  def size(self) -> tuple[int, int]:
    return self.background.shape[1], self.background.shape[0]


def _parts(p: Person) -> list[tuple[str, tuple[float, ...], tuple[int, int, int]]]:
  """(shape, box, colour) of each body part, back to front."""
  h, b, top = p.height, p.build, p.feet - p.height
  r = 0.085 * h
  torso_top, hip = top + 2 * r + 0.01 * h, p.feet - 0.45 * h
  half_torso, arm = 0.13 * h * b, 0.065 * h * b
  leg_out, leg_in = 0.12 * h * b, 0.012 * h
  shirt = SHIRT_COLOURS[p.shirt]
  return [
      ("rect", (p.cx - leg_out, hip - 0.02 * h, p.cx - leg_in, p.feet), p.trousers),
      ("rect", (p.cx + leg_in, hip - 0.02 * h, p.cx + leg_out, p.feet), p.trousers),
      ("rect", (p.cx - half_torso - arm, torso_top + 0.01 * h, p.cx - half_torso,
                hip + 0.03 * h), shirt),
      ("rect", (p.cx + half_torso, torso_top + 0.01 * h, p.cx + half_torso + arm,
                hip + 0.03 * h), shirt),
      ("rounded", (p.cx - half_torso, torso_top, p.cx + half_torso, hip), shirt),
      ("ellipse", (p.cx - r, top, p.cx + r, top + 2 * r), p.skin),
      ("chord", (p.cx - r, top, p.cx + r, top + 2 * r), p.hair),
  ]


def _draw(draw: ImageDraw.ImageDraw, person: Person, fill=None) -> None:
  for shape, box, colour in _parts(person):
    colour = colour if fill is None else fill
    if shape == "rect":
      draw.rectangle(box, fill=colour)
    elif shape == "rounded":
      draw.rounded_rectangle(box, radius=0.2 * (box[2] - box[0]), fill=colour)
    elif shape == "ellipse":
      draw.ellipse(box, fill=colour)
    else:  # Hair: the top of the head.
      draw.chord(box, 180, 360, fill=colour)


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
  """The RGB image (uint8 [H, W, 3]) and label map (uint8 [H, W], i + 1 = person i)."""
  image = Image.fromarray(scene.background)
  draw = ImageDraw.Draw(image)
  for person in scene.people:
    _draw(draw, person)
  return np.asarray(image), render_labels(scene.size, scene.people)


def render_labels(size: tuple[int, int], people) -> np.ndarray:
  labels = Image.new("L", size, 0)
  draw = ImageDraw.Draw(labels)
  for i, person in enumerate(people):
    _draw(draw, person, fill=i + 1)
  return np.asarray(labels)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
  """Plain, gradient, smooth noise or clutter on a plain or gradient ground."""
  kind = rng.choice(["plain", "gradient", "noise", "clutter"])
  a, b = rng.integers(0, 256, (2, 3))
  if kind == "plain":
    return np.broadcast_to(a, (height, width, 3)).astype(np.uint8)
  if kind == "noise":
    coarse = rng.normal(a, 40.0, (int(rng.integers(3, 12)), int(rng.integers(3, 12)), 3))
    image = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
  angle = rng.uniform(0, 2 * math.pi)
  yy, xx = np.mgrid[0:height, 0:width]
  t = (xx * math.cos(angle) + yy * math.sin(angle)) / (width + height) + 0.5
  ground = (a + (b - a) * np.clip(t, 0, 1)[..., None]).astype(np.uint8)
  if kind == "gradient":
    return ground
  image = Image.fromarray(ground)
  draw = ImageDraw.Draw(image)
  for _ in range(int(rng.integers(3, 10))):
    x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
    w, h = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
    shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
    shape((x0, y0, x0 + w, y0 + h), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
  return np.asarray(image)


def _sample_people(rng: np.random.Generator, count: int, width: int,
                   height: int) -> tuple[Person, ...]:
  people, names = [], list(SHIRT_COLOURS)
  for _ in range(count):
    used = [p.shirt for p in people]
    fresh = [c for c in names if c not in used]
    if used and rng.random() < _SAME_COLOUR:
      shirt = used[int(rng.integers(len(used)))]
    else:
      shirt = fresh[int(rng.integers(len(fresh)))]
    tall = rng.uniform(0.5, 0.92) * height
    build = rng.uniform(0.85, 1.15)
    half = 0.2 * tall * build
    people.append(Person(
        cx=rng.uniform(half, width - half), feet=rng.uniform(tall, height), height=tall,
        build=build, shirt=shirt,
        trousers=_TROUSERS[int(rng.integers(len(_TROUSERS)))],
        skin=_SKIN[int(rng.integers(len(_SKIN)))], hair=_HAIR[int(rng.integers(len(_HAIR)))]))
  return tuple(sorted(people, key=lambda p: p.feet))


def _visible_enough(size, people) -> bool:
  labels = render_labels(size, people)
  visible = np.bincount(labels.ravel(), minlength=len(people) + 1)[1:]
  for i, person in enumerate(people):
    alone = np.count_nonzero(render_labels(size, [person]))
    if visible[i] < _MIN_VISIBLE * alone:
      return False
  return True


def sample_scene(rng: np.random.Generator) -> Scene:
  """A random scene: size 160-320 x 120-260 (aspect 0.75 to 1.6), 1 to 4 people."""
  width = int(rng.integers(160, 321))
  height = int(rng.integers(max(120, math.ceil(width / 1.6)), min(260, int(width / 0.75)) + 1))
  count = int(rng.choice(4, p=_PEOPLE_PER_SCENE)) + 1
  background = _background(rng, width, height)
  while True:
    for _ in range(50):
      people = _sample_people(rng, count, width, height)
      if _visible_enough((width, height), people):
        return Scene(background, people)
    count -= 1  # Too crowded for this image: one person fewer always fits.
