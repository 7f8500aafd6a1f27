# Tests for policy.rego: `opa test policies/` or `make test` (through the embedded engine).
# Same package as the policy: the embedded engine (opa-eval) loads one module per evaluator,
# so it joins policy.rego and this file into one module to run these rules.
package customers.authz

import rego.v1

collection := ["api", "v1", "customers"]

item := ["api", "v1", "customers", "c-1"]

# The input the app sends for `method` on `path` by a caller with `granted` scopes and `roles`.
request(method, path, granted, roles) := {
	"method": method,
	"path": path,
	"principal": {"sub": "user-1", "scopes": granted, "roles": roles},
}

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
	d.masked_fields == {"cpf", "phone"}
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
