"""``python -m contracts.asyncapi [--check] [service ...]``: write (or check) <service>.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contracts.asyncapi._apps import FACTORIES, document

HERE = Path(__file__).parent


def render(service: str) -> str:
    # Sorted keys: FastStream keeps subscribers in a set, so channel order varies between runs.
    return json.dumps(document(service), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def path_of(service: str) -> Path:
    return HERE / f"{service}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/asyncapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, write nothing; exit 1 on drift")
    parser.add_argument("services", nargs="*", help=f"some of {', '.join(FACTORIES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.services) - set(FACTORIES)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    drifted = []
    for service in args.services or list(FACTORIES):
        fresh, path = render(service), path_of(service)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != fresh:
                drifted.append(service)
            continue
        path.write_text(fresh, encoding="utf-8")
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    if drifted:
        print(f"AsyncAPI documents out of date: {', '.join(drifted)} (run scripts/asyncapi)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
