"""CEP (Brazilian postal code) resolution: providers, cache, single-flight resolver."""
