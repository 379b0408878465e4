"""A fake Cloud Monitoring `google.monitoring.v3.MetricService` speaking real gRPC.

The server registers `ListTimeSeries` under the service's real name with the client library's
own message types (`google.cloud.monitoring_v3`), so `MetricServiceAsyncClient` talks to it
over an insecure channel exactly as to monitoring.googleapis.com. What it honours, as the API
reference describes it:

- `name` must be `projects/<id>` of a known project (else NOT_FOUND), and a project can be
  denied (PERMISSION_DENIED).
- `filter`: `key = "value"` terms joined by AND over `metric.type` (required, exactly one),
  `resource.type`, `metric.labels.<k>`, `resource.labels.<k>`; anything else is
  INVALID_ARGUMENT. A metric type the project has never seen is NOT_FOUND ("Cannot find
  metric(s) that match type = ...").
- `interval`: `end_time` required, `start_time` not after it; points in (start, end].
- `aggregation`: `alignment_period` (at least 60 s) required with an aligner; ALIGN_MEAN
  (GAUGE and DELTA numeric series), ALIGN_SUM, ALIGN_MAX, ALIGN_RATE (DELTA: the sum over
  the period per second; CUMULATIVE: the increase per second; GAUGE refused), ALIGN_DELTA
  (DELTA: the period's sum, a DELTA series), periods ending at `end_time`; ALIGN_DELTA,
  ALIGN_SUM and ALIGN_MAX keep the input's value type (an INT64 counter's counts come back
  INT64), the others give DOUBLE; all but ALIGN_DELTA give a GAUGE. Reducers REDUCE_SUM /
  MEAN / MAX across series by aligned time, grouped by `group_by_fields`; a reducer without an
  aligner is refused.
- DISTRIBUTION series (DELTA, as `run.googleapis.com/request_latencies`; a point's value is the
  list of values it counts, sent as a `google.api.Distribution` with exponential buckets):
  ALIGN_DELTA merges the period's distributions (a DELTA DISTRIBUTION out), ALIGN_MEAN is the
  mean of every value counted in the period, ALIGN_PERCENTILE_05/50/95/99 that percentile
  (DOUBLE GAUGE out; the fake's percentile is exact where the service interpolates within
  buckets); REDUCE_SUM merges distributions, REDUCE_MEAN averages their values; other
  aligners (ALIGN_RATE, ALIGN_SUM, ALIGN_MAX) and reducers (REDUCE_MAX) are INVALID_ARGUMENT
  for distributions, and the percentile aligners are INVALID_ARGUMENT for numeric series.
  Periods without a point give no aligned point.
- Points come newest first. With the FULL view `page_size` counts points (default and cap
  100,000), so a long series is split over pages, each page's TimeSeries carrying its share;
  `next_page_token` is opaque and a token the server did not issue is INVALID_ARGUMENT.

Test controls: `add_series(...)`, `add_project`, `deny(project)`, `fail(code, message,
times)` (the next calls end with that status, e.g. UNAVAILABLE), `requests` (every request
received, as messages).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.api import distribution_pb2, metric_pb2
from google.cloud import monitoring_v3
from google.protobuf import timestamp_pb2

__all__ = ["FakeMetricService", "Series"]

SERVICE = "google.monitoring.v3.MetricService"
MAX_PAGE = 100_000
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
Kind = metric_pb2.MetricDescriptor.MetricKind
ValueType = metric_pb2.MetricDescriptor.ValueType
_TERM = re.compile(r'\s*([a-z_.]+(?:\.[A-Za-z0-9_]+)?)\s*=\s*"([^"]*)"\s*')


class RefusedError(Exception):
    """Ends the call with `code` and `message`, as the real service would."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Series:
    """One stored time series: raw points (end time in seconds, value; for DELTA the point's
    interval is the `delta_seconds` before its end)."""

    metric_type: str
    resource_type: str = "cloud_run_revision"
    metric_labels: dict[str, str] = field(default_factory=dict)
    resource_labels: dict[str, str] = field(default_factory=dict)
    kind: int = Kind.GAUGE
    value_type: int = ValueType.DOUBLE
    points: list[tuple[float, Any]] = field(default_factory=list)
    delta_seconds: float = 60.0

    def label(self, key: str) -> str | None:
        if key == "metric.type":
            return self.metric_type
        if key == "resource.type":
            return self.resource_type
        for prefix, labels in (
            ("metric.labels.", self.metric_labels),
            ("resource.labels.", self.resource_labels),
        ):
            if key.startswith(prefix):
                return labels.get(key[len(prefix) :])
        return None


