"""``ncspec diagnose``: verdicts and exit statuses on saved embeddings (.pt, .npy, .npz; one or two views; a series
of files), the Markdown/HTML report, and a specific error naming the fix for every kind of bad input."""
from __future__ import annotations

import fractions

import numpy as np
import pytest
import torch
from ncspec.conformance.cli import main
from test_monitor import views


def _pair(kind, seed=0):
    z1, z2 = views(kind, seed=seed)
    return z1.numpy(), z2.numpy()


def test_healthy_two_views_npy_exits_0(tmp_path, capsys):
    p = tmp_path / "z.npy"
    np.save(p, np.stack(_pair("healthy")))
    assert main(["diagnose", str(p)]) == 0
    assert "healthy" in capsys.readouterr().out


def test_collapsed_series_of_pt_files_exits_1_with_the_claim(tmp_path, capsys):
    paths = []
    for t in range(4):
        z1, z2 = _pair("healthy" if t == 0 else "complete", seed=t)
        paths.append(tmp_path / f"epoch{t}.pt")
        torch.save({"z1": torch.from_numpy(z1), "z2": torch.from_numpy(z2)}, paths[-1])
    assert main(["diagnose", *map(str, paths), "--method", "simsiam"]) == 1
    out = capsys.readouterr().out
    assert "4 observation(s)" in out and "complete collapse" in out and "J1" in out and "stop-grad" in out


def test_dimensional_collapse_npz_one_view_exits_1(tmp_path, capsys):
    p = tmp_path / "z.npz"
    np.savez(p, z1=_pair("rank2")[0])
    assert main(["diagnose", str(p)]) == 1
    assert "dimensional collapse" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_report_with_plots(tmp_path, suffix):
    p = tmp_path / "z.npz"
    np.savez(p, z1=np.stack([_pair("healthy", s)[0] for s in range(3)]),
             z2=np.stack([_pair("healthy", s)[1] for s in range(3)]), step=np.array([0, 10, 20]))
    rep, js = tmp_path / f"report{suffix}", tmp_path / "d.json"
    assert main(["diagnose", str(p), "--report", str(rep), "--json", str(js)]) == 0
    text = rep.read_text()
    assert "Collapse monitor: healthy" in text and "center_norm" in text
    if suffix == ".md":
        assert (tmp_path / "report.png").stat().st_size > 10_000 and "![statistics](report.png)" in text
        png = (tmp_path / "report.png").read_bytes()
    else:
        assert "data:image/png;base64," in text and not (tmp_path / "report.png").exists()
        import base64
        png = base64.b64decode(text.split("data:image/png;base64,")[1].split("'")[0])
        assert "max-width:100%" in text and "white-space:pre-wrap" in text    # figure and verdict fit the page
    width = int.from_bytes(png[16:20], "big")                                 # the PNG header's IHDR width
    assert width <= 1000, f"the figure is {width} px wide; it must fit a page"
    # the first flag at the top, the raw per-observation table behind a fold
    assert text.index("never flagged in 3 observation(s)") < text.index("center_norm")
    assert text.index("<details>") < text.index("center_norm") < text.index("</details>")
    assert '"verdict"' in js.read_text()


class NotATensor:
    pass


def _bad_files(tmp_path):
    z1, z2 = _pair("healthy")
    nan = np.stack([z1, z2])
    nan[0, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "one.npy", z1[:1])
    np.save(tmp_path / "three.npy", np.stack([z1, z2, z1]))
    np.save(tmp_path / "five.npy", np.zeros((2, 2, 2, 4, 4), dtype=np.float32))
    np.save(tmp_path / "images.npy", np.zeros((8, 32, 32, 3), dtype=np.uint8))
    np.save(tmp_path / "obj.npy", np.array([fractions.Fraction(1, 2)], dtype=object), allow_pickle=True)
    np.save(tmp_path / "onev.npy", z1)
    np.save(tmp_path / "m8.npy", np.stack([z1[:, :8], z2[:, :8]]))
    torch.save({"z1": torch.zeros(4, 4), "extra": NotATensor()}, tmp_path / "code.pt")
    torch.save({"emb": torch.zeros(4, 4)}, tmp_path / "keys.pt")
    torch.save({"z1": torch.zeros(4, 4), "z2": torch.zeros(5, 4)}, tmp_path / "mismatch.pt")
    (tmp_path / "z.csv").write_text("1,2\n")


