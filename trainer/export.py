"""Export a training run: the LoRA adapter, and the base merged with it, in HF format."""

from __future__ import annotations

import shutil
from pathlib import Path


def export_run(run_dir: str | Path, dest: str | Path | None = None) -> dict[str, Path]:
    """Write ``dest/adapter`` and ``dest/merged`` (loadable with ``from_pretrained``).

    Raises:
        FileNotFoundError: ``run_dir`` is not a finished training run.
    """
    from peft import PeftModel

    from trainer.models import load

    run = Path(run_dir)
    base_dir, adapter_dir = run / "base", run / "adapter"
    if not base_dir.exists():
        raise FileNotFoundError(f"{run} has no base/ model: is it the --out of `simenv train`?")
    target = Path(dest) if dest is not None else run / "export"
    target.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load(base_dir)
    written: dict[str, Path] = {}
    if adapter_dir.exists():
        shutil.copytree(adapter_dir, target / "adapter", dirs_exist_ok=True)
        written["adapter"] = target / "adapter"
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.save_pretrained(target / "merged")
    tokenizer.save_pretrained(target / "merged")
    written["merged"] = target / "merged"
    return written
