"""A faithful fake of the Cloud Run Admin API v2 (REST/JSON), for tests and local runs.

    with FakeCloudRun(operation_delay=0.1) as fake:
        provider = CloudRunProvider(api_endpoint=fake.endpoint)
        ...
        fake.inject(503, count=3)          # the next 3 requests answer 503 UNAVAILABLE
        fake.deny("Permission denied ...")  # 403 until fake.deny(None)
        fake.error_rate(0.2, seed=7)        # from now on 20% of requests answer 429 or 503
        fake.slow_operations(3.0)           # operations complete 3 s after the write
        fake.fail_operations_half_way(2)    # the next 2 revision rollouts end 13 INTERNAL
        fake.total_writes                   # accepted create/patch/delete requests

See docs/cloudrun.md for what is faithful and what is not.
"""

from .server import WRITE_RPCS, FakeCloudRun, Fault
from .state import ApiError, CloudRunState

__all__ = ["WRITE_RPCS", "ApiError", "CloudRunState", "FakeCloudRun", "Fault"]
