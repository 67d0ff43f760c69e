"""Effects of design choices: synthetic runs with known effects, the committed reference rows, and the command."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SPEC_FOLDERS

from lenet_bench.cli import main
from lenet_bench.results import effects
from lenet_bench.results import effects_words as words
from lenet_bench.results.convert import rows_to_frame
from lenet_bench.results.table import ResultsFolder

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference"
README = REFERENCE / "README.md"

SIGMOID_COST = -0.6  # points of test accuracy the synthetic sigmoid loses against relu
TANH_COST = -0.2


@dataclass(frozen=True)
class FakeVariant:
    """What the analysis reads of a spec's variant: its name and matrix coordinates."""

    name: str
    base_name: str
    labels: tuple[tuple[str, str], ...]


def synthetic_runs(seeds=range(8), noise=0.05, backends=("torch",), conditions=("AMD EPYC, 1 core",),
                   speed_of_avg=1.0) -> pd.DataFrame:
    """A 3x2 activation x pool matrix whose true effects are known: sigmoid -0.6 points, tanh -0.2, pool 0.

    Each seed moves every cell together (a shared draw, as a seed's data order does), plus a small per-cell noise.
    """
    rng = np.random.default_rng(0)
    cost = {"relu": 0.0, "sigmoid": SIGMOID_COST, "tanh": TANH_COST}
    rows = []
    for seed in seeds:
        seed_shift = rng.normal(0, 0.3)
        for activation, pool, backend, hardware in itertools.product(cost, ("max", "avg"), backends, conditions):
            accuracy = 98.8 + cost[activation] + seed_shift + rng.normal(0, noise)
            speed = 10_000 * (speed_of_avg if pool == "avg" else 1.0) * np.exp(rng.normal(0, 0.02))
            spec = f"m-{activation}-{pool}"
            rows.append({"run": f"{spec}/{backend}/cpu/seed{seed}", "spec": spec, "base_spec": "m", "overrides": "",
                         "backend": backend, "device": "cpu", "seed": seed, "status": "completed",
                         "activation": activation, "pooling": pool, "test_accuracy": accuracy / 100,
                         "train_images_per_sec": speed, "time_to_target_s": 20.0, "hardware": hardware,
                         "timing": "quiet", "executor": "inline"})
    return pd.DataFrame(rows)


def variants_of(frame: pd.DataFrame) -> list[FakeVariant]:
    cells = frame[["spec", "activation", "pooling"]].drop_duplicates()
    order = {"relu": 0, "sigmoid": 1, "tanh": 2, "max": 0, "avg": 1}
    cells = cells.sort_values(["activation", "pooling"], key=lambda s: s.map(order))
    return [FakeVariant(c.spec, "m", (("model.activation", c.activation), ("model.pool", c.pooling)))
            for c in cells.itertuples()]


def effect(table: pd.DataFrame, factor: str, level: str, metric: str = "test accuracy") -> pd.Series:
    found = table[(table["factor"] == factor) & (table["level"] == level) & (table["metric"] == metric)]
    assert len(found) == 1, found
    return found.iloc[0]


def test_known_effects_are_covered_by_their_intervals_and_a_zero_effect_is_reported_as_zero():
    frame = synthetic_runs()
    table, notes = effects.effects_table(frame, variants_of(frame))
    assert notes == []
    sigmoid, tanh, avg = effect(table, "activation", "sigmoid"), effect(table, "activation", "tanh"), \
        effect(table, "pool", "avg")
    assert sigmoid["reference"] == "relu" and avg["reference"] == "max"  # the spec's first level
    for row, truth in ((sigmoid, SIGMOID_COST), (tanh, TANH_COST), (avg, 0.0)):
        assert row["method"] == "paired" and row["n"] == 8
        assert row["ci_low"] <= truth <= row["ci_high"], row
    assert sigmoid["distinguishable"] and tanh["distinguishable"]
    assert not avg["distinguishable"]
    assert words.verdict(avg).startswith("not distinguishable (Holm, ")
    assert np.isnan(sigmoid["seeds_needed"]) and avg["seeds_needed"] > 8
    # Holm: adjusted p-values are never below the raw ones, and every accuracy effect is in one family.
    accuracy = table[table["metric"] == "test accuracy"]
    assert (accuracy["p_adjusted"] >= accuracy["p"] - 1e-12).all()


