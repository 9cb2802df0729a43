"""Whether every declared lower bound is the version installed by ``.ci/lowest``.

After ``uv pip install --resolution lowest-direct``, each direct requirement in
``pyproject.toml`` (core, extras) and ``plugins/*/pyproject.toml`` should be installed at
exactly its ``>=`` bound. One installed above its bound means the bound cannot be reached
(another declared requirement needs more), so the suite never ran on it: the bound is not
known to be true. Run with the environment's Python::

    python scripts/lower_bounds.py [--skip NAME ...]

It prints one line per requirement and exits 1 when a bound is not the installed version.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: first-party distributions: their bounds are our own releases, not a dependency's
FIRST_PARTY = {"localinfer"}


@dataclass(frozen=True)
class Bound:
    name: str
    floor: Version
    where: str


def declared_bounds(root: Path = ROOT) -> list[Bound]:
    """Every ``>=`` bound of a third-party requirement, with the file and group naming it."""
    found: list[Bound] = []
    for path in [root / "pyproject.toml", *sorted(root.glob("plugins/*/pyproject.toml"))]:
        project = tomllib.loads(path.read_text())["project"]
        groups = {"dependencies": project.get("dependencies", [])}
        for extra, requirements in project.get("optional-dependencies", {}).items():
            groups[f"[{extra}]"] = requirements
        for group, requirements in groups.items():
            for text in requirements:
                requirement = Requirement(text)
                name = canonicalize_name(requirement.name)
                floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
                if name in FIRST_PARTY or not floors:
                    continue
                found.append(Bound(name, max(floors), f"{path.relative_to(root)} {group}"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip", nargs="*", default=[], help="requirements not installed by this job"
    )
    parser.add_argument(
        "--skip-extras", nargs="*", default=[], help="extras not installed by this job"
    )
    args = parser.parse_args(argv)
    skipped = {canonicalize_name(name) for name in args.skip}
    skipped_groups = {f"[{extra}]" for extra in args.skip_extras}
    false_bounds = 0
    for bound in declared_bounds():
        if bound.name in skipped or bound.where.split()[-1] in skipped_groups:
            print(f"skip  {bound.name}>={bound.floor}  ({bound.where}: not installed here)")
            continue
        try:
            installed = Version(version(bound.name))
        except PackageNotFoundError:
            installed = None
        if installed == bound.floor:  # 4 == 4.0.0
            print(f"ok    {bound.name}>={bound.floor}  ({bound.where})")
            continue
        false_bounds += 1
        print(f"FALSE {bound.name}>={bound.floor}: installed {installed}  ({bound.where})")
    if false_bounds:
        print(
            f"{false_bounds} lower bound(s) are not what the lowest install got: raise each "
            "to the installed version once the suite passes on it"
        )
    return 1 if false_bounds else 0


if __name__ == "__main__":
    sys.exit(main())
