import io
import json
import logging

from services.common.logs import JsonFormatter, TextFormatter, _RunIdFilter, run_context


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_RunIdFilter())
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_the_run_id_inside_a_run_and_none_outside() -> None:
    logger, stream = capture(JsonFormatter())
    with run_context("run-42"):
        logger.info("Generated %d rebalance orders", 4)
    logger.info("idle")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["run_id"] == "run-42" and first["message"] == "Generated 4 rebalance orders"
    assert second["run_id"] is None


def test_text_lines_use_the_seeds_prefix() -> None:
    logger, stream = capture(TextFormatter())
    with run_context("abc"):
        logger.info("INFO: Starting portfolio rebalance")
    assert "[Rebalance:abc] INFO: Starting portfolio rebalance" in stream.getvalue()
