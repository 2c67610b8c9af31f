"""MLLM-CL domain continual learning (paper §5, App. B.3, C.5): five domains learned one after another,
RS (RSVQA) -> Med (PathVQA) → AD (DriveLM) → Sci (AI2D, SciVerse, MapQA, TQA) → Fin (StockQA).

Source: the benchmark as MLLM-CL's README (github bjzhb666/MLLM-CL) lays it out after downloading
HF MLLM-CL/MLLM-CL; `--source` is the folder holding the five domain folders:
    <domain>/images/...
    <domain>/train.json   LLaVA conversations: [{"id", "image", "conversations": [{"from", "value"}, ...]}]
    <domain>/test.json    [{"question_id", "image", "text", "answer"}]
Image paths are relative to the domain folder (its scripts pass `--image_folder $DATA/<domain>`).

Test prompts are what MLLM-CL's evaluation of fine-tuned models sends (ETrain/Eval/LLaVA/CoIN):
`<image>\\n` + text, and for Fin (model_fin.py) a suffix asking for yes/no or the letter. Test rows carry
the answer as the assistant message, so LF's predictions hold it as `label`; `<dataset>.meta.jsonl`
keeps question_id, text and answer row by row for the MLLM-CL matchers.

Replay (App. C.5): `--param replay=20` adds to a domain's training rows 20 rows of every earlier domain,
no oversampling. Each domain's 20 are drawn with a generator seeded by the seed and the domain's name,
so a domain's replay rows are the same whichever later domain asks for them.
"""

from __future__ import annotations

import posixpath
import zlib
from pathlib import Path

import numpy as np

from datasets_builders.llava_conversations import convert_conversations
from datasets_builders.output import export_rows, image_ref
from datasets_builders.registry import BuildOptions, BuildResult, Skips, register, seeded_subset
from datasets_builders.sources import existing_files, load_json_list
from forgetkit.errors import ForgetkitError
from forgetkit.exporters import IMAGE_TOKEN, lf_dataset_entry
from forgetkit.protocol import mllm_cl_set

DOMAINS = ("RS", "Med", "AD", "Sci", "Fin")
"""The paper's task order (PROTOCOL §4), which is also the folder names."""
FIN_YES_NO = " Only answer with yes or no directly."
FIN_LETTER = " Answer with the given letter directly, e.g., A, B, C, D."


def domain_name(text: str, what: str) -> str:
    """A domain as written by the user (any case) → its folder name."""
    by_lower = {domain.lower(): domain for domain in DOMAINS}
    try:
        return by_lower[text.strip().lower()]
    except KeyError:
        raise ForgetkitError(f"{what} {text!r} is not an MLLM-CL domain; choose from {', '.join(DOMAINS)}") from None


def task_order(text: str | None) -> list[str]:
    if text is None:
        return list(DOMAINS)
    order = [domain_name(part, "order entry") for part in text.split(",") if part.strip()]
    if len(set(order)) != len(order):
        raise ForgetkitError(f"--param order={text} names a domain twice")
    return order


def question_prompt(domain: str, text: str, answer: str) -> str:
    """The question as MLLM-CL's evaluation asks it (Fin: model_fin.py's answer-format suffix)."""
    if domain == "Fin":
        return text + (FIN_YES_NO if answer in ("Yes", "No") else FIN_LETTER)
    return text


def domain_folder(source: Path, domain: str) -> Path:
    folder = source / domain
    if not folder.is_dir():
        found = ", ".join(sorted(p.name for p in source.iterdir() if p.is_dir())) or "nothing"
        raise ForgetkitError(
            f"{folder} does not exist (found: {found}); --source must hold MLLM-CL's {', '.join(DOMAINS)} folders"
        )
    return folder


def train_rows(source: Path, domain: str, options: BuildOptions) -> tuple[list[dict], list[int], list, dict, int]:
    """A domain's training conversations as LF rows, their indices in train.json, the raw rows, skipped rows
    and dropped leading gpt turns."""
    folder = domain_folder(source, domain)
    raw = load_json_list(folder / "train.json")
    rows, sources, skipped, dropped = convert_conversations(
        raw, range(len(raw)), folder, options, f"{domain}/train.json"
    )
    return rows, sources, raw, skipped, dropped


def replay_choice(domain: str, count: int, replay: int, seed: int) -> np.ndarray:
    """Which of a domain's `count` usable rows it replays: seeded by the seed and the domain alone."""
    rng = np.random.default_rng([seed, zlib.crc32(domain.encode())])
    return np.sort(rng.choice(count, size=min(replay, count), replace=False))


