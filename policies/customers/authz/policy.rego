# Authorization for the customer registry API (Rego v1).
#
# Input, built by the app from the verified token (never the raw token):
#   {"method": "GET", "path": ["api", "v1", "customers", "<id>"],
#    "principal": {"sub": "user-1", "scopes": ["customers:read"], "roles": ["support"]},
#    "resource": {"kind": "customer", "id": "<id>"}}
# `resource` is present only when the path names one customer.
#
# Data: data.json beside this file, loaded at data.customers.authz:
#   {"role_scopes": {"<role>": ["<scope>", ...]}}
# so giving a role a scope is a data change, not a Rego change.
#
# Entrypoint: `decision` = {"allow": bool, "reasons": [string], "masked_fields": [string]}.
# The app denies when `decision` is undefined or malformed.
package customers.authz

import rego.v1

default allow := false

# Scopes granted directly by the token.
scopes contains scope if some scope in input.principal.scopes

# Scopes granted through the token's roles (data.json).
scopes contains scope if {
	some role in input.principal.roles
	some scope in data.customers.authz.role_scopes[role]
}

# /api/v1/customers: the collection.
target := "collection" if input.path == ["api", "v1", "customers"]

# /api/v1/customers/<id>: one customer.
target := "item" if {
	count(input.path) == 4
	array.slice(input.path, 0, 3) == ["api", "v1", "customers"]
}

# List customers or search them by email/cpf.
required_scope := "customers:read" if {
	input.method == "GET"
	target == "collection"
}

# Read one customer.
required_scope := "customers:read" if {
	input.method == "GET"
	target == "item"
}

# Create a customer.
required_scope := "customers:write" if {
	input.method == "POST"
	target == "collection"
}

# Change a customer.
required_scope := "customers:write" if {
	input.method == "PATCH"
	target == "item"
}

# Delete a customer.
required_scope := "customers:delete" if {
	input.method == "DELETE"
	target == "item"
}

# The caller holds the scope its operation needs; any other method or path stays denied.
allow if required_scope in scopes

# Personal data is masked unless a rule below says otherwise.
default masked_fields := {"cpf", "phone"}

# Callers with customers:pii see every field in clear.
masked_fields := set() if "customers:pii" in scopes

# Why the request was allowed.
reasons contains concat(" ", ["granted by scope", required_scope]) if allow

# No authenticated principal in the input.
reasons contains "no principal" if not input.principal

# A method or path no rule covers.
reasons contains "no rule for this method and path" if not required_scope

# The operation is known but the caller lacks its scope.
reasons contains concat(" ", ["missing scope", scope]) if {
	scope := required_scope
	not scope in scopes
}

decision := {
	"allow": allow,
	"reasons": reasons,
	"masked_fields": masked_fields,
}
