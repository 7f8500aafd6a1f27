from tests.storage.conftest import codec, repository

__all__ = ["codec", "repository"]