def test_the_seed_shift_cancels_in_pairs():
    """A seed spread far wider than the effect still resolves it: pairs share the seed's draw."""
    frame = synthetic_runs(seeds=range(5), noise=0.02)
    table, _ = effects.effects_table(frame, variants_of(frame))
    sigmoid = effect(table, "activation", "sigmoid")
    assert sigmoid["distinguishable"] and sigmoid["ci_high"] - sigmoid["ci_low"] < 0.2


def test_an_interaction_the_design_allows_is_estimated():
    frame = synthetic_runs()
    cell = (frame["activation"] == "sigmoid") & (frame["pooling"] == "avg")
    frame.loc[cell, "test_accuracy"] -= 0.004  # sigmoid hurts 0.4 points more with average pooling
    table, _ = effects.effects_table(frame, variants_of(frame))
    both = effect(table, "activation × pool", "sigmoid × avg")
    assert both["ci_low"] <= -0.4 <= both["ci_high"] and both["distinguishable"] and both["kind"] == "interaction"
    # The cells' own difference: sigmoid's cost plus the interaction, what comparing the two cells shows.
    assert both["cells"] == pytest.approx(SIGMOID_COST - 0.4, abs=0.1)
    assert words.choice(both) == "activation × pool interaction: sigmoid × avg"
    assert words.cells_text(both) == f"sigmoid × avg vs relu × max: {both['cells']:+.2f} pp"
    assert "interaction sigmoid × avg (sigmoid's effect with avg minus with max)" in words.plain_words(both)
    assert not effect(table, "activation × pool", "tanh × avg")["distinguishable"]


def test_missing_seeds_use_the_pairs_that_exist_and_unpaired_levels_fall_back_to_welch():
    frame = synthetic_runs()
    dropped = frame.drop(frame[(frame["spec"] == "m-sigmoid-max") & (frame["seed"] < 3)].index)
    table, _ = effects.effects_table(dropped, variants_of(frame))
    sigmoid = effect(table, "activation", "sigmoid")
    assert sigmoid["method"] == "paired" and sigmoid["n"] == 8  # seeds 0-2 still pair through the avg cells
    assert sigmoid["ci_low"] <= SIGMOID_COST <= sigmoid["ci_high"]

    unpaired = frame[((frame["activation"] == "relu") & (frame["seed"] < 4))
                     | ((frame["activation"] == "sigmoid") & (frame["seed"] >= 4))]
    table, _ = effects.effects_table(unpaired, variants_of(frame))
    sigmoid = effect(table, "activation", "sigmoid")
    assert sigmoid["method"] == "Welch" and sigmoid["n"] == 4
    assert sigmoid["ci_low"] <= SIGMOID_COST <= sigmoid["ci_high"]


def test_timings_of_different_conditions_are_never_pooled():
    frame = synthetic_runs(conditions=("AMD EPYC, 1 core", "AMD EPYC, 2 cores"), speed_of_avg=1.25)
    table, _ = effects.effects_table(frame, variants_of(frame))
    speed = table[(table["factor"] == "pool") & (table["metric"] == "training img/s") & (table["kind"] == "main")]
    assert sorted(speed["conditions"]) == ["AMD EPYC, 1 core, inline", "AMD EPYC, 2 cores, inline"]
    assert all(row.ci_low <= 25.0 <= row.ci_high and row.n == 8 for row in speed.itertuples())
    accuracy = effect(table, "pool", "avg")
    assert accuracy["conditions"] == effects.ALL_CONDITIONS  # accuracy does not depend on where it ran


def test_backends_that_compute_the_same_numbers_show_an_exact_zero():
    frame = synthetic_runs(backends=("torch", "keras"))
    keras = frame["backend"] == "keras"
    frame.loc[keras, "test_accuracy"] = frame.loc[~keras, "test_accuracy"].to_numpy()
    table, _ = effects.effects_table(frame, variants_of(frame))
    backend = effect(table, "backend", "keras")
    assert backend["reference"] == "torch" and backend["effect"] == 0 and words.verdict(backend) == \
        "identical in every pair"
    # Two backends of one seed are one draw: the activation effect still has n = seeds, not seeds x backends.
    assert effect(table, "activation", "sigmoid")["n"] == 8


def test_without_specs_the_factors_are_the_columns_that_vary():
    frame = synthetic_runs()
    table, _ = effects.effects_table(frame)
    assert set(table["factor"]) >= {"activation", "pooling"}
    assert effect(table, "activation", "sigmoid")["ci_low"] <= SIGMOID_COST


