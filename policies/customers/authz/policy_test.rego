# Tests for policy.rego: `opa test policies/` or `make test` (through the embedded engine).
# Same package as the policy: the embedded engine (opa-eval) loads one module per evaluator,
# so it joins policy.rego and this file into one module to run these rules.
package customers.authz

import rego.v1

collection := ["api", "v1", "customers"]

item := ["api", "v1", "customers", "c-1"]

# The route template the app matches for `path` (none for an address no route serves).
route_of(path) := "/api/v1/customers" if path == collection

route_of(path) := "/api/v1/customers/{customer_id}" if {
	is_array(path)
	count(path) == 4
	array.slice(path, 0, 3) == collection
}

route_of(path) := concat("", ["/api/v1/customers/{customer_id}/", path[4]]) if {
	is_array(path)
	count(path) == 5
	array.slice(path, 0, 3) == collection
	is_string(path[4])
}

route_of(path) := concat("", ["/api/v1/", path[2]]) if {
	is_array(path)
	count(path) == 3
	array.slice(path, 0, 2) == ["api", "v1"]
	path[2] in {"audit", "events"}
}

# The input the app sends for `method` on `path` by a caller with `granted` scopes and `roles`.
request(method, path, granted, roles) := object.union(
	{"method": method, "path": path, "principal": {"sub": "user-1", "scopes": granted, "roles": roles}},
	{"route": route | route := route_of(path)},
)

allowed(method, path, granted, roles) if {
	req := request(method, path, granted, roles)
	d := decision with input as req
	d.allow == true
}

denied(method, path, granted, roles) if {
	req := request(method, path, granted, roles)
	d := decision with input as req
	d.allow == false
}

# --- scopes per operation ---

test_list_with_read if allowed("GET", collection, ["customers:read"], [])

test_get_with_read if allowed("GET", item, ["customers:read"], [])

test_post_with_write if allowed("POST", collection, ["customers:write"], [])

test_post_denied_with_read_only if denied("POST", collection, ["customers:read"], [])

test_patch_with_write if allowed("PATCH", item, ["customers:write"], [])

test_patch_denied_with_read_only if denied("PATCH", item, ["customers:read"], [])

test_delete_with_delete if allowed("DELETE", item, ["customers:delete"], [])

test_delete_denied_with_read_and_write if {
	denied("DELETE", item, ["customers:read", "customers:write"], [])
}

test_read_denied_without_customer_scope if {
	denied("GET", collection, ["profile:read"], [])
	denied("GET", item, [], [])
}

test_pii_scope_alone_grants_no_operation if denied("GET", item, ["customers:pii"], [])

# --- roles from data.json ---

test_support_role_reads_only if {
	allowed("GET", item, [], ["support"])
	denied("POST", collection, [], ["support"])
}

test_onboarding_role_reads_and_writes if {
	allowed("GET", collection, [], ["onboarding"])
	allowed("POST", collection, [], ["onboarding"])
	allowed("PATCH", item, [], ["onboarding"])
	denied("DELETE", item, [], ["onboarding"])
}

test_dpo_role_reads_and_deletes if {
	allowed("GET", item, [], ["dpo"])
	allowed("DELETE", item, [], ["dpo"])
	denied("PATCH", item, [], ["dpo"])
}

test_unknown_role_grants_nothing if denied("GET", item, [], ["intern"])

test_role_scopes_come_from_data if {
	allowed("DELETE", item, [], ["intern"]) with data.customers.authz.role_scopes as {"intern": ["customers:delete"]}
}

test_scopes_and_roles_add_up if {
	allowed("POST", collection, ["customers:write"], ["support"])
	allowed("GET", collection, ["customers:write"], ["support"])
}

# --- masking ---

test_pii_masked_without_pii_scope if {
	req := request("GET", item, ["customers:read"], ["onboarding"])
	d := decision with input as req
	d.masked_fields == {"cpf", "phone"}
}

