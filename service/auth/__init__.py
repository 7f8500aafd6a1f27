"""Authentication: bearer JWTs verified against the issuer's JWKS, and the local issuer."""
