"""The secret mask: URLs, command lines, free text and database errors."""

import pytest
from loguru import logger
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from vektor.core.database import create_engine
from vektor.core.logging import flush_logs
from vektor.core.secrets import mask_command, mask_text, mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p4ss@h.example/v1", "https://***@h.example/v1"),
        ("https://tok3n@h.example/", "https://***@h.example/"),
        ("https://h/x?api-key=k1&api-version=2024", "https://h/x?api-key=***&api-version=2024"),
        ("https://h/x?sig=s&sv=1&access_token=t", "https://h/x?sig=***&sv=1&access_token=***"),
        ("https://h/x?X-Amz-Signature=a&key=b", "https://h/x?X-Amz-Signature=***&key=***"),
        ("http://127.0.0.1:8000/mcp", "http://127.0.0.1:8000/mcp"),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_mask_command_and_text():
    command = ["srv", "--token", "t1", "--api-key=k1", "API_TOKEN=e1", "https://h/?secret=s1", "-v"]
    assert mask_command(command) == [
        "srv",
        "--token",
        "***",
        "--api-key=***",
        "API_TOKEN=***",
        "https://h/?secret=***",
        "-v",
    ]
    assert mask_text("failed for url 'https://a:b@h/x?password=p' (401)") == (
        "failed for url 'https://***@h/x?password=***' (401)"
    )


async def test_database_errors_do_not_quote_bound_values(database_url):
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as failure:
                await connection.execute(
                    text("SELECT * FROM no_such_table WHERE a = :p"), {"p": "bound-secret"}
                )
    finally:
        await engine.dispose()
    assert "bound-secret" not in str(failure.value)


async def test_logged_tracebacks_mask_urls(app, settings):
    try:
        raise RuntimeError("failed for https://h.example/x?token=trace-secret")
    except RuntimeError:
        logger.exception("delivery failed")
    await flush_logs()
    errors = (settings.log_dir / "error.log").read_text()
    assert "https://h.example/x?token=***" in errors
    assert "trace-secret" not in errors
