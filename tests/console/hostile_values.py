"""Module-level targets for :func:`reliability.sandbox.run_bounded` (the child imports them)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any


def render_huge_entries(size: int) -> dict[str, Any]:
    """Render the entry and edit pages of values of ``size`` bytes/characters in a fresh
    console on an unserialized memory cache; returns status and body length per page."""
    from starlette.testclient import TestClient

    from cachehub.console.app import create_app

    folder = Path(tempfile.mkdtemp())
    config = folder / "c.json"
    config.write_text(json.dumps({"m": {"class": "memory", "custom": {"serialize": False}}}))
    app = create_app(config, token="t")
    results: dict[str, Any] = {}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        client.get("/?token=t")
        cache = app.state.console.cache("m")
        makers = {  # one at a time: the cap leaves room for one value, not three
            "bytes": lambda: b"\x00" * size,
            "str": lambda: "x" * size,
            "nested": lambda: {"a": ["y" * size]},
        }
        for name, make in makers.items():
            cache.put(name, make())
            for page in ("entry", "put"):
                response = client.get(f"/{page}", params={"cache": "m", "key": name})
                results[f"{page} {name}"] = (response.status_code, len(response.content))
            cache.delete(name)
    return results
