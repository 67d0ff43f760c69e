"""Why lecun1998's second pass at the paper's 0.0005 destabilizes: a short proxy, one candidate at a time.

One-image sdlm as the torch backend runs it (the spec's network, initialization, loss and mu; the Hessian
on 500 images of the training set before each pass), on the first --subset training images, the rate of
each pass from --rates (the paper's 0.0005 for two passes by default). Every --every updates: the mean
training loss and error on the fly. Before each pass: the effective rates eta/(mu + h) over the 60,000
parameters (the paper, III.C: "between approximately 7e-5 and 0.016"), each layer's mean h, and the share
of each layer's units whose squashing slope has fallen below a tenth of its peak (saturated). After each
pass: the test error on the 10,000 test images.

Each candidate is a flag that changes one thing against the spec:

--order fixed        the same order every pass (the backend reshuffles each pass)
--hessian first      keep pass 1's estimate (no re-estimate); `running:G` a running average
                     h <- (1 - G) h + G h_new over the 500 images, carried across passes (Appendix C's form);
                     `every:K` re-estimated every K updates
--j J                eq. (9)'s j (the spec: 1)
--float64            the whole proxy in float64
--init R             the initial weights: `spec` (the spec's), `fanin` U(-2.4/F, 2.4/F) as printed, `sqrt:C`
                     U(-C/sqrt(F), C/sqrt(F)) (the spec's lecun_uniform_sqrt is sqrt:2.4), `pool-fanin:C` the same
                     but the subsampling coefficients at 2.4/F (their four inputs are neighbours, not independent)
--init-only          report the effective rates and saturation at the initial weights, train nothing

    LENET_BENCH_DATA_DIR=../shared/data/mnist taskset -c 0 .venv/bin/python scripts/sdlm_pass2.py --subset 10000
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from lenet_bench import backends
from lenet_bench.data import load_dataset, prepare
from lenet_bench.device import Device
from lenet_bench.spec.loading import load_variants
from lenet_bench.training.loop import epoch_batches, hessian_sample

PAPER_EFFECTIVE_RATES = (7e-5, 0.016)
LAYER_NAMES = ("C1", "S2", "C3", "S4", "C5", "F6")
SATURATED_SLOPE = 0.1  # a unit whose f'(a) is below this share of f'(0) passes almost no gradient


def layer_report(model: nn.Sequential, x: torch.Tensor, h: list[torch.Tensor], lr: float, mu: float) -> None:
    """Effective rates over all parameters, and per weighted layer: mean h, h < mu share, saturated units."""
    from lenet_bench.backends.torch.sdlm import _weighted

    flat = torch.cat([a.reshape(-1) for a in h]).double()
    rates = (lr / (mu + flat)).numpy()
    q = np.quantile(rates, [0.01, 0.5, 0.99])
    print(f"  effective rates eta/(mu+h), eta {lr:g}: min {rates.min():.1e} 1% {q[0]:.1e} median {q[1]:.1e} "
          f"99% {q[2]:.1e} max {rates.max():.1e}; h < mu for {(flat < mu).double().mean().item():.0%} "
          f"(paper: {PAPER_EFFECTIVE_RATES[0]:.0e} to {PAPER_EFFECTIVE_RATES[1]})")
    parts: list[str] = []
    with torch.no_grad():
        state, arrays = x, iter(h)
        for child in model:
            linear = _weighted(child)
            if linear is not None and len(child) > 1:
                a = linear(state)
                squashed = torch.tanh(2 * a / 3)
                slope = 1 - squashed.square()  # f'(a) / f'(0) for 1.7159 tanh(2a/3)
                # Stuck: a unit (map position) whose output barely varies between images, pinned near +-1.7159.
                stuck = squashed.mean(0).abs() > 1 - SATURATED_SLOPE / 2
                hw, hb = next(arrays), next(arrays)
                name = LAYER_NAMES[len(parts)]
                parts.append(f"{name} h {hw.mean().item():.2g}/{hb.mean().item():.2g} "
                             f"sat {(slope < SATURATED_SLOPE).double().mean().item():.0%} "
                             f"stuck {stuck.double().mean().item():.0%} "
                             f"|w| {linear.weight.norm().item():.3g} |b| {linear.bias.norm().item():.3g}")
            state = child(state)
    print("  per layer (mean h weights/biases, saturated units, units stuck at one sign, norms): " + "; ".join(parts), flush=True)


def initial(spec, seed: int, reading: str) -> list[np.ndarray]:
    """The spec's network's initial weights under `reading` (see --init); one draw, rescaled unit by unit."""
    from lenet_bench.spec import arch
    from lenet_bench.training import weights

    summary = spec.summary()
    printed = weights.initial_weights(summary, "lecun_uniform", seed)  # U(-2.4/F, 2.4/F)
    if reading == "fanin":
        return printed
    kind, _, scale = reading.partition(":")
    factors = []
    for layer in summary.layers:
        if layer.weight_shapes:
            fans = weights._unit_fan_ins(layer)
            keep = kind == "pool-fanin" and isinstance(layer, arch.Subsample)
            factors += [np.ones_like(f) if keep else np.sqrt(f) * float(scale) / weights.LECUN_SCALE for f in fans]
    return [(w * f).astype(np.float32) for w, f in zip(printed, factors, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="paper1998/lecun1998.yaml")
    parser.add_argument("--name", default="lecun1998")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0005, 0.0005], help="one rate per pass")
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--order", choices=("shuffle", "fixed"), default="shuffle")
    parser.add_argument("--hessian", default="fresh", help="fresh | first | running:G | every:K")
    parser.add_argument("--hessian-images", type=int, default=500)
    parser.add_argument("--j", type=float, default=None)
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--init", default="spec", help="spec | fanin | sqrt:C | pool-fanin:C")
    parser.add_argument("--init-only", action="store_true")
    args = parser.parse_args()
    mode, _, value = args.hessian.partition(":")
    if mode not in ("fresh", "first", "running", "every") or (mode in ("running", "every") and not value):
        parser.error(f"--hessian: expected fresh, first, running:G or every:K; received {args.hessian!r}")

    torch.set_num_threads(1)
    backends.activate("torch")
    from lenet_bench.backends.torch.losses import loss_function
    from lenet_bench.backends.torch.model import build, set_weights
    from lenet_bench.backends.torch.sdlm import SDLM, diagonal_hessian

    spec = next(v.spec for v in load_variants([args.spec]) if v.name == args.name)
    if args.j is not None:
        spec = spec.model_copy(update={"train": spec.train.model_copy(
            update={"loss": spec.train.loss.model_copy(update={"j": args.j})})})
    d = spec.data
    data = prepare(load_dataset(d.dataset), input_size=d.input_size, normalization=d.normalization, subset=args.subset)
    dtype = torch.float64 if args.float64 else torch.float32
    x, y = torch.from_numpy(data.x_train).to(dtype), torch.from_numpy(data.y_train)
    x_test, y_test = torch.from_numpy(data.x_test).to(dtype), torch.from_numpy(data.y_test)
    model = build(spec, args.seed, Device.CPU).to(dtype)
    if args.init != "spec":
        set_weights(model, initial(spec, args.seed, args.init))
    from lenet_bench.backends.torch.model import canonical_parameters

    params = canonical_parameters(model)
    mu = spec.train.optimizer.mu
    optimizer = SDLM(params, lr=args.rates[0], mu=mu)
    loss_fn = loss_function(spec.train.loss)
    print(f"{args.name} seed {args.seed}, first {len(x):,} training images, rates {args.rates}, order {args.order}, "
          f"hessian {args.hessian}, init {args.init}, j {spec.train.loss.j}, "
          f"{'float64' if args.float64 else 'float32'}", flush=True)

    h: list[torch.Tensor] | None = None

    def estimate(pass_number: int, salt: int = 0) -> list[torch.Tensor]:
        index = hessian_sample(len(x), min(args.hessian_images, len(x)), args.seed, pass_number + salt)
        return diagonal_hessian(model, x[torch.from_numpy(index)], spec.train.loss)

    if args.init_only:
        h = estimate(1)
        layer_report(model, x[:500], h, args.rates[0], mu)
        return
    step = 0
    for pass_number, lr in enumerate(args.rates, start=1):
        if h is None or mode == "fresh" or mode == "every":
            h = estimate(pass_number)
        elif mode == "running":
            gamma, new = float(value), estimate(pass_number)
            # Appendix C's running average, one image at a time: after n images the old estimate keeps (1-G)^n.
            keep = (1 - gamma) ** min(args.hessian_images, len(x))
            h = [keep * old + (1 - keep) * fresh for old, fresh in zip(h, new, strict=True)]
        optimizer.set_curvature(h)
        for group in optimizer.param_groups:
            group["lr"] = lr
        print(f"pass {pass_number} (eta {lr:g}), before it:")
        layer_report(model, x[:500], h, lr, mu)
        order = (epoch_batches(len(x), 1, args.seed, 1) if args.order == "fixed"
                 else epoch_batches(len(x), 1, args.seed, pass_number))
        losses, errors = [], []
        model.train()
        for batch in order:
            index = torch.from_numpy(batch)
            out = model(x[index])
            loss = loss_fn(out, y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            errors.append(int(out.argmax(1).item() != int(y[index])))
            step += 1
            if step % args.every == 0:
                print(f"  update {step:6d}: loss {np.mean(losses[-args.every:]):7.2f}, "
                      f"training error {np.mean(errors[-args.every:]):6.1%}", flush=True)
            if mode == "every" and step % int(value) == 0:
                h = estimate(pass_number, salt=step)
                optimizer.set_curvature(h)
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(x_test[i:i + 1000]).argmax(1) for i in range(0, len(x_test), 1000)])
        print(f"  after pass {pass_number}: mean loss {np.mean(losses):.2f}, training error on the fly "
              f"{np.mean(errors):.2%}, test error {(predicted != y_test).double().mean().item():.2%}", flush=True)
    assert h is not None
    print("after training:")
    layer_report(model, x[:500], estimate(len(args.rates) + 1), args.rates[-1], mu)


if __name__ == "__main__":
    main()
