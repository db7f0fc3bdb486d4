"""The dashboard: server-rendered pages over service/core's operations, as the API's, with an OIDC login."""
