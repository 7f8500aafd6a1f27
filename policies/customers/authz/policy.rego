# Authorization for the customer registry API (Rego v1).
#
# Input, built by the app from the verified token (never the raw token):
#   {"method": "GET", "path": ["api", "v1", "customers", "<id>"],
#    "route": "/api/v1/customers/{customer_id}",
#    "principal": {"sub": "user-1", "scopes": ["customers:read"], "roles": ["support"]},
#    "resource": {"kind": "customer", "id": "<id>"},
#    "query": ["email", "limit"]}
# `route` is the route template the request matched: rules read it rather than `path` (or
# `resource.id`) unless they depend on which customer, since the embedded engine caches a
# decision on exactly the input fields the policy reads.
# `resource` is present only when the path names one customer (its id canonical: lower-case
# hex); `query` names the query parameters sent (never their values: personal data).
# Any field may be missing or of another type: every iteration is guarded with is_array, so
# the embedded engine and OPA give the same answer (a deny) for any input.
#
# Data: data.json beside this file, loaded at data.customers.authz:
#   {"role_scopes": {"<role>": ["<scope>", ...]}}
# so giving a role a scope is a data change, not a Rego change.
#
# Entrypoint: `decision` = {"allow": bool, "reasons": [string], "masked_fields": [string],
#   "visible_statuses": [string]} (the customer statuses the caller may see; the app reads a
#   decision without it as ["active"]).
# The app denies when `decision` is undefined or malformed. `masked_fields` may name "*":
# the caller sees no field of the record but its id.
package customers.authz

import rego.v1

default allow := false

# Scopes granted directly by the token.
scopes contains scope if {
	is_array(input.principal.scopes)
	some scope in input.principal.scopes
	is_string(scope)
}

# Scopes granted through the token's roles (data.json).
scopes contains scope if {
	is_array(input.principal.roles)
	some role in input.principal.roles
	is_string(role)
	some scope in data.customers.authz.role_scopes[role]
}

# /api/v1/customers/<id>/audit: one customer's audit trail.
target := "audit" if input.route == "/api/v1/customers/{customer_id}/audit"

# /api/v1/customers/<id>/export: one customer's data-subject export.
target := "export" if input.route == "/api/v1/customers/{customer_id}/export"

# /api/v1/audit: the audit trail by actor.
target := "actor_audit" if input.route == "/api/v1/audit"

# /api/v1/customers: the collection.
target := "collection" if input.route == "/api/v1/customers"

# /api/v1/customers/<id>: one customer.
target := "item" if input.route == "/api/v1/customers/{customer_id}"

# /api/v1/customers/<id>/<action>: a lifecycle action (block, unblock, reopen, anonymize).
target := "lifecycle" if lifecycle_scopes[lifecycle_action]

# The action of a lifecycle route (`/api/v1/customers/{customer_id}/block` -> "block").
lifecycle_action := trim_prefix(input.route, "/api/v1/customers/{customer_id}/") if {
	is_string(input.route)
	startswith(input.route, "/api/v1/customers/{customer_id}/")
}

# The scope each lifecycle action needs: blocking and reopening suspend or resume
# processing; anonymizing erases for good, so it has a scope of its own.
lifecycle_scopes := {
	"block": "customers:lifecycle",
	"unblock": "customers:lifecycle",
	"reopen": "customers:lifecycle",
	"anonymize": "customers:anonymize",
}

# Filters whose answer says who a person is ("is this CPF a customer?"): an oracle that
# recovers a masked CPF in a few hundred requests unless it needs customers:pii.
identity_filters := {"email", "cpf"}

identity_filters_used contains name if {
	is_array(input.query)
	some name in input.query
	name in identity_filters
}

# An identity filter without customers:pii.
oracle_denied if {
	count(identity_filters_used) > 0
	not "customers:pii" in scopes
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

# Read who saw or changed one customer's data, or what one caller saw or changed.
required_scope := "customers:audit" if {
	input.method == "GET"
	target in {"audit", "actor_audit"}
}

# The data-subject export: the whole record, unmasked, with its disclosures.
required_scope := "customers:export" if {
	input.method == "GET"
	target == "export"
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

# Block, unblock, reopen or anonymize a customer.
required_scope := lifecycle_scopes[lifecycle_action] if {
	input.method == "POST"
	target == "lifecycle"
}

# Read the change feed (ids and field names only, never a value).
required_scope := "events:read" if {
	input.method == "GET"
	input.route == "/api/v1/events"
}

# The caller holds the scope its operation needs (and customers:pii for identity filters);
# any other method or path stays denied.
allow if {
	required_scope in scopes
	not oracle_denied
}

# Personal data is masked unless a rule below says otherwise.
default masked_fields := {"cpf", "phone"}

# Readers with customers:pii see every field in clear.
masked_fields := set() if {
	"customers:read" in scopes
	"customers:pii" in scopes
}

# Callers that may not read (a write-only PATCH or POST) see no field of the record but its id.
masked_fields := {"*"} if not "customers:read" in scopes

# The customer statuses the caller may see: others are 404 and absent from pages.
default visible_statuses := {"active"}

# customers:restricted sees blocked, closed and anonymized customers too (a DPO's work).
visible_statuses := {"active", "blocked", "closed", "anonymized"} if "customers:restricted" in scopes

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

# An identity filter without customers:pii.
reasons contains concat(" ", ["missing scope customers:pii for the filter", name]) if {
	oracle_denied
	some name in identity_filters_used
}

decision := {
	"allow": allow,
	"reasons": reasons,
	"masked_fields": masked_fields,
	"visible_statuses": visible_statuses,
}
