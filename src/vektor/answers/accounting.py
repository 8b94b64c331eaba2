"""What an answer consumed: its usage row, priced at its deployments' rates, and the
token and cost metrics. `finish_answer` makes one row for every answer that reached a
deployment, finished, cancelled or failed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from vektor.answers.request import Answer
from vektor.core.database import new_id
from vektor.core.metrics import count_tokens
from vektor.llm.base import Usage
from vektor.usage.hot_repository import UsageRow


def usage_row(answer: Answer, usage: Usage) -> UsageRow:
    """The answer's row; counted into the metrics as it is made."""
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    cost = Decimal(0) if answer.cached else answer.cost(usage)  # a hit asked no deployment
    count_tokens(answer.model, prompt, completion, cost)
    return UsageRow(
        id=new_id(),
        user_id=answer.user_id,
        api_key_id=answer.api_key_id,
        model=answer.model,
        deployment=answer.deployment,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        cached=answer.cached,
        estimated=answer.estimated,
        source=answer.source,
        finish_reason=answer.finish_reason,
        created_at=datetime.now(UTC),
    )
