"""Shared test fixtures."""
from pathlib import Path

import pytest

# The real data sets live beside the checkout (../shared/data), in CI as in development.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; a missing copy is an error of the test set-up, not a reason to skip."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data sets are missing: expected them at {SHARED_DATA}")
    return SHARED_DATA