test_pii_clear_with_pii_scope if {
	req := request("GET", item, ["customers:read", "customers:pii"], [])
	d := decision with input as req
	d.masked_fields == set()
}

test_pii_clear_with_dpo_role if {
	req := request("GET", collection, [], ["dpo"])
	d := decision with input as req
	d.masked_fields == set()
}

# --- anything else is denied ---

test_unknown_method_denied if {
	denied("PUT", item, ["customers:write"], [])
	denied("HEAD", collection, ["customers:read"], [])
}

test_method_on_wrong_target_denied if {
	denied("POST", item, ["customers:write"], [])
	denied("PATCH", collection, ["customers:write"], [])
	denied("DELETE", collection, ["customers:delete"], [])
}

test_unknown_path_denied if {
	denied("GET", ["api", "v1", "other"], ["customers:read"], [])
	denied("GET", ["api", "v1", "customers", "c-1", "notes"], ["customers:read"], [])
	denied("GET", [], ["customers:read"], [])
}

test_missing_principal_denied if {
	d := decision with input as {"method": "GET", "path": collection}
	d.allow == false
	"no principal" in d.reasons
	d.masked_fields == {"*"}
}

test_empty_input_denied if {
	d := decision with input as {}
	d.allow == false
}

# --- reasons ---

test_reason_for_allow if {
	req := request("GET", item, ["customers:read"], [])
	d := decision with input as req
	d.reasons == {"granted by scope customers:read"}
}

test_reason_for_missing_scope if {
	req := request("DELETE", item, ["customers:read"], [])
	d := decision with input as req
	d.reasons == {"missing scope customers:delete"}
}

test_reason_for_unknown_operation if {
	req := request("PUT", item, ["customers:write"], [])
	d := decision with input as req
	d.reasons == {"no rule for this method and path"}
}

# --- identity filters (email, cpf) need customers:pii ---

list_with_query(granted, roles, query) := object.union(request("GET", collection, granted, roles), {"query": query})

test_cpf_filter_denied_without_pii if {
	d := decision with input as list_with_query(["customers:read"], [], ["cpf"])
	d.allow == false
	d.reasons == {"missing scope customers:pii for the filter cpf"}
}

test_email_filter_denied_without_pii if {
	d := decision with input as list_with_query(["customers:read"], ["support", "onboarding"], ["limit", "email"])
	d.allow == false
}

test_both_filters_named_in_reasons if {
	d := decision with input as list_with_query(["customers:read"], [], ["email", "cpf", "limit"])
	d.reasons == {"missing scope customers:pii for the filter cpf", "missing scope customers:pii for the filter email"}
}

test_identity_filters_allowed_with_pii if {
	d := decision with input as list_with_query(["customers:read", "customers:pii"], [], ["cpf", "email"])
	d.allow == true
}

test_identity_filters_allowed_with_dpo_role if {
	d := decision with input as list_with_query([], ["dpo"], ["cpf"])
	d.allow == true
}

test_pii_alone_does_not_list if {
	d := decision with input as list_with_query(["customers:pii"], [], ["cpf"])
	d.allow == false
}

test_paging_needs_no_pii if {
	d := decision with input as list_with_query(["customers:read"], [], ["limit", "cursor"])
	d.allow == true
}

test_query_of_wrong_type_is_no_filter if {
	d := decision with input as list_with_query(["customers:read"], [], "cpf")
	d.allow == true
	e := decision with input as list_with_query(["customers:read"], [], {"cpf": "1"})
	e.allow == true
}

# --- callers without customers:read see no record ---

test_write_only_caller_sees_only_the_id if {
	req := request("PATCH", item, ["customers:write"], [])
	d := decision with input as req
	d.allow == true
	d.masked_fields == {"*"}
}

test_write_and_pii_without_read_still_sees_nothing if {
	req := request("POST", collection, ["customers:write", "customers:pii"], [])
	d := decision with input as req
	d.masked_fields == {"*"}
}