def test_runs_of_variants_a_spec_no_longer_has_are_left_out_with_a_note():
    frame = synthetic_runs()
    old = frame[frame["spec"] == "m-relu-max"].assign(spec="m-relu-max-old", run=lambda f: f["run"] + "-old")
    table, notes = effects.effects_table(pd.concat([frame, old]), variants_of(frame))
    assert len(notes) == 1 and "m-relu-max-old" in notes[0]
    assert effect(table, "activation", "sigmoid")["n"] == 8


# ------------------------------------------------------------------ the committed reference rows


def reference_analysis() -> effects.Analysis:
    from lenet_bench.spec import load_variants

    frame = rows_to_frame(ResultsFolder(REFERENCE).read())
    return effects.analyse(frame, load_variants(SPEC_FOLDERS))


def reference_table():
    analysis = reference_analysis()
    return analysis.effects, analysis.notes


@pytest.mark.parametrize("group", ["lenet5-classic", "lenet5-regularization"])
def test_the_reference_readme_sections_are_the_ones_the_effects_give(group):
    table = reference_analysis()
    section = words.readme_section(table, group)
    text = README.read_text()
    begin = text.index(words.README_BEGIN.format(group=group))
    end = text.index(words.README_END, begin)
    assert text[begin:end + len(words.README_END)] == section, \
        f"regenerate it: python -m lenet_bench effects results/reference --readme-section {group}"


def test_the_classic_matrix_has_five_paired_seeds_per_cell_on_torch_and_keras():
    table, _ = reference_table()
    classic = table[(table["group"] == "lenet5-classic") & (table["metric"] == "test accuracy")]
    for factor in ("activation", "pool", "input"):
        assert (classic[classic["factor"] == factor]["n"] >= 5).all(), classic


# ------------------------------------------------------------------ the command


