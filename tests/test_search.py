"""Exit placement search: policy curve, Pareto front and memory estimates against brute force; the search on a
plain Keras DS-CNN under a flash budget, its chosen design built and measured."""
import json

import numpy as np
import pytest

from tests.test_augment import kws_data, plain_model  # noqa: F401  (module fixtures)
from tinyexit.research.search import operating_points, pareto_front, pick_threshold


def test_operating_points_match_a_brute_force_sweep():
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 4, n)
    score = np.round(rng.uniform(size=n), 2)           # ties on purpose
    exit_pred = np.where(rng.uniform(size=n) < 0.6, y, (y + 1) % 4)
    final_pred = np.where(rng.uniform(size=n) < 0.8, y, (y + 2) % 4)
    c = operating_points(score, exit_pred, final_pred, y, 100.0, 400.0)
    assert np.isinf(c["threshold"][0]) and c["exit_rate"][0] == 0 and c["exit_rate"][-1] == 1
    for t, acc, rate, macs in zip(c["threshold"], c["accuracy"], c["exit_rate"], c["expected_macs"]):
        ex = score >= t
        assert rate == pytest.approx(ex.mean())
        assert acc == pytest.approx(np.mean(np.where(ex, exit_pred, final_pred) == y))
        assert macs == pytest.approx(np.mean(np.where(ex, 100.0, 400.0)))
    assert len(c["threshold"]) == len(np.unique(score)) + 1
    j = pick_threshold(c, 0.7)
    brute = min((m for a, m in zip(c["accuracy"], c["expected_macs"]) if a >= 0.7), default=None)
    assert c["expected_macs"][j] == brute
    assert pick_threshold(c, 1.01) is None


def test_pareto_front_is_exactly_the_non_dominated_points():
    rng = np.random.default_rng(2)
    acc, cost = np.round(rng.uniform(size=200), 2), np.round(rng.uniform(size=200), 2)
    front = set(pareto_front(acc, cost).tolist())
    for i in range(200):
        dominated = any((acc[j] >= acc[i] and cost[j] <= cost[i]) and (acc[j] > acc[i] or cost[j] < cost[i])
                        for j in range(200))
        duplicate_kept = any(j in front and acc[j] == acc[i] and cost[j] == cost[i] for j in range(200) if j != i)
        if dominated:
            assert i not in front
        else:
            assert (i in front) != duplicate_kept or i in front


def test_peak_activation_bytes_by_hand():
    import keras
    from keras import layers

    from tinyexit.research.graph import _Graph
    from tinyexit.research.search import peak_activation_bytes
    inp = keras.Input((8, 8, 4), name="in")
    a = layers.Conv2D(16, 3, padding="same", name="c0")(inp)       # 256 in + 1024 out
    a = layers.BatchNormalization(name="bn")(a)                      # shares c0's buffer
    a = layers.ReLU(name="r0")(a)
    b = layers.Conv2D(16, 3, padding="same", name="c1")(a)         # r0 (1024) live for the add: 1024 + 1024
    c = layers.Add(name="add")([a, b])                              # 1024 + 1024 + 1024
    d = layers.MaxPooling2D(name="pool")(c)
    m = keras.Model(inp, d)
    g = _Graph(m.outputs[0])
    types = {n: type(t._keras_history.operation).__name__ for n, t in g.tensor.items()}
    order = ["c0", "bn", "r0", "c1", "add", "pool"]
    assert peak_activation_bytes(g, types, order, "in", "pool") == 3 * 1024
    assert peak_activation_bytes(g, types, ["c1", "add", "pool"], "r0", "pool") == 3 * 1024
    assert peak_activation_bytes(g, types, ["c0", "bn", "r0"], "in", "r0") == 256 + 1024


@pytest.fixture(scope="module")
def searched(plain_model, kws_data, tmp_path_factory):  # noqa: F811
    from tinyexit.cli import main
    out = tmp_path_factory.mktemp("s") / "search"
    # width-32 heads need ~4 kB more flash than width-8 ones (~17.3 kB with the code allowance): 19 kB excludes
    # them; width 48 > 32 channels makes a 1x1-conv head whose 25x5x48 output next to the 25x5x32 exit point
    # needs 10,000 B of RAM: 9,000 B excludes it
    args = ["search", str(plain_model), "--task", "kws", "--data", str(kws_data), "--board", "nrf52840",
            "--max-drop", "0.05", "--widths", "8,32,48", "--max-points", "2", "--epochs", "4",
            "--flash-budget", "19000", "--ram-budget", "9000", "--out", str(out)]
    assert main(args) == 0
    return json.loads((out / "search.json").read_text()), out


