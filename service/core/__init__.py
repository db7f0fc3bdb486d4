"""The service's operations, independent of HTTP: the API (service/api) and the dashboard (service/ui) are
adapters over them. They raise the domain errors of errors.py, never an HTTP status."""