test_reader_with_write_sees_masked_record if {
	req := request("PATCH", item, ["customers:write", "customers:read"], [])
	d := decision with input as req
	d.masked_fields == {"cpf", "phone"}
}

# --- any input shape: a deny, never an error (embedded engine and OPA alike) ---

test_scopes_not_an_array_grant_nothing if {
	denied("GET", collection, "customers:read", [])
	denied("GET", collection, {"customers:read": true}, [])
	denied("GET", collection, 7, [])
	denied("GET", collection, null, [])
}

test_scope_items_not_strings_grant_nothing if {
	denied("GET", collection, [["customers:read"]], [])
	denied("GET", collection, [{"customers:read": 1}], [])
}

test_roles_not_an_array_grant_nothing if {
	denied("GET", collection, [], "dpo")
	denied("GET", collection, [], {"dpo": true})
	denied("GET", collection, [], [["dpo"]])
}

test_route_decides_the_target_not_the_path if {
	req := object.union(request("GET", collection, ["customers:read"], []), {"path": ["x"]})
	d := decision with input as req
	d.allow == true
	e := decision with input as object.union(req, {"route": "/api/v1/other"})
	e.allow == false
}

test_path_not_an_array_is_no_target if {
	denied("GET", "api/v1/customers", ["customers:read"], [])
	denied("GET", "/api", ["customers:read"], [])
	denied("GET", {"0": "api"}, ["customers:read"], [])
}

test_principal_not_an_object_denied if {
	d := decision with input as {"method": "GET", "path": collection, "principal": "user-1"}
	d.allow == false
	e := decision with input as {"method": "GET", "path": collection, "principal": ["customers:read"]}
	e.allow == false
}

test_input_not_an_object_denied if {
	d := decision with input as ["GET"]
	d.allow == false
	e := decision with input as "GET /api/v1/customers"
	e.allow == false
}

# --- lifecycle: actions and visible statuses ---

action(name) := ["api", "v1", "customers", "c-1", name]

test_block_unblock_reopen_need_lifecycle if {
	every name in ["block", "unblock", "reopen"] {
		allowed("POST", action(name), ["customers:lifecycle"], [])
		denied("POST", action(name), ["customers:read", "customers:write", "customers:delete"], [])
		denied("POST", action(name), ["customers:anonymize"], [])
	}
}

test_anonymize_needs_its_own_scope if {
	allowed("POST", action("anonymize"), ["customers:anonymize"], [])
	denied("POST", action("anonymize"), ["customers:lifecycle", "customers:delete"], [])
}

test_reason_for_missing_lifecycle_scope if {
	d := decision with input as request("POST", action("block"), ["customers:read"], [])
	d.reasons == {"missing scope customers:lifecycle"}
}

test_lifecycle_actions_only_by_post if {
	denied("GET", action("block"), ["customers:lifecycle", "customers:read"], [])
	denied("DELETE", action("anonymize"), ["customers:anonymize"], [])
	denied("PATCH", action("reopen"), ["customers:lifecycle"], [])
}

test_unknown_action_denied if {
	denied("POST", action("close"), ["customers:lifecycle", "customers:delete"], [])
	denied("POST", action("purge"), ["customers:anonymize"], [])
	denied("POST", ["api", "v1", "customers", "c-1", 7], ["customers:lifecycle"], [])
	denied("POST", ["api", "v1", "customers", "c-1", "block", "x"], ["customers:lifecycle"], [])
}

test_only_active_visible_by_default if {
	d := decision with input as request("GET", item, ["customers:read", "customers:pii"], ["support"])
	d.visible_statuses == {"active"}
}

test_restricted_sees_every_status if {
	d := decision with input as request("GET", collection, ["customers:read", "customers:restricted"], [])
	d.visible_statuses == {"active", "blocked", "closed", "anonymized"}
}

