"""docs/operations.md and the Grafana dashboard name only metrics the relay exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app

if TYPE_CHECKING:
    from core.settings import Settings

DOCS = Path(__file__).resolve().parents[3] / "docs"


def exported(settings: Settings) -> set[str]:
    app = create_app(settings, metrics=True)
    body, _ = app.state.metrics.render()
    names = set()
    for family in text_string_to_metric_families(body.decode()):
        names.add(family.name)  # families with no sample yet are listed by their HELP line
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.mark.parametrize("source", ["operations.md", "grafana-dashboard.json"])
def test_the_docs_name_only_exported_metrics(relay_settings: Settings, source: str) -> None:
    text = (DOCS / source).read_text()
    if source.endswith(".json"):
        dashboard = orjson.loads(text)
        text = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    named = set(re.findall(r"\brelay_[a-z_]+", text))
    assert named, source
    names = exported(relay_settings)
    assert named <= names, sorted(named - names)
