"""The bench command: how fast each backend trains a variant, next to a plain loop and the machine's ceiling.

For each selected variant x backend x device, without full training:

- harness: the backend's own `train()` on `steps x batch` images for 1 + `repeats` short
  epochs; the first epoch pays for allocation, kernel selection and tracing and is
  reported apart, the others give `repeats` samples of training images/s;
- reference: the same number of steps written the usual way for the framework (a
  DataLoader loop, `model.fit` on NumPy arrays), same data, batch size and optimizer,
  warm-up epoch excluded; the harness/reference ratio says what the harness's speed
  choices are worth;
- ceiling: a large float32 matrix product on the same device, the most FLOP/s its cores
  deliver; a row's share of it is images/s x analytic training FLOPs per image / ceiling.

With `--full`, harness and reference both train the spec's whole training split for its
epochs (the first epoch is the warm-up one) and both report test accuracy: the speed
choices must not cost accuracy.

Harness and reference alternate for `--rounds` rounds, so that a machine whose speed drifts
(a shared VM: the matmul ceiling here moved between 134 and 175 GFLOP/s within an hour)
slows both alike; the ratio is the median of the per-round ratios, with its min-max.

Every clock reading follows the device's sync. Rates are medians, spreads min-max.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rich.markup import escape
from rich.table import Table

from lenet_bench import backends, timing
from lenet_bench.console import console, output
from lenet_bench.data import DataError, DatasetLoader, PreparedData, prepare, to_channels_last
from lenet_bench.plan import Job, RunOptions, SelectionError, plan_jobs
from lenet_bench.spec import DEVICES, Spec, Variant
from lenet_bench.training import RunResult, SilentProgress

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2  # the CLI's codes
DATA_UNAVAILABLE = "data unavailable"
TEST_IMAGES = 2048  # enough for the inference figures (batch 1024, batch-1 latency)
CEILING_SIZE = 4096  # 4096^3 x 2 = 137 GFLOP per product: big enough for the BLAS to reach its peak (2048 gives ~30% less here)
CEILING_REPEATS = 5


# ------------------------------------------------------------------ arguments


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}")
    return value


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    # The selection options of `run`, without --epochs/--max-steps: here --steps and --repeats set the length.
    parser.add_argument("paths", nargs="+", help="spec files or folders")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="only variants whose name matches this glob (lenet5 exactly, 'lenet5*' its family); repeatable")
    parser.add_argument("--backend", action="append", default=[], help="only this backend; repeatable")
    parser.add_argument("--device", action="append", default=[], choices=DEVICES, help="only this device; repeatable")
    parser.add_argument("--steps", type=_positive_int, default=50,
                        help="optimizer steps per timed epoch (default: %(default)s)")
    parser.add_argument("--repeats", type=_positive_int, default=5,
                        help="timed epochs after the warm-up one; the median is reported (default: %(default)s)")
    parser.add_argument("--rounds", type=_positive_int, default=3,
                        help="harness and reference alternate this many times; the ratio is the median of the "
                             "rounds' ratios (default: %(default)s)")
    parser.add_argument("--batch-size", type=_positive_int, help="override every spec's batch size")
    parser.add_argument("--full", action="store_true",
                        help="train the spec's full split for its epochs, once (--steps, --repeats and --rounds "
                             "ignored), and report the test accuracy of harness and reference")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="also time a plain loop written the usual way for each framework (default: on)")
    parser.add_argument("--data-dir",
                        help="folder with the dataset; default: $LENET_BENCH_DATA_DIR, the cache, a download")
    parser.add_argument("--csv", type=Path, help="also write the rows to this CSV file")


# ------------------------------------------------------------------ results


def _median(samples: list[float]) -> float:
    return float(np.median(samples)) if samples else math.nan


@dataclass
class BenchRow:
    variant: str
    backend: str
    device: str
    batch_size: int
    train_flops: int  # analytic, per training image
    steps: int | None = None  # optimizer steps per timed epoch; None: the whole training split
    repeats: int = 0  # timed epochs
    train_images: int = 0  # per epoch
    status: str = "measured"  # measured | skipped | failed
    reason: str = ""
    harness: list[float] = field(default_factory=list)  # images/s, one sample per timed epoch, every round
    reference: list[float] = field(default_factory=list)
    round_ratios: list[float] = field(default_factory=list)  # harness/reference medians of each round
    warmup_seconds: float = math.nan  # the harness's first epoch
    harness_accuracy: float = math.nan  # test accuracy at the end (meaningful with --full)
    reference_accuracy: float = math.nan
    inference: dict[str, float] = field(default_factory=dict)  # timing.inference_figures

    def record(self, ceiling: float | None) -> dict[str, object]:
        """The row as flat numbers (NaN where not measured), for the table and the CSV."""
        harness, reference = _median(self.harness), _median(self.reference)
        ceiling = ceiling or math.nan
        return {
            "variant": self.variant, "backend": self.backend, "device": self.device, "batch_size": self.batch_size,
            "steps": self.steps or "all", "repeats": self.repeats, "train_images": self.train_images,
            "status": self.status, "reason": self.reason,
            "harness_images_per_sec": harness,
            "harness_min": min(self.harness, default=math.nan), "harness_max": max(self.harness, default=math.nan),
            "reference_images_per_sec": reference,
            "harness_to_reference": _median(self.round_ratios) if self.round_ratios else harness / reference,
            "ratio_min": min(self.round_ratios, default=math.nan), "ratio_max": max(self.round_ratios, default=math.nan),
            "rounds": len(self.round_ratios),
            "train_mflops_per_image": self.train_flops / 1e6,
            "ceiling_gflops": ceiling / 1e9,
            "ceiling_images_per_sec": ceiling / self.train_flops,
            "fraction_of_ceiling": harness * self.train_flops / ceiling,
            "warmup_epoch_seconds": self.warmup_seconds,
            "harness_test_accuracy": self.harness_accuracy, "reference_test_accuracy": self.reference_accuracy,
            "inference_images_per_sec": self.inference.get("inference_images_per_sec", math.nan),
            "latency_p50_ms": self.inference.get("latency_p50_ms", math.nan),
            "latency_p95_ms": self.inference.get("latency_p95_ms", math.nan),
        }


# ------------------------------------------------------------------ what to measure


def select_jobs(variants: list[Variant], args: argparse.Namespace) -> list[Job]:
    """One job per variant x backend x device (its first seed): timing needs no other seed."""
    options = RunOptions(only=tuple(args.only), backends=tuple(args.backend), devices=tuple(args.device))
    first_of_each: dict[tuple[str, str, str], Job] = {}
    for job in plan_jobs(variants, options):
        first_of_each.setdefault((job.variant.name, job.backend, job.device), job)
    return list(first_of_each.values())


def bench_spec(spec: Spec, repeats: int, batch_size: int | None, full: bool = False) -> Spec:
    """The spec trained for a warm-up epoch plus `repeats` timed ones (its own epochs with `full`)."""
    updates = {**({} if full else {"epochs": repeats + 1}), **({"batch_size": batch_size} if batch_size else {})}
    return spec.model_copy(update={"train": spec.train.model_copy(update=updates)})


class DataSource:
    """Each dataset loaded once, each bench subset prepared once, per invocation."""

    def __init__(self, data_dir: str | None, steps: int, full: bool = False):
        self.steps, self.full = steps, full
        self._loader = DatasetLoader(data_dir)
        self._prepared: dict[tuple, PreparedData] = {}

    def prepared(self, spec: Spec) -> PreparedData:
        """Exactly `steps` full batches of training images and no validation split; with `full`, the spec's split."""
        d = spec.data
        key = (d.dataset, d.input_size, d.normalization, spec.train.batch_size,
               (d.validation_split, d.subset, d.test_subset) if self.full else None)
        if key not in self._prepared:
            raw = self._loader.load(d.dataset)
            if self.full:
                self._prepared[key] = prepare(raw, input_size=d.input_size, normalization=d.normalization,
                                              validation_split=d.validation_split, subset=d.subset,
                                              test_subset=d.test_subset)
                return self._prepared[key]
            try:
                self._prepared[key] = prepare(raw, input_size=d.input_size, normalization=d.normalization,
                                              subset=self.steps * spec.train.batch_size, test_subset=TEST_IMAGES)
            except ValueError as err:  # more images asked for than the dataset holds
                raise DataError(f"--steps {self.steps} x batch {spec.train.batch_size}: {err}") from err
        return self._prepared[key]


