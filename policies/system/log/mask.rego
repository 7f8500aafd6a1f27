# Decision-log masking for the OPA sidecar (OPA evaluates data.system.log.mask on every
# decision-log event before it leaves the process; the app's embedded engine does not log).
#
# Why: the input names a person twice — the caller (`principal.sub`, and any claim added to
# `principal` later) and the customer (`resource.id`, and the same id inside `path`). Decision
# logs are shipped to log stores with weaker access control and longer retention than the
# customer database, so they keep only what explains a decision: method, path shape, scopes,
# roles, the names of the query parameters (never their values), and the result (whose reasons and masked field names carry no personal data).
#
# `input` here is the log event: {"input": <app input>, "result": <decision>, ...}.
# A string erases that JSON pointer; an {"op": "upsert", ...} object replaces the value.
package system.log

import rego.v1

# Principal: replaced by a copy of its allow-listed fields. Erasing the other claims one JSON
# pointer at a time would miss a claim whose name a pointer cannot spell as given ("/", "~",
# a space or "%" in it); a copy built from an allow-list cannot leak a claim it never names.
mask contains {"op": "upsert", "path": "/input/principal", "value": logged_principal} if {
	input.input.principal != null
}

logged_principal := {key: value |
	is_object(input.input.principal)
	some key in {"scopes", "roles"}
	value := input.input.principal[key]
}

# Resource: keep only its kind.
mask contains {"op": "upsert", "path": "/input/resource", "value": logged_resource} if {
	input.input.resource != null
}

logged_resource := {"kind": kind |
	is_object(input.input.resource)
	kind := input.input.resource.kind
}

# Path: keep the route, replace the customer id (anything after /api/v1/customers).
mask contains {"op": "upsert", "path": "/input/path", "value": redacted_path} if {
	is_array(input.input.path)
	count(input.input.path) > 3
}

redacted_path := [segment |
	some i, part in input.input.path
	segment := route_segment(i, part)
]

route_segment(i, part) := part if i < 3

route_segment(i, _) := "*" if i >= 3