def parse_filter(text: str) -> dict[str, str]:
    """`key = "value" AND ...` -> {key: value}; INVALID_ARGUMENT for anything else."""
    terms: dict[str, str] = {}
    for part in re.split(r"\s+AND\s+", text.strip()) if text.strip() else []:
        m = _TERM.fullmatch(part)
        if m is None or not (
            m.group(1) in ("metric.type", "resource.type")
            or m.group(1).startswith(("metric.labels.", "resource.labels."))
        ):
            raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, f"Unparseable filter: {text}")
        terms[m.group(1)] = m.group(2)
    if "metric.type" not in terms:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'Field filter had an invalid value of "{text}": A filter must specify a metric type.',
        )
    return terms


def _seconds(ts: Any) -> float:
    """Seconds since the epoch of a Timestamp field (proto-plus gives a datetime)."""
    return float(ts.timestamp()) if hasattr(ts, "timestamp") else ts.seconds + ts.nanos / 1e9


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def _numeric(series: Series) -> bool:
    return series.value_type in (ValueType.DOUBLE, ValueType.INT64)


_PERCENTILES = {
    Aligner.ALIGN_PERCENTILE_05: 5.0,
    Aligner.ALIGN_PERCENTILE_50: 50.0,
    Aligner.ALIGN_PERCENTILE_95: 95.0,
    Aligner.ALIGN_PERCENTILE_99: 99.0,
}


_SAME_VALUE_TYPE = (Aligner.ALIGN_DELTA, Aligner.ALIGN_SUM, Aligner.ALIGN_MAX)
"""Aligners whose output keeps the input's value type (the API reference, per aligner)."""


def _invalid(aligner: int, what: str) -> RefusedError:
    return RefusedError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"The aligner {Aligner(aligner).name} is not valid for metrics of {what}.",
    )


def output_type(series: Series, aligner: int) -> tuple[int, int]:
    """(kind, value type) of the series aligned with `aligner`; refuses what the API does."""
    if aligner == Aligner.ALIGN_RATE and series.kind == Kind.GAUGE:
        raise _invalid(aligner, "kind GAUGE")
    if aligner == Aligner.ALIGN_MEAN and series.kind == Kind.CUMULATIVE:
        raise _invalid(aligner, "kind CUMULATIVE")
    if aligner == Aligner.ALIGN_DELTA and series.kind == Kind.CUMULATIVE:
        raise RefusedError(grpc.StatusCode.UNIMPLEMENTED, "fake: ALIGN_DELTA of a CUMULATIVE")
    if aligner == Aligner.ALIGN_DELTA and series.kind == Kind.GAUGE:
        raise _invalid(aligner, "kind GAUGE")
    if series.value_type == ValueType.DISTRIBUTION:
        if aligner == Aligner.ALIGN_DELTA:
            return Kind.DELTA, ValueType.DISTRIBUTION
        if aligner == Aligner.ALIGN_MEAN or aligner in _PERCENTILES:
            return Kind.GAUGE, ValueType.DOUBLE
        raise _invalid(aligner, "value type DISTRIBUTION")
    if not _numeric(series) or aligner in _PERCENTILES:
        raise _invalid(aligner, f"value type {ValueType.Name(series.value_type)}")
    kind = Kind.DELTA if aligner == Aligner.ALIGN_DELTA else Kind.GAUGE
    if aligner in _SAME_VALUE_TYPE:
        return kind, series.value_type  # an INT64 counter's deltas stay INT64, as the API says
    return kind, ValueType.DOUBLE


