"""The ratelimit and breaker sections: defaults per profile, bad values named at start-up."""

from __future__ import annotations

import re

import pytest

from service.settings import SettingsError, load_settings


def test_off_in_the_embedded_profile_on_in_compose() -> None:
    embedded = load_settings(environ={})
    assert embedded.ratelimit.enabled is False
    assert (embedded.ratelimit.rate_per_s, embedded.ratelimit.burst) == (20.0, 40)
    assert (embedded.breaker.failures, embedded.breaker.cooldown_s) == (5, 30.0)
    compose = load_settings(["config/compose.yaml"], environ={})
    assert compose.ratelimit.enabled is True
    assert compose.ratelimit.url.startswith("redis://")


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("CUSTOMERS__RATELIMIT__URL", "memcached://x", "ratelimit.url"),
        ("CUSTOMERS__RATELIMIT__BURST", "0", "ratelimit.burst"),
        ("CUSTOMERS__RATELIMIT__RATE_PER_S", "0", "ratelimit.rate_per_s"),
        ("CUSTOMERS__RATELIMIT__TRUSTED_PROXIES", "[10.0.0.0/8, proxy.local]", "trusted_proxies"),
        ("CUSTOMERS__RATELIMIT__BUCKETS", "10", "ratelimit.buckets"),
        ("CUSTOMERS__BREAKER__FAILURES", "0", "breaker.failures"),
    ],
)
def test_bad_values_are_refused_naming_the_key(env: str, value: str, named: str) -> None:
    with pytest.raises(SettingsError, match=f"env {env}.*{re.escape(named)}"):
        load_settings(environ={env: value})
