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

test_subject_and_other_claims_erased if {
	masks := mask with input as event
	"/input/principal/sub" in masks
	"/input/principal/email" in masks
}

test_scopes_and_roles_kept if {
	masks := mask with input as event
	not "/input/principal/scopes" in masks
	not "/input/principal/roles" in masks
}

test_resource_id_erased_kind_kept if {
	masks := mask with input as event
	"/input/resource/id" in masks
	not "/input/resource/kind" in masks
}

test_customer_id_replaced_in_path if {
	masks := mask with input as event
	{"op": "upsert", "path": "/input/path", "value": ["api", "v1", "customers", "*"]} in masks
}

test_collection_path_untouched if {
	masks := mask with input as {"input": {"method": "GET", "path": ["api", "v1", "customers"]}}
	count(masks) == 0
}
