"""The exit pipeline, described once: its stages in order (segments, exit heads and their confidence models,
the shared branch's pools and branch), the model of each stage (its name in the generated library, input and
output sizes), the exit policy and the checkpoint plan. The firmware app (build.render_app), the
checkpointing runtime (intermittent) and the code generator's chain (`Pipeline.chain`) all take it.

    Pipeline.from_manifest(RUN/quant/manifest.json, RUN/policy.json)   a run: segments and exit heads
    Pipeline.from_branch(RUN/branch/manifest.json)                      the shared exit branch: seg, pool, ..., branch
    Pipeline.from_library(generated library folder)                     the generator's description (report.json)
    pipeline.with_library(lib)                                          sizes checked against the generated library

It is built from the run's descriptions (dicts: the Run reads the files) and the generator's own description
of a library (report.json beside tx_model.h), never from generated C.
"""
from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from tinyexit.errors import TinyexitError


class Role(enum.IntEnum):
    """What a stage does; the values are the C runtime's (tx_checkpoint.h TX_STAGE_*)."""
    SEGMENT = 0      # model input or the previous segment's output -> the next boundary
    EXIT = 1         # exit head: reads the boundary of the segment before it -> class scores
    POOL = 2         # shared branch: a segment's output -> its slice of the vector
    BRANCH = 3       # shared branch: the vector -> class scores
    CONFIDENCE = 4   # learned confidence of the exit head after it (the confidence policy decides on it)


SEGMENT, EXIT, POOL, BRANCH, CONFIDENCE = Role.SEGMENT, Role.EXIT, Role.POOL, Role.BRANCH, Role.CONFIDENCE
C_ROLES = {SEGMENT: "TX_STAGE_SEGMENT", EXIT: "TX_STAGE_EXIT", POOL: "TX_STAGE_POOL", BRANCH: "TX_STAGE_BRANCH"}
RULES = ("max_softmax", "margin", "entropy", "confidence")   # the threshold rules the firmware implements
TEMPORAL = ("difference", "patience")   # the temporal rules the firmware implements (tx_temporal.h)


@dataclass(frozen=True)
class Stage:
    """One model of the pipeline: `name` is the generated model's C name (tx_model_<name>)."""
    name: str
    role: Role
    exit_index: int = 0     # exit heads (and their confidence model): 0, 1, ...; the last segment: the final
    #                         exit's index; pools: exit point k
    vector_offset: int = 0  # pools: offset of their slice in the shared vector
    input_size: int = 0     # bytes (int8); 0: not known (a pipeline written by hand)
    output_size: int = 0

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise TinyexitError(f"pipeline stage name {self.name!r} is not a C identifier; use the generated "
                                "model's NAME")
        object.__setattr__(self, "role", Role(self.role))


@dataclass(frozen=True)
class ExitRule:
    """The policy's parameters for one exit head: exit when the rule holds on its int8 output."""
    head: str                                   # the exit head's stage name
    threshold_q: int = 128                      # integer threshold (max_softmax: exit when max int8 >= it)
    entropy_table: tuple[int, ...] | None = None  # entropy: -p ln p per int8 code (2^-16 nat)
    confidence: str | None = None               # confidence: the stage name of the head's confidence model


@dataclass(frozen=True)
class Policy:
    """The exit policy. kind "threshold": one integer threshold per exit head under `rule` (policy.json).
    kind "difference" / "patience": a temporal rule on the first exit head over consecutive inputs
    (tx_temporal.h), `param_q` its integer parameter (the largest kept squared distance / the patience k),
    composed with `rule` max_softmax whose threshold_q on the first head is the gate (-128: no gate); later
    heads never exit."""
    kind: str = "threshold"
    rule: str = "max_softmax"                   # max_softmax | margin | entropy | confidence
    exits: tuple[ExitRule, ...] = ()
    note: str = "max-softmax on the int8 exit output"
    param_q: int = 0                            # temporal kinds: distance_q (difference) or patience
    reference: str = "scene"                    # difference: "scene" or "previous"

    def rule_for(self, head: str) -> ExitRule:
        return next((e for e in self.exits if e.head == head), ExitRule(head))


