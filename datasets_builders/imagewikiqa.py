"""ImageWikiQA, the paper's OOD-text/ID-image set (§2.1, §4.1), used as is (App. B.1), and its variant with
class-label distractors (§4.2, Fig. 3).

ImageWikiQA (Zhang et al., NeurIPS 2024, "Why are Visually-Grounded Language Models Bad at Image
Classification?", github.com/yuhui-zh15/VLMClassifier) asks 2,000 knowledge questions about ImageNet-val
images, each already a 4-option MCQ. Its release formats and how they are read:
`datasets_builders/imagewikiqa_release.py`.

Prompt: the authors feed LF `<image>\\n` + `text` verbatim, so the release's instruction comes after the
options; records keep the question, the options and that trailing instruction apart
(`MCQRecord.instruction`) and the LF prompt is the released text byte for byte. The VLMEvalKit TSV holds the
bare question (VLMEvalKit adds its own instruction).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from datasets_builders.imagewikiqa_release import Question, fold, load_questions
from datasets_builders.output import export, image_ref
from datasets_builders.registry import BuildOptions, BuildResult, Skips, register
from forgetkit.protocol import IMAGEWIKIQA, IMAGEWIKIQA_CLASSLABEL
from forgetkit.records import LETTERS, MCQRecord

log = logging.getLogger(__name__)


@register(
    "imagewikiqa",
    params={"image_root": "folder the recorded image paths are found under (default: the source's folder)"},
    output=IMAGEWIKIQA,
)
def build_imagewikiqa(options: BuildOptions) -> BuildResult:
    """ImageWikiQA → its own 4-option MCQs, used as is (imagewikiqa)."""
    dataset = IMAGEWIKIQA
    loaded = load_questions(options, dataset)
    records = [_record(question, dataset, options) for question in loaded.questions]
    details = {
        "source_format": loaded.source_format,
        "with_class_name": sum(question.class_name is not None for question in loaded.questions),
    }
    return export(records, dataset, options, skipped=loaded.skipped, details=details)


@register(
    "imagewikiqa-classlabel",
    params={"image_root": "folder the recorded image paths are found under (default: the source's folder)"},
    output=IMAGEWIKIQA_CLASSLABEL,
)
def build_classlabel(options: BuildOptions) -> BuildResult:
    """ImageWikiQA with one distractor replaced by the image's class name (imagewikiqa_classlabel).

    The planted option's letter is `class_option` in the records JSONL, so the mischoice rate can be scored.
    Which distractor is replaced is drawn from `--seed`, per source row (so `--limit` and skipped rows do
    not move it). A question whose class name already is a distractor keeps its options and marks that
    one; a question whose class name is its correct answer cannot hold a class-name distractor and is
    left out (counted and listed in the manifest's `class_option` details).

    The prompt keeps the release's `Choose A, B, C, or D.` line after the options: the authors' mischoice
    matcher (MLLM-Forgetting `evaluators/mix_cls_result_matcher.py`) takes the four options as lines -6..-3
    of LF's saved prompt, which are the option lines only when that line and LF's
    `<|im_end|>\n<|im_start|>assistant` turn end follow them.
    """
    dataset = IMAGEWIKIQA_CLASSLABEL
    loaded = load_questions(options, dataset)
    draws = np.random.default_rng([options.seed, 1]).random(loaded.rows)
    skips = Skips(options.strict, dataset, dict(loaded.skipped))
    records = []
    already: list[str] = []
    is_answer: list[str] = []
    for question in loaded.questions:
        if question.class_name is None:
            reason = "no class name: the row has no 'classname' and its image path no ImageNet wnid folder"
            skips.add(question.item, reason)
            continue
        folded = [fold(option) for option in question.options]
        answer = LETTERS.index(question.answer)
        if fold(question.class_name) == folded[answer]:
            is_answer.append(question.item)
            continue
        if fold(question.class_name) in folded:
            slot = folded.index(fold(question.class_name))
            already.append(question.item)
            planted = question
        else:
            wrong = [k for k in range(len(question.options)) if k != answer]
            slot = wrong[int(draws[question.index] * len(wrong))]
            texts = list(question.options)
            texts[slot] = question.class_name
            planted = replace(question, options=tuple(texts))
        records.append(replace(_record(planted, dataset, options), class_option=LETTERS[slot]))
    if is_answer:
        log.warning("%s: left out %d question(s) whose answer is the class name", dataset, len(is_answer))
    details = {
        "source_format": loaded.source_format,
        "class_option": {
            "planted": len(records) - len(already),
            "already_an_option": len(already),
            "class_is_answer_left_out": len(is_answer),
        },
        "class_is_answer_items": is_answer,
    }
    return export(records, dataset, options, skipped=skips.items, details=details)


def _record(question: Question, dataset: str, options: BuildOptions) -> MCQRecord:
    return MCQRecord(
        id=question.id,
        image=image_ref(question.image, options.out),
        question=question.question,
        options=question.options,
        answer=question.answer,
        class_label=question.class_name or "",
        source=dataset,
        instruction=question.instruction,
    )
