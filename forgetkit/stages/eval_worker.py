"""One worker of a checkpoint's evaluation: every LF-format eval set of the checkpoint in one process, the
model loaded once (`python -m forgetkit.stages.eval_worker JOB.json SHARD COUNT`).

Each set's rows are cut into chunks of whole batches in the order the tool batches them (LF's dataset
order for generation, shortest first for letter logits); worker SHARD of COUNT answers chunks SHARD,
SHARD+COUNT, ... and appends each to its `RowLog` part as it finishes, so a killed worker resumes at its
first missing chunk and the batches, hence the answers, are those of an uninterrupted run. The worker that
completes a set merges it in row order and records its `predict`/`logits` stage done.

- `predict`: LF's own `run_sft` prediction (gen kwargs, trainer, `save_predictions`), with its model and
  tokenizer loads answered from the session and its trainer predicting chunk by chunk.
- `logits`: letter-logit scoring (`forgetkit.stages.logits`) on the session's model.
- `chat`: LF's `ChatModel` (vLLM on a GPU), one engine for every set.
Sampling (`lf-defaults`) draws from one seeded stream per set, so there a set is one chunk on worker 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.rundir import RunDir
from forgetkit.stages.lf_inprocess import PredictArgs, Session, parse_predict
from forgetkit.stages.rowlog import RowLog

PREDICTIONS = "generated_predictions.jsonl"


def chunks(order: list[int], rows: int, batch_size: int) -> list[list[int]]:
    """`order` cut into chunks of `rows` rounded down to a multiple of `batch_size` (at least one batch)."""
    size = max(batch_size, rows // batch_size * batch_size)
    return [order[start : start + size] for start in range(0, len(order), size)]


class Worker:
    """Shard `shard` of `count` of one evaluation job (`forgetkit.stages.evaluate` writes it)."""

    def __init__(self, job: dict[str, Any], shard: int, count: int) -> None:
        self.job, self.shard, self.count = job, shard, count
        self.run = RunDir(Path(job["run"]))
        self.session: Session | None = None
        self.chat: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def evaluate(self) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
        print(f"worker {self.shard} of {self.count}, CUDA_VISIBLE_DEVICES={visible}", flush=True)
        for member in self.job["members"]:
            getattr(self, f"_{member['kind']}")(member)

    def _parsed(self, member: dict) -> tuple[PredictArgs, Session]:
        """The member's predict YAML as LF parses it, and the session that loaded the checkpoint for the first set.

        LF writes each chunk's predictions into its output folder before the worker reads them back, so every
        worker has a folder of its own inside the set's."""
        scratch = self.run.scratch(member["name"]) / f"lf-{self.shard}"
        args = parse_predict(member["config"], self.job["device"], scratch)
        if self.session is None:
            self.session = Session(args)
        self.session.check_same_model(args)
        return args, self.session

    def fill(
        self, member: dict, order: list[int], batch_size: int, answer: Callable[[list[int]], list[str]], whole: bool
    ) -> None:
        """Answer this worker's missing chunks of `order`, then merge the set if every row is in."""
        log = RowLog(self.run.scratch(member["name"]), self.shard)
        done = log.done()
        planned = [order] if whole else chunks(order, self.job["chunk_rows"], batch_size)
        owner = [0 if whole else k % self.count for k in range(len(planned))]
        todo = [c for c, o in zip(planned, owner) if o == self.shard and any(row not in done for row in c)]
        kept = sum(row in done for chunk in planned for row in chunk)
        if kept:
            print(f"{member['name']}: {kept} of {len(order)} rows kept from an earlier run", flush=True)
        print(f"{member['name']}: answering {sum(map(len, todo))} rows in {len(todo)} chunks", flush=True)
        for chunk in tqdm(todo, desc=member["name"], unit="chunk"):
            lines = answer(chunk)
            if len(lines) != len(chunk):
                raise ForgetkitError(
                    f"{member['name']}: {len(lines)} predictions came back for a chunk of {len(chunk)} rows; "
                    f"delete {self.run.scratch(member['name'])} and launch again"
                )
            log.append(list(zip(chunk, lines)))
        if log.merge(len(order), Path(member["target"])):
            self.run.mark(member["name"], "done", member["digest"], command=member["command"])

    def _logits(self, member: dict) -> None:
        from forgetkit.stages.logits import inputs_of, score_inputs

        args, session = self._parsed(member)
        inputs = inputs_of(session, args)
        batch_size = args.training_args.per_device_eval_batch_size

        def answer(chunk: list[int]) -> list[str]:
            rows = score_inputs(inputs.session.model, inputs, batch_size, order=chunk)
            by_row = dict(zip(sorted(chunk), rows))
            return [json.dumps(by_row[row], ensure_ascii=False) for row in chunk]

        self.fill(member, inputs.length_order(), batch_size, answer, whole=False)

    def _predict(self, member: dict) -> None:
        from llamafactory.train.sft import workflow

        args, session = self._parsed(member)
        whole = bool(args.generating_args.do_sample) or not args.generating_args.skip_special_tokens
        skip = args.generating_args.skip_special_tokens
        with _answered_by(workflow, session, self, member, whole, skip):
            workflow.run_sft(
                args.model_args, args.data_args, args.training_args, args.finetuning_args, args.generating_args
            )

    def _chat(self, member: dict) -> None:
        from forgetkit.stages.chat_predict import engine_args, eval_rows

        settings = json.loads(member["config"])
        if self.chat is None:
            from llamafactory.chat import ChatModel

            self.chat = ChatModel(engine_args(settings))
            self.loop = asyncio.new_event_loop()  # the engine's semaphore binds to the loop that first awaits it
        rows = eval_rows(Path(settings["dataset_dir"]), settings["dataset"])

        async def answer_all(chunk: list[int]) -> list[str]:
            async def answer(row: dict) -> str:
                responses = await self.chat.achat(row["messages"], images=row["images"] or None)
                return responses[0].response_text

            return await asyncio.gather(*(answer(rows[index]) for index in chunk))

        def answer(chunk: list[int]) -> list[str]:
            texts = self.loop.run_until_complete(answer_all(chunk))
            return [
                json.dumps(
                    {"prompt": rows[i]["messages"][-1]["content"], "predict": t, "label": rows[i]["label"]},
                    ensure_ascii=False,
                )
                for i, t in zip(chunk, texts)
            ]

        self.fill(member, list(range(len(rows))), 1, answer, whole=False)


