"""Export a training run: the LoRA adapter, and the base merged with it, in HF format."""

from __future__ import annotations

import shutil
from pathlib import Path


def export_run(run_dir: str | Path, dest: str | Path | None = None) -> dict[str, Path]:
    """Write ``dest/adapter`` and ``dest/merged`` (loadable with ``from_pretrained``).

    A LoRA run's merged model is its base with ``adapter/`` merged in. A full fine-tune
    (``lora_rank=0``) has no adapter: its trained weights are the last checkpoint's, and
    ``dest/merged`` is those weights with the base's tokenizer.

    Raises:
        FileNotFoundError: ``run_dir`` is not a finished training run.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.checkpoints import find_checkpoint
    from trainer.models import load

    run = Path(run_dir)
    base_dir, adapter_dir = run / "base", run / "adapter"
    if not base_dir.exists():
        raise FileNotFoundError(f"{run} has no base/ model: is it the --out of `simenv train`?")
    checkpoint = find_checkpoint(run / "checkpoint")
    weights = checkpoint / "adapter" if checkpoint is not None else None
    full = weights is not None and not (weights / "adapter_config.json").exists()
    if not adapter_dir.exists() and not full:
        raise FileNotFoundError(
            f"{run} has neither adapter/ nor a checkpoint of every weight: did its training "
            "finish? (rerun the same `simenv train` command: it resumes and ends the run)"
        )
    target = Path(dest) if dest is not None else run / "export"
    target.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load(base_dir)
    written: dict[str, Path] = {}
    if adapter_dir.exists():
        shutil.copytree(adapter_dir, target / "adapter", dirs_exist_ok=True)
        written["adapter"] = target / "adapter"
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    else:  # lora_rank=0: the checkpoint holds every trained weight, in from_pretrained's format
        model = AutoModelForCausalLM.from_pretrained(str(weights), dtype=model.dtype)
    model.save_pretrained(target / "merged")
    tokenizer.save_pretrained(target / "merged")
    written["merged"] = target / "merged"
    return written
