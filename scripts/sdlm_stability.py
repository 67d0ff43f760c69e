"""Why one-image sdlm diverges at LeCun et al.'s (1998) learning rates here: a measurement.

A one-image sdlm step is w <- w - eta * D^-1 g with D = mu + h (the Hessian diagonal estimate). On
one image's loss, whose curvature at F6 is 2 (the correct class's RBF penalty), the step is a
gradient step on the preconditioned Gauss-Newton matrix G = 2 J^T J (J: F6's Jacobian with respect to
all weights), and it overshoots that image's minimum along the top direction when
eta * lambda_max(D^-1/2 G D^-1/2) > 2. The non-zero eigenvalues of D^-1/2 G D^-1/2 are those of the
84x84 matrix 2 J D^-1 J^T, so each sampled image gives its own critical rate 2 / lambda_max.

The script also checks the estimate h against the exact Gauss-Newton diagonal, 2 * mean ||J e_k||^2,
for a few weights per layer: the paper's h drops the cross terms between the connections that share a
weight (Appendix C), and this ratio says how much that drops per layer.

    python scripts/sdlm_stability.py [--spec paper1998/lecun1998.yaml] [--name lecun1998] [--images 100]

Prints, at the initial weights of seed 0: the critical rate's quantiles over the sampled images,
next to the paper's first rate (0.0005) and the spec's; then per layer the exact-to-estimate ratio, or,
with --train-steps N, the mean loss and critical rate every --every steps of one-image sdlm at --rate
(the measurements in results/reference/README.md's 1998 section).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.func import functional_call, jacrev, jvp

from lenet_bench import backends
from lenet_bench.data import load_dataset, prepare
from lenet_bench.spec.loading import load_variants
from lenet_bench.training.loop import hessian_sample

PAPER_FIRST_RATE = 0.0005  # section III.C: the global rate of the first two passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="paper1998/lecun1998.yaml")
    parser.add_argument("--name", default="lecun1998")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=100, help="images whose critical rate is computed")
    parser.add_argument("--coordinates", type=int, default=8, help="weights per array checked against h")
    parser.add_argument("--train-steps", type=int, default=0,
                        help="instead of the per-array check, take this many one-image sdlm steps, "
                             "re-measuring the critical rate")
    parser.add_argument("--rate", type=float, default=PAPER_FIRST_RATE, help="their learning rate")
    parser.add_argument("--every", type=int, default=50, help="steps between measurements")
    args = parser.parse_args()

    backends.activate("torch")
    from lenet_bench.backends.torch.model import build, canonical_parameters, images
    from lenet_bench.backends.torch.sdlm import RBF_PENALTY_CURVATURE, diagonal_hessian

    spec = next(v.spec for v in load_variants([args.spec]) if v.name == args.name)
    data = prepare(load_dataset(spec.data.dataset), input_size=spec.data.input_size,
                   normalization=spec.data.normalization)
    x_train = images(data.x_train, torch.device("cpu"))
    model = build(spec, args.seed, "cpu")
    opt = spec.train.optimizer

    h_sample = x_train[torch.from_numpy(hessian_sample(len(x_train), opt.hessian_samples, args.seed, 0))]
    h = diagonal_hessian(model, h_sample, spec.train.loss)
    params = canonical_parameters(model)
    names = {id(p): n for n, p in model.named_parameters()}
    keys = [names[id(p)] for p in params]
    f6 = model[:-1]  # everything up to the RBF layer: F6's states (a slice keeps the parameters' names)
    values = {k: p.detach() for k, p in zip(keys, params)}
    inverse_d = torch.cat([(1.0 / (opt.mu + hk)).reshape(-1) for hk in h])

    def f6_of(weights: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        return functional_call(f6, weights, (image.unsqueeze(0),))[0]

    rng = np.random.default_rng(args.seed)

    def critical_rates(count: int) -> np.ndarray:
        """2 / lambda_max of the preconditioned one-image Gauss-Newton matrix, for `count` random images."""
        rates = []
        current = {k: p.detach() for k, p in zip(keys, params)}
        for index in rng.choice(len(x_train), count, replace=False):
            jac = jacrev(f6_of)(current, x_train[index])  # {name: (84, *shape)}
            j = torch.cat([jac[k].reshape(jac[k].shape[0], -1) for k in keys], 1)  # (84, N)
            m = RBF_PENALTY_CURVATURE * (j * inverse_d) @ j.T
            rates.append(2.0 / torch.linalg.eigvalsh(m.double())[-1].item())
        return np.array(rates)

    critical = critical_rates(args.images)
    spec_rate = spec.train.lr_pieces[0].lr if spec.train.lr_pieces else opt.learning_rate
    q = np.quantile(critical, [0.0, 0.1, 0.5, 0.9, 1.0])
    print(f"{args.name}, seed {args.seed}, initial weights, h from {opt.hessian_samples} images, mu {opt.mu}")
    print(f"critical one-image rate 2/lambda_max over {args.images} images: min {q[0]:.2e}  10% {q[1]:.2e}  "
          f"median {q[2]:.2e}  90% {q[3]:.2e}  max {q[4]:.2e}")
    print(f"  the paper's first rate {PAPER_FIRST_RATE:.1e} is {PAPER_FIRST_RATE / q[2]:.2f}x the median; "
          f"the spec's {spec_rate:.1e} is {spec_rate / q[2]:.3f}x")

    if args.train_steps:
        # One-image sdlm steps at `--rate`, h held from the start as the harness holds it through a pass;
        # the critical rate re-measured along the way (same D, current weights).
        from lenet_bench.backends.torch.losses import loss_function
        from lenet_bench.backends.torch.sdlm import SDLM
        y_train = torch.from_numpy(data.y_train)
        optimizer = SDLM(params, lr=args.rate, mu=opt.mu)
        optimizer.set_curvature(h)
        loss_fn = loss_function(spec.train.loss)
        order = np.random.default_rng([args.seed, 1]).permutation(len(x_train))
        losses = []
        print(f"\none-image sdlm at rate {args.rate:.1e} ({args.rate / PAPER_FIRST_RATE:.2f}x the paper's first):")
        print(f"{'updates':>8s} {'mean loss':>10s} {'critical rate (median, min) of 10 images':>42s}")
        for step, index in enumerate(order[:args.train_steps], 1):
            loss = loss_fn(model(x_train[index:index + 1]), y_train[index:index + 1])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if step % args.every == 0:
                rates = critical_rates(10)
                print(f"{step:8d} {np.mean(losses[-args.every:]):10.2f} "
                      f"{np.median(rates):20.2e} ({rates.min():.2e})", flush=True)
        return

    # Exact Gauss-Newton diagonal for a few weights per array, on the same images as h.
    print(f"\n{'array':12s} {'mean h':>10s} {'exact GN / h (median, min-max over weights)':>46s}")
    for k, hk in zip(keys, h):
        flat = rng.choice(hk.numel(), min(args.coordinates, hk.numel()), replace=False)
        ratios = []
        for c in flat:
            tangent = {n: torch.zeros_like(v) for n, v in values.items()}
            tangent[k].view(-1)[c] = 1.0
            _, column = jvp(lambda w: functional_call(f6, w, (h_sample,)), (values,), (tangent,))
            exact = RBF_PENALTY_CURVATURE * column.square().sum(1).mean().item()
            ratios.append(exact / max(hk.view(-1)[c].item(), 1e-30))
        ratios = np.array(ratios)
        print(f"{k:12s} {hk.mean().item():10.3g} {np.median(ratios):20.2f} ({ratios.min():.2f}-{ratios.max():.2f})")


if __name__ == "__main__":
    main()
