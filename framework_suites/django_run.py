"""Run Django's cache tests against the adapter: ``python -m framework_suites.django_run DIR``.

``DIR`` is the extracted ``tests`` folder of Django's sdist (holding ``cache/``).
"""

from __future__ import annotations

import os
import sys


def main(tests_dir: str) -> int:
    """Set Django up with :mod:`framework_suites.django_settings` and run the cases."""
    sys.path.insert(0, tests_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "framework_suites.django_settings"
    import django  # type: ignore[import-untyped]
    from django.test.runner import DiscoverRunner  # type: ignore[import-untyped]

    django.setup()
    runner = DiscoverRunner(verbosity=1, interactive=False, failfast=False)
    failures: int = runner.run_tests(["framework_suites.django_cases"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
