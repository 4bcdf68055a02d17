"""The research workflow on the customer's real data (skipped with a reason when it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pixsearch.exporter.data import load_practicum

pytestmark = pytest.mark.data


def test_real_files_load_and_validate(shared_data: Path) -> None:
    data = load_practicum(shared_data)
    report = data.report
    assert report.ok, report.to_markdown()
    assert report.rows["train_dataset.csv"] == 5822
    assert report.rows["ExpertAnnotations.tsv"] == 5822
    assert report.rows["CrowdAnnotations.tsv"] == 47830
    assert report.rows["pairs_with_expert"] == 5822
    assert report.rows["pairs_with_expert_and_crowd"] == 2329
    expert = data.pairs[data.pairs["has_expert"]]
    assert (expert[["e1", "e2", "e3"]].nunique(axis=1) == 3).sum() == 126  # as the README says


def test_real_legal_filter_uses_the_policy(shared_data: Path) -> None:
    policy = pytest.importorskip("pixsearch.indexer.policy")
    from pixsearch.exporter.workflow import prepare_pairs

    _, scored, kept, report = prepare_pairs(shared_data, decode_photos=False)
    assert report.pairs_removed == len(scored) - len(kept) > 0
    assert not kept["query_text"].map(policy.is_about_children).any()


@pytest.mark.train
def test_real_pipeline_on_a_subset(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from pixsearch.exporter.regression import MLPConfig
    from pixsearch.exporter.workflow import run_train
    from pixsearch.indexer.errors import ModelBundleError
    from pixsearch.indexer.models import ModelBundle

    try:
        bundle = ModelBundle.load()
        bundle.verify()
    except ModelBundleError as error:
        pytest.skip(f"no model bundle yet: {error}")
    result = run_train(
        shared_data,
        tmp_path / "out",
        bundle=bundle,
        cache_dir=tmp_path / "cache",
        max_images=80,
        mlp_config=MLPConfig(max_epochs=15),
        n_examples=3,
    )
    by_name = {r.name.split(" ")[0]: r.rmse for r in result.results}
    assert all(np.isfinite(list(by_name.values())))
    assert by_name["constant"] < 0.4
    assert "validation RMSE" in result.card.read_text()
