"""Change events for other systems (DESIGN.md, Events): the thin event, the pull feed's
cursors, and the webhook relay. Domain code: no aiohttp.web import."""
