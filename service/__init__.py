"""Customer registry API."""

# The one place the version is written: pyproject.toml reads it ([tool.hatch.version]).
__version__ = "0.1.0"

# Sent on every outgoing call (CEP providers, JWKS, OPA), so their operators can reach us.
USER_AGENT = f"customers-api/{__version__} (+https://customers-api.example)"