test_restricted_alone_grants_no_operation if denied("GET", item, ["customers:restricted"], [])

test_dpo_role_runs_the_lifecycle if {
	every name in ["block", "unblock", "reopen", "anonymize"] {
		allowed("POST", action(name), [], ["dpo"])
	}
	d := decision with input as request("GET", item, [], ["dpo"])
	d.visible_statuses == {"active", "blocked", "closed", "anonymized"}
	every scope in ["customers:audit", "customers:export", "customers:restricted"] {
		scope in data.customers.authz.role_scopes.dpo
	}
}

test_other_roles_see_only_active if {
	every role in ["support", "onboarding"] {
		d := decision with input as request("GET", item, [], [role])
		d.visible_statuses == {"active"}
		denied("POST", action("block"), [], [role])
	}
}

test_visible_statuses_in_a_denied_decision_too if {
	d := decision with input as {}
	d.visible_statuses == {"active"}
}

# --- audit trail and data-subject export ---

customer_audit := ["api", "v1", "customers", "c-1", "audit"]

customer_export := ["api", "v1", "customers", "c-1", "export"]

actor_audit := ["api", "v1", "audit"]

test_audit_routes_need_customers_audit if {
	allowed("GET", customer_audit, ["customers:audit"], [])
	allowed("GET", actor_audit, ["customers:audit"], [])
	denied("GET", customer_audit, ["customers:read", "customers:pii", "customers:export"], [])
	denied("GET", actor_audit, ["customers:read", "customers:pii", "customers:delete"], [])
}

test_export_needs_customers_export if {
	allowed("GET", customer_export, ["customers:export"], [])
	denied("GET", customer_export, ["customers:read", "customers:pii", "customers:audit"], [])
}

test_audit_and_export_only_by_get if {
	denied("POST", customer_audit, ["customers:audit"], [])
	denied("DELETE", actor_audit, ["customers:audit"], [])
	denied("PATCH", customer_export, ["customers:export"], [])
}

test_audit_reason_names_the_missing_scope if {
	d := decision with input as request("GET", actor_audit, ["customers:read"], [])
	d.reasons == {"missing scope customers:audit"}
	e := decision with input as request("GET", customer_export, ["customers:read"], [])
	e.reasons == {"missing scope customers:export"}
}

test_dpo_reads_the_trail_and_exports if {
	allowed("GET", customer_audit, [], ["dpo"])
	allowed("GET", actor_audit, [], ["dpo"])
	allowed("GET", customer_export, [], ["dpo"])
	every role in ["support", "onboarding"] {
		denied("GET", customer_audit, [], [role])
		denied("GET", customer_export, [], [role])
	}
}

test_other_paths_near_audit_denied if {
	denied("GET", ["api", "v1", "customers", "c-1", "audits"], ["customers:audit"], [])
	denied("GET", ["api", "v1", "audit", "x"], ["customers:audit"], [])
	denied("GET", ["api", "v1", "customers", "c-1", "audit", "x"], ["customers:audit"], [])
}

# --- the change feed ---

events := ["api", "v1", "events"]

test_events_feed_with_events_read if allowed("GET", events, ["events:read"], [])

test_events_feed_through_the_integration_role if allowed("GET", events, [], ["integration"])

test_events_feed_needs_its_own_scope if {
	denied("GET", events, ["customers:read", "customers:pii", "customers:write"], [])
	denied("GET", events, [], ["dpo"])
}

test_events_read_grants_nothing_else if {
	denied("GET", collection, ["events:read"], ["integration"])
	denied("GET", item, ["events:read"], [])
	denied("POST", events, ["events:read"], [])
	denied("GET", ["api", "v1", "events", "evt_1"], ["events:read"], [])
}

test_events_denial_names_the_scope if {
	d := decision with input as request("GET", events, ["customers:read"], [])
	"missing scope events:read" in d.reasons
}