# ------------------------------------------------------------------ measurements


def timed_epochs(run_epoch: Callable[[], object], sync: Callable[[], None], images: int, repeats: int) -> list[float]:
    """Images/s of `repeats` calls of `run_epoch`, after one untimed warm-up call."""
    run_epoch()
    clock = timing.Stopwatch(sync)
    rates = []
    for _ in range(repeats):
        clock.start()
        run_epoch()
        rates.append(images / clock.read())
    return rates


def measure_harness(job: Job, spec: Spec, data: PreparedData, steps: int | None) -> RunResult:
    backend = backends.get(job.backend)
    model = backend.build(spec, job.seed, job.device)
    return backend.train(model, spec, data, job.seed, job.device, SilentProgress(), max_steps_per_epoch=steps)


class ReferenceResult(NamedTuple):
    rates: list[float]  # images/s per timed epoch
    test_accuracy: float  # after the last epoch


def torch_reference(spec: Spec, data: PreparedData, seed: int, device: str, repeats: int) -> ReferenceResult:
    """The loop of PyTorch's tutorials: DataLoader, zero_grad / backward / step, loss.item() per step."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lenet_bench.backends import torch_backend

    torch.manual_seed(seed)
    dev = torch_backend.torch_device(device)
    model = torch_backend.build_module(spec, max_pool_first=False).to(dev)  # conv, activation, pool: as tutorials write it
    optimizer = torch_backend.make_optimizer(spec, model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)),
                        batch_size=spec.train.batch_size, shuffle=True)

    def epoch() -> float:
        model.train()
        running_loss = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(dev), yb.to(dev)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # as the tutorials do: on a GPU, a sync every step
        return running_loss

    rates = timed_epochs(epoch, torch_backend._sync(device), len(data.x_train), repeats)
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(xb.to(dev)).argmax(1).cpu()
                                 for xb in torch.from_numpy(data.x_test).split(1024)])
    return ReferenceResult(rates, float((predictions.numpy() == data.y_test).mean()))


def _keras_optimizer(spec: Spec):
    import keras

    opt = spec.train.optimizer
    decay = opt.weight_decay or None
    if opt.name == "sgd":
        return keras.optimizers.SGD(opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov, weight_decay=decay)
    return keras.optimizers.Adam(opt.learning_rate, beta_1=opt.beta1, beta_2=opt.beta2, epsilon=opt.eps,
                                 weight_decay=decay)


def keras_reference(spec: Spec, data: PreparedData, seed: int, device: str, repeats: int) -> ReferenceResult:
    """The Keras way: compile, then `fit` on NumPy arrays, one epoch per call."""
    from lenet_bench.backends import keras_backend  # imports TensorFlow, configured as the harness runs it

    keras, tf = keras_backend.keras, keras_backend.tf
    keras.utils.set_random_seed(seed)
    x, y = to_channels_last(data.x_train), data.y_train
    with tf.device(keras_backend.tf_device(device)):
        model = keras_backend.build_model(spec)
        model.compile(optimizer=_keras_optimizer(spec),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

        def epoch() -> None:
            model.fit(x, y, batch_size=spec.train.batch_size, epochs=1, shuffle=True, verbose=0)

        # fit's tf.data pipeline logs a harmless C++ error line per epoch with TensorFlow 2.21 and
        # Keras 3.15 ("NodeDef mentions attribute use_unbounded_threadpool"); Python errors still raise,
        # and LENET_BENCH_TF_VERBOSE=1 shows the lines.
        with keras_backend._quiet_stderr(not keras_backend._VERBOSE):
            rates = timed_epochs(epoch, keras_backend._sync(device), len(x), repeats)
            _, accuracy = model.evaluate(to_channels_last(data.x_test), data.y_test, batch_size=1024, verbose=0)
    return ReferenceResult(rates, float(accuracy))


REFERENCE_LOOPS: dict[str, Callable[[Spec, PreparedData, int, str, int], ReferenceResult]] = {
    "torch": torch_reference,
    "keras": keras_reference,
}


def measure_ceiling(device: str) -> float:
    """FLOP/s of a large float32 matrix product with PyTorch: about the most the device's cores deliver."""
    import torch

    from lenet_bench.backends import torch_backend

    dev = torch_backend.torch_device(device)
    a, b = (torch.randn(CEILING_SIZE, CEILING_SIZE, device=dev) for _ in range(2))
    seconds = timing.time_calls(lambda: a @ b, torch_backend._sync(device), warmup=1, repeats=CEILING_REPEATS)
    return 2 * CEILING_SIZE**3 / float(np.median(seconds))


