"""generate(): read every model, plan each, emit one C library atomically, measure, write report.json."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tinyexit.codegen.cformat import c_ident
from tinyexit.codegen.emit import EmitConfig, emit_library
from tinyexit.codegen.fuse import fuse_conv_add, fuse_slice_depthwise
from tinyexit.codegen.ir import Graph
from tinyexit.codegen.measure import section_sizes
from tinyexit.codegen.ops._common import M4
from tinyexit.codegen.ops.conv_2d import with_wide_convs
from tinyexit.codegen.ops.depthwise_conv_2d import with_widened_tables
from tinyexit.codegen.plan import Plan, memory_map, plan_memory
from tinyexit.codegen.prepared import with_prepared_tables
from tinyexit.codegen.reader import read_model
from tinyexit.codegen.schedule import schedule
from tinyexit.codegen.sparse import sparsify
from tinyexit.codegen.stream_plan import PLANS, chains_of, expand_ops, stream_graph
from tinyexit.codegen.oracle import arena_figures
from tinyexit.errors import TinyexitError
from tinyexit.io import atomic_dir
from tinyexit.pipeline import Link  # a chain boundary, as the exit pipeline (tinyexit.pipeline) describes it


@dataclass(frozen=True)
class ModelFigures:
    name: str
    source: str
    ops: list[str]                      # the steps, in run order (CONV_2D+ADD: one fused step)
    step_macs: list[int]
    macs: int
    arena_bytes: int                    # this model's own plan
    weight_bytes: int                   # const weights, biases, multipliers, shifts
    code_bytes: int | None              # .text of the model's step code + the kernels it uses + runtime
    tflm_arena_bytes: int | None        # TFLM arena_used_bytes (host tflite_micro, total)
    tflm_activation_bytes: int | None   # TFLM's non-persistent (activation) part of the arena
    inplace_ops: list[int]
    input_size: int
    output_size: int
    scratch_bytes: int = 0              # the largest kernel work space of one step, planned inside arena_bytes
    step_work: list = field(default_factory=list)  # per step [offset, bytes] of its kernel work space ([0, 0]: none)
    memory: dict = field(default_factory=dict)     # the plan as tensor rectangles (codegen.plan.memory_map)
    plan: str = "layers"                # "fused"/"fused2": some steps are row-streamed chains (codegen.stream_plan)
    chains: list = field(default_factory=list)     # the fused steps, described


@dataclass(frozen=True)
class GenerateReport:
    out_dir: str
    arena_bytes: int                    # TX_ARENA_SIZE: the largest model plan (kernel scratch included)
    code_bytes: int | None              # .text of all library objects (host driver excluded)
    weight_bytes: int
    compiler: str
    kernels: str
    models: dict[str, ModelFigures] = field(default_factory=dict)
    chain: list[Link] = field(default_factory=list)      # the links asked for (names with the prefix)
    chained: bool = False               # planned through the arena (tx_model.h's TX_CHAIN_*), or each alone
    scratch_bytes: int = 0              # the largest kernel work space of any step (inside arena_bytes)
    static_scratch_bytes: int | None = None  # .bss + .data of the kernel objects (None: not measured)
    plan: str = "layers"                # the plan asked for (stream_plan.PLANS); per model: ModelFigures.plan
    wide: bool = True                   # the wide CONV_2D path allowed (cortex_m4, layer plan; generate(wide=))

    @property
    def ram_bytes(self) -> int | None:
        """RAM the library needs besides the caller's stack: the arena plus the kernels' static memory."""
        return None if self.static_scratch_bytes is None else self.arena_bytes + self.static_scratch_bytes

    def to_json(self) -> dict:
        return {**asdict(self), "ram_bytes": self.ram_bytes}

    def table(self) -> str:
        rows = [f"{'model':<24} {'MACs':>11} {'arena':>8} {'scratch':>7} {'TFLM arena':>10} {'weights':>8} {'code':>7}"]
        for m in self.models.values():
            rows.append(f"{m.name:<24} {m.macs:>11,} {m.arena_bytes:>8,} {m.scratch_bytes:>7,} "
                        f"{(f'{m.tflm_arena_bytes:,}' if m.tflm_arena_bytes else '-'):>10} {m.weight_bytes:>8,} "
                        f"{(f'{m.code_bytes:,}' if m.code_bytes is not None else '-'):>7}")
        code = f"{self.code_bytes:,}" if self.code_bytes is not None else "-"
        static = f"{self.static_scratch_bytes:,}" if self.static_scratch_bytes is not None else "-"
        ram = f"{self.ram_bytes:,}" if self.ram_bytes is not None else "-"
        rows.append(f"library: RAM {ram} B = arena {self.arena_bytes:,} B (kernel scratch up to "
                    f"{self.scratch_bytes:,} B inside) + static kernel scratch {static} B; "
                    f"weights {self.weight_bytes:,} B, code {code} B "
                    f"({self.compiler}), kernels: {self.kernels}"
                    + (", models chained through the arena" if self.chained else "") + f" -> {self.out_dir}")
        for m in self.models.values():
            rows.append(f"plan of {m.name}: " + (f"{m.plan} ({'; '.join(m.chains)})" if m.plan != "layers" else
                                                 "layer by layer" + (" (no chain planned less)"
                                                                     if self.plan != "layers" else "")))
        return "\n".join(rows)


def _plan_chain(graphs: dict[str, Graph], chain, plan_one) -> dict[str, Plan]:
    """Plan every model, those of `chain` after the model whose output they read (input pinned there;
    readers keep it intact). `plan_one(graph, **constraints)` -> (graph, plan)."""
    source: dict[str, tuple[str, bool]] = {}      # model -> (producer, keeps its input)
    for link in chain:
        for name, keep in [(r, True) for r in link.readers] + ([(link.consumer, False)] if link.consumer else []):
            for m in (link.producer, name):
                if m not in graphs:
                    raise TinyexitError(f"the chain names model '{m}', which is not in the library.")
            if name in source:
                raise TinyexitError(f"model '{name}' reads the output of both '{source[name][0]}' and "
                                    f"'{link.producer}' in the chain; a model has one input.")
            out, inp = graphs[link.producer].output, graphs[name].input
            if out.nbytes != inp.nbytes:
                raise TinyexitError(f"'{name}' reads {inp.nbytes} bytes but '{link.producer}' writes "
                                    f"{out.nbytes}; they cannot share one arena range.")
            source[name] = (link.producer, keep)
    plans: dict[str, Plan] = {}
    todo = list(graphs)
    while todo:
        ready = [n for n in todo if n not in source or source[n][0] in plans]
        if not ready:
            raise TinyexitError(f"the chain has a cycle through {', '.join(todo)}.")
        for n in ready:
            kw = {}
            if n in source:
                prod, keep = source[n]
                g = graphs[prod]
                kw = dict(pinned={graphs[n].input.index: plans[prod].offsets[g.output.index]}, keep_input=keep)
            graphs[n], plans[n] = plan_one(graphs[n], **kw)
            todo.remove(n)
    return plans


def _normalise(models) -> dict[str, Path]:
    if isinstance(models, (str, os.PathLike)):
        p = Path(models)
        return {p.stem: p}
    return {str(k): Path(v) for k, v in dict(models).items()}


def generate(models, out_dir: str | os.PathLike, *, name_prefix: str = "", kernels: str = "reference",
             inplace: bool = True, fuse_ops: bool = True, reorder: bool = True, measure: bool = True,
             compare_tflm: bool = True, sparse: bool = True, chain=(), plan: str = "layers",
             wide: bool = True) -> GenerateReport:
    """Generate one C library for `models` (name -> .tflite path, or one path) into `out_dir`.

    `inplace=False` gives every op an output that does not overlap its inputs (a larger arena, but each
    step can be re-run from its inputs after an interruption). `fuse_ops=False` keeps one step per TFLite
    op (no CONV_2D+ADD or STRIDED_SLICE+DEPTHWISE_CONV_2D steps; a model keeps the slice unfused when that plans
    a smaller arena); `reorder=False` keeps the file's op order (otherwise a memory-aware order is
    used when it plans a smaller arena). `sparse` stores a conv / depthwise / fully connected layer's weights as
    sparse run lists when that is smaller (pruned models; `tinyexit.codegen.sparse`); False keeps all dense.
    `chain`: Links (names as in `models`) of a pipeline that passes outputs through the arena without
    copies (a run's: `tinyexit.run.Run.chain`); empty: every model planned alone. `plan="fused"` also plans
    each model with its conv chains row-streamed (`tinyexit.codegen.stream_plan`) and keeps that when its
    arena is smaller ("fused2": two rows per kernel call on odd widths, faster, windows a row taller); a fused chain is one step the checkpointing runtime cannot commit inside, so builds
    that checkpoint keep the default "layers". `wide=False` leaves the wide CONV_2D path out (cortex_m4,
    layer plan: `Conv2D.wide_stream` stores a wide conv's weights again, widened, so flash-tight boards may
    prefer the slower per-call path; report.json's `wide` says which). Nothing is written when anything fails."""
    from tinyexit.codegen.emit import KERNEL_VARIANTS

    if kernels not in KERNEL_VARIANTS:
        raise TinyexitError(f"unknown kernel variant '{kernels}'; choose one of {', '.join(KERNEL_VARIANTS)}")
    if plan not in PLANS:
        raise TinyexitError(f"unknown plan '{plan}'; choose one of {', '.join(PLANS)}")
    paths = _normalise(models)
    if not paths:
        raise TinyexitError("no model given to generate.")
    graphs: dict[str, Graph] = {}
    unfused: dict[str, Graph] = {}      # models whose channel slice was fused: the graph without that fusion
    seen: dict[str, str] = {}
    for name, path in paths.items():
        full = f"{name_prefix}{name}"
        cname = c_ident(full)
        if cname in seen:
            raise TinyexitError(f"model names '{seen[cname]}' and '{full}' give the same C identifier; rename one.")
        seen[cname] = full
        g0 = read_model(path, name=full)
        g0 = fuse_conv_add(g0) if fuse_ops else g0
        g = fuse_slice_depthwise(g0) if fuse_ops else g0
        # The kernels' weight layouts and generation-time tables (a wide conv's stream holds its own tables).
        # The fused plans trade speed for memory and leave the wide path out: its 4-pixel blocks need more work
        # space, and a row-by-row call of a 5-pixel row runs a block of 4 and one of 1.
        # The same for the depthwise row path (DepthwiseConv2D.rows_ok): a one-row call pairs a row with itself.
        wide_ = with_wide_convs if plan == "layers" and wide else (lambda h: h)
        variant = ((lambda h: with_prepared_tables(wide_(with_widened_tables(h, rows=plan == "layers"))))
                   if kernels == M4
                   else (lambda h: h))
        graphs[full] = variant(sparsify(g) if sparse else g)
        if len(g.ops) != len(g0.ops):
            # A fused channel slice keeps the whole map alive while the depthwise reads it; when the map
            # would die at the slice (an unchained head) the unfused slice runs in place over it and can
            # plan a smaller arena: plan_one then keeps the unfused graph.
            unfused[full] = variant(sparsify(g0) if sparse else g0)

    def planner(budget: int | None = None):
        """plan_one(graph, **constraints) -> (graph, plan): the order (file or memory-aware) and form
        (channel slice fused or not) planning the smallest arena, ties to the fused graph in file order;
        with a `budget`, the fused graph whenever its arena fits in it (fewer instructions)."""
        def plan_one(g: Graph, **constraints) -> tuple[Graph, Plan]:
            best, best_fused = None, None
            for cand in (g, unfused[g.name]) if g.name in unfused else (g,):
                for h in [s for o in ((cand, schedule(cand)) if reorder else (cand,))
                          for s in ((o, stream_graph(o, plan)) if plan != "layers" else (o,))]:
                    if best is not None and h is best[0]:
                        continue
                    p = plan_memory(h, inplace=inplace, kernels=kernels, **constraints)
                    if best is None or p.arena_bytes < best[1].arena_bytes:
                        best = (h, p)
                    if cand is g and (best_fused is None or p.arena_bytes < best_fused[1].arena_bytes):
                        best_fused = (h, p)
            if budget is not None and best_fused[1].arena_bytes <= budget:
                return best_fused
            return best
        return plan_one

    chain = [Link(f"{name_prefix}{l.producer}", tuple(f"{name_prefix}{r}" for r in l.readers),
                  f"{name_prefix}{l.consumer}" if l.consumer else None) for l in chain]
    alone = dict(graphs)
    plans = _plan_chain(alone, [], planner())
    planned: list[Link] = []
    if chain:
        # Chained, the readers' working sets sit beside the shared ranges: keep the chain only when the
        # arena grows by less than the largest output a caller no longer copies out of it.
        chained = dict(graphs)
        plans2 = _plan_chain(chained, chain, planner())
        growth = max(p.arena_bytes for p in plans2.values()) - max(p.arena_bytes for p in plans.values())
        if growth < max(graphs[l.producer].output.nbytes for l in chain):
            alone, plans, planned = chained, plans2, chain
    if any(len(alone[n].ops) != len(graphs[n].ops) for n in unfused):   # a slice left unfused
        # Some model kept its slice unfused to plan less; the library's arena is the largest model's, so
        # fuse it again where that stays within it (kept only if the whole library still fits).
        budget = max(p.arena_bytes for p in plans.values())
        again = dict(graphs)
        plans3 = _plan_chain(again, planned, planner(budget))
        if max(p.arena_bytes for p in plans3.values()) <= budget:
            alone, plans = again, plans3
    graphs = alone
    # TFLM may crash on a damaged file: it runs in a child (one for all models), before anything is written.
    tflm_figures = arena_figures({n: g.path for n, g in graphs.items()}) if compare_tflm else {}
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        files = emit_library(graphs, plans, tmp, EmitConfig(kernels=kernels), chain=planned)
        compiler, sizes = section_sizes(tmp, files["lib_sources"]) if measure else ("not measured", {})
        figures = {}
        for name, g in graphs.items():
            code = None
            if sizes:
                srcs = {"tx_runtime.c", f"tx_model_{c_ident(name)}.c"} | {f"{op.kernel}.c" for op, _ in expand_ops(g.ops) if op.kernel}
                code = sum(sizes[s]["text"] for s in srcs)
            tflm = tflm_figures.get(name)
            figures[name] = ModelFigures(
                name=name, source=str(g.path), ops=[op.name for op in g.ops],
                step_macs=[op.macs() for op in g.ops], macs=g.macs(),
                arena_bytes=plans[name].arena_bytes, weight_bytes=g.weight_bytes(), code_bytes=code,
                tflm_arena_bytes=(tflm or {}).get("total"), tflm_activation_bytes=(tflm or {}).get("head"),
                inplace_ops=sorted(plans[name].inplace), input_size=g.input.nbytes, output_size=g.output.nbytes,
                scratch_bytes=plans[name].work_bytes,
                step_work=[list(plans[name].work.get(op.index, (0, 0))) for op in g.ops],
                memory=memory_map(g, plans[name]), chains=chains_of(g),
                plan=plan if chains_of(g) else "layers")
        report = GenerateReport(
            out_dir=str(out), arena_bytes=max(p.arena_bytes for p in plans.values()),
            code_bytes=sum(s["text"] for s in sizes.values()) if sizes else None,
            weight_bytes=sum(g.weight_bytes() for g in graphs.values()), compiler=compiler, kernels=kernels,
            models=figures, chain=chain, chained=bool(planned),
            scratch_bytes=max(p.work_bytes for p in plans.values()),
            plan=plan, wide=wide, static_scratch_bytes=(sum(sizes[s]["bss"] + sizes[s]["data"] for s in files["kernels"] if s in sizes)
                                  if sizes else None))
        (tmp / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report
