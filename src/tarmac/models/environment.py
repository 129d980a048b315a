"""What a training run ran on: the project's git commit (and whether it had uncommitted
changes), Python and the versions of the packages that shape a model."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("tarmac", "scikit-learn", "numpy", "pandas", "pyarrow", "duckdb", "scipy",
            "cloudpickle", "lightgbm", "xgboost", "catboost")


def git_state(root: Path) -> dict[str, Any]:
    """{commit, dirty, branch} of the repository holding ``root``, or {} outside git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "dirty": bool(status), "branch": git("rev-parse", "--abbrev-ref",
                                                                   "HEAD")}


def packages(extra: str | None = None) -> dict[str, str]:
    """Installed versions of the packages that decide what a model computes."""
    out: dict[str, str] = {"python": platform.python_version()}
    names = [*PACKAGES, *([extra] if extra else [])]
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def capture(root: Path, flavor_package: str | None = None) -> dict[str, Any]:
    return {"git": git_state(root), "packages": packages(flavor_package),
            "platform": platform.platform()}
