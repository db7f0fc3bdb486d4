"""The dashboard: server-rendered pages over the same operations as the API, with an OIDC login."""
