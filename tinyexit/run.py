"""A run directory and everything in it: `Run(path)` owns the layout (docs/CONTRACTS.md, "Run directory").

Every stage reads and writes a run through this class; nothing else builds run paths. It hands out:
    paths       model_keras, model_json_path, report_path, quant (QuantDir: manifest, pieces, report),
                policy_path, confidence_dir, library_dir, build_dir(variant), bench_dir(variant), branch_dir, ...
    readers     model_json(), check_trained(), load_model(), split(name), manifest(), policy(), report(),
                each checked where it reads: a broken file is a one-line TinyexitError naming the file and the
                command that regenerates it
    the models  load_model() (Keras, imported lazily), oracle() (the int8 chain on tflite_micro),
                quant_models() / chain() / library_models() / library_chain() (what the code generator gets)
    writers     Run.create(path), run.writing_quant(), run.writing_branch(): a Run / QuantDir / BranchDir on
                a temporary folder swapped in whole on success (io.atomic_dir)
"""
from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tinyexit.errors import TinyexitError, brief
from tinyexit.io import atomic_dir, read_json

RETRAIN = "re-run `tinyexit train` (or augment/distill/compress, whichever wrote it)"
SPLITS = ("train", "validation", "test")


def _at(relative: str) -> property:
    """A path of the layout: `relative` inside the folder."""
    return property(lambda self: self.path / relative, doc=f"<folder>/{relative}")


def confidence_model_name(exit_name: str) -> str:
    """Library name of an exit's confidence model (policy "confidence")."""
    return f"{exit_name}_confidence"


