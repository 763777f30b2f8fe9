"""``cachehub local-dynamodb``: a DynamoDB endpoint usable with the printed config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cachehub.registry import Caches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_local_dynamodb_serves_until_stopped(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cachehub.cli", "local-dynamodb", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # the config block ends with the "Press Ctrl-C" line
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text
        config = json.loads(text[text.index("{") : text.rindex("}") + 1])
        custom = config["caches"]["dynamo"]["custom"]
        assert custom["host"] == f"http://127.0.0.1:{port}"
        assert (custom["accessKeyId"], custom["region"]) == ("dummy", "us-east-1")
        path = tmp_path / "cachehub.json"
        path.write_text(json.dumps(config))
        cache = Caches.from_file(path).get()
        cache.put("hello", {"from": "local-dynamodb"})
        assert cache.get("hello") == {"from": "local-dynamodb"}
        cache.close()  # the client's pooled connection is not what this test is about
    finally:
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopping local DynamoDB endpoint" in err
