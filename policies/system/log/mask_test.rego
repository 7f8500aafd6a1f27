# Tests for mask.rego: no personal data survives in a decision-log event.
package system.log

import rego.v1

event := {
	"input": {
		"method": "GET",
		"path": ["api", "v1", "customers", "c-1"],
		"principal": {"sub": "user-1", "email": "maria@example.com", "scopes": ["customers:read"], "roles": ["support"]},
		"resource": {"kind": "customer", "id": "c-1"},
	},
	"result": {"allow": true, "reasons": ["granted by scope customers:read"], "masked_fields": ["cpf", "phone"]},
}

logged(event, path) := value if {
	some entry in mask with input as event
	is_object(entry)
	entry.path == path
	value := entry.value
}

test_principal_keeps_only_scopes_and_roles if {
	logged(event, "/input/principal") == {"scopes": ["customers:read"], "roles": ["support"]}
}

# Claim names that a JSON pointer spells differently (or that a pointer-based erase missed).
awkward_claims := {"a/b": "maria@example.com", "a b": "52998224725", "100%": "x", "~0": "y", "": "z"}

test_claims_with_any_name_are_not_logged if {
	principal := object.union({"sub": "user-1", "scopes": ["customers:read"]}, awkward_claims)
	hostile := {"input": {"method": "GET", "path": ["api", "v1", "customers"], "principal": principal}}
	logged(hostile, "/input/principal") == {"scopes": ["customers:read"]}
}

test_principal_of_another_type_is_replaced if {
	hostile := {"input": {"method": "GET", "path": "api/v1", "principal": "user-1 maria@example.com", "resource": "c-1"}}
	logged(hostile, "/input/principal") == {}
	logged(hostile, "/input/resource") == {}
}

test_missing_principal_adds_nothing if {
	masks := mask with input as {"input": {"method": "GET", "path": ["api", "v1", "customers"]}}
	count(masks) == 0
}

test_resource_keeps_only_its_kind if {
	logged(event, "/input/resource") == {"kind": "customer"}
}

test_customer_id_replaced_in_path if {
	logged(event, "/input/path") == ["api", "v1", "customers", "*"]
}

test_query_names_kept if {
	with_query := object.union(event, {"input": object.union(event.input, {"query": ["cpf"]})})
	masks := mask with input as with_query
	every entry in masks {
		not startswith(entry.path, "/input/query")
	}
}