def align(
    series: Series, *, start: float, end: float, period: float, aligner: int
) -> list[tuple[float, Any]]:
    """The series' aligned points (period end, value), periods ending at `end`."""
    output_type(series, aligner)
    points = sorted(series.points, key=lambda p: p[0])
    out: list[tuple[float, Any]] = []
    t = end
    while t > start:
        inside = [v for ts, v in points if t - period < ts <= t]
        before = [v for ts, v in points if ts <= t - period]
        if series.value_type == ValueType.DISTRIBUTION:
            value = _aligned_distribution(inside, aligner)
        else:
            value = _aligned(series, [float(v) for v in inside], [float(v) for v in before],
                             period, aligner)  # fmt: skip
        if value is not None:
            out.append((t, value))
        t -= period
    return out


def _aligned_distribution(inside: list[Any], aligner: int) -> Any:
    merged = [float(x) for values in inside for x in values]
    if not inside:
        return None
    if aligner == Aligner.ALIGN_DELTA:
        return merged
    if not merged:
        return None
    if aligner == Aligner.ALIGN_MEAN:
        return sum(merged) / len(merged)
    return float(np.percentile(merged, _PERCENTILES[aligner]))


def _aligned(
    series: Series, inside: list[float], before: list[float], period: float, aligner: int
) -> float | None:
    if aligner == Aligner.ALIGN_RATE:
        if series.kind == Kind.DELTA:
            return sum(inside) / period if inside else None
        if not inside or not before:
            return None
        return max(0.0, inside[-1] - before[-1]) / period
    if not inside:
        return None
    if aligner == Aligner.ALIGN_MEAN:
        return sum(inside) / len(inside)
    if aligner in (Aligner.ALIGN_SUM, Aligner.ALIGN_DELTA):
        return sum(inside)
    if aligner == Aligner.ALIGN_MAX:
        return max(inside)
    raise RefusedError(grpc.StatusCode.UNIMPLEMENTED, f"fake: aligner {Aligner(aligner).name}")


_REDUCE: dict[int, Callable[[list[float]], float]] = {
    Reducer.REDUCE_SUM: sum,
    Reducer.REDUCE_MEAN: lambda xs: sum(xs) / len(xs),
    Reducer.REDUCE_MAX: max,
}
_REDUCE_DISTRIBUTION: dict[int, Callable[[list[list[float]]], Any]] = {
    Reducer.REDUCE_SUM: lambda ds: [x for d in ds for x in d],
    Reducer.REDUCE_MEAN: lambda ds: float(np.mean([x for d in ds for x in d])),
}


def _reducer(reducer: int, value_type: int) -> Callable[[list[Any]], Any]:
    if value_type == ValueType.DISTRIBUTION:
        if reducer in _REDUCE_DISTRIBUTION:
            return _REDUCE_DISTRIBUTION[reducer]
        if reducer in _REDUCE:
            raise RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"The reducer {Reducer(reducer).name} is not valid for metrics of "
                "value type DISTRIBUTION.",
            )
    if reducer not in _REDUCE:
        raise RefusedError(grpc.StatusCode.UNIMPLEMENTED, f"fake: reducer {Reducer(reducer).name}")
    return _REDUCE[reducer]


