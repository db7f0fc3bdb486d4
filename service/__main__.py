"""`python -m service` serves the API (SQLite by default; settings from ENVVARS_* variables);
`python -m service check` reports drift between the database and Vault and exits non-zero on any."""
import json
import logging
import sys

from service.executor.sandbox import SandboxUnavailable
from service.settings import Settings, SettingsError


def serve(settings: Settings) -> int:
    import uvicorn

    from service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    host = _env("HOST", "0.0.0.0")  # noqa: S104 (in a container: its own port, published by the stack)
    uvicorn.run(create_app(settings=settings), host=host, port=int(_env("PORT", "8080")),
                ssl_certfile=settings.tls_cert_file or None, ssl_keyfile=settings.tls_key_file or None,
                access_log=False, proxy_headers=False)
    return 0


def _env(name: str, default: str) -> str:
    import os

    return os.environ.get(f"ENVVARS_{name}", default)


def main(argv: list[str]) -> int:
    try:
        settings = Settings.from_env(serving=argv[:1] != ["check"])
        if argv[:1] != ["check"]:
            return serve(settings)
    except (SettingsError, SandboxUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from service.drift import drift

    report = drift(settings)
    print(json.dumps(report, indent=2))
    drifted = ("rows_without_value", "values_without_row", "rows_with_another_vault_path")
    return 1 if any(report[k] for k in drifted) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
