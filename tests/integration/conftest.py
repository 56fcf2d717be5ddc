import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in tests/integration talks to the real broker; ``slow`` (soak) tests only run with RECOVERY_SOAK=1.

    Soak tests are deselected rather than skipped, so that they never count as passes of ``make test``.
    """
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)
    if os.environ.get("RECOVERY_SOAK") == "1":
        return
    kept = [item for item in items if item.get_closest_marker("slow") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("slow") is not None])
        items[:] = kept