class FakeMetricService:
    """The service's state and its one RPC; `start()` serves it on 127.0.0.1."""

    def __init__(self, projects: Iterable[str] = ("proj",)) -> None:
        self.projects = set(projects)
        self.denied: set[str] = set()
        self.series: dict[str, list[Series]] = defaultdict(list)
        self.requests: list[monitoring_v3.ListTimeSeriesRequest] = []
        self._faults: list[tuple[grpc.StatusCode, str]] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0
        self.max_page = MAX_PAGE
        """The most points a page holds (the API's is 100,000; lower it to see pages)."""

    # --- test controls -------------------------------------------------------------------

    def add_series(self, project: str, series: Series) -> Series:
        with self._lock:
            self.projects.add(project)
            self.series[project].append(series)
        return series

    def deny(self, project: str) -> None:
        self.denied.add(project)

    def fail(self, code: grpc.StatusCode, message: str, *, times: int = 1) -> None:
        """The next `times` calls end with `code`."""
        with self._lock:
            self._faults.extend([(code, message)] * times)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeMetricService:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(
            self._handle,
            request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
            response_serializer=monitoring_v3.ListTimeSeriesResponse.serialize,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"ListTimeSeries": handler}),)
        )
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    def __enter__(self) -> FakeMetricService:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- the RPC ------------------------------------------------------------------------

    def _handle(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self.requests.append(request)
            fault = self._faults.pop(0) if self._faults else None
        try:
            if fault is not None:
                raise RefusedError(*fault)
            return self.list_time_series(request)
        except RefusedError as exc:
            context.abort(exc.code, exc.message)

    def list_time_series(self, request: Any) -> monitoring_v3.ListTimeSeriesResponse:
        """ListTimeSeries on the stored series (raises RefusedError for an error status)."""
        project = self._project(request.name)
        terms = parse_filter(request.filter)
        if not request.interval or "end_time" not in request.interval:
            raise RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT, "Field interval.end_time is required"
            )
        end = _seconds(request.interval.end_time)
        start = _seconds(request.interval.start_time) if "start_time" in request.interval else end
        if start > end:
            raise RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Field interval.start_time must not be later than end_time",
            )
        with self._lock:
            stored = list(self.series[project])
        if not any(s.metric_type == terms["metric.type"] for s in stored):
            raise RefusedError(
                grpc.StatusCode.NOT_FOUND,
                f'Cannot find metric(s) that match type = "{terms["metric.type"]}".',
            )
        chosen = [s for s in stored if all(s.label(k) == v for k, v in terms.items())]
        result = self._aggregate(chosen, request.aggregation, start=start, end=end)
        return self._page(result, request)

    def _project(self, name: str) -> str:
        m = re.fullmatch(r"projects/([a-z][-a-z0-9]{4,28}[a-z0-9]|[a-z0-9-]+)", name)
        if m is None:
            raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource name: {name!r}")
        project = m.group(1)
        if project in self.denied:
            raise RefusedError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission monitoring.timeSeries.list denied (or the resource "
                f"may not exist) on projects/{project}.",
            )
        if project not in self.projects:
            raise RefusedError(grpc.StatusCode.NOT_FOUND, f"Project {project} not found.")
        return project

    def _aggregate(
        self, chosen: list[Series], agg: Any, *, start: float, end: float
    ) -> list[tuple[Series, list[tuple[float, float | Any]]]]:
        aligner = int(agg.per_series_aligner) if agg else Aligner.ALIGN_NONE
        reducer = int(agg.cross_series_reducer) if agg else Reducer.REDUCE_NONE
        if aligner == Aligner.ALIGN_NONE:
            if reducer != Reducer.REDUCE_NONE:
                raise RefusedError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "A cross_series_reducer requires a per_series_aligner.",
                )
            raw = [
                (s, sorted(((t, v) for t, v in s.points if start < t <= end), reverse=True))
                for s in chosen
            ]
            return [(s, p) for s, p in raw if p]
        period = agg.alignment_period.total_seconds() if agg.alignment_period else 0.0
        if period < 60:
            raise RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "The alignment period must be at least 60 seconds.",
            )
        aligned = [
            (s, align(s, start=start, end=end, period=period, aligner=aligner)) for s in chosen
        ]
        kind, value_type = output_type(chosen[0], aligner) if chosen else (Kind.GAUGE, 0)
        out_kind = {"kind": kind, "value_type": value_type or ValueType.DOUBLE}
        if reducer == Reducer.REDUCE_NONE:
            return [(_like(s, **out_kind), p) for s, p in aligned if p]
        reduce = _reducer(reducer, value_type)
        if reducer == Reducer.REDUCE_MEAN:  # a mean is a DOUBLE, of INT64 counts too
            gauge = value_type == ValueType.DISTRIBUTION
            out_kind = {"kind": Kind.GAUGE if gauge else kind, "value_type": ValueType.DOUBLE}
        groups: dict[str, list[tuple[Series, list[tuple[float, Any]]]]] = defaultdict(list)
        fields = list(agg.group_by_fields)
        for s, p in aligned:
            groups[json.dumps([s.label(f) for f in fields])].append((s, p))
        out = []
        for members in groups.values():
            by_time: dict[float, list[Any]] = defaultdict(list)
            for _, points in members:
                for t, v in points:
                    by_time[t].append(v)
            if by_time:
                head = _grouped(members[0][0], fields, **out_kind)
                out.append(
                    (
                        head,
                        [(t, reduce(by_time[t])) for t in sorted(by_time, reverse=True)],
                    )
                )
        return out

    def _page(
        self, result: list[tuple[Series, list[tuple[float, Any]]]], request: Any
    ) -> monitoring_v3.ListTimeSeriesResponse:
        size = min(request.page_size or MAX_PAGE, MAX_PAGE, self.max_page)
        offset = _offset(request.page_token) if request.page_token else 0
        flat = [(i, j) for i, (_, points) in enumerate(result) for j in range(len(points))]
        chunk = flat[offset : offset + size]
        response = monitoring_v3.ListTimeSeriesResponse()
        for i in sorted({i for i, _ in chunk}):
            series, points = result[i]
            mine = [points[j] for k, j in chunk if k == i]
            response.time_series.append(_message(series, mine))
        if offset + size < len(flat):
            response.next_page_token = _token(offset + size)
        return response


