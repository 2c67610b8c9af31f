"""LLaVA-665K (LLaVA-1.5's visual instruction mix) -> LF sharegpt rows, the general data of the paper's
data-hybrid recipe (§4.3, Fig. 4); its `ocr_vqa/` part is a stand-in for the OCR-VQA arm, which the authors
built from HF OCR-VQA instead (`build-data ocr-vqa`).

Source: `llava_v1_5_mix665k.json` (HF liuhaotian/LLaVA-Instruct-150K), one JSON list of
`{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}, ...]}`; rows without "image" are
text-only (ShareGPT). Image paths are relative to LLaVA's `playground/data` folder, laid out as LLaVA's
docs/Data.md says: coco/train2017, gqa/images, ocr_vqa/images, textvqa/train_images,
vg/VG_100K(_2). `--source` is the JSON file (or its folder); `--param image_root=DIR` says where those
image folders live (default: the JSON's folder).

Conversations are normalised the way LLaVA's own training loader does (`llava_conversations`): leading gpt turns
are dropped and the one `<image>` moves to the start of its turn.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from datasets_builders.llava_conversations import convert_conversations
from datasets_builders.output import export_rows
from datasets_builders.registry import BuildOptions, BuildResult, register, seeded_subset
from datasets_builders.sources import load_json_list
from forgetkit.errors import ForgetkitError
from forgetkit.exporters import lf_dataset_entry

JSON_NAME = "llava_v1_5_mix665k.json"
SUBSETS = ("coco", "gqa", "ocr_vqa", "textvqa", "vg", "text")
"""`--param subset` values: the first folder of the image path, or `text` for the text-only rows."""


def subset_of(row: object) -> str | None:
    """Which `--param subset` a source row belongs to (None: a row too malformed to say)."""
    if not isinstance(row, dict):
        return None
    image = row.get("image")
    if image is None:
        return "text"
    return image.split("/", 1)[0] if isinstance(image, str) else None


@register(
    "llava-665k",
    params={
        "image_root": "folder holding LLaVA's coco/, gqa/, ocr_vqa/, textvqa/, vg/ (default: the JSON's folder)",
        "subset": f"keep one part: {', '.join(SUBSETS)} (output llava_665k_<subset>)",
    },
)
def build(options: BuildOptions) -> BuildResult:
    """LLaVA-665K instruction mix → LF sharegpt conversations (llava_665k, or llava_665k_<subset>)."""
    source = options.require_source(f"{JSON_NAME} (or the folder holding it)")
    json_path = source / JSON_NAME if source.is_dir() else source
    image_root = Path(options.param("image_root") or json_path.parent)
    if not image_root.is_dir():
        raise ForgetkitError(f"image_root {image_root} is not a folder; pass --param image_root=<LLaVA's data folder>")
    subset = options.param("subset")
    if subset is not None and subset not in SUBSETS:
        raise ForgetkitError(f"unknown subset {subset!r}; choose one of: {', '.join(SUBSETS)}")
    raw = load_json_list(json_path)
    candidates = range(len(raw)) if subset is None else [i for i, row in enumerate(raw) if subset_of(row) == subset]
    if not candidates:
        raise ForgetkitError(f"{json_path}: no rows in subset {subset!r}")
    rows, sources, skipped, dropped = convert_conversations(raw, candidates, image_root, options, json_path.name)
    keep = seeded_subset(len(rows), options.limit, options.seed)
    dataset = "llava_665k" if subset is None else f"llava_665k_{subset}"
    counts: dict[str, int] = defaultdict(int)
    for k in keep:
        counts[subset_of(raw[sources[k]])] += 1
    details = {
        "image_root": str(image_root.resolve()),
        "source_rows": len(raw),
        "subset_rows": dict(sorted(counts.items())),
        "leading_gpt_turns_dropped": dropped,
    }
    entry = lf_dataset_entry(f"{dataset}.json")
    return export_rows([rows[k] for k in keep], dataset, options, entry, skipped=skipped, details=details)
