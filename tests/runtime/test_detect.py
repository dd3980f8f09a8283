"""scripts/detect.py: any model file on one's own images, folders, globs and videos; boxes in
the original image's pixels."""
import json
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest
from gluoncv.data.transforms import image as timage

from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.runtime.detect import Detector, Result, find_inputs, run
from ssd_nobias.errors import DataError
from ssd_nobias.data.images import ImageError
from ssd_nobias.runtime.predictors import load_predictor
from ssd_nobias.machine import cpu_info
from ssd_nobias.provenance import fingerprint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DETECT = [sys.executable, os.path.join(ROOT, "scripts", "detect.py")]
CLASSES = ["circle", "square", "triangle", "star"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def model(alive_model):
    return alive_model


def pictures(folder, sizes=((97, 118), (200, 150))):
    """Noise images of the given (width, height), none of them 300 x 300."""
    os.makedirs(folder, exist_ok=True)
    rng, paths = np.random.RandomState(3), []
    for k, (w, h) in enumerate(sizes):
        path = os.path.join(folder, f"pic{k}.png")
        cv2.imwrite(path, rng.randint(0, 256, (h, w, 3)).astype(np.uint8))
        paths.append(path)
    return paths


def expected(cfg, params, image):
    """The predictor's boxes for `image`, mapped back through the 300 x 300 resize."""
    net = load_predictor(cfg, params_path=params).predictor
    h, w = image.shape[:2]
    x = timage.imresize(mx.nd.array(image, dtype=np.uint8), 300, 300, interp=9)  # auto
    x = mx.nd.image.normalize(mx.nd.image.to_tensor(x), mean=MEAN, std=STD).expand_dims(0)
    ids, scores, boxes = (a[0].asnumpy() for a in net(x))
    keep = ids[:, 0] >= 0
    boxes = boxes[keep] * np.array([w / 300, h / 300, w / 300, h / 300])
    boxes = np.clip(boxes, 0, [w, h, w, h])
    return ids[keep, 0], scores[keep, 0], boxes


def test_json_boxes_are_the_predictors_boxes_in_the_original_pixels(model, tmp_path):
    cfg, params, _, _ = model
    paths = pictures(str(tmp_path / "in"))
    detector = Detector(load_predictor(cfg, params_path=params),
                        Preprocess(300, MEAN, STD), thresh=0.0)
    summary = run(detector, paths, str(tmp_path / "out"), progress=False)
    assert summary.images == 2 and summary.images_per_s > 0
    for path in paths:
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        ids, scores, boxes = expected(cfg, params, image)
        stem = os.path.join(str(tmp_path / "out"), os.path.basename(path)[:-4])
        with open(stem + ".json") as f:
            got = json.load(f)
        assert (got["width"], got["height"]) == (image.shape[1], image.shape[0])
        dets = got["detections"]
        assert len(dets) == len(ids) > 10
        order = np.argsort(-scores, kind="stable")
        np.testing.assert_allclose([d["box"] for d in dets], boxes[order], atol=1e-3)
        np.testing.assert_allclose([d["score"] for d in dets], scores[order], atol=1e-6)
        assert [d["class"] for d in dets] == [CLASSES[int(i)] for i in ids[order]]
        drawn = cv2.imread(stem + ".png")
        assert drawn.shape == image.shape and not np.array_equal(drawn[..., ::-1], image)


def test_threshold_and_class_filter(model, tmp_path):
    cfg, params, _, _ = model
    paths = pictures(str(tmp_path / "in"), sizes=((160, 120),))
    loaded = load_predictor(cfg, params_path=params)
    every = Detector(loaded, Preprocess(300, MEAN, STD), thresh=0.0)(
        cv2.imread(paths[0])[..., ::-1].copy())
    # a threshold between two scores, far from both: the JSON rounds scores to 1e-6, so a
    # threshold equal to one rounded score would test the rounding, not the filter
    scores = sorted({d["score"] for d in every})
    middles = [(a + b) / 2 for a, b in zip(scores, scores[1:]) if b - a > 1e-5]
    cut = middles[len(middles) // 2]
    kept = Detector(loaded, Preprocess(300, MEAN, STD), thresh=cut)(
        cv2.imread(paths[0])[..., ::-1].copy())
    assert kept == [d for d in every if d["score"] >= cut] and 0 < len(kept) < len(every)
    some = {every[0]["class"]}
    only = Detector(loaded, Preprocess(300, MEAN, STD), 0.0, sorted(some))(
        cv2.imread(paths[0])[..., ::-1].copy())
    assert only == [d for d in every if d["class"] in some]
    with pytest.raises(DataError, match="--classes dog: not a class of this model"):
        Detector(loaded, Preprocess(300, MEAN, STD), 0.0, ["dog"])


def test_a_detector_opens_a_path_and_takes_files_pil_images_arrays_and_lists(model, tmp_path):
    from PIL import Image
    cfg, params, deploy, _ = model
    paths = pictures(str(tmp_path / "in"))
    detector = Detector(deploy, thresh=0.3)  # an export folder, as from_export opens it
    bgr = cv2.imread(paths[0])
    result = detector(paths[0])
    assert isinstance(result, Result) and len(result) > 0
    assert detector(bgr[..., ::-1].copy()) == result  # RGB arrays by default
    assert detector(bgr, channels="BGR") == result    # cv2.imread's order, said so
    assert detector(Image.open(paths[0])) == result
    assert result.boxes.shape == (len(result), 4) and result.labels == [d["class"] for d in result]
    assert (np.diff(result.scores) <= 0).all() and set(result.class_ids) <= {0, 1, 2, 3}
    drawn = result.draw()
    assert drawn.shape == bgr.shape and not np.array_equal(drawn, result.image)
    batch = detector(paths)  # one forward pass for the list
    assert [r.image.shape for r in batch] == [cv2.imread(p).shape for p in paths]
    for got, alone in zip(batch, (detector(p) for p in paths)):
        assert got[0]["class"] == alone[0]["class"]
        np.testing.assert_allclose(got[0]["box"], alone[0]["box"], atol=0.05)
    checkpoint = Detector(params, thresh=0.3)  # a .params checkpoint with its sidecar
    assert checkpoint.model.classes == CLASSES and checkpoint(paths[0]).labels
    with pytest.raises(ValueError, match="channels must be one of RGB, BGR"):
        detector(bgr, channels="BRG")
    with pytest.raises(DataError, match="HxWx3 uint8"):
        detector(bgr.astype(np.float32))
    with pytest.raises(TypeError, match="give a path to open one"):
        Detector(detector.model)


def test_inputs_from_folders_globs_and_files(tmp_path):
    paths = pictures(str(tmp_path / "a"))
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert find_inputs([str(tmp_path / "a")]) == paths
    assert find_inputs([str(tmp_path / "a" / "*.png"), paths[0]]) == paths + [paths[0]]
    with pytest.raises(DataError, match="'nowhere/x.jpg' is no file, folder or matching"):
        find_inputs(["nowhere/x.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image"):
        find_inputs([str(tmp_path / "empty")])


def test_a_video_gives_an_annotated_video_and_one_detection_list_per_frame(model, tmp_path):
    cfg, params, _, _ = model
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 96))
    rng = np.random.RandomState(0)
    for _ in range(3):
        writer.write(rng.randint(0, 256, (96, 160, 3)).astype(np.uint8))
    writer.release()
    detector = Detector(load_predictor(cfg, params_path=params), Preprocess(300, MEAN, STD), 0.0)
    summary = run(detector, [video], str(tmp_path / "out"), progress=False)
    assert summary.images == 3
    with open(tmp_path / "out" / "clip.json") as f:
        got = json.load(f)
    assert [f["frame"] for f in got["frames"]] == [0, 1, 2] and got["fps"] == 10
    assert all(len(f["detections"]) > 0 for f in got["frames"])
    back = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(back.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (int(back.get(cv2.CAP_PROP_FRAME_WIDTH)), int(back.get(cv2.CAP_PROP_FRAME_HEIGHT))) \
        == (160, 96)


def test_unreadable_inputs_stop_naming_the_file_or_are_skipped_and_counted(model, tmp_path):
    cfg, params, _, _ = model
    good = pictures(str(tmp_path / "in"), sizes=((64, 48),))[0]
    cut = tmp_path / "in" / "cut.jpg"
    cv2.imwrite(str(cut), np.full((48, 64, 3), 128, np.uint8))
    cut.write_bytes(cut.read_bytes()[:200])  # a half-copied JPEG
    detector = Detector(load_predictor(cfg, params_path=params), Preprocess(300, MEAN, STD))
    with pytest.raises(ImageError, match="cut.jpg"):
        run(detector, [good, str(cut)], str(tmp_path / "out"), progress=False)
    summary = run(detector, [str(cut), good], str(tmp_path / "out2"), skip_bad=True,
                  progress=False)
    assert summary.images == 1 and summary.skipped == [str(cut)]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("which", ["params", "params_alone", "deploy", "onnx"])
def test_the_script_runs_every_model_file_alike(model, tmp_path, which):
    cfg, params, deploy, onnx_path = model
    paths = pictures(str(tmp_path / "in"), sizes=((120, 90),))
    source = {"params": ["--config", os.path.join(ROOT, "configs", "demo_synthetic.yaml"),
                         "--params", params, f"data.root={cfg.data.root}"],
              "params_alone": ["--params", params],  # the config from its sidecar
              "deploy": ["--deploy", deploy], "onnx": ["--onnx", onnx_path]}[which]
    image = cv2.imread(paths[0])[..., ::-1].copy()
    ids, scores, boxes = expected(cfg, params, image)
    # a threshold near 0.05 that no score comes close to: the three files' scores differ in
    # the last bits, which must not decide which detections pass it
    values = np.sort(scores)
    middles = [(a + b) / 2 for a, b in zip(values, values[1:]) if b - a > 1e-3]
    thresh = min(middles, key=lambda m: abs(m - 0.05))
    done = subprocess.run(DETECT + source + [str(tmp_path / "in" / "*.png"), "--thresh",
                                             f"{thresh:.6f}", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 image(s) at" in done.stdout and "images/s" in done.stdout
    with open(tmp_path / "out" / "pic0.json") as f:
        got = json.load(f)["detections"]
    keep = scores >= thresh
    want = sorted(zip(scores[keep].tolist(), boxes[keep].tolist()), key=lambda t: -t[0])
    assert len(got) == len(want) > 0
    # the three files agree to the export's parity: scores and boxes within float rounding
    np.testing.assert_allclose([d["score"] for d in got], [s for s, _ in want], atol=1e-4)
    np.testing.assert_allclose(got[0]["box"], want[0][1], atol=1e-2)


@pytest.mark.subprocess
def test_the_script_names_a_bad_input_without_a_traceback(model, tmp_path):
    _, _, deploy, _ = model
    done = subprocess.run(DETECT + ["--deploy", deploy, str(tmp_path / "missing.jpg")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "missing.jpg' is no file" in done.stderr
    assert "Traceback" not in done.stderr


def test_one_call_loads_any_model_file_without_a_config(model, tmp_path):
    """Detector.from_checkpoint / from_export need only the file: the same detections as the
    predictor through the 300 x 300 resize, from the checkpoint, its deploy graph and ONNX."""
    cfg, params, deploy, onnx_path = model
    image = cv2.imread(pictures(str(tmp_path / "in"), sizes=((120, 90),))[0])[..., ::-1].copy()
    ids, scores, boxes = expected(cfg, params, image)
    best = int(np.argmax(scores))
    for detector in (Detector.from_checkpoint(params, thresh=0.0, device="cpu"),
                     Detector.from_export(deploy, thresh=0.0),
                     Detector.from_export(onnx_path, thresh=0.0)):
        found = detector(image)
        assert len(found) == int(np.sum(ids >= 0))
        assert found[0]["class"] == CLASSES[int(ids[best])]
        assert found[0]["score"] == pytest.approx(float(scores[best]), abs=1e-4)
        np.testing.assert_allclose(found[0]["box"], boxes[best], atol=1e-2)
    with pytest.raises(DataError, match="int8 needs an accelerator folder"):
        Detector.from_export(deploy, int8=True)


def test_detect_json_records_the_model_file_its_hash_the_runtime_and_the_machine(model,
                                                                                 tmp_path):
    _, params, deploy, onnx_path = model
    paths = pictures(str(tmp_path / "in"), sizes=((120, 90),))
    os.rename(paths[0], tmp_path / "in" / "detect.png")  # its detections must not take the name
    for which, path, kind, runtime in (("deploy", deploy, "deploy", "mxnet"),
                                       ("onnx", onnx_path, "onnx", "onnxruntime"),
                                       ("params", params, "params", "mxnet")):
        out = tmp_path / which
        run(Detector(path, thresh=0.3), [str(tmp_path / "in" / "detect.png")], str(out),
            progress=False)
        assert (out / "detect-2.json").is_file() and (out / "detect-2.png").is_file()
        record = json.load(open(out / "detect.json"))
        assert record["inputs"] == [str(tmp_path / "in" / "detect.png")] and record["images"] == 1
        made = record["provenance"]
        assert made["model"] == {"path": os.path.abspath(path), "sha256": fingerprint(path),
                                 "kind": kind, "runtime": runtime}
        assert made["device"] == "cpu(0)" and made["cpu"]["model"] == cpu_info().model
    assert fingerprint(deploy) != fingerprint(params)


def test_an_out_folder_holding_an_input_is_refused_and_a_failed_picture_write_leaves_nothing(
        model, tmp_path, monkeypatch):
    """Annotated copies never replace the inputs; a picture OpenCV could not write (full disk,
    read-only folder: cv2.imwrite only returns False) is an error naming it, with no file or
    temporary left behind."""
    from ssd_nobias.errors import StorageError, UserError

    cfg, params, _, _ = model
    inputs = pictures(str(tmp_path / "in"))
    before = [open(p, "rb").read() for p in inputs]
    detector = Detector(load_predictor(cfg, params_path=params), Preprocess(300, MEAN, STD))
    for out in (tmp_path / "in", tmp_path / "in" / "."):
        with pytest.raises(UserError, match="holds the input .*pic0.png"):
            run(detector, inputs, str(out), progress=False)
    assert [open(p, "rb").read() for p in inputs] == before
    assert sorted(os.listdir(tmp_path / "in")) == ["pic0.png", "pic1.png"]

    monkeypatch.setattr(cv2, "imwrite", lambda *args: False)
    with pytest.raises(StorageError, match=r"cannot write .*out.pic0\.png"):
        run(detector, inputs, str(tmp_path / "out"), progress=False)
    assert os.listdir(tmp_path / "out") == []


def test_an_input_whose_header_claims_gigapixels_is_refused_or_skipped(model, tmp_path):
    from tests.data_files import bomb_png

    cfg, params, _, _ = model
    good = pictures(str(tmp_path / "in"), sizes=((64, 48),))[0]
    bomb = bomb_png(tmp_path / "in" / "bomb.png")
    detector = Detector(load_predictor(cfg, params_path=params), Preprocess(300, MEAN, STD))
    with pytest.raises(ImageError, match="bomb.png: its header says 40000x40000"):
        run(detector, [good, bomb], str(tmp_path / "out"), progress=False)
    summary = run(detector, [bomb, good], str(tmp_path / "out2"), skip_bad=True,
                  progress=False)
    assert summary.images == 1 and summary.skipped == [bomb]
    with pytest.raises(ImageError, match="pic0.png: its header says 64x48"):
        run(detector, [good], str(tmp_path / "out3"), progress=False, max_pixels=64 * 48 - 1)


def test_sigterm_mid_run_keeps_whole_files_only_and_the_next_run_clears_a_killed_ones(
        model, tmp_path, monkeypatch):
    """SIGTERM while the second picture is drawn: the first picture's files are whole, nothing
    half-written stays, exit 143. What a SIGKILLed run left (temporaries of a dead pid) the next
    run removes."""
    import signal

    from ssd_nobias import cli
    from ssd_nobias.commands import detect as detect_command

    cfg, params, _, _ = model
    inputs = pictures(str(tmp_path / "in"))
    out = tmp_path / "out"
    real_draw, drawn = Detector.draw, []

    def terminated_on_the_second(self, image, detections):
        drawn.append(1)
        if len(drawn) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_draw(self, image, detections)

    monkeypatch.setattr(Detector, "draw", terminated_on_the_second)
    code = cli.run(detect_command.main, ["--params", params, *inputs, "--out", str(out)])
    assert code == 128 + signal.SIGTERM
    assert sorted(os.listdir(out)) == ["pic0.json", "pic0.png"]
    monkeypatch.setattr(Detector, "draw", real_draw)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / f"pic1.png.tmp-{dead.pid}.png").write_bytes(b"half")
    assert cli.run(detect_command.main, ["--params", params, *inputs, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["detect.json", "pic0.json", "pic0.png", "pic1.json",
                                       "pic1.png"]


def test_the_default_threshold_is_the_models_eval_score_thresh(model, tmp_path):
    """detect keeps what eval draws: the config the model carries says eval.score_thresh;
    an override or --thresh changes it."""
    from ssd_nobias import cli
    from ssd_nobias.commands import detect as detect_command

    cfg, params, deploy, _ = model
    image = pictures(str(tmp_path / "in"), sizes=((120, 90),))[0]
    for k, (extra, want) in enumerate((([], cfg.eval.score_thresh),
                                       (["eval.score_thresh=0.6"], 0.6),
                                       (["--thresh", "0.2"], 0.2))):
        for which in (["--deploy", deploy], ["--params", params]):
            out = tmp_path / f"out{k}{which[0]}"
            assert cli.run(detect_command.main, [*which, image, *extra, "--out", str(out)]) == 0
            assert json.load(open(out / "detect.json"))["thresh"] == want
    assert cfg.eval.score_thresh != 0.5  # the demo config's 0.3: not the fallback
