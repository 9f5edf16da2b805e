"""Which fallback wheels to install: the distributions missing or older than needed.

usage: missing_wheels.py NAME:MIN_VERSION ...

Prints one line per distribution, then a last line ``NEED: wheel ...`` with
what ``ci/gpu.sh`` should install from ``wheels/``. A distribution travels
with the dependencies that ``ci/gpu_wheels.sh`` fetches for it (pytest with
pluggy and iniconfig, hypothesis with sortedcontainers). matplotlib is never
carried: when it is missing the seed run goes without ``--plot``.
"""

from __future__ import annotations

import importlib.metadata as md
import sys

TRAVELS_WITH = {"pytest": ("pluggy", "iniconfig"), "hypothesis": ("sortedcontainers",)}
NOT_CARRIED = {"matplotlib"}


def version_key(version: str) -> tuple[int, ...]:
    """A comparable key of a release number: ``"2.3.1rc1+x"`` -> ``(2, 3, 1)``.

    >>> version_key("9.2.0") > version_key("8")
    True
    >>> version_key("1.26.4+cpu")
    (1, 26, 4)
    """
    parts = []
    for part in version.split("+")[0].split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def needs_wheel(name: str, minimum: str) -> bool:
    """Print the state of ``name`` and say whether its wheel must be installed."""
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        print(f"  {name}: not installed (need >= {minimum})")
        return True
    ok = version_key(have) >= version_key(minimum)
    print(f"  {name} {have}: {'ok, from the image' if ok else f'too old (need >= {minimum})'}")
    return not ok


def main(specs: list[str]) -> int:
    wheels = []
    for spec in specs:
        name, _, minimum = spec.partition(":")
        if needs_wheel(name, minimum or "0"):
            if name in NOT_CARRIED:
                print(f"  {name}: not carried in wheels/, going without it")
                continue
            wheels += [name, *TRAVELS_WITH.get(name, ())]
    print("NEED: " + " ".join(wheels))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
