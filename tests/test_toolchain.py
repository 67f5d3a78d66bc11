"""tinyexit.toolchain: one template environment, one set of flags, one host compile; the structure it
replaces does not come back (no Jinja environment, gcc flag list or QEMU runner built elsewhere; codegen
imports neither build nor targets); every template renders as it did through the environment it had before."""
import ast
import subprocess
from pathlib import Path

import jinja2
import pytest

from tinyexit import toolchain
from tinyexit.errors import TinyexitError

from tests.conftest import require_program

PACKAGE = Path(toolchain.__file__).parent
TEMPLATES = toolchain.TEMPLATES


def _sources(under: Path = PACKAGE):
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_one_jinja_environment_and_no_runner_built_outside_targets():
    envs = [str(p.relative_to(PACKAGE)) for p in _sources() if "Environment(" in p.read_text()]
    assert envs == ["toolchain.py"]
    runners = [str(p.relative_to(PACKAGE)) for p in _sources()
               if "QemuRunner(" in p.read_text() and p.parent.name != "targets"]
    assert runners == []
    flags = [str(p.relative_to(PACKAGE)) for p in _sources() if '"-Werror"' in p.read_text()]
    assert flags == ["toolchain.py"]


def test_codegen_imports_neither_build_nor_targets():
    bad = []
    for path in _sources(PACKAGE / "codegen"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[:2] in (["tinyexit", "build"],
                                                                               ["tinyexit", "targets"])]
    assert bad == []


def test_render_and_host_compile_a_template_then_run_it(tmp_path):
    """A tiny template through the one environment (block tags take their line, so the loop leaves no blank
    lines), compiled with the host flags (-Werror: an unused variable would fail) and run."""
    require_program("gcc", "apt-get install -y gcc")
    src = toolchain.env().from_string(
        "#include <stdio.h>\n"
        "static const int v[] = {\n"
        "{% for x in values %}\n"
        "    {{ x }},\n"
        "{% endfor %}\n"
        "};\n"
        "int main(void) {\n"
        "    int s = 0;\n"
        "    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) s += v[i] * {{ scale }};\n"
        "    printf(\"%d\\n\", s);\n"
        "    return 0;\n"
        "}\n").render(values=[3, -1, 40], scale=2)
    assert "\n\n" not in src and src.endswith("}\n")
    (tmp_path / "t.c").write_text(src)
    exe = toolchain.compile_host([tmp_path / "t.c"], tmp_path / "bin" / "t")
    assert subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout == "84\n"
    (tmp_path / "bad.c").write_text("int main(void) { int unused; return 0; }\n")
    with pytest.raises(toolchain.BuildError, match=r"(?s)host build failed.*unused variable"):
        toolchain.compile_host([tmp_path / "bad.c"], tmp_path / "bad")


def test_undefined_template_names_are_errors():
    with pytest.raises(jinja2.UndefinedError):
        toolchain.env().from_string("{{ missing }}").render()


def _old(folder: Path, **options) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                              **options)


def test_runtime_templates_render_as_before():
    """powerfail_inputs.c.j2 was written for an environment without block trimming; bench_main.c.j2 was
    rendered without its last newline: the per-call options keep their output."""
    ctx = dict(inputs=["1, -2,", "3, 4,"], input_size=2)
    want = _old(TEMPLATES / "runtime").get_template("powerfail_inputs.c.j2").render(**ctx) + "\n"
    assert toolchain.render("runtime/powerfail_inputs.c.j2", trim_blocks=False, **ctx) == want
    ctx = dict(banner="/* b */", name="m", cname="m", count=1, input_size=2, inputs=["1, 2"], per_step=True)
    want = _old(TEMPLATES, trim_blocks=True, lstrip_blocks=True).get_template("model/bench_main.c.j2").render(**ctx)
    assert toolchain.render("model/bench_main.c.j2", keep_trailing_newline=False, **ctx) == want


def test_makefiles_carry_the_toolchain_flags():
    """The branch firmware's Makefile (a Python string before) and the library's Makefile take the toolchain's
    host flags (a real `make` of the branch firmware: tests/test_branch.py)."""
    from tinyexit import __version__
    from tinyexit.branch.firmware import RUNTIME_SOURCES
    flags = "\nCFLAGS ?= -std=c99 -Wall -Wextra -Werror -O2\n"
    got = toolchain.render("branch/Makefile.j2", version=__version__, cflags=" ".join(toolchain.HOST_CFLAGS),
                           runtime_sources=" ".join(RUNTIME_SOURCES))
    assert flags in got and f"RT_SRCS = {' '.join(RUNTIME_SOURCES)}\n" in got
    lib = toolchain.render("model/Makefile.j2", banner_text="b", lib_sources=["x.c"],
                           cflags=" ".join(toolchain.HOST_CFLAGS))
    assert flags in lib


def test_the_generated_makefile_builds_what_build_host_builds(tmp_path):
    """A user's `make` of a generated library and conformance.build_host (the toolchain's host compile) give
    drivers with the same output; build_host keeps a driver newer than its sources."""
    import numpy as np

    from tests.conftest import conformance_model
    from tinyexit.codegen import generate
    from tinyexit.conformance import build_host, run_host, structured_inputs

    require_program("gcc", "apt-get install -y gcc")
    require_program("make", "apt-get install -y make")
    lib = tmp_path / "lib"
    rep = generate({"kws": conformance_model("kws_ref_model.tflite")}, lib, compare_tflm=False, measure=False)
    exe = build_host(lib)
    built = exe.stat().st_mtime_ns
    assert build_host(lib) == exe and exe.stat().st_mtime_ns == built   # kept: nothing changed
    ours = exe.rename(tmp_path / "tx_host_toolchain")
    subprocess.run(["make", "-s", "-C", str(lib), "tx_host", "CC=gcc"], check=True, capture_output=True)
    m = rep.models["kws"]
    x = structured_inputs((m.input_size,), 0, np.random.default_rng(0))[:4]
    assert (run_host(ours, "kws", x, m.output_size) == run_host(exe, "kws", x, m.output_size)).all()


def test_missing_compiler_is_named(tmp_path):
    with pytest.raises(TinyexitError, match="'no-such-cc' is not installed.*apt-get install -y gcc"):
        toolchain.compile_host([tmp_path / "x.c"], tmp_path / "x", cc="no-such-cc")
