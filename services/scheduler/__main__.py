"""``python -m services.scheduler``: run the scheduler service."""

from services.common.runtime import run
from services.scheduler.app import build

if __name__ == "__main__":
    app, _service = build()
    run(app)
