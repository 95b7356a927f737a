"""The package's import graph: no cycle between modules, and no import against the layers.

Layers, lowest first: runtime; models and data (beside each other, neither importing the
other); train; protect; evaluation; measure (imported by nothing). The training loop
(`train/loop.py`) evaluates as it trains, so it alone sits above evaluation; `main.py` is on
top. `__init__.py` files hold a docstring only (`models/` may re-export `create_model`).
"""

import ast
import pathlib

import pytest

from conftest import REPO

PACKAGE = REPO / "brppnet_jax"
LAYER = {"runtime": 0, "models": 1, "data": 1, "train": 2, "protect": 3, "evaluation": 4,
         "train.loop": 4.5, "measure": 5, "main": 6}


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> set[str]:
  """Package modules `path` imports anywhere in it (functions included), without the prefix."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module == "brppnet_jax" or node.module.startswith("brppnet_jax.")):
      base = node.module.removeprefix("brppnet_jax").lstrip(".")
      for alias in node.names:
        candidate = f"{base}.{alias.name}".lstrip(".")
        is_module = (PACKAGE / candidate.replace(".", "/")).with_suffix(".py").exists() or (
            PACKAGE / candidate.replace(".", "/") / "__init__.py").exists()
        found.add(candidate if is_module else base)
    elif isinstance(node, ast.Import):
      found.update(a.name.removeprefix("brppnet_jax.") for a in node.names
                   if a.name.startswith("brppnet_jax."))
  return {m for m in found if m}


def layer_of(module: str) -> float:
  key = module if module in LAYER else module.split(".")[0]
  return LAYER[key]


GRAPH = {module_name(p): imported_modules(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
  unplaced = [m for m in GRAPH if m and m.split(".")[0] not in LAYER]
  assert len(GRAPH) > 40 and not unplaced, unplaced


def test_no_import_goes_against_the_layers():
  wrong = [f"{src} imports {dst}" for src, dsts in GRAPH.items() if src for dst in dsts
           if dst.split(".")[0] != src.split(".")[0] and layer_of(dst) >= layer_of(src)]
  assert not wrong, "\n".join(wrong)


def test_nothing_imports_measure():
  wrong = [f"{src} imports {dst}" for src, dsts in GRAPH.items() for dst in dsts
           if dst.startswith("measure") and not src.startswith("measure")]
  assert not wrong


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as a list of modules, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_no_cycle_between_modules():
  cycle = find_cycle({m: {d for d in deps if d != m} for m, deps in GRAPH.items()})
  assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
  assert find_cycle(graph) == expected


def test_init_files_hold_a_docstring_only():
  for path in PACKAGE.rglob("__init__.py"):
    body = ast.parse(path.read_text()).body
    assert body and isinstance(body[0], ast.Expr), f"{path}: no docstring"
    if path.parent.name != "models":
      assert len(body) == 1, f"{path}: holds code besides its docstring"
