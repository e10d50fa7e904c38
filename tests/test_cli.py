"""The command line generated from the config fields: every key an option, tri-state booleans,
``--set``, one validation for TOML and options, one-line usage errors, documented flags exist."""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lfft import cli, options_cli
from lfft.config import STAGE_CONFIGS, CollectConfig, build, load_toml, validate
from lfft.errors import ConfigError
from lfft.options import opt, options

ROOT = Path(__file__).resolve().parents[1]


def _command(name: str) -> options_cli.Command:
    return next(c for c in cli.COMMANDS if c.name == name)


def _flags(app: typer.Typer) -> dict[str, set[str]]:
    """Every option name (``--x`` and ``--no-x``, short ones too) of every command."""
    group = typer.main.get_command(app)
    return {
        name: {"--help"} | {f for p in cmd.params for f in (*p.opts, *p.secondary_opts)}
        for name, cmd in group.commands.items()
    }


FLAGS = _flags(cli.app)


def invoke(name: str, *args: str, fn=None):
    """Run ``lfft NAME ARGS`` through the generated parser; return (result, cfg, tables)."""
    cmd = _command(name)
    seen = {}

    @functools.wraps(cmd.fn)
    def capture(cfg, *tables, **kw):
        seen.update(cfg=cfg, tables=tables[0] if tables else None, kw=kw)

    app = typer.Typer(add_completion=False)
    app.command(name)(options_cli.generated(dataclasses.replace(cmd, fn=fn or capture)))
    result = CliRunner().invoke(app, list(args))
    return result, seen.get("cfg"), seen.get("tables")


def run_main(capsys, *argv: str) -> tuple[int, list[str]]:
    """The real entry point in-process: (exit code, stderr lines)."""
    with pytest.raises(SystemExit) as e:
        cli.main(list(argv))
    return e.value.code, capsys.readouterr().err.strip().splitlines()


# --- one definition --------------------------------------------------------------------------


def test_every_config_key_is_an_option_of_its_command():
    assert set(FLAGS) == set(STAGE_CONFIGS)
    for name, cls in STAGE_CONFIGS.items():
        for o in options(cls):
            assert o.flag in FLAGS[name], (name, o.flag)
            if o.is_bool:
                assert "--no-" + o.flag[2:] in FLAGS[name], (name, o.flag)
        assert {"--config", "-c", "--set"} <= FLAGS[name]
    sample = load_toml(ROOT / "data" / "samples" / "lfft.toml")  # "each key is an option"
    for name, table in sample.items():
        assert {"--" + k.replace("_", "-") for k in table} <= FLAGS[name], name


# the options of the hand-written CLI before generation (tests, docs and scripts use them)
LEGACY = {
    "collect": "-o --out -f --format --map --no-implicit --workers --implicit-rules -q",
    "clean": "-o --out --max-chars --no-scrub --merge-across-sessions --workers -q",
    "normalize": "-o --out --conflict --threshold --workers -q",
    "split": "-o --out --key --ratios --seed --unlabeled -q",
    "synth": "-o --out --sessions --seed --files --fault-rate --compress -q",
    "inspect": "--rows",
    "export": "-f --format -o --out -q",
    "init": "-o --out --base --data --preset --layers --hidden --heads --vocab-size --max-length "
    "--gguf-file --trust-remote-code --seed -q",
    "train": "-m --model -d --data -o --out --objective --feedback-loss --lambda --max-steps "
    "--epochs --lr --batch-size --batch-tokens --grad-accum --max-length --warmup-steps --beta "
    "--precision --device --eval-every --patience --save-every --keep-last --log-every "
    "--grad-checkpointing --compile --lora --resume --nproc --fsdp --packing --seed -q",
    "evaluate": "-m --model -d --data -o --out --baseline --generate --max-new-tokens "
    "--best-of --sample --temperature --max-rows --device -q",
    "pipeline": "-w --work --from --until --force",
    "online": "-w --work --logs --once --interval --rollback",
}


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_existing_option_names_and_short_flags_still_work(name):
    missing = set(LEGACY[name].split()) - FLAGS[name]
    assert not missing, f"lfft {name} lost {sorted(missing)}"


