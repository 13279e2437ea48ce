"""The hot-path histogram exposes what prometheus-client's own Histogram would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from services.ingest.metrics import HotHistogram

BUCKETS = (-5.0, -1.0, 0.0, 0.01, 0.1, 1.0, 30.0)


def _samples(registry: CollectorRegistry) -> list[str]:
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if not line.startswith("#") and "_created" not in line
    ]


def test_hot_histogram_matches_the_library_histogram_sample_for_sample() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = HotHistogram("lag_seconds", "doc", BUCKETS, registry=ours_registry)
    theirs = Histogram("lag_seconds", "doc", buckets=BUCKETS, registry=theirs_registry)
    rng = random.Random(7)
    # Bucket edges exactly (le is inclusive), beyond both ends, and a spread between.
    values = [*BUCKETS, -9.0, 31.0, *(rng.uniform(-6, 40) for _ in range(2000))]
    for value in values:
        ours.observe(value)
        theirs.observe(value)
    assert _samples(ours_registry) == _samples(theirs_registry)
    assert f"lag_seconds_count {float(len(values))}" in _samples(ours_registry)


def test_without_negative_buckets_the_sum_is_exposed_too() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = HotHistogram("x_seconds", "doc", (0.1, 1.0), registry=ours_registry)
    theirs = Histogram("x_seconds", "doc", buckets=(0.1, 1.0), registry=theirs_registry)
    for value in (0.05, 0.1, 0.5, 2.0):
        ours.observe(value)
        theirs.observe(value)
    assert _samples(ours_registry) == _samples(theirs_registry)
    assert "x_seconds_sum 2.65" in _samples(ours_registry)


def test_labelled_series_match_the_library_histogram_with_labels() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = HotHistogram("lag_seconds", "doc", BUCKETS, ["symbol"], registry=ours_registry)
    theirs = Histogram("lag_seconds", "doc", ["symbol"], buckets=BUCKETS, registry=theirs_registry)
    rng = random.Random(11)
    for symbol in ("BTCUSDT", "ETHUSDT", "BTCUSDT"):
        series = ours.labels(symbol)
        for _ in range(500):
            value = rng.uniform(-6, 40)
            series.observe(value)
            theirs.labels(symbol).observe(value)
    assert _samples(ours_registry) == _samples(theirs_registry)
    assert 'lag_seconds_count{symbol="BTCUSDT"} 1000.0' in _samples(ours_registry)
    with pytest.raises(ValueError, match="takes labels"):
        ours.labels()
