"""Why LeNet-5 diverges at LeCun et al.'s (1998) own learning rates here: sdlm against Appendix C, measured.

Three measurements, each a flag (all three without any):

--compare  `diagonal_hessian` (torch backend) parameter by parameter against the exact Gauss-Newton
           diagonal computed independently, in float64, from each image's Jacobian of F6's states
           (torch.func.jacrev) and the loss's second derivative there: mean over the images of
           diag(J^T H J). Two H: 2 I, the curvature of the correct class's RBF penalty (where Appendix C
           starts its back-propagation, as ours does), and the whole Hessian of eq. (9)'s MAP loss with
           respect to F6's states (torch.func.hessian). Appendix C drops the cross terms between the
           connections that share a weight and between the units a state feeds: the ratio says how much
           that drops, layer kind by layer kind. Also: the estimate on N images against the mean of its
           one-image estimates (a mean over images, not a sum), float32 against float64, the squashing
           function's slope, and the spread of the effective rates eta / (mu + h) over the parameters.
--rates    the effective learning rates of the first pass, eta / (mu + h) at the paper's eta = 0.0005 and
           mu = 0.02, over all 60,000 parameters, for the two readings of Appendix A's initialization
           (U(-2.4/F, 2.4/F), as printed, and U(-2.4/sqrt(F), 2.4/sqrt(F))) beside the paper's own
           "between approximately 7e-5 and 0.016" (section III.C).
--train    one-image sdlm on real MNIST at the paper's schedule (III.C: 0.0005 for 2 passes, 0.0002 for
           3, 0.0001 for 3, 0.00005 for 4, 0.00001 after; mu 0.02; the Hessian re-estimated on 500
           images before each pass), --updates one-image updates per configuration, logging the mean
           training loss and error every --every updates, then the test error: our estimate and the
           exact one, at each reading of the initialization.

    LENET_BENCH_DATA_DIR=../shared/data/mnist .venv/bin/python scripts/sdlm_diagnosis.py --compare --images 100
    LENET_BENCH_DATA_DIR=../shared/data/mnist .venv/bin/python scripts/sdlm_diagnosis.py --rates
    LENET_BENCH_DATA_DIR=../shared/data/mnist .venv/bin/python scripts/sdlm_diagnosis.py --train --updates 3000
    LENET_BENCH_DATA_DIR=../shared/data/mnist .venv/bin/python scripts/sdlm_diagnosis.py --train --subset 10000 \\
        --passes 1 --configs ours:sqrt ours:fanin
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import numpy as np
import torch
from torch.func import functional_call, hessian, jacrev, vmap

from lenet_bench import backends
from lenet_bench.data import load_dataset, prepare
from lenet_bench.device import Device
from lenet_bench.spec import Spec
from lenet_bench.spec.loading import load_variants
from lenet_bench.training import weights as initial
from lenet_bench.training.loop import hessian_sample

# Section III.C: the global rate per pass, mu, and the Hessian's sample; the effective rates it reports.
PAPER_PIECES = ((2, 0.0005), (3, 0.0002), (3, 0.0001), (4, 0.00005))
PAPER_LAST_RATE = 0.00001
PAPER_MU = 0.02
PAPER_HESSIAN_IMAGES = 500
PAPER_EFFECTIVE_RATES = (7e-5, 0.016)
RBF_PENALTY_CURVATURE = 2.0
LAYER_KINDS = {"0": "C1 (shared 5x5 kernels)", "1": "S2 (trainable subsampling)", "2": "C3 (partial, Table I)",
               "3": "S4 (trainable subsampling)", "4": "C5 (5x5 on 5x5: unshared)", "6": "F6 (dense, feeds the RBF)"}


def paper_rate(pass_number: int) -> float:
    """The paper's global learning rate eta for a 1-based pass."""
    end = 0
    for passes, rate in PAPER_PIECES:
        end += passes
        if pass_number <= end:
            return rate
    return PAPER_LAST_RATE


def init_weights(spec: Spec, seed: int, reading: str) -> list[np.ndarray]:
    """Appendix A's initial weights: `fanin` U(-2.4/F, 2.4/F) as printed (the harness's lecun_uniform),
    `sqrt` U(-2.4/sqrt(F), 2.4/sqrt(F)), the same draw scaled by sqrt(F) unit by unit."""
    summary = spec.summary()
    weights = initial.initial_weights(summary, "lecun_uniform", seed)
    if reading == "fanin":
        return weights
    fans = [fan for layer in summary.layers if layer.weight_shapes for fan in initial._unit_fan_ins(layer)]
    return [(w * np.sqrt(fan)).astype(np.float32) for w, fan in zip(weights, fans, strict=True)]


