"""``python -m services.api``: serve the REST API (OpenAPI at /docs) with uvicorn."""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from services.api.settings import ApiSettings
from services.common.logs import setup_logging
from services.common.runtime import prepare_process


def main() -> None:
    settings = ApiSettings()
    setup_logging("api", fmt=settings.log_format, level=settings.log_level)
    app = create_app(settings)
    prepare_process(settings)
    uvicorn.run(
        app, host=settings.api_host, port=settings.api_port, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
