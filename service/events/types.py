"""The event types (DESIGN.md, Events): imported by the event model and by the settings
that subscribe webhooks to them, so both name the same list."""

EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.blocked",
    "customer.unblocked",
    "customer.closed",
    "customer.reopened",
    "customer.anonymized",
)