def test_a_new_field_becomes_an_option_and_a_key_with_no_other_change(tmp_path, monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Grown(CollectConfig):
        memory_budget: int = opt(512, "Bytes of records held in memory.", ge=1)
        plain_knob: float | None = None  # a field written the old way: no help, no range
        spill: bool = False

    monkeypatch.setitem(STAGE_CONFIGS, "collect", Grown)
    assert {"--memory-budget", "--plain-knob", "--spill", "--no-spill"} <= _flags(cli.make_app())[
        "collect"
    ]
    toml = tmp_path / "lfft.toml"
    toml.write_text("[collect]\nmemory_budget = 64\nplain_knob = 0.5\nspill = true\n")
    args = ["in", "-o", "out", "--config", str(toml)]
    _, cfg, _ = invoke("collect", *args)
    assert (cfg.memory_budget, cfg.plain_knob, cfg.spill) == (64, 0.5, True)
    _, cfg, _ = invoke("collect", *args, "--memory-budget", "7", "--no-spill", "--plain-knob=none")
    assert (cfg.memory_budget, cfg.plain_knob, cfg.spill) == (7, None, False)
    result, _, _ = invoke("collect", *args, "--memory-budget", "0")
    assert result.exit_code == 2 and "must be >= 1, got 0" in result.output
    with pytest.raises(ConfigError, match=r"\[collect\] memory_budget: must be >= 1"):
        build(Grown, {"memory_budget": 0})


def test_every_default_is_valid():
    for cls in STAGE_CONFIGS.values():
        if not any(o.required for o in options(cls)):
            validate(cls())


# --- precedence, tri-state booleans, --set ---------------------------------------------------


def test_precedence_option_over_set_over_toml_over_default(tmp_path):
    toml = tmp_path / "lfft.toml"
    toml.write_text("[train]\nlr = 0.01\nmax-steps = 7\nlambda = 0.25\nbeta = 0.3\n")
    common = ["-m", "m", "-d", "d", "-o", "o", "--config", str(toml)]
    _, cfg, _ = invoke("train", *common, "--set", "train.lambda=0.75", "--set", "max_steps=9")
    assert (cfg.lr, cfg.max_steps, cfg.lambda_, cfg.beta, cfg.seed) == (0.01, 9, 0.75, 0.3, 0)
    _, cfg, _ = invoke("train", *common, "--set", "train.max-steps=9", "--max-steps", "3")
    assert (cfg.max_steps, cfg.lambda_) == (3, 0.25)
    _, cfg, _ = invoke("train", *common, "--max-steps", "none", "--lambda", "0")
    assert (cfg.max_steps, cfg.lambda_) == (None, 0.0)


BOOLEANS = [(name, o) for name, cls in STAGE_CONFIGS.items() for o in options(cls) if o.is_bool]


# the least each command needs to parse
MINIMAL = {
    **{name: ["in", "-o", "o"] for name in ("collect", "clean", "normalize", "split")},
    "synth": ["-o", "o"],
    "inspect": ["a"],
    "export": ["a", "-o", "o", "-f", "jsonl"],
    "init": ["-o", "o"],
    "train": ["-m", "m", "-d", "d", "-o", "o"],
    "evaluate": ["-m", "m", "-d", "d", "-o", "o"],
    "pipeline": ["in", "-w", "w"],
    "online": ["-w", "w"],
}


@pytest.mark.parametrize("name,o", BOOLEANS, ids=[f"{n}.{o.key}" for n, o in BOOLEANS])
def test_every_boolean_is_tri_state(tmp_path, name, o):
    toml = tmp_path / "lfft.toml"
    for toml_value in (True, False):
        toml.write_text(f"[{name}]\n{o.key} = {str(toml_value).lower()}\n")
        for extra, expected in ([], toml_value), ([o.flag], True), (["--no-" + o.flag[2:]], False):
            result, cfg, _ = invoke(name, *MINIMAL[name], "--config", str(toml), *extra)
            assert result.exit_code == 0, result.output
            assert getattr(cfg, o.name) is expected, (toml_value, extra)
        assert invoke(name, *MINIMAL[name])[1] == STAGE_CONFIGS[name]()  # unset: the default


def test_no_generate_wins_over_the_sample_config():
    """The reported bug: ``--no-generate`` did nothing when the TOML set ``generate = true``."""
    sample = ROOT / "data" / "samples" / "lfft.toml"
    common = ["-m", "m", "-d", "d", "-o", "o", "--config", str(sample)]
    assert invoke("evaluate", *common)[1].generate is True
    assert invoke("evaluate", *common, "--no-generate")[1].generate is False
    assert invoke("evaluate", *common, "--sample")[1].do_sample is True


def test_set_reaches_any_stage_of_pipeline_and_online(tmp_path):
    toml = tmp_path / "lfft.toml"
    toml.write_text("[train]\nlr = 0.01\n[split]\nratios = [0.5, 0.25, 0.25]\n")
    sets = ["--set", "train.lr=3e-4", "--set", "split.ratios=0.7,0.2,0.1"]
    sets += ["--set", "collect.column_map=prompt=q,response=a", "--set", "clean.scrub-pii=false"]
    for name, own in (("pipeline", ["in", "-w", "w"]), ("online", ["-w", "w"])):
        result, _, tables = invoke(name, *own, "--config", str(toml), *sets)
        assert result.exit_code == 0, result.output
        tables = load_toml(tables)  # what run_pipeline / run_online do with it
        assert build(STAGE_CONFIGS["train"], tables["train"]).lr == 3e-4
        assert build(STAGE_CONFIGS["split"], tables["split"]).ratios == (0.7, 0.2, 0.1)
        collect = build(STAGE_CONFIGS["collect"], tables["collect"])
        assert collect.column_map == {"prompt": "q", "response": "a"}
        assert build(STAGE_CONFIGS["clean"], tables["clean"]).scrub_pii is False


# --- one validation, one-line errors ---------------------------------------------------------

BAD = [
    ("evaluate", "max_new_tokens", "0", 0, "must be >= 1, got 0"),
    ("train", "objective", "sfft", "sfft", "expected one of sft, filtered"),
    ("split", "ratios", "0.5,0.5,0.5", [0.5, 0.5, 0.5], "expected three shares >= 0"),
    ("normalize", "positive_threshold", "1.5", 1.5, "must be >= 0 and <= 1, got 1.5"),
    ("clean", "pii_kinds", "email,passport", ["email", "passport"], "unknown passport"),
    ("train", "lr", "fast", "fast", "expected "),
]


@pytest.mark.parametrize("name,key,text,toml_value,problem", BAD)
def test_toml_set_and_option_share_one_validation(
    capsys, tmp_path, name, key, text, toml_value, problem
):
    with pytest.raises(ConfigError, match=rf"\[{name}\] {key}: {problem}"):
        build(STAGE_CONFIGS[name], {key: toml_value})
    flag = "--" + key.replace("_", "-")
    for argv, named in (([flag, text], flag), (["--set", f"{name}.{key}={text}"], key)):
        code, err = run_main(capsys, name, *MINIMAL[name], *argv)
        assert code == 2 and len(err) <= 2, err
        assert err[0].startswith("error: ") and named in err[0] and problem in err[0], err


@pytest.mark.parametrize(
    "argv,says",
    [
        (["collect", "in", "-o", "x", "--bogus"], "no such option: --bogus"),
        (["clean"], "missing argument 'INPUT'"),
        (["train", "-d", "d", "-o", "o"], "missing option '--model'"),
        (["split", "x", "-o", "y", "--seed", "abc"], "expected an integer, got 'abc'"),
        (["clean", "x", "-o", "y", "--set", "train.lr=1"], "lfft clean reads [clean]"),
        (["clean", "x", "-o", "y", "--set", "max_char=1"], "unknown key max_char"),
        (["clean", "x", "-o", "y", "--set", "oops"], "write stage.key=value"),
        (["export", "x", "-o", "y"], "missing option --format"),
        (["nosuch"], "no such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, says):
    code, err = run_main(capsys, *argv)
    assert code == 2 and 1 <= len(err) <= 2, err
    assert err[0].startswith("error: ") and says in err[0], err
    assert all(line.startswith(("error: ", "hint: ")) for line in err)


def test_a_user_error_is_one_line_and_exit_1(capsys, tmp_path):
    toml = tmp_path / "lfft.toml"
    toml.write_text("[evaluate]\nmax_new_tokens = 0\n")
    code, err = run_main(capsys, "evaluate", "-m", "m", "-d", "d", "-o", "o", "-c", str(toml))
    assert (code, err) == (1, [f"error: {toml} [evaluate] max_new_tokens: must be >= 1, got 0"])


def test_export_and_inspect_take_config(tmp_path):
    toml = tmp_path / "lfft.toml"
    toml.write_text('[export]\nformat = "trl-dpo"\n[inspect]\nrows = 2\n')
    assert invoke("export", "a", "-o", "o", "-c", str(toml))[1].format == "trl-dpo"
    assert invoke("export", "a", "-o", "o", "-c", str(toml), "-f", "jsonl")[1].format == "jsonl"
    assert invoke("inspect", "a", "-c", str(toml))[1].rows == 2


# --- the docs ---------------------------------------------------------------------------------

LFFT_CMD = re.compile(r"\blfft\s+(" + "|".join(FLAGS) + r")\b")
BENCH = re.compile(r"\bbench/\w+\.py")
UNCHECKED_TOOL = re.compile(r"\btorchrun\b|torch\.distributed\.run|\bmake\b|\bpip\b")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


# what a page is about: its prose flags belong to these commands (or to one its paragraph names)
PAGE_COMMANDS = {
    "collect.md": {"collect"},
    "data-stages.md": {"collect", "clean", "normalize", "split", "inspect"},
    "evaluate.md": {"evaluate"},
    "explain.md": {"explain"},
    "feedback.md": {"normalize"},
    "formats.md": {"collect", "export"},
    "objectives.md": {"train"},
    "online.md": {"online"},
    "pipeline.md": {"pipeline"},
    "scaling.md": {"collect", "clean", "normalize", "split", "train"},
    "serve.md": {"serve"},
    "training.md": {"init", "train"},
}


def _paragraphs(text: str):
    """Paragraphs as lists of logical lines: ``\\`` continuations and, in code blocks,
    indented continuation lines are joined to the line they continue."""
    in_code = False
    para: list[str] = []
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            in_code = not in_code
        if not raw.strip() and not in_code:
            yield para
            para = []
        elif para and (para[-1].endswith("\\") or (in_code and raw[:1].isspace())):
            para[-1] = para[-1].rstrip("\\") + " " + raw
        else:
            para.append(raw)
    yield para


def _bench_defines(script: str, flag: str) -> bool:
    return f'"{flag}"' in (ROOT / script).read_text(encoding="utf-8")


def documented_flag_problems(text: str, where: str, about: set[str] | None = None) -> list[str]:
    """Each ``--flag`` must be an option of the lfft command it follows on its line (a bench
    script's flags must be in that script). A flag with no command before it on its line must
    be an option of a command the page is ``about`` or its paragraph names (of any command on
    a page about no command in particular), or of a bench script or tool its paragraph names."""
    problems = []
    for para in _paragraphs(text):
        joined = "\n".join(para)
        context = set(LFFT_CMD.findall(joined)) | about if about else set()
        flags = set().union(*(FLAGS[c] for c in context or FLAGS))
        for line in para:
            for m in FLAG.finditer(line):
                before, flag = line[: m.start()], m.group(0)
                owners = [(c.end(), "lfft", c.group(1)) for c in LFFT_CMD.finditer(before)]
                owners += [(c.end(), "bench", c.group(0)) for c in BENCH.finditer(before)]
                owners += [(c.end(), "tool", c.group(0)) for c in UNCHECKED_TOOL.finditer(before)]
                if owners:
                    _, kind, owner = max(owners)
                    ok = kind == "tool" or (
                        flag in FLAGS[owner] if kind == "lfft" else _bench_defines(owner, flag)
                    )
                else:
                    owner = "/".join(sorted(context)) or "any command"
                    ok = (
                        flag in flags
                        or any(_bench_defines(s, flag) for s in BENCH.findall(joined))
                        or bool(UNCHECKED_TOOL.search(joined))
                    )
                if not ok:
                    problems.append(f"{where}: {flag} is not an option of {owner}: {line.strip()}")
    return problems


def test_every_documented_flag_exists():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = []
    for path in docs:
        text = path.read_text(encoding="utf-8")
        problems += documented_flag_problems(text, path.name, PAGE_COMMANDS.get(path.name))
    assert not problems, "\n".join(problems)


def test_the_docs_check_catches_a_wrong_flag():
    text = "```\nlfft evaluate --model m \\\n  --no-such\n  [--max-length 9] [--no-either]\n```\n"
    text += "\nUse `--nor-this`.\n\nAnd `--lambda` here.\n"
    problems = documented_flag_problems(text, "x.md", about={"evaluate"})
    wrong = ["--no-such", "--no-either", "--nor-this", "--lambda"]
    assert [p.split()[1] for p in problems] == wrong
    anywhere = documented_flag_problems(text, "x.md")  # a page about no command in particular
    assert [p.split()[1] for p in anywhere] == wrong[:-1]
    assert not documented_flag_problems("lfft train --lambda 0 --unlikelihood-alpha 2", "x")
    assert documented_flag_problems("lfft collect --lambda 0", "x")  # not collect's
    assert not documented_flag_problems("`bench/data_stages.py` with `--pandas`", "x")
    assert documented_flag_problems("`bench/data_stages.py` with `--pandaz`", "x")