def test_the_command_prints_the_table_and_exits_0(capsys):
    assert main(["effects", str(REFERENCE), "--specs", *map(str, SPEC_FOLDERS)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "activation: sigmoid vs relu" in out and "(Holm)" in out and "each level's own numbers" in out


def test_the_command_refuses_a_folder_without_runs(tmp_path, capsys):
    assert main(["effects", str(tmp_path)]) == 2
    assert "runs.csv not found" in capsys.readouterr().err


def test_the_command_refuses_a_table_without_completed_runs(tmp_path, capsys):
    frame = synthetic_runs().assign(status="skipped", test_accuracy=np.nan)
    frame.to_csv(tmp_path / "runs.csv", index=False)
    assert main(["effects", str(tmp_path)]) == 2
    assert "no completed runs" in capsys.readouterr().err


@pytest.mark.parametrize("with_specs", [True, False])
def test_the_command_writes_markdown_for_any_results_folder(tmp_path, capsys, with_specs):
    synthetic_runs().to_csv(tmp_path / "runs.csv", index=False)
    args = ["effects", str(tmp_path), "--markdown"] + (["--specs", *map(str, SPEC_FOLDERS)] if with_specs else [])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("# What each design choice does") and "sigmoid vs relu" in out


def test_the_command_gives_every_effect_and_level_as_data_with_json(tmp_path, capsys):
    synthetic_runs().to_csv(tmp_path / "runs.csv", index=False)
    assert main(["effects", str(tmp_path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    found = pd.DataFrame(document["effects"])
    sigmoid, tanh, pool = (effect(found, "activation", "sigmoid"), effect(found, "activation", "tanh"),
                           effect(found, "pooling", "max"))
    for row, cost in ((sigmoid, SIGMOID_COST), (tanh, TANH_COST), (pool, 0.0)):
        assert row["status"] == "tested" and row["low"] <= cost <= row["high"], row
        assert row["distinguishable"] == (row["high"] < 0 or row["low"] > 0), "the verdict follows the interval"
    assert sigmoid["distinguishable"] and not pool["distinguishable"]
    levels = pd.DataFrame(document["levels"])
    accuracy = levels[(levels["factor"] == "activation") & (levels["metric"] == "test accuracy")].set_index("level")
    assert accuracy.loc["sigmoid", "mean"] - accuracy.loc["relu", "mean"] == pytest.approx(sigmoid["effect"])
    assert (accuracy["n"] == 8).all()

    # The table prints the same effect; --json does not combine with the other outputs.
    assert main(["effects", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "activation: sigmoid vs relu" in line)
    assert f"{sigmoid['effect']:.2f}" in line
    with pytest.raises(SystemExit) as stopped:
        main(["effects", str(tmp_path), "--json", "--markdown"])
    assert stopped.value.code == 2 and "not allowed with" in capsys.readouterr().err


# ------------------------------------------------------------------ every sentence follows from its row


def test_the_interval_shown_excludes_zero_exactly_when_the_verdict_says_distinguishable():
    """Holm's step-down levels against statsmodels' decisions, over many families of p-values, and on a table."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    # 40 families: statsmodels' Holm runs gc.collect() on every call (cheap with the earlier objects frozen, conftest).
    for _ in range(40):
        p = rng.uniform(0, 0.08, size=int(rng.integers(1, 25))) ** rng.uniform(1, 3)
        levels = effects.holm_levels(p)
        assert ((p <= levels) == multipletests(p, alpha=effects.ALPHA, method="holm")[0]).all()
    frame = synthetic_runs(seeds=range(4), noise=0.15)
    table, _ = effects.effects_table(frame, variants_of(frame))
    tested = table[table["status"] == effects.TESTED]
    assert len(tested) > 5 and tested["distinguishable"].any() and not tested["distinguishable"].all()
    excludes_zero = (tested["low"] > 0) | (tested["high"] < 0)
    assert (excludes_zero == tested["distinguishable"]).all()
    # The interval is wider than the unadjusted 95% one: it is taken at 1 - alpha/k.
    assert ((tested["high"] - tested["low"]) > (tested["ci_high"] - tested["ci_low"])).all()
    for _, row in tested.iterrows():
        assert words.shown_interval(row)[2] == f"{words.confidence(row['alpha'])} (Holm)"


def test_seeds_needed_are_more_than_the_seeds_there_and_found_for_a_large_effect_of_few_seeds():
    """A large effect of 2 seeds left unresolved by the correction needs a few seeds more, not 'over 1000'
    (scipy's noncentral t gives NaN there) and never fewer than it has."""
    large = effects.seeds_needed("paired", 9.35, effects.ALPHA / 19, have=2)
    assert 2 < large < 10
    assert effects.seeds_needed("paired", 9.35, effects.ALPHA / 19, have=5) == 6  # at least one more than there
    assert effects.seeds_needed("paired", 0.5, effects.ALPHA, have=3) == pytest.approx(34, abs=2)  # textbook: 34
    assert effects.seeds_needed("paired", 0.001, effects.ALPHA, have=3) == float("inf")
    frame = synthetic_runs(seeds=range(4), noise=0.15)
    table, _ = effects.effects_table(frame, variants_of(frame))
    unresolved = table[(table["status"] == effects.TESTED) & ~table["distinguishable"]]
    assert len(unresolved) and (unresolved["seeds_needed"] > unresolved["n"]).all()
    assert table.loc[table["distinguishable"], "seeds_needed"].isna().all()


def test_timings_under_load_or_of_one_seed_are_listed_apart_and_never_distinguishable():
    frame = synthetic_runs(speed_of_avg=3.0, conditions=("AMD EPYC, 1 core", "AMD EPYC, 2 cores"))
    frame.loc[frame["hardware"] == "AMD EPYC, 2 cores", "timing"] = "loaded"
    one = synthetic_runs(seeds=[0], speed_of_avg=3.0, conditions=("Intel, 4 cores",))
    table, _ = effects.effects_table(pd.concat([frame, one], ignore_index=True), variants_of(frame))
    speed = table[(table["factor"] == "pool") & (table["metric"] == "training img/s") & (table["kind"] == "main")]
    by_conditions = speed.set_index("conditions")
    quiet, loaded = by_conditions.loc["AMD EPYC, 1 core, inline"], by_conditions.loc["AMD EPYC, 2 cores, loaded, inline"]
    assert quiet["status"] == effects.TESTED and quiet["distinguishable"]
    assert loaded["status"] == effects.LOADED and not loaded["distinguishable"] and np.isnan(loaded["p_adjusted"])
    assert words.verdict(loaded) == "not tested: timed under load" and "95%, untested" in words.shown_interval(loaded)
    single = by_conditions.loc["Intel, 4 cores, inline"]
    assert single["status"] == effects.ONE_SEED and words.short_verdict(single) == "one seed"
    # Holm's family of the speed metric holds the quiet effects only.
    family = table[(table["metric"] == "training img/s") & (table["status"] == effects.TESTED)]
    assert (family["conditions"] == "AMD EPYC, 1 core, inline").all() and (family["family"] == len(family)).all()


def test_each_level_has_its_own_mean_and_interval():
    frame = synthetic_runs(seeds=range(6), noise=0.0, speed_of_avg=2.0)
    analysis = effects.analyse(frame, variants_of(frame))
    levels = analysis.levels.set_index(["factor", "level", "metric"])
    relu, sigmoid = levels.loc[("activation", "relu", "test accuracy")], levels.loc[("activation", "sigmoid",
                                                                                     "test accuracy")]
    assert sigmoid["mean"] - relu["mean"] == pytest.approx(SIGMOID_COST)
    by_seed = frame[frame["activation"] == "relu"].groupby("seed")["test_accuracy"].mean() * 100
    assert relu["mean"] == pytest.approx(by_seed.mean()) and relu["n"] == 6
    assert relu["ci_low"] < relu["mean"] < relu["ci_high"]
    avg, max_ = levels.loc[("pool", "avg", "training img/s")], levels.loc[("pool", "max", "training img/s")]
    assert avg["mean"] / max_["mean"] == pytest.approx(2.0, rel=0.03)  # geometric means of the speeds
    rows, condition = words.level_rows(analysis.levels, "m")
    assert condition == "AMD EPYC, 1 core, inline"
    assert [(r["factor"], r["level"]) for r in rows] == [("activation", "relu"), ("activation", "sigmoid"),
                                                         ("activation", "tanh"), ("pool", "max"), ("pool", "avg")]
    assert rows[0]["test accuracy %"].startswith(f"{relu['mean']:,.2f} [")


def test_identical_values_give_no_test_and_no_library_warning():
    """Two backends that compute the same numbers: no spread, so no p-value in any row (not 1.0 in one and none in
    the next), no scipy warning of catastrophic cancellation, and the README words say what happened."""
    import warnings

    frame = synthetic_runs(backends=("torch", "keras"))
    keras = frame["backend"] == "keras"
    frame.loc[keras, "test_accuracy"] = frame.loc[~keras, "test_accuracy"].to_numpy() + 0.001  # the same +0.1 pp
    frame.loc[keras, "train_images_per_sec"] = frame.loc[~keras, "train_images_per_sec"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analysis = effects.analyse(frame, variants_of(frame))
        text = words.effects_markdown(analysis)
    backend = analysis.effects[analysis.effects["factor"] == "backend"].set_index("metric")
    assert (backend["status"] == effects.NO_SPREAD).all() and backend["p"].isna().all()
    assert words.verdict(backend.loc["test accuracy"]) == "the same difference in every seed"
    assert words.verdict(backend.loc["training img/s"]) == "identical in every pair"
    assert "the same difference in every seed" in text


def test_the_summary_names_what_is_resolved_and_what_is_not():
    frame = synthetic_runs()
    analysis = effects.analyse(frame, variants_of(frame))
    table = analysis.effects
    text = words.summary(table[table["status"].isin([effects.TESTED, effects.NO_SPREAD])], "AMD EPYC, 1 core, inline")
    resolved, unresolved = text.split(" Not resolved: ")
    assert "sigmoid instead of relu (test accuracy -0.6" in resolved and "tanh instead of relu" in resolved
    assert "avg instead of max (test accuracy" in unresolved and "avg instead of max (test" not in resolved
    count = int(((table["status"] == effects.TESTED) & ~table["distinguishable"]).sum())
    assert unresolved.startswith(f"{count} effects")


def test_the_markdown_lists_levels_tested_effects_and_untested_ones_apart():
    frame = synthetic_runs(conditions=("AMD EPYC, 1 core", "AMD EPYC, 2 cores"))
    frame.loc[frame["hardware"] == "AMD EPYC, 2 cores", "timing"] = "loaded"
    text = words.effects_markdown(effects.analyse(frame, variants_of(frame)))
    levels, tested, untested = (text.index("Each level's own numbers"), text.index("Effects:"),
                                text.index("Not tested (timed under load, or one seed)"))
    assert levels < tested < untested
    assert "loaded" not in text[tested:untested] and "not tested: timed under load" in text[untested:]
    assert "95% CI" not in text[tested:untested].split("\n", 3)[2]  # the tested table's header names Holm's interval
