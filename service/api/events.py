"""`GET /api/v1/events`: the change feed, oldest first, in commit order.

`next_cursor` is always given (the last event's position, or the cursor asked with when
nothing is new): a consumer stores it after processing a page and resumes from it, and
sees every later event exactly once, whatever happens between two calls.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import RAISE, Schema, fields, validate

from service.api.openapi import Webhook, json_content, operation, webhook
from service.api.render import json_response
from service.events.model import decode_cursor, encode_cursor
from service.events.types import EVENT_TYPES
from service.typedefs import repository_key, request_data_key

EVENT_CURSOR_PATTERN = r"^[A-Za-z0-9_-]{12}$"  # encode_cursor: 9 bytes of URL-safe base64


class EventSchema(Schema):
    """A change, thin: ids and field names only; read the customer through the API."""

    id = fields.String(required=True, metadata={"example": "evt_65a1f0c2e4b0a1b2c3d4e5f6"})
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    customer_id = fields.String(required=True, metadata={"pattern": r"^[0-9a-f]{24}$"})
    fields_ = fields.List(
        fields.String(),
        required=True,
        data_key="fields",
        metadata={"description": "Names of the fields the change set (updates: the changed ones)"},
    )
    occurred_at = fields.String(required=True, metadata={"format": "date-time"})


class EventPageSchema(Schema):
    data = fields.List(fields.Nested(EventSchema), required=True)
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(
        required=True,
        metadata={
            "pattern": EVENT_CURSOR_PATTERN,
            "description": "Where to resume: pass it as `after` (also when `data` is empty)",
        },
    )


class EventQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    after = fields.String(
        validate=validate.Regexp(
            EVENT_CURSOR_PATTERN, error="The `after` cursor is not one this API handed out."
        ),
        metadata={"description": "A `next_cursor` from an earlier page; none: the oldest kept"},
    )
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


@operation(
    "listEvents",
    tag="events",
    summary="Changes since a cursor (oldest first, commit order; kept events.retention_days)",
    query=EventQuerySchema,
    responses={200: json_content(EventPageSchema, "The next events after `after`")},
    errors=(400, 410, 422),
)
async def list_events(request: web.Request) -> web.Response:
    query = request[request_data_key]
    after = decode_cursor(query["after"]) if "after" in query else None
    store = request.app[repository_key].events
    page = await store.page(after=after, limit=query["limit"])
    position = page.events[-1][0] if page.events else page.after
    body: dict[str, Any] = {
        "data": [event.body() for _, event in page.events],
        "has_more": page.has_more,
        "next_cursor": encode_cursor(position),
    }
    return json_response(body)


def _header(name: str, description: str, example: str) -> dict[str, Any]:
    schema = {"type": "string", "example": example}
    return {
        "in": "header",
        "name": name,
        "required": True,
        "description": description,
        "schema": schema,
    }


webhook(
    "customerEvent",
    Webhook(
        summary="A change, POSTed to each endpoint of `events.webhooks` subscribed to its type",
        description=(
            "Standard Webhooks: verify `webhook-signature` over `webhook-id.webhook-timestamp.body`"
            " with the endpoint's secret (e.g. the `standardwebhooks` package), reject old"
            " timestamps, and deduplicate on `webhook-id`: delivery is at least once. One"
            " customer's events arrive in commit order; any 2xx acknowledges, anything else (or"
            " no answer within 5 s) is retried with exponential backoff for about 17 minutes."
        ),
        body=EventSchema,
        headers=[
            _header(
                "webhook-id",
                "The event id (the same on every retry)",
                "evt_65a1f0c2e4b0a1b2c3d4e5f6",
            ),
            _header("webhook-timestamp", "Unix seconds of this attempt", "1767268800"),
            _header(
                "webhook-signature",
                "`v1,<base64 HMAC-SHA256>`, one per active secret, space-separated",
                "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            ),
        ],
        responses={
            "2XX": {"description": "Delivered"},
            "default": {"description": "Not delivered: retried later"},
        },
    ),
)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/events", list_events, name="events", allow_head=False)
