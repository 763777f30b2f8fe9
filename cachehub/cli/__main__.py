"""``python -m cachehub.cli``: the same as the ``cachehub`` console script."""

from . import main

main()
