import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/integration talks to the real broker."""
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)
