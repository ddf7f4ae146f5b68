"""Integration tests (a package, so its conftest does not shadow the `conftest` module the unit tests import)."""
