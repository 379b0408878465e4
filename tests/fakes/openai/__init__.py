"""A faithful fake of the OpenAI chat completions API (what OpenAI-compatible providers such
as Abacus RouteLLM also speak), for the AI router's tests and bench.

    with FakeOpenAI(name="openai", api_key="sk-test") as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        fake.fail("429", "503", "hang")      # the next three calls fail so, in order
        fake.calls, fake.served, fake.usage  # what it was asked and what it answered

See state.py for the answers, usage and faults.
"""

from .server import FakeOpenAI
from .state import Fault, OpenAIState, count_tokens

__all__ = ["FakeOpenAI", "Fault", "OpenAIState", "count_tokens"]