@pytest.mark.parametrize("args, match", [
    (["nan.npy"], "NaN/inf value.*diverging.*before the divergence"),
    (["one.npy"], "single sample.*B >= 2"),
    (["three.npy"], r"must be \(2, B, M\).*\(T, 2, B, M\)"),
    (["five.npy"], r"must be \(B, M\), \(2, B, M\) or \(T, 2, B, M\)"),
    (["images.npy"], "look like images"),
    (["obj.npy"], "not a plain numeric .npy"),
    (["onev.npy", "--views", "2"], "one view only.*needs both views"),
    (["onev.npy", "m8.npy"], "different dimensions"),
    (["code.pt"], r"weights_only=True.*never executes code"),
    (["keys.pt"], "must hold 'z1'"),
    (["mismatch.pt"], "same shape"),
    (["z.csv"], "unknown file type"),
    (["missing.npy"], "no such file"),
])
def test_bad_input_exits_2_with_an_error_naming_the_fix(tmp_path, capsys, args, match):
    _bad_files(tmp_path)
    args = [str(tmp_path / a) if not a.startswith("--") and not a.isdigit() else a for a in args]
    assert main(["diagnose", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncspec diagnose: error:")
    import re
    assert re.search(match, err, re.S), err


def test_no_paths_is_a_usage_error(capsys):
    assert main(["diagnose"]) == 2
    assert "pass embedding files" in capsys.readouterr().err


# --- a checkpoint of `ncspec train` plus a data set ------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint in `ncspec train`'s format (schema, config, encoder weights; untrained tiny VGG11) and a data set
    of uint8 images in the .npz layout `ncspec train --dataset npz:PATH` reads."""
    from ncspec.reference.vision.models import make_encoder
    from ncspec.reference.vision.train import CKPT_SCHEMA, TrainConfig
    d = tmp_path_factory.mktemp("ckpt")
    cfg = TrainConfig(backbone="vgg11", width="tiny", proj_hidden=32, proj_out=16, batch_size=32, method="simsiam")
    torch.manual_seed(0)
    enc = make_encoder(cfg.backbone, cfg.proj_hidden, cfg.proj_out, cfg.width, cfg.proj_out_bn)
    torch.save(dict(schema=CKPT_SCHEMA, config=cfg.to_dict(), encoder=enc.state_dict()), d / "ckpt.pt")
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x_train=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
             y_train=rng.integers(0, 10, 64), x_test=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, 8))
    return d


def test_a_checkpoint_with_its_data_set_is_embedded_and_judged(checkpoint, capsys, tmp_path):
    """Two augmented views of --batches batches, one observation each, at the run's batch size (32 here); the
    monitor's statistics are those of the checkpoint's 16-dim, batch-standardised embeddings."""
    js = tmp_path / "d.json"
    code = main(["diagnose", str(checkpoint / "ckpt.pt"), "--data", str(checkpoint / "data.npz"), "--batches", "3",
                 "--json", str(js)])
    import json
    doc = json.loads(js.read_text())
    assert code == (0 if doc["verdict"]["state"] == "healthy" else 1)
    assert "3 observation(s) of 16-dimensional embeddings" in capsys.readouterr().out
    h = doc["history"]
    assert len(h) == 3 and {r["batch"] for r in h} == {32} and all(r["standardized_dev"] < 0.05 for r in h)
    assert "invariance_j1" in h[0]                              # both views: J1's decomposition


def test_a_collapsed_checkpoint_is_flagged_with_the_claim_and_the_cause(checkpoint, capsys, tmp_path):
    """A checkpoint whose projector maps every image to (almost) the same vector — its last layer's weights scaled
    to 1e-4 of themselves beside a bias of norm 4: ẑ all but one point (J1's complete collapse). The method named in
    the checkpoint (simsiam) narrows the causes to the stop-grad and the predictor."""
    from ncspec.reference.vision.train import CKPT_SCHEMA
    ck = torch.load(checkpoint / "ckpt.pt", weights_only=True)
    cfg = {**ck["config"], "proj_out_bn": False}
    from ncspec.reference.vision.models import make_encoder
    enc = make_encoder(cfg["backbone"], cfg["proj_hidden"], cfg["proj_out"], cfg["width"], False)
    enc.load_state_dict({k: v for k, v in ck["encoder"].items() if k in enc.state_dict()}, strict=False)
    last = enc.projector[3]
    with torch.no_grad():
        last.weight.mul_(1e-4)
        last.bias.fill_(1.0)
    torch.save(dict(schema=CKPT_SCHEMA, config=cfg, encoder=enc.state_dict()), tmp_path / "collapsed.pt")
    assert main(["diagnose", str(tmp_path / "collapsed.pt"), "--data", str(checkpoint / "data.npz")]) == 1
    out = capsys.readouterr().out
    assert "complete collapse" in out and "J1" in out and "stop-grad missing" in out


def _bad_checkpoint_files(d, tmp_path):
    ck = torch.load(d / "ckpt.pt", weights_only=True)
    torch.save({**ck, "schema": "ncspec.vision.ckpt/9"}, tmp_path / "future.pt")
    torch.save({**ck, "extra": NotATensor()}, tmp_path / "code.pt")
    (tmp_path / "cut.pt").write_bytes((d / "ckpt.pt").read_bytes()[:1000])
    torch.save({"z1": torch.zeros(4, 4)}, tmp_path / "emb.pt")
    np.savez(tmp_path / "emb.npz", z1=np.zeros((4, 4)))
    (tmp_path / "data.csv").write_text("1,2\n")


@pytest.mark.parametrize("args, match", [
    (["{ckpt}"], r"a checkpoint of ncspec train, not embeddings.*--data PATH"),
    (["emb.pt", "--data", "{data}"], r"needs a checkpoint written by ncspec train.*holds embeddings.*drop --data"),
    (["{ckpt}", "--data", "missing.npz"], r"missing.npz does not exist.*x_train, y_train, x_test, y_test"),
    (["{ckpt}", "--data", "emb.npz"], r"lacks array 'x_train.*it needs x_train, y_train, x_test, y_test"),
    (["{ckpt}", "--data", "data.csv"], r"an .npz of uint8 images.*npz:PATH.*--data-root"),
    (["{ckpt}", "{ckpt}", "--data", "{data}"], "one checkpoint at a time"),
    (["future.pt", "--data", "{data}"], r"schema 'ncspec.vision.ckpt/9'.*the ncspec version that wrote it"),
    (["code.pt", "--data", "{data}"], r"weights_only=True.*never executes code"),
    (["cut.pt", "--data", "{data}"], r"damaged or truncated.*ckpt.prev.pt"),
    (["nockpt.pt", "--data", "{data}"], r"no such file.*OUT/ckpt.pt"),
    (["{ckpt}", "--data", "{data}", "--batches", "0"], r"--batches must be an int >= 1"),
])
def test_bad_checkpoint_input_exits_2_with_an_error_naming_the_fix(checkpoint, tmp_path, capsys, args, match):
    _bad_checkpoint_files(checkpoint, tmp_path)
    subst = {"{ckpt}": str(checkpoint / "ckpt.pt"), "{data}": str(checkpoint / "data.npz")}
    args = [subst.get(a, a if a.startswith("--") or a.isdigit() else str(tmp_path / a)) for a in args]
    assert main(["diagnose", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncspec diagnose: error:")
    import re
    assert re.search(match, err, re.S), err


def test_benchmark_usage_errors_name_the_fix(capsys, monkeypatch):
    assert main(["diagnose", "z.pt", "--benchmark"]) == 2
    assert "takes no paths" in capsys.readouterr().err
    import importlib.util
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "monai" else find(name, *a))
    assert main(["diagnose", "--benchmark"]) == 2
    err = capsys.readouterr().err
    assert "needs monai (not installed)" in err and "ncspec[monitor-bench]" in err
    from ncspec.conformance.monitor import bench as monitor_bench
    monkeypatch.setattr(monitor_bench, "missing_detector_packages", lambda: [])
    monkeypatch.setenv("NCSPEC_SHARED", "/nonexistent/shared")
    assert main(["diagnose", "--benchmark"]) == 2
    err = capsys.readouterr().err
    assert "fragment, not found at /nonexistent/shared/data/cifar10_fragment.npz" in err and "NCSPEC_SHARED" in err


def test_benchmark_scores_detection_false_alarms_and_latency():
    """score(): a detector that fires on a healthy run is a false alarm, one that fires on a collapsed run a detection
    with its first-fire step as latency; the ncspec column also counts verdicts that named the run's label."""
    from ncspec.conformance.monitor import bench as mb
    def row(label, first, kind):
        return dict(run="r", label=label, seed=0, detectors={"ncspec CollapseMonitor": dict(first=first, kind=kind),
                                                             "other": dict(first=None, kind=None)})
    result = dict(rows=[row(mb.HEALTHY_LABEL, None, None), row(mb.HEALTHY_LABEL, 7, mb.COMPLETE_LABEL),
                        row(mb.DIMENSIONAL_LABEL, 20, mb.DIMENSIONAL_LABEL), row(mb.COMPLETE_LABEL, 40,
                                                                                 mb.DIMENSIONAL_LABEL)])
    nc, other = mb.score(result)
    assert (nc["detected"], nc["of"], nc["false_alarms"], nc["healthy"]) == (2, 2, 1, 2)
    assert nc["median_latency"] == 30 and nc["right_kind"] == 1 and nc[mb.DIMENSIONAL_LABEL] == (1, 1)
    assert (other["detected"], other["false_alarms"], other["median_latency"]) == (0, 0, None)
    assert "| ncspec CollapseMonitor | 2/2 |" in mb.markdown_table([nc, other])


def test_a_long_series_shows_progress_and_keeps_the_verdicts(tmp_path, capsys):
    """More than PROGRESS_CHUNK observations: progress lines on stderr, verdicts identical to one report."""
    from ncspec.conformance.cli.diagnose import PROGRESS_CHUNK
    from ncspec.reference.monitor import judge_series
    T = PROGRESS_CHUNK + 20
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(T, 16, 8, generator=g), torch.randn(T, 16, 8, generator=g)
    torch.save({"z1": z1, "z2": z2}, tmp_path / "long.pt")
    js = tmp_path / "d.json"
    main(["diagnose", str(tmp_path / "long.pt"), "--json", str(js)])
    err = capsys.readouterr().err
    assert f"judged {PROGRESS_CHUNK}/{T}" in err and f"judged {T}/{T}" in err
    import json
    replayed = [h["verdict"] for h in json.loads(js.read_text())["history"]]
    assert replayed == [v.state for v in judge_series(z1, z2).verdicts]