def measure_ceilings(devices: list[str]) -> dict[str, float]:
    """FLOP/s per device; none where PyTorch cannot reach the device (e.g. a CPU build next to a TensorFlow GPU)."""
    ceilings = {}
    for device in devices:
        reason = backends.unavailable_reason("torch", device)
        if reason:
            console.print(f"no ceiling for {device}: {escape(reason)}")
        else:
            ceilings[device] = measure_ceiling(device)
    return ceilings


def bench_row(job: Job, args: argparse.Namespace, source: DataSource, rounds: int) -> BenchRow:
    spec = bench_spec(job.spec, args.repeats, args.batch_size, args.full)
    repeats = spec.train.epochs - 1
    steps = None if args.full else args.steps
    row = BenchRow(job.variant.name, job.backend, job.device, spec.train.batch_size, spec.summary().train_flops,
                   steps=steps, repeats=repeats)
    reason = backends.unavailable_reason(job.backend, job.device)
    if reason:
        row.status, row.reason = "skipped", reason
        return row
    try:
        data = source.prepared(spec)
    except DataError as err:
        row.status, row.reason = "skipped", f"{DATA_UNAVAILABLE}: {err}"
        return row
    label = f"{job.variant.name}/{job.backend}/{job.device}"
    row.train_images = len(data.x_train)
    reference = REFERENCE_LOOPS.get(job.backend) if args.reference else None
    try:
        for round_number in range(1, rounds + 1):
            console.print(f"bench {label}, round {round_number}/{rounds}: harness, {repeats} x "
                          f"{steps or 'all'} steps of {row.batch_size} after a warm-up epoch"
                          + (", then the reference loop" if reference else ""))
            result = measure_harness(job, spec, data, steps)
            rates = [record.images / record.seconds for record in result.history[1:]]
            row.harness += rates
            row.warmup_seconds, row.harness_accuracy, row.inference = \
                result.history[0].seconds, result.test_accuracy, result.timings
            if reference:
                measured = reference(spec, data, job.seed, job.device, repeats)
                row.reference += measured.rates
                row.reference_accuracy = measured.test_accuracy
                row.round_ratios.append(_median(rates) / _median(measured.rates))
    except Exception as err:  # one broken backend must not hide the other rows
        row.status, row.reason = "failed", f"{type(err).__name__}: {err}"
    return row


