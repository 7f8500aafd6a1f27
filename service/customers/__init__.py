"""The customer as the domain sees it: canonical forms and domain errors.

Nothing here imports aiohttp or a database driver; the HTTP edge and the storage
adapters both speak in these terms.
"""
