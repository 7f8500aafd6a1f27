"""Customer registry API."""

# Sent on every outgoing call (CEP providers, JWKS, OPA), so their operators can reach us.
USER_AGENT = "customers-api/0.1 (+https://customers-api.example)"
