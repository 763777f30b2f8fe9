"""``python -m cachehub``: the same as the ``cachehub`` command."""

from .cli import main

if __name__ == "__main__":
    main()