def question_rows(source: Path, domain: str, options: BuildOptions) -> tuple[list[dict], list[dict], dict[str, str]]:
    """A domain's test questions → LF rows (answer as the assistant turn), their meta rows, skipped rows."""
    folder = domain_folder(source, domain)
    raw = load_json_list(folder / "test.json")
    label = f"{domain}/test.json"
    skips = Skips(options.strict, label)
    candidates: list[dict] = []
    seen: set = set()
    for index, row in enumerate(raw):
        problem = _question_problem(row, seen)
        if problem:
            skips.add(f"{label}[{index}]", problem)
            continue
        seen.add(row["question_id"])
        candidates.append(row)
    found = existing_files(folder, [row["image"] for row in candidates])
    for row in (candidates[i] for i in np.flatnonzero(~found)):
        skips.add(f"{label} question_id={row['question_id']}", f"image {folder / row['image']} does not exist")
    skips.report()
    kept = [row for row, ok in zip(candidates, found) if ok]
    root = image_ref(folder, options.out)
    rows, meta = [], []
    for row in kept:
        prompt = question_prompt(domain, row["text"], row["answer"])
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"{IMAGE_TOKEN}\n{prompt}"},
                    {"role": "assistant", "content": row["answer"]},
                ],
                "images": [posixpath.join(root, row["image"])],
            }
        )
        meta.append(
            {
                "question_id": row["question_id"],
                "domain": domain,
                "image": row["image"],
                "text": row["text"],
                "prompt": prompt,
                "answer": row["answer"],
            }
        )
    return rows, meta, skips.items


def _question_problem(row: object, seen: set) -> str | None:
    """Why a test.json row cannot be used (None if it can)."""
    if not isinstance(row, dict):
        return f"row is a {type(row).__name__}, not an object"
    for key in ("image", "text", "answer"):
        if not isinstance(row.get(key), str) or not row[key]:
            return f"missing or empty {key!r}"
    if IMAGE_TOKEN in row["text"]:
        return f"'text' already holds {IMAGE_TOKEN}; MLLM-CL's test questions carry none"
    if not isinstance(row.get("question_id"), (str, int)):
        return "missing 'question_id'"
    if row["question_id"] in seen:
        return f"question_id {row['question_id']!r} appears twice (the matchers join on it)"
    return None


@register(
    "mllm-cl",
    params={
        "domain": f"which domain: {', '.join(DOMAINS)}",
        "replay": "train split: add this many seeded rows of every earlier domain (the paper: 20)",
        "order": f"task order for replay (default {','.join(DOMAINS)})",
    },
)
def build(options: BuildOptions) -> BuildResult:
    """MLLM-CL domain → LF rows (mllmcl_<domain>_train[_replay<N>], or mllmcl_<domain>_test + meta JSONL)."""
    source = options.require_source(f"the MLLM-CL folder holding {', '.join(DOMAINS)}")
    if options.param("domain") is None:
        raise ForgetkitError(f"--param domain=... is required; choose from {', '.join(DOMAINS)}")
    domain = domain_name(options.param("domain"), "domain")
    if options.split not in ("train", "test"):
        raise ForgetkitError(f"MLLM-CL has train and test splits; got --split {options.split}")
    replay_text = options.param("replay")
    if options.split == "test":
        if replay_text is not None:
            raise ForgetkitError("--param replay is for --split train; test sets have no replay")
        return build_test(source, domain, options)
    if replay_text is not None and (not replay_text.isdigit() or int(replay_text) < 1):
        raise ForgetkitError(f"--param replay={replay_text} must be a positive number of rows per earlier domain")
    return build_train(source, domain, None if replay_text is None else int(replay_text), options)


def build_test(source: Path, domain: str, options: BuildOptions) -> BuildResult:
    rows, meta, skipped = question_rows(source, domain, options)
    keep = seeded_subset(len(rows), options.limit, options.seed)
    dataset = mllm_cl_set(domain, "test")
    details = {"domain": domain, "meta": f"{dataset}.meta.jsonl"}
    entry = lf_dataset_entry(f"{dataset}.json")
    sidecars = {"meta": [meta[k] for k in keep]}
    return export_rows(
        [rows[k] for k in keep], dataset, options, entry, sidecars=sidecars, skipped=skipped, details=details
    )


def build_train(source: Path, domain: str, replay: int | None, options: BuildOptions) -> BuildResult:
    order = task_order(options.param("order"))
    if replay is not None and domain not in order:
        raise ForgetkitError(f"domain {domain} is not in --param order={','.join(order)}")
    rows, _, _, skipped, dropped = train_rows(source, domain, options)
    keep = seeded_subset(len(rows), options.limit, options.seed)
    rows = [rows[k] for k in keep]
    details: dict = {"domain": domain, "leading_gpt_turns_dropped": dropped}
    dataset = mllm_cl_set(domain, "train", replay)
    if replay is not None:
        replayed = {}
        for past in order[: order.index(domain)]:
            past_rows, past_sources, past_raw, past_skipped, _ = train_rows(source, past, options)
            chosen = replay_choice(past, len(past_rows), replay, options.seed)
            rows += [past_rows[k] for k in chosen]
            replayed[past] = [
                {"row": past_sources[k], "id": past_raw[past_sources[k]].get("id")} for k in chosen.tolist()
            ]
            skipped |= past_skipped
        details |= {"order": order, "replay_per_task": replay, "replayed": replayed}
    entry = lf_dataset_entry(f"{dataset}.json")
    return export_rows(rows, dataset, options, entry, skipped=skipped, details=details)