class Network:
    """The torch LeNet-5 of `spec` with its canonical parameters by name, and F6's states as a function."""

    def __init__(self, spec: Spec, weights: list[np.ndarray], dtype: torch.dtype = torch.float32):
        from lenet_bench.backends.torch.model import build, canonical_parameters, set_weights

        self.model = build(spec, 0, Device.CPU).to(dtype)
        set_weights(self.model, [w.astype(np.float64 if dtype == torch.float64 else np.float32) for w in weights])
        self.params = canonical_parameters(self.model)
        names = {id(p): n for n, p in self.model.named_parameters()}
        self.keys = [names[id(p)] for p in self.params]
        self.f6 = self.model[:-1]  # up to the RBF layer; a slice keeps the parameters' names

    def values(self) -> dict[str, torch.Tensor]:
        return {k: p.detach() for k, p in zip(self.keys, self.params, strict=True)}


def exact_gauss_newton(net: Network, x: torch.Tensor, loss_curvature: Callable[[torch.Tensor], torch.Tensor],
                       chunk: int = 1) -> list[torch.Tensor]:
    """Mean over the images of diag(J^T H J), J each image's Jacobian of F6's states with respect to every
    parameter (torch.func.jacrev), H = loss_curvature(F6's states) (84 x 84): float64, no use of sdlm.py."""
    weights = {k: v.double() for k, v in net.values().items()}
    f6 = copy.deepcopy(net.f6).double()  # its own parameters are replaced by `weights`; buffers in float64

    def states(w: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        return functional_call(f6, w, (image.unsqueeze(0),))[0]

    per_image = vmap(jacrev(states), in_dims=(None, 0))
    total = {k: torch.zeros_like(v) for k, v in weights.items()}
    for start in range(0, len(x), chunk):
        images = x[start:start + chunk].double()
        jac = per_image(weights, images)  # {name: (n, 84, *shape)}
        with torch.no_grad():
            h = torch.stack([loss_curvature(s) for s in vmap(states, in_dims=(None, 0))(weights, images)])
        for k, j in jac.items():
            flat = j.reshape(*j.shape[:2], -1)  # (n, 84, P)
            total[k] += torch.einsum("nop,noq,nqp->p", flat, h, flat).reshape(weights[k].shape)
    return [total[k] / len(x) for k in net.keys]


def penalty_curvature(states: torch.Tensor) -> torch.Tensor:
    """Appendix C's starting point (ours): 2 I, the correct class's penalty sum_j (x_j - w_Dj)^2."""
    return RBF_PENALTY_CURVATURE * torch.eye(len(states), dtype=states.dtype)


def map_loss_curvature(spec: Spec, label: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The whole Hessian of eq. (9)'s loss (penalty + log(e^-j + sum_i e^-penalty_i)) in F6's states."""
    from lenet_bench.backends.torch.lecun import RBF
    from lenet_bench.backends.torch.losses import loss_function

    rbf, loss = RBF().double(), loss_function(spec.train.loss)
    target = torch.tensor([label])
    return hessian(lambda s: loss(rbf(s.unsqueeze(0)), target))


def our_estimate(net: Network, x: torch.Tensor, spec: Spec) -> list[torch.Tensor]:
    from lenet_bench.backends.torch.sdlm import diagonal_hessian

    return [h.double() for h in diagonal_hessian(net.model, x.to(net.params[0].dtype), spec.train.loss)]


def array_name(key: str) -> str:
    """'4.0.weight' -> 'C5 (5x5 on 5x5: unshared) weights'."""
    layer, _, kind = key.split(".")
    return f"{LAYER_KINDS[layer]} {'weights' if kind == 'weight' else 'biases'}"


def compare(spec: Spec, x: torch.Tensor, y: np.ndarray, count: int, seed: int) -> None:
    from lenet_bench.backends.torch import lecun

    net = Network(spec, init_weights(spec, seed, "fanin"))
    index = torch.from_numpy(hessian_sample(len(x), count, seed, 1))
    images = x[index]
    ours = our_estimate(net, images, spec)
    penalty = exact_gauss_newton(net, images, penalty_curvature)
    labels = y[index.numpy()]
    whole = sum_over_images(net, images, labels, spec)
    print(f"lecun1998, seed {seed}, initial weights (Appendix A as printed), {count} training images, float64 exact")
    print(f"{'array':36s} {'mean h ours':>11s} {'exact/ours, H = 2I: median (min-max)':>38s} "
          f"{'H = MAP loss: median (min-max)':>32s}")
    for key, o, p, w in zip(net.keys, ours, penalty, whole, strict=True):
        r, rw = p / o, w / o
        print(f"{array_name(key):36s} {o.mean().item():11.3g} {r.median().item():14.3f} "
              f"({r.min().item():.3f}-{r.max().item():.3f}) {rw.median().item():17.3f} "
              f"({rw.min().item():.3f}-{rw.max().item():.3f})")

    one_by_one = [our_estimate(net, images[i:i + 1], spec) for i in range(min(count, 20))]
    mean_of_ones = [torch.stack(hs).mean(0) for hs in zip(*one_by_one, strict=True)]
    on_all = our_estimate(net, images[:len(one_by_one)], spec)
    gap = max((a - b).abs().max().item() / b.abs().max().item() for a, b in zip(on_all, mean_of_ones, strict=True))
    print(f"\nscale: the estimate on {len(one_by_one)} images against the mean of their one-image estimates: "
          f"largest relative difference {gap:.1e} (a mean over images; a sum would differ {len(one_by_one)}x)")

    net64 = Network(spec, init_weights(spec, seed, "fanin"), torch.float64)
    ours64 = our_estimate(net64, images, spec)
    gap = max(((a - b).abs() / b.abs().max()).max().item() for a, b in zip(ours, ours64, strict=True))
    print(f"float32 against float64: largest difference {gap:.1e} of each array's largest value")

    a = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(lecun.ScaledTanh()(a).sum(), a)
    formula = 1.7159 * (2 / 3) * (1 - torch.tanh(2 * a.detach() / 3).square())
    print(f"squashing slope: f(a) = 1.7159 tanh(2a/3), f(1) = {lecun.ScaledTanh()(torch.tensor(1.0)).item():.4f}, "
          f"f'(a) against the formula: largest difference {(slope - formula).abs().max().item():.1e}")

    all_h = torch.cat([h.reshape(-1) for h in ours])
    effective = paper_rate(1) / (PAPER_MU + all_h)
    print(f"mu = {PAPER_MU}: {(all_h < PAPER_MU).double().mean().item():.0%} of the parameters have h < mu; "
          f"effective rates eta/(mu + h) at eta = {paper_rate(1)}: {effective.min():.1e} to {effective.max():.1e} "
          f"(the paper: {PAPER_EFFECTIVE_RATES[0]:.0e} to {PAPER_EFFECTIVE_RATES[1]})")


def sum_over_images(net: Network, images: torch.Tensor, labels: np.ndarray, spec: Spec) -> list[torch.Tensor]:
    """The exact Gauss-Newton diagonal with each image's own MAP-loss Hessian (it depends on the label)."""
    total = None
    for image, label in zip(images, labels, strict=True):
        h = exact_gauss_newton(net, image.unsqueeze(0), map_loss_curvature(spec, int(label)))
        total = h if total is None else [t + a for t, a in zip(total, h, strict=True)]
    assert total is not None
    return [t / len(images) for t in total]


def rates(spec: Spec, x: torch.Tensor, seed: int) -> None:
    images = x[torch.from_numpy(hessian_sample(len(x), PAPER_HESSIAN_IMAGES, seed, 1))]
    print(f"effective learning rates eta/(mu + h) before the first pass, eta {paper_rate(1)}, mu {PAPER_MU}, "
          f"h from {PAPER_HESSIAN_IMAGES} images; the paper (III.C): {PAPER_EFFECTIVE_RATES[0]:.0e} to "
          f"{PAPER_EFFECTIVE_RATES[1]}")
    for reading, label in (("fanin", "U(-2.4/F, 2.4/F) as printed"), ("sqrt", "U(-2.4/sqrt F, 2.4/sqrt F)")):
        net = Network(spec, init_weights(spec, seed, reading))
        h = torch.cat([a.reshape(-1) for a in our_estimate(net, images, spec)])
        r = paper_rate(1) / (PAPER_MU + h)
        q = np.quantile(r.numpy(), [0.01, 0.5, 0.99])
        with torch.no_grad():
            c5 = net.model[:5](images[:100]).std().item()
        print(f"  {label:30s} min {r.min():.1e}  1% {q[0]:.1e}  median {q[1]:.1e}  99% {q[2]:.1e}  max {r.max():.1e};"
              f"  h < mu for {(h < PAPER_MU).double().mean().item():.0%}; C5 states' sd {c5:.3f}")


def train(spec: Spec, data, config: str, updates: int | None, passes: int, every: int, seed: int,
          exact_images: int) -> None:
    """One-image sdlm at the paper's schedule with the estimate and initialization `config` names."""
    from lenet_bench.backends.torch.losses import loss_function
    from lenet_bench.backends.torch.sdlm import SDLM

    estimate, reading = config.split(":")
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    net = Network(spec, init_weights(spec, seed, reading))
    optimizer = SDLM(net.params, lr=paper_rate(1), mu=PAPER_MU)
    loss_fn = loss_function(spec.train.loss)
    losses: list[float] = []
    errors: list[int] = []
    step = 0
    print(f"\n{config}: estimate {estimate}, initialization {reading}", flush=True)
    for pass_number in range(1, passes + 1):
        sample = torch.from_numpy(hessian_sample(len(x), min(PAPER_HESSIAN_IMAGES, len(x)), seed, pass_number))
        if estimate == "ours":
            h = our_estimate(net, x[sample], spec)
        else:  # the first `exact_images` of the same sample: 0.1-1 s an image on one core
            h = sum_over_images(net, x[sample[:exact_images]], y[sample[:exact_images]].numpy(), spec)
        optimizer.set_curvature([a.float() for a in h])
        for group in optimizer.param_groups:
            group["lr"] = paper_rate(pass_number)
        for index in np.random.default_rng([seed, pass_number]).permutation(len(x)):
            out = net.model(x[index:index + 1])
            loss = loss_fn(out, y[index:index + 1])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            errors.append(int(out.argmax(1).item() != int(y[index])))
            step += 1
            if step % every == 0:
                print(f"  pass {pass_number} update {step:6d} (eta {paper_rate(pass_number):.0e}): mean loss "
                      f"{np.mean(losses[-every:]):7.2f}, training error {np.mean(errors[-every:]):6.1%}", flush=True)
            if updates and step >= updates:
                break
        if updates and step >= updates:
            break
    with torch.no_grad():
        predicted = torch.cat([net.model(torch.from_numpy(data.x_test[i:i + 1000])).argmax(1)
                               for i in range(0, len(data.x_test), 1000)])
    error = (predicted != torch.from_numpy(data.y_test)).double().mean().item()
    print(f"  after {step} updates: test error {error:.2%} on {len(data.x_test):,} test images", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="paper1998/lecun1998.yaml")
    parser.add_argument("--name", default="lecun1998")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--rates", action="store_true")
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--images", type=int, default=100, help="--compare: images of the exact diagonal")
    parser.add_argument("--updates", type=int, default=3000, help="--train: one-image updates (0: whole passes)")
    parser.add_argument("--passes", type=int, default=1, help="--train: passes at most")
    parser.add_argument("--subset", type=int, default=None, help="--train: the first N training images")
    parser.add_argument("--every", type=int, default=500, help="--train: updates between log lines")
    parser.add_argument("--exact-images", type=int, default=PAPER_HESSIAN_IMAGES,
                        help="--train: images of the exact estimate (the first of the pass's sample)")
    parser.add_argument("--configs", nargs="+", default=["ours:fanin", "exact:fanin", "ours:sqrt", "exact:sqrt"],
                        help="--train: estimate:initialization pairs (ours|exact : fanin|sqrt)")
    args = parser.parse_args()
    every_one = not (args.compare or args.rates or args.train)
    for config in args.configs:
        estimate, _, reading = config.partition(":")
        if estimate not in ("ours", "exact") or reading not in ("fanin", "sqrt"):
            parser.error(f"--configs: expected estimate:initialization with ours|exact and fanin|sqrt, received {config!r}")

    torch.set_num_threads(1)
    backends.activate("torch")
    spec = next(v.spec for v in load_variants([args.spec]) if v.name == args.name)
    d = spec.data
    data = prepare(load_dataset(d.dataset), input_size=d.input_size, normalization=d.normalization, subset=args.subset)
    x = torch.from_numpy(data.x_train)
    if args.compare or every_one:
        compare(spec, x, data.y_train, args.images, args.seed)
    if args.rates or every_one:
        rates(spec, x, args.seed)
    if args.train or every_one:
        for config in args.configs:
            train(spec, data, config, args.updates or None, args.passes, args.every, args.seed, args.exact_images)


if __name__ == "__main__":
    main()
