"""``python -m mutation``: measure the conformance suite against the checked-in mutants."""

from .runner import main

raise SystemExit(main())