# ------------------------------------------------------------------ output


def _number(value: object, pattern: str) -> str:
    return "-" if not isinstance(value, float) or not math.isfinite(value) else pattern.format(value)


def print_table(records: list[dict[str, object]], full: bool, steps: int, repeats: int, rounds: int) -> None:
    length = "every epoch of the spec but the first (warm-up)" if full else \
        f"{repeats} epochs of {steps} steps after a warm-up epoch"
    table = Table(title=f"training throughput: median of {length}, {rounds} round(s); ratio: median of the "
                        "rounds (min–max)")
    columns = ("variant", "backend", "device", "batch", "harness img/s", "min–max", "reference img/s", "ratio",
               "% of ceiling", "warm-up s", "infer img/s", "p50 ms", "p95 ms") + \
        (("harness acc", "ref. acc") if full else ())
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "backend", "device") else "right")
    for r in records:
        row = [str(r["variant"]), str(r["backend"]), str(r["device"]), str(r["batch_size"])]
        if r["status"] != "measured":
            table.add_row(*row, str(r["status"]), *[""] * (len(columns) - len(row) - 1))
            continue
        spread = f"{_number(r['harness_min'], '{:,.0f}')}–{_number(r['harness_max'], '{:,.0f}')}"
        ratio = _number(r["harness_to_reference"], "{:.2f}x")
        if r["rounds"] > 1:
            ratio += f" ({_number(r['ratio_min'], '{:.2f}')}–{_number(r['ratio_max'], '{:.2f}')})"
        table.add_row(*row, _number(r["harness_images_per_sec"], "{:,.0f}"), spread,
                      _number(r["reference_images_per_sec"], "{:,.0f}"), ratio,
                      _number(100 * r["fraction_of_ceiling"], "{:.1f}%"), _number(r["warmup_epoch_seconds"], "{:.2f}"),
                      _number(r["inference_images_per_sec"], "{:,.0f}"), _number(r["latency_p50_ms"], "{:.2f}"),
                      _number(r["latency_p95_ms"], "{:.2f}"),
                      *((_number(r["harness_test_accuracy"], "{:.4f}"), _number(r["reference_test_accuracy"], "{:.4f}"))
                        if full else ()))
    output.print(table)