def load_split(run_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The features and labels of a split exactly as training made them (from the feature cache). A data
    recipe (model.json "data") that is incomplete, or names a data folder that is gone, is a TinyexitError.
    (`Run.split` calls this function; tests replace it to serve stand-in data.)"""
    from tinyexit.data.recipe import recipe_split

    if split not in SPLITS:
        raise ValueError(f"split must be train, validation or test, not {split!r}")
    run = Run(run_dir)
    data = run.model_json()["data"]
    where = run.model_json_path
    folder = data.get("dir")
    if folder is not None and not Path(str(folder)).is_dir():
        raise TinyexitError(f"the data folder {folder} named by {where} does not exist; restore it, or re-run "
                            f"`tinyexit train` with --data pointing at the data")
    try:
        return recipe_split(data, split)
    except (KeyError, TypeError) as e:
        raise TinyexitError(f"{where}: the data recipe (\"data\") is incomplete or garbled ({brief(e)}); "
                            f"re-run `tinyexit train`") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_MANIFEST_FIELD = {   # what QuantDir.manifest accepts in each field of a segment or exit entry
    "file": lambda v: v is None or isinstance(v, str), "name": lambda v: isinstance(v, str),
    "input": lambda v: isinstance(v, dict) and {"scale", "zero_point"} <= v.keys(),
    "output": lambda v: isinstance(v, dict) and {"scale", "zero_point"} <= v.keys(),
    "input_shape": lambda v: isinstance(v, list) and all(_is_int(d) and d > 0 for d in v),
    "output_shape": lambda v: isinstance(v, list) and all(_is_int(d) and d > 0 for d in v),
    "after_segment": _is_int, "macs_to_exit": _is_int,
}


class QuantDir:
    """RUN/quant/ (written by `tinyexit quantize`): manifest.json, the int8 pieces, report.json."""

    def __init__(self, path: str | os.PathLike, run_path: str | os.PathLike | None = None):
        self.path = Path(path)
        self.run_path = Path(run_path) if run_path is not None else self.path.parent

    manifest_path = _at("manifest.json")
    report_path = _at("report.json")

    def piece(self, file: str) -> Path:
        """A file the manifest lists (a segment's or an exit head's .tflite)."""
        return self.path / file

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def files(self) -> list[Path]:
        """The .tflite and .json files of the folder (what a generated library is made from)."""
        return [p for p in self.path.glob("*") if p.suffix in (".tflite", ".json")]

    def manifest(self) -> dict:
        """manifest.json, checked: every key the later stages read, and every .tflite it lists exists.
        Anything missing or garbled is a one-line TinyexitError naming the file and `tinyexit quantize`."""
        path = self.manifest_path
        fix = f"re-run `tinyexit quantize {self.run_path}`"
        man = read_json(path, fix)
        problem = None
        for key, fields in (("segments", ("file", "input", "output", "input_shape", "output_shape")),
                            ("exits", ("name", "file", "after_segment", "output", "macs_to_exit"))):
            entries = man.get(key)
            if not (isinstance(entries, list) and entries):
                problem = f'no "{key}" list'
            else:
                bad = next(((k, f) for k, e in enumerate(entries) for f in fields
                            if not (isinstance(e, dict) and f in e and _MANIFEST_FIELD[f](e[f]))), None)
                if bad:
                    problem = f'{key}[{bad[0]}] has no valid "{bad[1]}"'
            if problem:
                break
        if problem is None and "no_exit_macs" not in man:
            problem = 'no "no_exit_macs"'
        if problem:
            raise TinyexitError(f"{path} is not a complete quantization manifest ({problem}; written by an older "
                                f"or another tool?); {fix}")
        for entry in man["segments"] + man["exits"]:
            f = entry["file"]
            if f is not None and not (isinstance(f, str) and self.piece(f).is_file()):
                raise TinyexitError(f"{path} lists {self.path / str(f)}, which does not exist; {fix}")
        return man

    def read_piece(self, file: str) -> bytes:
        """A .tflite the manifest lists whose flatbuffer parses (its input and output tensors can be read)."""
        from tinyexit.quantize.cut import tensor_shape

        path = self.piece(file)
        b = path.read_bytes()
        try:
            tensor_shape(b, "input")
            tensor_shape(b, "output")
        except Exception as e:   # struct.error, IndexError, ... from the flatbuffer accessors on a corrupt file
            raise TinyexitError(f"{path} is not a readable TFLite model ({brief(e)}); re-run "
                                f"`tinyexit quantize {self.run_path}`") from None
        return b

    def oracle(self):
        """The int8 segments and heads chained on tflite_micro as the firmware chains them (Int8Pipeline)."""
        from tinyexit.quantize.oracle import Int8Pipeline

        man = self.manifest()
        early = [e for e in man["exits"] if e["file"]]
        blobs = [self.read_piece(p["file"]) for p in man["segments"] + early]
        segs, heads = blobs[:len(man["segments"])], blobs[len(man["segments"]):]
        try:
            return Int8Pipeline(segs, heads, [e["after_segment"] for e in early])
        except Exception as e:   # tflite_micro refuses a piece (a broken file the flatbuffer parse let through)
            raise TinyexitError(f"the int8 pieces in {self.path} do not load on tflite_micro ({brief(e)}); "
                                f"re-run `tinyexit quantize {self.run_path}`") from None


class BranchDir:
    """RUN/branch/ (written by `tinyexit branch`): the shared exit branch's pieces, manifest.json, report.json,
    branch.keras, branch.png and its firmware (firmware/model: the generated library, firmware/tx_branch.c)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    manifest_path = _at("manifest.json")
    report_path = _at("report.json")
    firmware_dir = _at("firmware")
    library_dir = _at("firmware/model")

    def piece(self, file: str) -> Path:
        """A file of the folder (a piece the manifest lists, branch.keras, branch.png)."""
        return self.path / file

    def is_branch(self) -> bool:
        """True when the folder holds a shared-branch manifest (one with "pools")."""
        import json
        try:
            return "pools" in json.loads(self.manifest_path.read_text())
        except (OSError, ValueError, TypeError):
            return False

    def manifest(self) -> dict:
        """manifest.json, checked: segments, pools, branch and vector, one pool and one vector slice per
        segment but the last; anything missing or garbled is a one-line TinyexitError."""
        import json
        path = self.manifest_path
        if not path.is_file():
            raise TinyexitError(f"{path} does not exist; run `tinyexit branch RUN` first")
        try:
            man = json.loads(path.read_text())
            ok = all(k in man for k in ("segments", "pools", "branch", "vector")) and \
                len(man["pools"]) == len(man["vector"]["slices"]) == len(man["segments"]) - 1
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise TinyexitError(f"{path} is not a complete shared-branch manifest; re-run `tinyexit branch RUN`")
        return man

    def library_report(self) -> dict:
        import json
        return json.loads((self.library_dir / "report.json").read_text())


class Run:
    """One run directory (docs/CONTRACTS.md): `Run(path)`; nothing is read until asked for."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: str | os.PathLike) -> Iterator["Run"]:
        """Write a run directory whole: yields a Run on a temporary folder that replaces `path` on success."""
        with atomic_dir(path) as tmp:
            yield cls(tmp)

    @contextlib.contextmanager
    def writing_quant(self) -> Iterator[QuantDir]:
        """Write RUN/quant/ whole: yields a QuantDir on a temporary folder that replaces it on success."""
        with atomic_dir(self.quant.path) as tmp:
            yield QuantDir(tmp, self.path)

    # ------------------------------------------------------------------------------------------ layout
    # (docs/CONTRACTS.md, "Run directory"; the stage that writes each in brackets)

    model_keras = _at("model.keras")                          # (train, augment, distill, compress)
    model_json_path = _at("model.json")
    report_path = _at("report.json")
    history_path = _at("history.json")
    training_plot = _at("training.png")
    recipe_path = _at("recipe.yaml")                          # (train: the model recipe, as trained)
    policy_path = _at("policy.json")                          # (calibrate)
    calibration_plot = _at("calibration.png")
    stream_gate_path = _at("stream_gate.json")                # (stream --calibrate-gate: the pre-model gate)
    confidence_dir = _at("confidence")                        # (calibrate --policy confidence)
    confidence_report_path = _at("confidence/report.json")
    firmware_dir = _at("firmware")                            # (generate, build)
    library_dir = _at("firmware/model")                       # the generated C library
    branch_dir = _at("branch")                                # (branch)
    powerfail_dir = _at("powerfail")                          # (powerfail)

    @property
    def quant(self) -> QuantDir:
        """quant/ (quantize)."""
        return QuantDir(self.path / "quant", self.path)

    @property
    def branch(self) -> BranchDir:
        return BranchDir(self.branch_dir)

    def confidence_file(self, exit_name: str, suffix: str) -> Path:
        """confidence/<exit><suffix>: the learned confidence model of an exit (.keras, .tflite, .json)."""
        return self.confidence_dir / f"{exit_name}{suffix}"

    def build_dir(self, variant: str) -> Path:
        """firmware/build/<variant> (build)."""
        return self.firmware_dir / "build" / variant

    def bench_dir(self, variant: str) -> Path:
        """bench/<variant> (bench)."""
        return self.path / "bench" / variant

    def file(self, relative: str | os.PathLike) -> Path:
        """A file that one of the run's documents names relative to the run (policy.json's confidence models)."""
        return self.path / relative

    @contextlib.contextmanager
    def writing_branch(self) -> Iterator[BranchDir]:
        """Write RUN/branch/ whole: yields a BranchDir on a temporary folder that replaces it on success."""
        with atomic_dir(self.branch_dir) as tmp:
            yield BranchDir(tmp)

    # ------------------------------------------------------------------------------------------ readers

    def is_trained(self) -> bool:
        return self.model_keras.is_file()

    def is_quantized(self) -> bool:
        return self.quant.exists()

    def has_policy(self) -> bool:
        return self.policy_path.is_file()

    def model_json(self) -> dict:
        """model.json, checked: "exits" (each with a name and an exit point, the final exit last with point
        null) and the data recipe "data"; anything missing or garbled is a one-line TinyexitError."""
        p = self.model_json_path
        if not p.is_file():
            raise TinyexitError(f"{self.path} is not a run directory (no model.json); train one with "
                                f"`tinyexit train kws --out {self.path}`")
        meta = read_json(p, RETRAIN)
        exits = meta.get("exits")
        if not (isinstance(exits, list) and exits and all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                                          and isinstance(e.get("point"), (str, type(None)))
                                                          for e in exits)):
            raise TinyexitError(f"{p}: \"exits\" must list the exits, each with a \"name\" and an exit \"point\"; "
                                f"{RETRAIN}")
        if exits[-1]["point"] is not None or any(e["point"] is None for e in exits[:-1]):
            raise TinyexitError(f"{p}: \"exits\" must end with the final exit (point null) and only it; {RETRAIN}")
        if not isinstance(meta.get("data"), dict):
            raise TinyexitError(f"{p} has no data recipe (\"data\"); {RETRAIN}")
        return meta

    def model_file(self) -> Path:
        """model.keras, checked to exist and to be a complete zip archive, without importing Keras: commands
        refuse a broken run before paying for TensorFlow's start-up."""
        path = self.model_keras
        if not path.is_file():
            raise TinyexitError(f"{path} does not exist; {RETRAIN}")
        if not zipfile.is_zipfile(path):
            raise TinyexitError(f"{path} cannot be loaded (not a complete .keras zip archive: truncated?): {RETRAIN}")
        return path

    def check_trained(self) -> dict:
        """model_json() after model_file(): a cheap check of a trained run folder (no TensorFlow)."""
        meta = self.model_json()
        self.model_file()
        return meta

    def load_model(self):
        """The Keras model; a missing file or one Keras cannot load (truncated, another format) is a
        TinyexitError."""
        path = self.model_file()
        import keras
        import tinyexit.models  # noqa: F401  (registers custom layers)
        try:
            return keras.models.load_model(path, compile=False)
        except Exception as e:  # Keras raises ValueError, OSError, zipfile.BadZipFile, KeyError, ... on a bad file
            raise TinyexitError(f"{path} cannot be loaded ({brief(e)}): {RETRAIN}") from None

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x float32 [N, ...], y int64 [N]) of split "train", "validation" or "test", as training saw it."""
        return load_split(self.path, name)

    def report(self) -> dict:
        """report.json (the training report)."""
        return read_json(self.report_path, "remove it or re-run `tinyexit train`")

    def manifest(self) -> dict:
        """quant/manifest.json, checked (QuantDir.manifest)."""
        return self.quant.manifest()

    def oracle(self):
        """The int8 chain of quant/ on tflite_micro (quantize.oracle.Int8Pipeline)."""
        return self.quant.oracle()

    def policy(self) -> dict:
        """policy.json, checked: the policy's name and an integer threshold_q per early exit (or the single
        "exit" and "threshold_q" of older files). Missing or garbled: a one-line TinyexitError naming the fix."""
        path = self.policy_path
        fix = f"re-run `tinyexit calibrate {self.path}` (it picks the exit threshold the firmware uses)"
        pol = read_json(path, fix)
        exits = pol.get("exits")
        if exits is None:
            exits = [{"name": pol.get("exit"), "threshold_q": pol.get("threshold_q")}]
        ok = isinstance(pol.get("policy", "max_softmax"), str) and isinstance(exits, list) and all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("threshold_q"), int)
            and not isinstance(e.get("threshold_q"), bool) for e in exits)
        if not ok:
            raise TinyexitError(f"{path} is not a complete exit policy (each early exit needs a \"name\" and an "
                                f"integer \"threshold_q\"); {fix}")
        if pol.get("policy") in ("difference", "patience"):   # temporal: their integer parameter too
            from tinyexit.pipeline import temporal_params
            temporal_params(pol, str(self.path))
        return pol

    def library_report(self) -> dict | None:
        """The generated library's report.json, None when there is none or it does not parse."""
        import json
        try:
            doc = json.loads((self.library_dir / "report.json").read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    # ------------------------------------------------------------------------------ what codegen is given

    def quant_models(self) -> dict[str, Path]:
        """{name: .tflite} of the segments and exit heads of the checked manifest, in manifest order."""
        man = self.manifest()
        entries = [(s.get("name", f"seg{k}"), s["file"]) for k, s in enumerate(man["segments"])]
        entries += [(e["name"], e["file"]) for e in man["exits"]]
        return {str(name): self.quant.piece(file) for name, file in entries if file is not None}

    def chain(self, confidence: dict[str, str] | None = None) -> list:
        """The links of the run's pipeline (tinyexit.pipeline.Link): segment k's output is read by the exit head
        after it (preceded by `confidence[head]`, its confidence model's name, when given) and by segment k+1."""
        from tinyexit.pipeline import Pipeline
        return Pipeline.from_manifest(self.manifest(), confidence=confidence, where=str(self.path)).chain

    def confidence_models(self, policy: dict | None = None) -> dict[str, Path]:
        """{exit name: .tflite path} of the confidence models policy.json's confidence policy runs ({} for
        other policies or when the run has no policy.json)."""
        import json
        if policy is None:
            if not self.has_policy():
                return {}
            try:
                policy = json.loads(self.policy_path.read_text())
            except ValueError:
                return {}
        if policy.get("policy") != "confidence":
            return {}
        res = {}
        for e in policy.get("exits", []):
            c = e.get("confidence") or {}
            if not c.get("file"):
                raise TinyexitError(f"policy.json's exit '{e.get('name')}' names no confidence model; re-run "
                                    f"`tinyexit calibrate {self.path} --policy confidence`.")
            path = self.file(c["file"])
            if not path.is_file():
                raise TinyexitError(f"policy.json names {path}, which does not exist; re-run "
                                    f"`tinyexit calibrate {self.path} --policy confidence`.")
            res[e["name"]] = path
        return res

    def library_models(self) -> dict[str, Path]:
        """The models the run's firmware links: segments and exit heads (quant/manifest.json) and, under the
        confidence policy, each early exit's confidence model (named `<exit>_confidence`)."""
        models = self.quant_models()
        for name, path in self.confidence_models().items():
            models[confidence_model_name(name)] = path
        return models

    def library_chain(self) -> list:
        """The run's pipeline as Link boundaries (names as in `library_models`): segment k's output is read in
        the arena by its exit head's confidence model (confidence policy), the head, then segment k+1."""
        return self.chain({e: confidence_model_name(e) for e in self.confidence_models()})

    def test_inputs(self, manifest: dict, num_inputs: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The first `num_inputs` inputs of a seeded permutation of the test split, quantized as the
        firmware's front end does -> (int8 [N, input_size], labels [N])."""
        from tinyexit.quantize.qparams import QParams, quantize_array

        x, y = self.split("test")
        order = np.random.default_rng(seed).permutation(len(x))
        if num_inputs is not None:
            order = np.sort(order[:num_inputs])
        qp = manifest["segments"][0]["input"]
        q = quantize_array(x[order], QParams(float(qp["scale"]), int(qp["zero_point"])))
        return q.reshape(len(order), -1), np.asarray(y)[order]


def as_run(run: Run | str | os.PathLike) -> Run:
    """`run` as a Run (public functions accept a path or a Run)."""
    return run if isinstance(run, Run) else Run(run)


__all__: Sequence[str] = ("Run", "QuantDir", "BranchDir", "as_run", "load_split", "confidence_model_name", "RETRAIN", "SPLITS")