@contextmanager
def _answered_by(
    workflow: Any, session: Session, worker: Worker, member: dict, whole: bool, skip_special_tokens: bool
) -> Iterator[None]:
    """LF's `run_sft` with its loads answered by the session and its trainer predicting chunk by chunk into the
    worker's row log; everything else (gen kwargs, eos ids, trainer, decoding, the JSONL line) stays LF's."""
    base = workflow.CustomSeq2SeqTrainer

    class ChunkedTrainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("compute_metrics", None)  # BLEU/ROUGE of the predictions: not what forgetkit scores
            super().__init__(*args, **kwargs)

        def predict(self, test_dataset: Any, *args: Any, **kwargs: Any) -> Any:
            from transformers.trainer_utils import PredictionOutput

            def answer(chunk: list[int]) -> list[str]:
                rows = test_dataset.select(chunk)
                results = super(ChunkedTrainer, self).predict(rows, *args, **kwargs)
                super(ChunkedTrainer, self).save_predictions(rows, results, skip_special_tokens)
                return (Path(self.args.output_dir) / PREDICTIONS).read_text(encoding="utf-8").splitlines()

            batch_size = self.args.per_device_eval_batch_size
            worker.fill(member, list(range(len(test_dataset))), batch_size, answer, whole)
            return PredictionOutput(predictions=None, label_ids=None, metrics={"predict_rows": len(test_dataset)})

        def save_predictions(self, *args: Any, **kwargs: Any) -> None:
            """Done chunk by chunk in `predict`."""

    replaced = {
        "load_tokenizer": lambda model_args: session.tokenizer_module,
        "load_model": lambda *args, **kwargs: session.model,
        "CustomSeq2SeqTrainer": ChunkedTrainer,
        "create_modelcard_and_push": lambda *args, **kwargs: None,
    }
    kept = {name: getattr(workflow, name) for name in replaced}
    for name, value in replaced.items():
        setattr(workflow, name, value)
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(workflow, name, value)


def main(argv: list[str]) -> None:
    try:
        job = read_json(Path(argv[0]), dict, "delete it; the next launch writes it again")
        Worker(job, int(argv[1]), int(argv[2])).evaluate()
    except ForgetkitError as err:
        print(f"ForgetkitError: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
