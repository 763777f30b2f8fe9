"""Command line: ``python -m benchmarks [--quick] [--only memory,codec] [--out DIR] [SECTION...]``.

``nox -s bench -- memory`` runs one section: a subset replaces only its own sections
of docs/benchmarks.md and keeps the others as they were measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .harness import Config
from .suite import ON_REQUEST, SECTIONS, run_suite

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _sections(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(SECTIONS)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the suite, print where the report went."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, 2 rounds; writes to a temp dir unless --out is given",
    )
    parser.add_argument(
        "--only",
        type=_sections,
        default=[s for s in SECTIONS if s not in ON_REQUEST],
        help=f"comma-separated sections among {','.join(SECTIONS)} (default: all but "
        f"{','.join(ON_REQUEST)}, which run only when named)",
    )
    parser.add_argument(
        "sections",
        nargs="*",
        help="sections to run, like --only (e.g. `nox -s bench -- memory`)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for benchmarks.md/.png (default: docs/, or a temp dir with --quick)",
    )
    args = parser.parse_args(argv)
    only = args.only
    if args.sections:
        try:
            only = _sections(",".join(args.sections))
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    cfg = Config.quick_mode() if args.quick else Config.full()
    out = args.out
    if out is None:
        # Quick numbers are meaningless: never let them overwrite the published page.
        out = Path(tempfile.mkdtemp(prefix="cachehub-bench-")) if args.quick else DOCS
    result = run_suite(only, cfg, out)
    print(f"[bench] report: {result.markdown}")
    if result.chart is not None:
        print(f"[bench] chart: {result.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
