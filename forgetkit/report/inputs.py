"""What the report reads from a run: each prediction file's item credit, the spec, the drift probes and the
class-label set's records.

Numbers come from the prediction files item by item (`scoring.scored_items`), under the matcher `forgetkit
score` recorded for each file in scores.json, so the report's accuracies are the score table's.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.protocol import IMAGEWIKIQA_CLASSLABEL
from forgetkit.report.stats import Items
from forgetkit.rundir import RunDir
from forgetkit.scoring import run_predictions, score_items, scored_items
from forgetkit.stage_names import stage_name
from forgetkit.yamlfile import load_yaml

if TYPE_CHECKING:
    from forgetkit.spec import Study

JUDGED = "vlmevalkit"
"""scores.json's matcher for files carrying VLMEvalKit's own verdicts (score_items reads those whatever matcher)."""
MISCHOICE = "classlabel-mischoice"
PROBE_SUMMARY = ("kl", "answer_mass_base", "answer_mass_checkpoint", "answer_mass_shift", "top_token_agreement")
"""The means `forgetkit.stages.probe.probe` writes into RUN/probes/<checkpoint>.json, all needed by the report."""


def load_items(run: RunDir) -> dict[tuple[str, str], Items]:
    """Per (checkpoint, dataset), the file's item credit under the matcher scores.json records for it."""
    files = run_predictions(run)
    rescore = f"run `forgetkit score {run.root}` first"
    scores = read_json(run.scores_path, dict, rescore)
    found = {}
    for checkpoint, dataset, path in files:
        entry = scores.get(checkpoint, {}).get(dataset)
        if not isinstance(entry, dict) or "matcher" not in entry:
            raise ForgetkitError(f"{path} has no score in {run.scores_path}; {rescore}")
        matcher, skip_bad = entry["matcher"], bool(entry.get("skipped"))
        scored = scored_items(path, "letter" if matcher == JUDGED else matcher, skip_bad)
        credit = np.asarray(scored.credits, dtype=float)
        if credit.size != entry.get("total") or not math.isclose(credit.sum(), entry.get("correct", -1)):
            raise ForgetkitError(f"{run.scores_path} is stale for {path} (predictions changed); {rescore}")
        labels = "\0".join(scored.labels)
        digest = hashlib.blake2b(labels.encode("utf-8"), digest_size=16).hexdigest()
        found[(checkpoint, dataset)] = Items(checkpoint, dataset, path, matcher, credit, digest)
    return found


def read_spec(run: RunDir) -> dict:
    """The spec the run was launched with, as written (its name and model); empty without one."""
    path = _spec_path(run)
    if path is None:
        return {}
    try:
        spec = load_yaml(path)
    except ForgetkitError as err:
        raise ForgetkitError(f"{err}; restore the spec the run was launched with") from None
    return spec if isinstance(spec, dict) else {}


def launched_study(run: RunDir) -> Study | None:
    """The spec the run was launched with (presets resolved); None without one."""
    from forgetkit.spec import load_study

    path = _spec_path(run)
    return None if path is None else load_study(path)


def _spec_path(run: RunDir) -> Path | None:
    path = run.root / "spec.yaml"
    return path if path.is_file() else None


def mischoice_credit(run: RunDir, items: Items, data_dir: Path | None) -> np.ndarray | None:
    """Per item of a class-label set's prediction file, 1 where it chose the planted class-name option; None
    where the set's records sidecar is not found (`_classlabel_records`)."""
    records = _classlabel_records(run, items.checkpoint, data_dir)
    if records is None:
        return None
    return np.asarray(score_items(items.path, MISCHOICE, sidecar=records), dtype=float)


def _classlabel_records(run: RunDir, checkpoint: str, data_dir: Path | None) -> Path | None:
    """The class-label set's records sidecar (each row's planted class-name option, which the predictions do
    not carry), next to the data the predictions were made from: `data_dir`, else the dataset_dir of the
    LLaMA-Factory config the run kept for that prediction stage."""
    if data_dir is None:
        config = run.config(stage_name("predict", checkpoint, IMAGEWIKIQA_CLASSLABEL))
        kept = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else None
        if not isinstance(kept, dict) or not kept.get("dataset_dir"):
            return None
        data_dir = Path(str(kept["dataset_dir"]))
    records = Path(data_dir) / f"{IMAGEWIKIQA_CLASSLABEL}.records.jsonl"
    return records if records.is_file() else None


def read_probes(run: RunDir) -> dict[str, dict]:
    """checkpoint -> the summary of its drift probe, from every RUN/probes/<checkpoint>.json (none: empty)."""
    folder = run.root / "probes"
    if not folder.is_dir():
        return {}
    fix = "delete it and rerun `forgetkit launch` to probe that checkpoint again"
    found = {}
    for path in sorted(folder.rglob("*.json")):
        summary = read_json(path, dict, fix)
        missing = [key for key in PROBE_SUMMARY if not _is_finite(summary.get(key))]
        if missing:
            raise ForgetkitError(f"{path} is not a drift probe (no finite number for {', '.join(missing)}); {fix}")
        found[path.relative_to(folder).with_suffix("").as_posix()] = summary
    return found


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