@dataclass(frozen=True)
class Granularity:
    """How often the runtime commits: mode 'none' (result only), 'layers' (every N steps) or 'units'
    (every N work units, also inside a layer); `jit`: also (with 'none': only) a just-in-time commit when the
    power-fail warning comes (tx_checkpoint.h)."""
    mode: str = "layers"
    every: int = 1
    jit: bool = False

    @classmethod
    def parse(cls, text: str) -> "Granularity":
        """'none', 'layer', 'layers:N', 'units:N' (N >= 1); 'jit' (just in time only), 'jit:layers:N', 'jit:units:N'
        (just in time plus the periodic commits as the fallback policy)."""
        t = text.strip().lower()
        if t == "jit" or t.startswith("jit:"):
            rest = t[4:] if t != "jit" else "none"
            if rest.startswith("jit"):
                raise TinyexitError(f"granularity {text!r}: say jit once (jit, jit:layers:N, jit:units:N)")
            g = cls.parse(rest)
            return cls(g.mode, g.every, True)
        if t in ("none", "layer", "layers"):
            return cls("none" if t == "none" else "layers", 1)
        m = re.fullmatch(r"(layers?|units?|rows?):(\d+)", t)
        if not m or int(m.group(2)) < 1:
            raise TinyexitError(f"granularity {text!r} not understood; use none, layer, layers:N, units:N (N >= 1), "
                                "jit, jit:layers:N or jit:units:N")
        mode = "layers" if m.group(1).startswith("layer") else "units"
        return cls(mode, int(m.group(2)))

    def __str__(self) -> str:
        base = "none" if self.mode == "none" else f"{self.mode}:{self.every}"
        return ("jit" if base == "none" else f"jit:{base}") if self.jit else base

    @property
    def c_mode(self) -> int:
        """The C runtime's mode word (tx_stage.h): TX_CKPT_NONE/LAYERS/UNITS, | TX_CKPT_JIT."""
        return {"none": 0, "layers": 1, "units": 2}[self.mode] | (0x100 if self.jit else 0)


@dataclass(frozen=True)
class CheckpointPlan:
    """How the checkpointing runtime commits progress (a campaign may choose another granularity per boot)."""
    granularity: Granularity = Granularity()
    slots: int = 2


@dataclass(frozen=True)
class Vector:
    """The shared exit branch's vector of pooled exit-point features (RUN/branch/manifest.json "vector")."""
    size: int
    zero_point: int


