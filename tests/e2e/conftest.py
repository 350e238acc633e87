import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


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
