"""Shared test fixtures and the location of the shared real data sets."""
import os
from pathlib import Path

import pytest

import sdk

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


# Subprocesses must import the same sdk as this session: the installed package under `pytest` (whose
# compiled core lives in site-packages), the source tree under `python -m pytest`. They run from the tests
# folder, never from the checkout's root, whose source `sdk/` would otherwise shadow the installed one.
SDK_ROOT = Path(sdk.__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent


def subprocess_env(**extra: str) -> dict:
    """``os.environ`` with PYTHONPATH naming this session's sdk and the tests folder, plus ``extra``;
    use with ``cwd=TESTS_DIR`` (or a temporary folder)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SDK_ROOT), str(TESTS_DIR)]), **extra}
