import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
# Multiplies the wall-clock bounds that tests assert (scripts/asan_e2e.sh sets 3: a sanitized build is
# slower); the behaviour asserted stays the same.
TIMEOUT_SCALE = float(os.environ.get("FASTSERVE_TIMEOUT_SCALE", "1"))


@pytest.fixture(scope="session")
def fastserve_bin():
    path = pathlib.Path(os.environ.get("FASTSERVE_BIN", ROOT / "build" / "fastserve"))
    assert path.exists(), f"{path} not built; run scripts/setup.sh"
    return str(path)


@pytest.fixture(scope="session")
def default_model():
    path = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.exists(), f"{path} missing; run scripts/setup.sh"
    return str(path)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`fastserve serve` on a free port; `url` is http://127.0.0.1:PORT, `log` the combined output file."""

    def __init__(self, fastserve_bin, model, log_path, *args):
        import subprocess
        import time
        import urllib.request
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path
        self._log_file = open(log_path, "w")
        self.proc = subprocess.Popen(
            [fastserve_bin, "serve", "--model", model, "--port", str(self.port), *args],
            stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.time() + 120 * TIMEOUT_SCALE
        while time.time() < deadline:
            assert self.proc.poll() is None, pathlib.Path(log_path).read_text()
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("server did not come up: " + pathlib.Path(log_path).read_text())

    def stop(self, timeout=30):
        """SIGTERM, then the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=timeout)
        except Exception:
            self.proc.kill()
            rc = self.proc.wait()
        self._log_file.close()
        return rc


@pytest.fixture(scope="session")
def server(fastserve_bin, default_model, tmp_path_factory):
    """One `fastserve serve` on the default model for the whole session (2 threads, small KV pools)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    s = ServerProcess(fastserve_bin, default_model, log, "--threads", "2", "--device-kv-blocks", "512",
                      "--host-kv-blocks", "512", "--max-body-bytes", "1048576", "--http-threads", "64")
    yield s
    s.stop()
