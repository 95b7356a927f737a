"""Fails unless every named test passed in a pytest JUnit XML report (none skipped or missing).

    python .ci/check_ran.py REPORT.xml tests/test_x.py::test_name [...]
"""

import sys
import xml.etree.ElementTree as ET


def outcomes(report: str) -> dict[str, str]:
  """{"tests/test_x.py::test_name": "passed" | "skipped" | "failed"} from the report."""
  found = {}
  for case in ET.parse(report).iter("testcase"):
    path = case.get("classname", "").replace(".", "/") + ".py"
    name = case.get("name", "").split("[")[0].split("@")[0]  # "@group": xdist's loadgroup.
    outcome = ("failed" if case.find("failure") is not None or case.find("error") is not None
               else "skipped" if case.find("skipped") is not None else "passed")
    # A parametrised test counts as passed only if every case passed.
    if found.get(f"{path}::{name}", "passed") == "passed":
      found[f"{path}::{name}"] = outcome
  return found


def main(report: str, required: list[str]) -> int:
  found = outcomes(report)
  bad = [f"{test}: {found.get(test, 'did not run')}" for test in required
         if found.get(test) != "passed"]
  if bad:
    print("error: tests that CI must run did not pass: " + "; ".join(bad), file=sys.stderr)
    return 1
  print(f"CI-only tests ran and passed ({len(required)}): " + ", ".join(required))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1], sys.argv[2:]))
