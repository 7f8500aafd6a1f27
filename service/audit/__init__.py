"""The audit trail: who changed or saw which customer's personal data, when (LGPD arts. 37
and 18 VII). Entries hold ids and field names, never a value; each carries the hash of the
one before it, so a row changed behind the code's back breaks the chain."""
