"""The `vlmeval` stage kind: VLMEvalKit's own runner and judge on a checkpoint's `vlmeval:` benchmarks.

- `stage.py`: in forgetkit's process, plans the Stage, writes VLMEvalKit's config and reads back its verdicts;
- `runner.py`: `python -m forgetkit.stages.vlmeval.runner`, VLMEvalKit's runner with forgetkit's model class
  registered (the subprocess the stage starts);
- `model.py`: that model class, loading the checkpoint the way VLMEvalKit's own Qwen2.5-VL / LLaVA entries do.
"""
