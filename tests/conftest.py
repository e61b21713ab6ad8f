"""Shared test fixtures and the location of the shared real data sets."""
import os
from pathlib import Path

import pytest

# The real data sets live beside the checkout (../shared/data), in CI as in development;
# UNET_SDK_SHARED_DATA points elsewhere.
SHARED_DATA = Path(
    os.environ.get("UNET_SDK_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def require_shared(*parts: str) -> Path:
    """Path of ``SHARED_DATA/parts``. Missing data fails the test in CI (``CI`` set), where it must be
    present; elsewhere (a fresh checkout without the data sets) the test is skipped with the reason.
    Usable at module level."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"shared data missing: {path} (set UNET_SDK_SHARED_DATA to the data directory)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared()