def test_search_excludes_what_does_not_fit_and_picks_the_cheapest(searched):
    rep, out = searched
    designs = {d["name"]: d for d in rep["designs"]}
    assert (out / "search.png").stat().st_size > 0
    assert len(designs) == 1 + 2 * 3
    for d in designs.values():
        if d["width"] == 32:
            assert d["flash_bytes"] > 19000 and d["excluded"].startswith("does not fit: flash")
            assert d["ram_bytes"] == 8000 and "RAM" not in d["excluded"]
        elif d["width"] == 48:
            assert d["kind"] == "conv" and d["ram_bytes"] == 4000 + 25 * 5 * 48
            assert "RAM 10,000 B of live activations > 9,000 B" in d["excluded"]
        elif d["width"] == 8:
            assert d["flash_bytes"] <= 19000 and "does not fit" not in d.get("excluded", "")
    ok = [d for d in designs.values() if not d.get("excluded")]
    chosen = designs[rep["chosen"]]
    assert chosen in ok and chosen["expected_macs"] == min(d["expected_macs"] for d in ok)
    assert chosen["accuracy"] >= rep["accuracy_target"]
    # expected MACs as the rule defines them
    for d in ok:
        assert d["expected_macs"] == pytest.approx(d["exit_rate"] * d["macs_to_exit"] + (1 - d["exit_rate"]) * d["full_macs"])
    # the front: cheapest first, each point strictly more accurate than the cheaper ones, designs that fit only
    fr = rep["pareto_front"]
    assert all(a["expected_macs"] <= b["expected_macs"] and a["accuracy"] < b["accuracy"] for a, b in zip(fr, fr[1:]))
    assert all(designs[p["design"]]["width"] not in (32, 48) for p in fr)


def test_search_on_two_ray_workers_equals_the_serial_search(searched, plain_model, kws_data, tmp_path):  # noqa: F811
    """Each candidate point as a Ray task on 2 workers, each loading the model and the data itself: the same
    designs, curves' figures and choice as the serial search of the fixture (same arguments)."""
    from tinyexit.research.search import Budget, SearchConfig, search
    serial, _ = searched
    rep = search(plain_model, budget=Budget(19000, 9000, "test"), max_drop=0.05, out=tmp_path / "ray",
                 config=SearchConfig(widths=(8, 32, 48), max_points=2, epochs=4), task="kws", data=kws_data,
                 log=lambda s: None, workers=2)
    assert rep["designs"] == serial["designs"]
    assert rep["chosen"] == serial["chosen"] and rep["pareto_front"] == serial["pareto_front"]


def test_chosen_design_verified_against_int8_and_generated_c(searched):
    rep, out = searched
    v = rep["verification"]
    p, m = v["predicted"], v["measured"]
    man = json.loads((out / "verified" / "quant" / "manifest.json").read_text())
    assert m["whole_model_check"]["identical"] == m["whole_model_check"]["inputs"]
    # MACs counted from the Keras graph equal the ones counted from the int8 .tflite
    assert p["macs_to_exit"] == m["macs_to_exit"] == man["exits"][0]["macs_to_exit"]
    assert p["full_macs"] == m["full_macs"] == man["exits"][-1]["macs_to_exit"]
    assert m["expected_macs"] == pytest.approx(m["exit_rate"] * m["macs_to_exit"] + (1 - m["exit_rate"]) * m["full_macs"])
    # int8 weights estimated from the Keras layers vs the generated C's constant arrays
    assert abs(p["weight_bytes"] - m["weight_bytes"]) <= 0.03 * m["weight_bytes"]
    # the RAM estimate bounds the generated arena (which shares buffers in place)
    assert m["arena_bytes"] <= p["ram_bytes"]


def test_peak_activation_bytes_alias_chain_ends_with_its_last_reader():
    import keras
    from keras import layers

    from tinyexit.research.graph import _Graph
    from tinyexit.research.search import peak_activation_bytes
    inp = keras.Input((8, 8, 2), name="in")
    a = layers.Conv2D(16, 1, name="c0")(inp)                       # 128 + 1024
    a = layers.Dropout(0.5, name="drop")(a)                         # alias of c0
    b = layers.Conv2D(4, 1, name="c1")(a)                           # 1024 + 256: the peak; c0 dies here
    c = layers.Conv2D(4, 1, name="c2")(b)                           # 256 + 256 (1024 more if c0 lived on)
    d = layers.Conv2D(4, 1, name="c3")(c)
    m = keras.Model(inp, d)
    g = _Graph(m.outputs[0])
    types = {n: type(t._keras_history.operation).__name__ for n, t in g.tensor.items()}
    assert peak_activation_bytes(g, types, ["c0", "drop", "c1", "c2", "c3"], "in", "c3") == 1024 + 256
    assert peak_activation_bytes(g, types, ["c1", "c2", "c3"], "drop", "c3") == 1024 + 256