@dataclass(frozen=True)
class Link:
    """One boundary of a chain of models: `producer`'s output is read where it lies in the arena by each of
    `readers` (exit heads, confidence models: they leave it intact) and then by `consumer` (the next segment,
    which may overwrite it). docs/CONTRACTS.md, "Chained models"."""
    producer: str
    readers: tuple[str, ...] = ()
    consumer: str | None = None


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...]
    input_size: int = 0
    exit_names: tuple[str, ...] = ()            # in exit order, the final exit last
    policy: Policy = Policy()
    checkpoint: CheckpointPlan = CheckpointPlan()
    vector: Vector | None = None                # the shared branch's vector (a branch pipeline)
    names: dict = field(default_factory=dict, compare=False)   # stage name -> the model's name in the run

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        self.check()

    # ---------------------------------------------------------------------------------------- shape
    @property
    def is_branch(self) -> bool:
        return self.vector is not None

    def check(self) -> None:
        """A normal pipeline: segment, [confidence,] [exit head,] segment, ..., segment (heads between
        segments). A branch pipeline: seg0, pool0, seg1, pool1, ..., pool(N-1), branch."""
        s = self.stages
        if self.is_branch:
            n = len(s)
            ok = n >= 3 and n % 2 == 1 and s[-1].role == BRANCH and all(
                st.role == (POOL if k % 2 else SEGMENT) and (st.role != POOL or st.exit_index == k // 2)
                for k, st in enumerate(s[:-1]))
            if not ok:
                raise TinyexitError("a shared-branch pipeline is seg0, pool0, seg1, pool1, ..., pool(N-1), branch: "
                                    "got " + ", ".join(st.name for st in s))
            return
        if not s or s[0].role != SEGMENT or s[-1].role != SEGMENT:
            raise TinyexitError("a pipeline starts and ends with a segment (exit heads sit between segments)")
        if any(st.role in (POOL, BRANCH) for st in s):
            raise TinyexitError("pools and a branch belong to a shared-branch pipeline (give its vector)")

    @property
    def segments(self) -> list[Stage]:
        return [s for s in self.stages if s.role == SEGMENT]

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def after(self, k: int) -> list[Stage]:
        """The stages that read segment k's output before segment k+1 (confidence model, exit head, pool)."""
        out, seg = [], -1
        for s in self.stages:
            if s.role == SEGMENT:
                seg += 1
            elif seg == k:
                out.append(s)
        return out

    def head_after(self, k: int, role: Role = EXIT) -> Stage | None:
        return next((s for s in self.after(k) if s.role == role), None)

    def index(self, name: str) -> int:
        return self.stage_names.index(name)

    @property
    def runtime_stages(self) -> list[Stage]:
        """The stages without confidence models (the power-failure campaigns' libraries hold none)."""
        return [s for s in self.stages if s.role != CONFIDENCE]

    def for_runtime(self) -> "Pipeline":
        """This pipeline without confidence models, as the power-failure campaigns run it."""
        return replace(self, stages=tuple(self.runtime_stages))

    @property
    def chain(self) -> list[Link]:
        """The code generator's chain (names as in the run, `names`): segment k's output is read in the arena
        by its confidence model, its exit head, then segment k+1. A branch pipeline is planned model by model."""
        if self.is_branch:
            return []
        segs = self.segments
        name = lambda s: self.names.get(s.name, s.name)   # noqa: E731
        return [Link(name(seg), tuple(name(r) for r in self.after(k)), name(segs[k + 1]))
                for k, seg in enumerate(segs[:-1])]

    # ---------------------------------------------------------------------------------------- the library
    def with_library(self, lib_dir: str | Path) -> "Pipeline":
        """The pipeline with each stage's sizes from the generated library's description (report.json);
        refuses a library that lacks a stage or whose sizes contradict the pipeline."""
        models = library_models(lib_dir)
        stages = []
        for s in self.stages:
            if s.name not in models:
                raise TinyexitError(f"the library {lib_dir} has no model '{s.name}'; regenerate it "
                                    f"(`tinyexit build` regenerates a run's library).")
            i, o = models[s.name]
            if (s.input_size and s.input_size != i) or (s.output_size and s.output_size != o):
                raise TinyexitError(f"model '{s.name}' of {lib_dir} reads {i} and writes {o} bytes, but the pipeline "
                                    f"expects {s.input_size} and {s.output_size}; regenerate the library.")
            stages.append(replace(s, input_size=i, output_size=o))
        return replace(self, stages=tuple(stages))

    # ---------------------------------------------------------------------------------------- constructors
    @classmethod
    def from_manifest(cls, manifest: dict, policy: dict | None = None, *, confidence: dict[str, str] | None = None,
                      where: str = "RUN") -> "Pipeline":
        """A run's pipeline: segments and exit heads from RUN/quant/manifest.json (`manifest`), in pipeline
        order (segment 0, the exit heads after it, segment 1, ...; exit indices follow the manifest's `exits`
        order, the last segment carries the final exit's); the exit policy from RUN/policy.json (`policy`;
        None: no policy, every head with the default rule). `confidence`: exit name -> the model name of its
        confidence model (the confidence policy needs one per exit head; each runs before its head). `where`
        names the run in messages."""
        from tinyexit.codegen.cformat import c_ident
        segs, exits = manifest["segments"], manifest.get("exits", [])
        policy = policy or {}
        rule = policy.get("policy", "max_softmax")
        kind, param_q, reference = "threshold", 0, "scene"
        if rule in TEMPORAL:
            kind, rule = rule, "max_softmax"
            param_q, reference = temporal_params(policy, where)
        elif rule not in RULES:
            raise TinyexitError(f"policy.json uses the '{rule}' policy; the firmware implements "
                                f"{', '.join(RULES + TEMPORAL)}. Re-run `tinyexit calibrate {where}` with one of them.")
        thresholds = {e["name"]: int(e["threshold_q"]) for e in policy.get("exits", [])}
        if not thresholds and "threshold_q" in policy and "exit" in policy:
            thresholds = {policy["exit"]: int(policy["threshold_q"])}
        final = next((k for k, e in enumerate(exits) if not e.get("file")), len(exits))
        n_classes = len(manifest.get("classes") or []) or math.prod(segs[-1]["output_shape"])
        names: dict[str, str] = {}
        stages: list[Stage] = []
        rules: list[ExitRule] = []

        def add(name: str, role: Role, **kw) -> Stage:
            st = Stage(c_ident(name), role, **kw)
            names[st.name] = name
            stages.append(st)
            return st

        for k, seg in enumerate(segs):
            last = k == len(segs) - 1
            add(seg["name"], SEGMENT, exit_index=final if last else 0,
                input_size=math.prod(seg["input_shape"]), output_size=math.prod(seg["output_shape"]))
            if last:
                break
            for j, e in enumerate(exits):
                if not e.get("file") or int(e["after_segment"]) != k:
                    continue
                if policy and e["name"] not in thresholds:
                    raise TinyexitError(f"policy.json has no threshold for exit '{e['name']}'; re-run "
                                        f"`tinyexit calibrate {where}`.")
                size = math.prod(seg["output_shape"])
                conf = None
                if rule == "confidence" and e["name"] not in (confidence or {}):
                    raise TinyexitError(f"policy.json has no confidence model for exit '{e['name']}'; re-run "
                                        f"`tinyexit calibrate {where} --policy confidence`.")
                if e["name"] in (confidence or {}):
                    conf = add(confidence[e["name"]], CONFIDENCE, exit_index=j, input_size=size, output_size=2).name
                head = add(e["name"], EXIT, exit_index=j, input_size=size, output_size=n_classes)
                table = None
                if rule == "entropy":
                    from tinyexit.policy.decisions import QParams, entropy_table
                    table = tuple(int(v) for v in entropy_table(QParams.of(e["output"])))
                    if max(table) > 0xFFFF:
                        raise TinyexitError(f"entropy table of {e['name']} does not fit 16 bits; check its output "
                                            f"scale.")
                rules.append(ExitRule(head.name, thresholds.get(e["name"], 128), table, conf))
        note = (f"{rule}, threshold {policy.get('threshold')} ({policy.get('method', '?')}, "
                f"epsilon={policy.get('epsilon')}, delta={policy.get('delta')})") if policy else Policy.note
        if kind != "threshold":   # the gate on the first head only; later heads never exit
            rules = [r if k == 0 else replace(r, threshold_q=128) for k, r in enumerate(rules)]
            note = (f"{kind} (parameter {param_q}{', reference ' + reference if kind == 'difference' else ''}) "
                    f"AND max-softmax gate {rules[0].threshold_q if rules else -128} at the first exit")
        return cls(tuple(stages), input_size=math.prod(segs[0]["input_shape"]),
                   exit_names=tuple(e["name"] for e in exits),
                   policy=Policy(kind, rule, tuple(rules), note, param_q, reference), names=names)

    @classmethod
    def from_branch(cls, manifest: dict) -> "Pipeline":
        """seg0, pool0, ..., seg(N-1), pool(N-1), branch of RUN/branch/manifest.json (the last segment, the
        model's own final classifier, is not part of the anytime pipeline: the last point answers through the
        branch too)."""
        from tinyexit.codegen.cformat import c_ident
        segs, pools = manifest["segments"], manifest["pools"]
        if len(segs) != len(pools) + 1:
            raise TinyexitError("RUN/branch/manifest.json: expected one segment more than pools")
        stages: list[Stage] = []
        names: dict[str, str] = {}
        vec = manifest["vector"]
        for k, pool in enumerate(pools):
            if int(pool["after_segment"]) != k:
                raise TinyexitError(f"RUN/branch/manifest.json: pool {pool['name']} follows segment "
                                    f"{pool['after_segment']}, expected {k}")
            seg = segs[k]
            size = math.prod(seg["output_shape"]) if "output_shape" in seg else 0
            stages.append(Stage(c_ident(seg["name"]), SEGMENT, 0, 0,
                                math.prod(seg["input_shape"]) if "input_shape" in seg else 0, size))
            stages.append(Stage(c_ident(pool["name"]), POOL, k, int(pool["offset"]), size, int(pool.get("length", 0))))
            names.update({stages[-2].name: seg["name"], stages[-1].name: pool["name"]})
        b = manifest["branch"]
        stages.append(Stage(c_ident(b["name"]), BRANCH, 0, 0, int(vec["size"]),
                            len(manifest.get("classes") or []) or 0))
        names[stages[-1].name] = b["name"]
        first = segs[0]
        return cls(tuple(stages), input_size=math.prod(first["input_shape"]) if "input_shape" in first else 0,
                   exit_names=tuple(p["name"] for p in pools), vector=Vector(int(vec["size"]), int(vec["zero_point"])),
                   names=names)

    @classmethod
    def from_library(cls, lib_dir: str | Path) -> "Pipeline":
        """The pipeline of a generated library, from its description (report.json): one model alone is one
        segment; several are ordered by the library's chain (a producer, the exit head that reads its output,
        the next segment, ...). A library of several models generated without a chain is refused (its
        pipeline is not described)."""
        from tinyexit.codegen.cformat import c_ident
        doc = _library_doc(lib_dir)
        models = library_models(lib_dir, doc)
        if len(models) == 1:
            (name, (i, o)), = models.items()
            return cls((Stage(name, SEGMENT, 0, 0, i, o),), input_size=i)
        chain = doc.get("chain") or []
        if not chain:
            raise TinyexitError(f"{lib_dir} holds {len(models)} models but its report.json describes no chain, so "
                                f"their order and which are exit heads is not known; generate it from a run "
                                f"(`tinyexit generate RUN`), or pass the run folder.")
        links = {c_ident(link["producer"]): link for link in chain}
        consumers = {c_ident(link["consumer"]) for link in chain if link.get("consumer")}
        first = [p for p in links if p not in consumers]
        if len(first) != 1:
            raise TinyexitError(f"{lib_dir}/report.json: its chain is not one pipeline (it starts at "
                                f"{', '.join(first) or 'no model'}); regenerate the library from a run.")
        stages, heads, cur = [], 0, first[0]
        while cur is not None:
            if cur not in models or any(s.name == cur for s in stages):
                raise TinyexitError(f"{lib_dir}/report.json: its chain names '{cur}' out of order or not among its "
                                    f"models; regenerate the library.")
            stages.append(Stage(cur, SEGMENT, 0, 0, *models[cur]))
            link = links.get(cur)
            if link is None:
                break
            readers = [c_ident(r) for r in link.get("readers", [])]
            if len(readers) > 1:
                raise TinyexitError(f"{lib_dir}: {len(readers)} models read '{cur}' (a confidence policy?); the "
                                    f"library alone does not say which is the exit head: pass the run folder.")
            for r in readers:
                stages.append(Stage(r, EXIT, heads, 0, *models.get(r, (0, 0))))
                heads += 1
            cur = c_ident(link["consumer"]) if link.get("consumer") else None
        missing = [n for n in models if n not in {s.name for s in stages}]
        if missing or stages[-1].role != SEGMENT:
            left = ", ".join(missing) or "the last segment"
            raise TinyexitError(f"{lib_dir}/report.json: its chain leaves out {left}; regenerate the library from "
                                f"a run.")
        stages[-1] = replace(stages[-1], exit_index=heads)
        return cls(tuple(stages), input_size=stages[0].input_size)


def c_config(pipeline: Pipeline, num_inputs: int = 0) -> dict:
    """What the firmware needs of `pipeline` as data: the context of the one generated description
    (firmware_templates/runtime/tx_pipeline_config.{h,c}.j2) that the app, the checkpointing runtime and the
    shared-branch firmware read: the stage table, the exit policy per exit index (threshold, entropy table),
    the boundary size and whether the library is chained; `num_inputs`: the app's baked-in inputs."""
    p, policy = pipeline, pipeline.policy
    stages, segments = p.stages, p.segments

    def comment(s: Stage) -> str:
        if s.role == POOL:
            return f"pool of exit point {s.exit_index}, slice at {s.vector_offset}"
        if s.role in (BRANCH, CONFIDENCE):
            return "shared exit branch" if s.role == BRANCH else f"confidence of exit {s.exit_index}"
        if p.is_branch:
            return "segment"
        if s.role == EXIT:
            return f"exit head, exit {s.exit_index}"
        return f"last segment, final exit {s.exit_index}" if s is stages[-1] else "segment"

    heads = [s for s in stages if s.role == EXIT]
    num_exits = max([len(p.exit_names)] + [s.exit_index + 1 for s in (*heads, stages[-1])])
    thresholds, entropy = [128] * num_exits, [None] * num_exits
    for h in heads:   # per exit index; exits without a head (the final one) never pass
        rule = policy.rule_for(h.name)
        thresholds[h.exit_index] = rule.threshold_q
        if rule.entropy_table is not None:
            vals = [str(int(v)) for v in rule.entropy_table]
            entropy[h.exit_index] = [", ".join(vals[i:i + 16]) for i in range(0, 256, 16)]
    inner = [s.output_size for s in segments[:-1]]
    boundary_size = None if p.is_branch or not all(inner) else max(inner or [0])   # None: not known
    chain_pairs = [] if p.is_branch else [
        (s.name, r.name) for k, s in enumerate(segments[:-1]) for r in [*p.after(k), segments[k + 1]]]
    rows = [{"name": s.name, "role": C_ROLES.get(s.role, "TX_STAGE_CONFIDENCE"), "exit_index": s.exit_index,
             "vector_offset": s.vector_offset, "comment": comment(s)} for s in stages]
    return dict(stages=rows, stage_names=p.stage_names, exit_names=list(p.exit_names), input_size=p.input_size,
                policy_kind=policy.kind, policy=policy.rule, policy_note=policy.note,
                temporal=policy.kind if policy.kind in TEMPORAL else None, temporal_param=policy.param_q,
                temporal_previous=int(policy.reference == "previous"),
                temporal_gate=policy.exits[0].threshold_q if policy.exits else -128,
                ckpt_mode=p.checkpoint.granularity.mode, ckpt_every=p.checkpoint.granularity.every,
                vector=p.vector, num_points=sum(s.role == POOL for s in stages),
                num_classes=stages[-1].output_size, num_inputs=num_inputs,
                segment_output_max=max(s.output_size for s in segments),
                exit_policy=not p.is_branch, num_exits=num_exits, thresholds=thresholds, entropy=entropy,
                max_head_output=max([h.output_size for h in heads] or [1]), boundary_size=boundary_size,
                chained_if=" && ".join(f"defined(TX_CHAIN_{a}__{b})" for a, b in chain_pairs) or "0")


def temporal_params(policy: dict, where: str = "RUN") -> tuple[int, str]:
    """(param_q, reference) of a temporal policy.json ("difference": distance_q >= -1 and reference;
    "patience": patience >= 1); a one-line TinyexitError naming the fix otherwise."""
    kind = policy.get("policy")
    key, low = ("distance_q", -1) if kind == "difference" else ("patience", 1)
    v = policy.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < low or v > 2 ** 31 - 1:
        raise TinyexitError(f"policy.json's {kind} policy needs an integer \"{key}\" >= {low} (got {v!r}); "
                            f"re-run `tinyexit calibrate {where} --policy {kind}`.")
    ref = policy.get("reference", "scene") if kind == "difference" else "scene"
    if ref not in ("scene", "previous"):
        raise TinyexitError(f"policy.json's difference policy has reference {ref!r}; use \"scene\" or "
                            f"\"previous\" (or re-run `tinyexit calibrate {where} --policy difference`).")
    return v, ref


def _library_doc(lib_dir: str | Path) -> dict:
    path = Path(lib_dir) / "report.json"
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc.get("models"), dict) or not doc["models"]:
            raise ValueError("no models")
        return doc
    except (OSError, ValueError, AttributeError) as e:
        raise TinyexitError(f"{lib_dir} has no readable report.json describing its models ({e}); point to a "
                            f"library written by `tinyexit generate`, or regenerate it.") from None


def library_models(lib_dir: str | Path, doc: dict | None = None) -> dict[str, tuple[int, int]]:
    """{C name: (input bytes, output bytes)} of a generated library's models, in the generator's order (its
    report.json)."""
    from tinyexit.codegen.cformat import c_ident
    doc = doc if doc is not None else _library_doc(lib_dir)
    try:
        return {c_ident(n): (int(m["input_size"]), int(m["output_size"])) for n, m in doc["models"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise TinyexitError(f"{lib_dir}/report.json describes a model without its sizes ({e}); regenerate "
                            f"the library with `tinyexit generate`.") from None
