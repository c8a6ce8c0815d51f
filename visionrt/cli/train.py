"""`visionrt train`, `evaluate`, `summary`, `augment-preview`: thin shells over visionrt.trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from visionrt.cli._console import console, parse_csv_list, print_done, print_unreadable

DATA_HELP = "ImageFolder root: DATA/<class>/<images>. Or use --csv FILE --images DIR."

# Data options shared by train / evaluate / augment-preview.
VAL = typer.Option(None, "--val", help="Validation ImageFolder (default: split off --val-split).")
VAL_SPLIT = typer.Option(0.2, "--val-split", help="Stratified validation fraction.")
CSV = typer.Option(None, "--csv", help="Kaggle-style CSV (SIIM-ISIC: image_name,...,target).")
IMAGES = typer.Option(None, "--images", help="Folder the CSV's image names refer to.")
IMAGE_COLUMN = typer.Option("image_name", "--image-column", help="CSV column of image names.")
LABEL_COLUMN = typer.Option("target", "--label-column", help="CSV column of labels.")
GROUP_COLUMN = typer.Option(None, "--group-column",
                            help="CSV column kept on one side of the split (default: "
                                 "patient_id when present).")
IMAGE_SUFFIX = typer.Option(".jpg", "--image-suffix",
                            help="Appended to CSV image names without an extension.")
ARCH = typer.Option("tf_efficientnet_lite0", "--arch", help="Any timm architecture name.")
IMG_SIZE = typer.Option(None, "--img-size", help="Input side (default: the arch's own).")
SEED = typer.Option(0, "--seed", help="Random seed.")
OUTPUT_FORMATS = ("table", "json")  # of evaluate and summary
EXIT_INTERRUPTED = 143  # 128 + SIGTERM: preempted, resumable with --resume


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("summary")(summary)
    app.command("augment-preview")(augment_preview)
    app.command("validate-data")(validate_data)


def train(
    data: Path | None = typer.Argument(None, help=DATA_HELP, show_default=False),
    out: Path | None = typer.Option(None, "--out", help="Run directory to write."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue an interrupted run "
                                       "(RUN dir); its saved options are used."),
    val: Path | None = VAL, val_split: float = VAL_SPLIT, csv: Path | None = CSV,
    images: Path | None = IMAGES, image_column: str = IMAGE_COLUMN,
    label_column: str = LABEL_COLUMN, group_column: str | None = GROUP_COLUMN,
    image_suffix: str = IMAGE_SUFFIX, arch: str = ARCH,
    weights: str = typer.Option("imagenet", "--weights", help="imagenet | none | PATH "
                                "(.safetensors or a weights-only torch checkpoint)."),
    freeze: str = typer.Option("backbone", "--freeze", help="backbone (only the new head "
                               "learns) | none | FRACTION of the backbone's blocks, e.g. 0.7."),
    unfreeze_at: int | None = typer.Option(None, "--unfreeze-at", help="Unfreeze the backbone "
                                           "after this many epochs (two-phase recipe)."),
    unfreeze_lr_factor: float = typer.Option(0.01, "--unfreeze-lr-factor",
                                             help="LR multiplier once unfrozen (BatchNorm "
                                                  "stays in inference mode, as in Keras)."),
    pooling: str = typer.Option("avg", "--pooling", help="avg | max global pooling."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout before the new head."),
    img_size: int | None = IMG_SIZE,
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs in total (default: 5)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default: 0.01 "
                                    "with a frozen backbone, else 0.001)."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd | adam | adamw."),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
    nesterov: bool = typer.Option(False, "--nesterov", help="Nesterov momentum (SGD)."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="Weight decay."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine | onecycle | constant."),
    warmup_epochs: float = typer.Option(0.0, "--warmup-epochs", help="Linear LR warmup."),
    loss: str = typer.Option("auto", "--loss", help="auto (ce; bce for 2 classes) | ce | bce "
                             "| focal."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="Label smoothing."),
    class_weight: str = typer.Option("none", "--class-weight", help="auto | none."),
    sampler: str = typer.Option("none", "--sampler", help="none | balanced."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (bf16 on CPU, fp16 on GPU)."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last",
                                       help="channels_last memory format."),
    early_stopping: int | None = typer.Option(None, "--early-stopping",
                                              help="Stop after PATIENCE epochs without "
                                                   "improvement of --monitor."),
    monitor: str = typer.Option("auto", "--monitor", help="Metric that picks the best epoch "
                                "(auto: val_accuracy, val_roc_auc for binary; or val_loss)."),
    augment: str = typer.Option("none", "--augment", help="Preset: none | light | keras."),
    rotation_range: float | None = typer.Option(None, "--rotation-range", help="Degrees."),
    width_shift_range: float | None = typer.Option(None, "--width-shift-range"),
    height_shift_range: float | None = typer.Option(None, "--height-shift-range"),
    shear_range: float | None = typer.Option(None, "--shear-range", help="Degrees (Keras)."),
    zoom_range: float | None = typer.Option(None, "--zoom-range"),
    horizontal_flip: bool | None = typer.Option(None, "--horizontal-flip/--no-horizontal-flip"),
    vertical_flip: bool | None = typer.Option(None, "--vertical-flip/--no-vertical-flip"),
    brightness_range: str | None = typer.Option(None, "--brightness-range",
                                                help="LOW,HIGH e.g. 0.8,1.2."),
    fill_mode: str | None = typer.Option(None, "--fill-mode",
                                         help="constant | nearest | reflect | wrap."),
    cache_features: str = typer.Option("auto", "--cache-features", help="auto | on | off: "
                                       "compute frozen-backbone features once."),
    num_workers: int = typer.Option(0, "--num-workers", help="DataLoader worker processes."),
    on_bad_image: str = typer.Option("skip", "--on-bad-image", help="skip | fail."),
    max_bad_fraction: float = typer.Option(0.01, "--max-bad-fraction",
                                           help="Stop when more images than this are broken."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    seed: int = SEED,
) -> None:
    """Fine-tune a pretrained backbone on an image folder or a Kaggle CSV."""
    from visionrt.errors import ConfigError
    from visionrt.trainer.config import AugmentConfig, TrainConfig

    if resume is not None:
        config = TrainConfig.from_run(resume)
        config = config.with_(resume=True, epochs=config.epochs if epochs is None else epochs,
                              out=resume, num_workers=num_workers)
    else:
        if out is None:
            raise ConfigError("--out RUN is required (the folder the run is written to)")
        brightness = parse_csv_list(brightness_range, name="--brightness-range", cast=float) \
            if brightness_range else None
        augment_config = AugmentConfig.preset(
            augment, rotation_range=rotation_range, width_shift_range=width_shift_range,
            height_shift_range=height_shift_range, shear_range=shear_range,
            zoom_range=zoom_range, horizontal_flip=horizontal_flip, vertical_flip=vertical_flip,
            brightness_range=brightness, fill_mode=fill_mode)
        config = TrainConfig(
            out=out, data=data, val=val, val_split=val_split, csv=csv, images=images,
            image_column=image_column, label_column=label_column, group_column=group_column,
            image_suffix=image_suffix, arch=arch, weights=weights, freeze=freeze,
            unfreeze_at=unfreeze_at, unfreeze_lr_factor=unfreeze_lr_factor, pooling=pooling,
            dropout=dropout, img_size=img_size, epochs=5 if epochs is None else epochs,
            batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
            loss=loss, label_smoothing=label_smoothing, class_weight=class_weight,
            sampler=sampler, amp=amp, channels_last=channels_last,
            early_stopping=early_stopping, monitor=monitor, augment=augment_config,
            cache_features=cache_features, seed=seed, num_workers=num_workers,
            on_bad_image=on_bad_image, max_bad_fraction=max_bad_fraction, overwrite=overwrite)
    from visionrt.cli._console import print_error
    from visionrt.errors import TrainingInterruptedError

    try:
        run_training(config)
    except TrainingInterruptedError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_INTERRUPTED) from None


def run_training(config: Any) -> Any:
    """Train with rich progress bars and print a short summary.

    Under ``torchrun --nproc_per_node N -m visionrt train ...`` every process runs this command;
    torchrun describes the job in ``WORLD_SIZE`` / ``LOCAL_RANK``, and only rank 0 prints.
    """
    import os

    from visionrt.trainer.distributed import process_group

    with process_group(world_size=int(os.environ.get("WORLD_SIZE", "1")),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0"))) as dist:
        return _train_and_report(config) if dist.is_main else _train(config)


def _train(config: Any, progress: Any = None) -> Any:
    from visionrt.trainer.loop import train as train_run

    return train_run(config, progress)


def _train_and_report(config: Any) -> Any:
    from visionrt.cli._progress import TrainProgress

    with TrainProgress(console) as progress:
        result = _train(config, progress)
    val = result.metrics["val"]
    shown = {k: val.get(k) for k in ("accuracy", "top5_accuracy", "roc_auc", "pr_auc",
                                     "sensitivity_at_90_specificity") if val.get(k) is not None}
    console.print("best epoch " + str(result.best_epoch) + ": " +
                  ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    if result.bad_images:
        names = ", ".join(Path(p).name for p, _ in result.bad_images[:5])
        console.print(f"[yellow]skipped {len(result.bad_images)} unreadable image(s)[/]: "
                      f"{names} (all listed in {result.run_dir / 'bad_images.csv'})")
    print_done(f"run written to {result.run_dir}")
    return result


def evaluate(
    run: Path = typer.Argument(..., help="A training run directory."),
    data: Path | None = typer.Argument(None, help=DATA_HELP, show_default=False),
    csv: Path | None = CSV, images: Path | None = IMAGES, image_column: str = IMAGE_COLUMN,
    label_column: str = LABEL_COLUMN, image_suffix: str = IMAGE_SUFFIX,
    out: Path | None = typer.Option(None, "--out", help="Metrics JSON to write (default: "
                                    "RUN/evaluation/metrics.json)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per batch."),
    output_format: str = typer.Option("table", "--format", help="table | json."),
) -> None:
    """Evaluate a trained run on a labelled image folder or CSV; print and write the metrics."""
    from visionrt.errors import check_value
    from visionrt.trainer.config import TrainConfig
    from visionrt.trainer.evaluate import evaluate_run

    check_value(output_format in OUTPUT_FORMATS, "--format", output_format, OUTPUT_FORMATS)

    config = TrainConfig(out=run, data=data, csv=csv, images=images, image_column=image_column,
                         label_column=label_column, image_suffix=image_suffix)
    result = evaluate_run(run, config, out=out, batch_size=batch_size)
    if output_format == "json":
        console.print_json(json.dumps(result.metrics))
        return
    _print_metrics(result.metrics)
    print_done(f"metrics written to {result.metrics_path}")


def _print_metrics(metrics: dict) -> None:
    from rich.table import Table

    table = Table(title="evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("samples", "accuracy", "top5_accuracy", "roc_auc", "pr_auc",
                "sensitivity_at_90_specificity", "loss", "bad_images"):
        if metrics.get(key) is not None:
            value = metrics[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for name, row in metrics.get("per_class", {}).items():
        table.add_row(f"{name} precision / recall",
                      f"{row['precision']:.3f} / {row['recall']:.3f} (n={row['support']})")
    console.print(table)


def summary(
    arch: str = typer.Argument(..., help="timm architecture (xception = legacy_xception)."),
    img_size: int | None = IMG_SIZE,
    freeze: str = typer.Option("none", "--freeze", help="Mark frozen: backbone | none | "
                               "FRACTION."),
    num_classes: int | None = typer.Option(None, "--num-classes",
                                           help="Head size (default: the pretrained head)."),
    output_format: str = typer.Option("table", "--format", help="table | json."),
) -> None:
    """Keras-style layer table: output shapes, kernel/stride, parameters, trainable vs frozen."""
    from rich.table import Table

    from visionrt.errors import check_value
    from visionrt.trainer.config import TrainConfig
    from visionrt.trainer.summary import format_table, summarize

    fraction = TrainConfig(out=Path("."), data=Path("."), freeze=freeze).freeze_fraction
    check_value(output_format in OUTPUT_FORMATS, "--format", output_format, OUTPUT_FORMATS)
    result = summarize(arch, img_size=img_size, num_classes=num_classes, freeze=fraction)
    if output_format == "json":
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"{result['arch']} @ {result['input_size'][0]}x"
                        f"{result['input_size'][1]}")
    for column in ("layer", "type", "output", "kernel / stride", "params", "trainable"):
        table.add_column(column, justify="right" if column == "params" else "left",
                         overflow="fold")
    for row in format_table(result):
        table.add_row(*row)
    console.print(table)
    console.print(f"total params: {result['total_params']:,}  trainable: "
                  f"{result['trainable_params']:,}  frozen: {result['frozen_params']:,}")


def augment_preview(
    data: Path | None = typer.Argument(None, help=DATA_HELP, show_default=False),
    out: Path = typer.Option(Path("augment_preview.png"), "--out", help="PNG to write."),
    csv: Path | None = CSV, images: Path | None = IMAGES, image_column: str = IMAGE_COLUMN,
    label_column: str = LABEL_COLUMN, image_suffix: str = IMAGE_SUFFIX, arch: str = ARCH,
    img_size: int | None = IMG_SIZE,
    augment: str = typer.Option("keras", "--augment", help="Preset: none | light | keras."),
    rotation_range: float | None = typer.Option(None, "--rotation-range"),
    width_shift_range: float | None = typer.Option(None, "--width-shift-range"),
    height_shift_range: float | None = typer.Option(None, "--height-shift-range"),
    shear_range: float | None = typer.Option(None, "--shear-range"),
    zoom_range: float | None = typer.Option(None, "--zoom-range"),
    horizontal_flip: bool | None = typer.Option(None, "--horizontal-flip/--no-horizontal-flip"),
    vertical_flip: bool | None = typer.Option(None, "--vertical-flip/--no-vertical-flip"),
    brightness_range: str | None = typer.Option(None, "--brightness-range"),
    fill_mode: str | None = typer.Option(None, "--fill-mode"),
    samples: int = typer.Option(6, "--samples", help="Images (rows)."),
    variants: int = typer.Option(5, "--variants", help="Augmented draws per image."),
    seed: int = SEED,
) -> None:
    """Draw a grid of training images and augmented versions of them."""
    from visionrt.trainer.config import AugmentConfig, TrainConfig
    from visionrt.trainer.preview import preview_augmentations

    brightness = parse_csv_list(brightness_range, name="--brightness-range", cast=float) \
        if brightness_range else None
    augment_config = AugmentConfig.preset(
        augment, rotation_range=rotation_range, width_shift_range=width_shift_range,
        height_shift_range=height_shift_range, shear_range=shear_range, zoom_range=zoom_range,
        horizontal_flip=horizontal_flip, vertical_flip=vertical_flip,
        brightness_range=brightness, fill_mode=fill_mode)
    config = TrainConfig(out=out.parent, data=data, csv=csv, images=images,
                         image_column=image_column, label_column=label_column,
                         image_suffix=image_suffix, arch=arch, img_size=img_size,
                         augment=augment_config, seed=seed)
    path = preview_augmentations(config, out, images=samples, variants=variants)
    print_done(f"augmentation preview written to {path}")


def validate_data(
    data: Path | None = typer.Argument(None, help=DATA_HELP, show_default=False),
    val: Path | None = VAL, csv: Path | None = CSV, images: Path | None = IMAGES,
    image_column: str = IMAGE_COLUMN, label_column: str = LABEL_COLUMN,
    group_column: str | None = GROUP_COLUMN, image_suffix: str = IMAGE_SUFFIX,
    out: Path | None = typer.Option(None, "--out", help="Write the failures as a CSV here."),
) -> None:
    """Pre-scan a data set: check the CSV / folders and decode every image once.

    Exits 1 when an image cannot be decoded (each one listed), 0 when all are readable.
    """
    from rich.progress import Progress

    from visionrt.trainer.config import TrainConfig
    from visionrt.trainer.data import load_split, scan_samples
    from visionrt.trainer.outputs import write_bad_images_csv

    config = TrainConfig(out=Path("."), data=data, val=val, csv=csv, images=images,
                         image_column=image_column, label_column=label_column,
                         group_column=group_column, image_suffix=image_suffix)
    split = load_split(config)
    console.print(f"{len(split.labels)} classes; {split.describe()}")
    samples = split.train + split.val
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("decoding", total=len(samples))
        failures = scan_samples(samples, lambda done, total: progress.update(task,
                                                                               completed=done))
    if out is not None:
        write_bad_images_csv(out, failures)
    if failures:
        for path, error in failures[:20]:
            print_unreadable(path, error)
        more = f" (first 20 shown{'; all in ' + str(out) if out else ''})" \
            if len(failures) > 20 else ""
        console.print(f"[red]{len(failures)} of {len(samples)} images are unreadable[/]{more}")
        raise typer.Exit(1)
    print_done(f"all {len(samples)} images decode")
