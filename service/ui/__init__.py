"""The dashboard: server-rendered pages over service/core's operations, as the API's, with an OIDC login.
A module per resource as in service/api/, plus login.py (sign-in), deps.py (the viewer, CSRF) and pages.py
(templates, error pages, form errors)."""
