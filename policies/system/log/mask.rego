# Decision-log masking for the OPA sidecar (OPA evaluates data.system.log.mask on every
# decision-log event before it leaves the process; the app's embedded engine does not log).
#
# Why: the input names a person twice — the caller (`principal.sub`, and any claim added to
# `principal` later) and the customer (`resource.id`, and the same id inside `path`). Decision
# logs are shipped to log stores with weaker access control and longer retention than the
# customer database, so they keep only what explains a decision: method, path shape, scopes,
# roles, and the result (whose reasons and masked field names carry no personal data).
#
# `input` here is the log event: {"input": <app input>, "result": <decision>, ...}.
# A string erases that JSON pointer; an {"op": "upsert", ...} object replaces the value.
package system.log

import rego.v1

# Principal: keep only scopes and roles (an allow-list, so a new claim never leaks).
mask contains concat("/", ["/input/principal", key]) if {
	some key, _ in input.input.principal
	not key in {"scopes", "roles"}
}

# Resource: keep only its kind.
mask contains concat("/", ["/input/resource", key]) if {
	some key, _ in input.input.resource
	key != "kind"
}

# Path: keep the route, replace the customer id (anything after /api/v1/customers).
mask contains {"op": "upsert", "path": "/input/path", "value": redacted_path} if {
	count(input.input.path) > 3
}

redacted_path := [segment |
	some i, part in input.input.path
	segment := route_segment(i, part)
]

route_segment(i, part) := part if i < 3

route_segment(i, _) := "*" if i >= 3
