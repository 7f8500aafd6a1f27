"""Authentication (JWT, JWKS, local issuer) and authorization (policy engines)."""
