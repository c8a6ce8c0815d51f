"""The rich progress display of `visionrt train`, fed by the trainer's progress callback."""

from __future__ import annotations

from typing import Any


class TrainProgress:
    """A rich progress display fed by the trainer's progress callback (events -> bars/lines)."""

    def __init__(self, target_console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = target_console
        # Bars only on a terminal: elsewhere (a log, CI) rich prints them once, at the end, after
        # the epoch lines they belong before. There each stage gets a line instead.
        self.bars = target_console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=target_console, transient=False, disable=not self.bars)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: str, info: dict) -> None:
        handler = getattr(self, f"_on_{event}", None)
        if handler is not None:
            handler(info)

    def _on_setup(self, info: dict) -> None:
        size = "x".join(str(s) for s in info["input_size"])
        self.console.print(
            f"{info['arch']} @ {size}: {info['trainable_params']:,} of "
            f"{info['total_params']:,} parameters train; {info['split']}"
            + ("; frozen-backbone features cached" if info["cache_features"] else "")
            + (f"; resuming after epoch {info['start_epoch']}" if info["start_epoch"] else "")
            + (f"; {info['world']} processes" if info["world"] > 1 else ""))
        if info["start_epoch"] >= info["epochs"]:
            self.console.print(f"nothing to train: the run has done {info['start_epoch']} "
                               f"epochs (--epochs {info['epochs']}); pass --epochs N (more than "
                               f"{info['start_epoch']}) to train it further")

    def _on_cache(self, info: dict) -> None:
        key = f"cache-{info['split']}"
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"features ({info['split']})",
                                                     total=info["total"])
            if not self.bars:
                self.console.print(f"  computing frozen-backbone features ({info['split']}, "
                                   f"{info['total']} images) ...", highlight=False)
        self.progress.update(self.tasks[key], completed=info["done"])

    def _on_epoch_start(self, info: dict) -> None:
        self.tasks["epoch"] = self.progress.add_task(
            f"epoch {info['epoch']}/{info['epochs']}", total=info["steps"])

    def _on_step(self, info: dict) -> None:
        loss = "nan" if info["loss"] is None else f"{info['loss']:.4f}"
        self.progress.update(
            self.tasks["epoch"], completed=info["step"],
            description=f"epoch {info['epoch']} loss {loss} "
                        f"{info['images_per_second']:.0f} img/s")

    def _on_epoch_end(self, row: dict) -> None:
        shown = [f"{k} {v:.4f}" for k, v in row.items()
                 if k.startswith(("train_", "val_")) and isinstance(v, float)]
        self.progress.console.print(f"epoch {row['epoch']}: " + ", ".join(shown) +
                                    f" ({row['seconds']:.1f} s)")
