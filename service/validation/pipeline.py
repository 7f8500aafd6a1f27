"""Load validators from settings and run them in order, gathering every error.

Discovery follows the packaging guide's plugin pattern: built-ins (and any installed
third-party package) are entry points in the group `service.validators`; an entry whose
`use` contains a colon (`package.module:Class`) is imported by path instead: from the
import path (installed packages), then from the working directory, which `python -m
service` has on the path and an installed `customers-api` script does not.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from prometheus_client import Counter

from service.errors import FieldError, InvalidFields, ServiceUnavailable
from service.metrics import Metrics
from service.settings import SettingsError, ValidatorEntry
from service.validation.base import Outcome, ValidationContext, Validator

ENTRY_POINT_GROUP = "service.validators"


def _find_class(use: str) -> type[Validator]:
    if ":" in use:
        module_name, _, attribute = use.partition(":")
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())  # after installed packages: they win a name clash
        module = importlib.import_module(module_name)
        found = getattr(module, attribute)
    else:
        matches = entry_points(group=ENTRY_POINT_GROUP, name=use)
        if not matches:
            known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise LookupError(f"no validator is registered as {use!r} (known: {', '.join(known)})")
        found = next(iter(matches)).load()
    if not (isinstance(found, type) and issubclass(found, Validator)):
        raise TypeError(f"{use!r} is not a Validator subclass")
    return found


def load_validators(entries: Sequence[ValidatorEntry]) -> list[Validator]:
    """Build the enabled validators; any bad entry stops start-up with a message naming it."""
    validators = []
    for position, entry in enumerate(entries):
        if not entry.enabled:
            continue
        where = f"validators[{position}] (use: {entry.use})"
        try:
            cls = _find_class(entry.use)
            validators.append(cls(**entry.options))
        except Exception as exc:  # any import/option failure is a configuration error
            raise SettingsError(f"{where}: {type(exc).__name__}: {exc}") from exc
    return validators


class ValidatorPipeline:
    def __init__(
        self, validators: Sequence[Validator], *, rejections: Counter | None = None
    ) -> None:
        """`rejections`: `validator_rejections_total{validator, code}` (the app's)."""
        self.validators = list(validators)
        self._rejections = rejections or Metrics.create().validator_rejections

    async def run(self, values: Mapping[str, Any], context: ValidationContext) -> dict[str, Any]:
        """Return `values` with every validator's updates applied, or raise InvalidFields
        listing every failing field.

        A validator runs only when the values hold at least one of its fields (a PATCH
        re-runs just the validators of the fields it changes) and none of its fields has
        failed already (`email_unique` is pointless once `email` is rejected).
        """
        result = dict(values)
        errors: list[tuple[int, FieldError]] = []  # (position of the validator, error)
        failed: set[str] = set()
        unavailable: ServiceUnavailable | None = None
        deferred: list[tuple[int, Validator]] = []
        for position, validator in enumerate(self.validators):
            if not any(name in result for name in validator.fields):
                continue
            if failed.intersection(validator.fields):
                continue
            if validator.storage_decides:
                deferred.append((position, validator))
                continue
            outcome = await self._one(validator, result, context)
            if isinstance(outcome, ServiceUnavailable):
                unavailable = unavailable or outcome
                failed.update(validator.fields)
                continue
            errors.extend((position, error) for error in outcome.errors)
            failed.update(error.field for error in outcome.errors)
            result.update(outcome.updates)
        if errors:  # failing anyway: what the storage would decide is said now, in order
            for position, validator in deferred:
                if failed.intersection(validator.fields):
                    continue
                outcome = await self._one(validator, result, context)
                if isinstance(outcome, Outcome):
                    errors.extend((position, error) for error in outcome.errors)
            errors.sort(key=lambda item: item[0])
            raise InvalidFields([error for _, error in errors])
        if unavailable is not None:
            raise unavailable
        return result

    async def _one(
        self, validator: Validator, values: Mapping[str, Any], context: ValidationContext
    ) -> Outcome | ServiceUnavailable:
        """The validator's outcome (its rejections counted), or why it could not answer."""
        try:
            outcome = await validator.validate(values, context)
        except ServiceUnavailable as exc:
            return exc
        for error in outcome.errors:
            self._rejections.labels(validator.name, error.code).inc()
        return outcome
