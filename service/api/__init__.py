"""HTTP layer: routes, schemas, problem+json errors, pagination."""