def _like(series: Series, **changes: Any) -> Series:
    return Series(**{**series.__dict__, **changes, "points": []})


def _grouped(series: Series, fields: list[str], **changes: Any) -> Series:
    """The head of a reduced group: the types, and only the grouped-by labels."""
    keep = {f: series.label(f) for f in fields}
    return Series(
        metric_type=series.metric_type,
        resource_type=series.resource_type,
        metric_labels={k[14:]: v for k, v in keep.items() if k.startswith("metric.labels.") and v},
        resource_labels={
            k[16:]: v for k, v in keep.items() if k.startswith("resource.labels.") and v
        },
        **changes,
    )


def _message(series: Series, points: list[tuple[float, Any]]) -> monitoring_v3.TimeSeries:
    def value(v: Any) -> monitoring_v3.TypedValue:
        if series.value_type == ValueType.INT64:
            return monitoring_v3.TypedValue(int64_value=int(v))
        if series.value_type == ValueType.BOOL:
            return monitoring_v3.TypedValue(bool_value=bool(v))
        if series.value_type == ValueType.STRING:
            return monitoring_v3.TypedValue(string_value=str(v))
        if series.value_type == ValueType.DISTRIBUTION:
            return monitoring_v3.TypedValue(distribution_value=distribution(v))
        return monitoring_v3.TypedValue(double_value=float(v))

    def interval(t: float) -> monitoring_v3.TimeInterval:
        if series.kind == Kind.GAUGE:
            return monitoring_v3.TimeInterval(end_time=_timestamp(t))
        return monitoring_v3.TimeInterval(
            start_time=_timestamp(t - series.delta_seconds), end_time=_timestamp(t)
        )

    return monitoring_v3.TimeSeries(
        metric={"type": series.metric_type, "labels": series.metric_labels},
        resource={"type": series.resource_type, "labels": series.resource_labels},
        metric_kind=series.kind,
        value_type=series.value_type,
        points=[monitoring_v3.Point(interval=interval(t), value=value(v)) for t, v in points],
    )


BUCKETS = distribution_pb2.Distribution.BucketOptions(
    exponential_buckets=distribution_pb2.Distribution.BucketOptions.Exponential(
        num_finite_buckets=64, growth_factor=1.4, scale=1.0
    )
)
"""Exponential buckets (the shape Cloud Run's request_latencies uses; scale in ms)."""


def distribution(values: list[float]) -> distribution_pb2.Distribution:
    """The `google.api.Distribution` counting `values`."""
    arr = np.asarray(values, dtype=np.float64)
    exp = BUCKETS.exponential_buckets
    bounds = exp.scale * exp.growth_factor ** np.arange(exp.num_finite_buckets + 1)
    counts = np.bincount(np.searchsorted(bounds, arr, side="right"),
                         minlength=exp.num_finite_buckets + 2)  # fmt: skip
    mean = float(arr.mean()) if arr.size else 0.0
    return distribution_pb2.Distribution(
        count=int(arr.size),
        mean=mean,
        sum_of_squared_deviation=float(((arr - mean) ** 2).sum()),
        bucket_options=BUCKETS,
        bucket_counts=[int(c) for c in counts],
    )


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid page token: {token!r}")
