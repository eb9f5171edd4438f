"""The README is tested: CI runs its test command, its results are REPORT's, and the walkthrough
of docs/adding-a-method.md runs as written."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
WALKTHROUGH = (ROOT / "docs" / "adding-a-method.md").read_text()


def _block(marker: str) -> str:
    match = re.search(rf"<!-- walkthrough:{marker} -->\s*```\w+\n(.*?)```", WALKTHROUGH, re.S)
    assert match, f"docs/adding-a-method.md lost its walkthrough:{marker} block"
    return match.group(1)


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(pip install torch.*?)\n```", README)
    assert len(commands) == 2, "the Quickstart holds exactly two commands"
    assert commands[1].endswith("python -m pytest")
    assert commands[0].endswith("python -m benchmark --all")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_walkthrough_runs_as_written(tmp_path):
    (tmp_path / "my_method.py").write_text(_block("python"))
    (tmp_path / "next_item_counts.yaml").write_text(_block("yaml"))
    command = _block("command").strip().split()
    assert command[:3] == ["python", "-m", "benchmark"]
    cache = tmp_path / "cache"
    out = subprocess.run(
        [sys.executable, *command[1:], "--cache-dir", str(cache), "--no-progress", "--protocol",
         "loo"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "next_item_counts" in out.stdout
    result = cache / "results-smoke" / "ml-100k" / "loo" / "next_item_counts" / "seed0.json"
    import json

    data = json.loads(result.read_text())
    assert data["config"] == {"smoothing": 1.0}  # the YAML's smoke block reached the method
    assert data["metrics"]["all"]["all"]["NDCG@10"]["mean"] > 0


def test_no_unfilled_placeholder_in_the_prose():
    """A figure left as a placeholder (`CI_COLD` stood in README's SID-LLM section for a
    session) is prose a reader takes at face value; names in code spans and blocks are fine."""
    text = re.sub(r"```.*?```", "", README, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    assert re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", text) == []


def test_the_results_tables_are_written_from_the_report(tmp_path):
    """README's per-dataset tables (REPORT's Summary) and takeaways are the tool's output from
    REPORT.md, cell for cell; a changed REPORT figure makes the check fail until they are
    rewritten."""
    tool = [sys.executable, str(ROOT / "tools" / "readme_tables.py")]
    assert subprocess.run([*tool, "--check"], cwd=ROOT).returncode == 0, \
        "README's tables are stale: run python tools/readme_tables.py"
    report = (ROOT / "REPORT.md").read_text()
    # ML-100K popularity's loo cell (deterministic) in REPORT's Summary, whatever the padding
    probe = re.search(r"\| popularity +\| 0\.0432 \(worse\)", report)[0]
    stale = report.replace(probe, probe.replace("0.0432", "0.0433"), 1)
    assert stale != report, "the test's probe figure left REPORT.md: pick a current one"
    (tmp_path / "REPORT.md").write_text(stale)
    args = ["--report", str(tmp_path / "REPORT.md")]
    assert subprocess.run([*tool, "--check", *args], cwd=ROOT,
                          capture_output=True).returncode == 1
    (tmp_path / "README.md").write_text(README)
    subprocess.run([*tool, *args, "--readme", str(tmp_path / "README.md")], check=True)
    assert probe.replace("0.0432", "0.0433") in (tmp_path / "README.md").read_text()


def test_readme_verdicts_are_the_reports_and_a_planted_mismatch_fails(tmp_path):
    """README states no verdict of its own: its Verdicts block is REPORT's Findings. A changed
    figure, sign or verdict in README (or in REPORT) makes the check fail."""
    tool = [sys.executable, str(ROOT / "tools" / "readme_tables.py")]
    block = README.split("<!-- findings -->\n", 1)[1].split("<!-- /findings -->", 1)[0]
    report = (ROOT / "REPORT.md").read_text()
    findings = report.split("\n## Findings\n", 1)[1].split("\n## ", 1)[0]
    assert block.count("\n- ") >= 5 and all(
        line.lstrip("#") in findings for line in block.splitlines() if line.strip())
    verdict = next(line for line in block.splitlines()
                   if line.startswith(("- Better than", "- Worse than")) and "Δ" in line)
    planted = {
        "figure": re.sub(r"Δ ([+-])0\.(\d)", lambda m: f"Δ {m[1]}0.{(int(m[2]) + 1) % 10}",
                         verdict, count=1),
        "sign": verdict.replace("Δ +", "Δ -", 1) if "Δ +" in verdict
        else verdict.replace("Δ -", "Δ +", 1),
        "verdict": verdict.replace("- Better than", "- Not significantly different from", 1)
        .replace("- Worse than", "- Not significantly different from", 1),
    }
    for what, line in planted.items():
        assert line != verdict, what
        (tmp_path / "README.md").write_text(README.replace(verdict, line, 1))
        check = subprocess.run([*tool, "--check", "--readme", str(tmp_path / "README.md")],
                               cwd=ROOT, capture_output=True, text=True)
        assert check.returncode == 1, f"a planted {what} mismatch passed"


def test_a_planted_takeaway_fails_the_check(tmp_path):
    """The takeaways are built from the Summary tables alone: a method moved from one verdict
    to another in README fails the check."""
    tool = [sys.executable, str(ROOT / "tools" / "readme_tables.py")]
    block = README.split("<!-- takeaways -->\n", 1)[1].split("<!-- /takeaways -->", 1)[0]
    assert block.count("\n- ") + block.startswith("- ") == 5
    line = next(line for line in block.splitlines() if "not significantly different: `" in line)
    planted = line.replace("not significantly different: `", "not significantly different: "
                           "`random`, `", 1)
    (tmp_path / "README.md").write_text(README.replace(line, planted, 1))
    check = subprocess.run([*tool, "--check", "--readme", str(tmp_path / "README.md")],
                           cwd=ROOT, capture_output=True)
    assert check.returncode == 1


def test_the_chat_transcript_is_what_its_command_prints():
    """README's conversation was made by the command shown above it (checkpoints are not
    committed, so the words cannot be checked): its piped turns appear as the transcript's
    `> ` lines, in order; a request is answered by a numbered list of titles with their
    semantic IDs, "why" by a sentence; the seed and the decoding settings are stated; and the
    command is one the CLI accepts."""
    import shlex

    from benchmark.cli import build_parser

    match = re.search(r"<!-- chat-transcript -->(.*?)<!-- /chat-transcript -->", README, re.S)
    assert match, "README lost its chat transcript"
    section = match.group(1)
    command = re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)
    feed, run = command.split(" | ")
    turns = shlex.split(feed)[2:]  # printf '%s\n' <turn> ...
    assert turns[-1] == "quit" and len(turns) >= 4, "a request, why, a follow-up, quit"
    argv = shlex.split(run)[3:]  # python -m benchmark chat ...
    args = build_parser().parse_args(argv)
    assert args.command == "chat" and args.method == "sid_llm"
    transcript = re.search(r"```text\n(.*?)\n```", section, re.S).group(1).splitlines()
    said = [line[2:] for line in transcript if line.startswith("> ")]
    assert said == turns
    for turn in turns[:-1]:
        answer = transcript[transcript.index(f"> {turn}") + 1]
        if turn.lower().startswith("why"):
            assert answer and not answer.startswith(("Here is", "> "))
        elif not turn.lower().startswith("tell me about"):
            assert answer == "Here is what I would pick:"
            first = transcript[transcript.index(f"> {turn}") + 2]
            assert re.match(r"1\. .+  <\|sid_start\|>(<\|sid_\d+_\d+\|>)+<\|sid_end\|>$", first)
    prose = section.split("```")[0]
    assert f"seed {args.seed}" in prose and "beam" in prose and "greedy" in prose