def print_ceilings(ceilings: dict[str, float], records: list[dict[str, object]]) -> None:
    for device, flops in ceilings.items():
        output.print(f"ceiling {device}: {flops / 1e9:,.1f} GFLOP/s (PyTorch float32 {CEILING_SIZE}x{CEILING_SIZE} "
                     f"matrix product, median of {CEILING_REPEATS})")
        bounds = {(r["variant"], r["train_mflops_per_image"], r["ceiling_images_per_sec"])
                  for r in records if r["device"] == device and r["status"] == "measured"}
        for variant, mflops, images in sorted(bounds):
            output.print(f"  {variant}: {mflops:,.2f} training MFLOP/image -> at most {images:,.0f} img/s "
                         f"at the ceiling")


def write_csv(records: list[dict[str, object]], path: Path) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_csv(path, index=False)


# ------------------------------------------------------------------ command


def cmd_bench(args: argparse.Namespace, variants: list[Variant]) -> int:
    try:
        jobs = select_jobs(variants, args)
    except SelectionError as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        return EXIT_INVALID
    source = DataSource(args.data_dir, args.steps, args.full)
    rounds = 1 if args.full else args.rounds  # a full training is long enough to time once
    rows = [bench_row(job, args, source, rounds) for job in jobs]
    measured_devices = list(dict.fromkeys(r.device for r in rows if r.status == "measured"))
    ceilings = measure_ceilings(measured_devices)
    records = [r.record(ceilings.get(r.device)) for r in rows]

    print_table(records, args.full, args.steps, args.repeats, rounds)
    print_ceilings(ceilings, records)
    for r in rows:
        if r.status != "measured":
            console.print(f"{r.status} {r.variant}/{r.backend}/{r.device}: {escape(r.reason)}")
    if args.csv:
        write_csv(records, args.csv)
        console.print(f"rows written to {args.csv}")

    if any(r.status == "failed" for r in rows):
        return EXIT_FAILED
    if not measured_devices and any(r.reason.startswith(DATA_UNAVAILABLE) for r in rows):
        return EXIT_INVALID
    return EXIT_OK
