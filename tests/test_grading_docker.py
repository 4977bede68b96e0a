"""The container recipe of docs/grading.md: the commands it documents, read and checked here
(CI has no Docker), against docker/grader.Dockerfile."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "grader.Dockerfile"
MARK = "<!-- docker-commands:"


def documented_commands() -> list[list[str]]:
    """The commands of the marked block of docs/grading.md, each split as a shell would."""
    text = (ROOT / "docs" / "grading.md").read_text()
    block = text[text.index(MARK):].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    return [tuple(line.split(None, 1)) for line in lines if line.strip() and
            not line.lstrip().startswith("#")]


def _run_command() -> list[str]:
    return next(c for c in documented_commands() if c[:2] == ["docker", "run"])


def test_the_documented_build_uses_the_dockerfile():
    build = next(c for c in documented_commands() if c[:2] == ["docker", "build"])
    assert build[build.index("-f") + 1] == "docker/grader.Dockerfile" and build[-1] == "."
    assert build[build.index("-t") + 1] == _run_command()[-4]      # the image it then runs


def test_the_documented_run_isolates_the_grader():
    run = _run_command()
    options = " ".join(run)
    for flag in ("--rm", "--network none", "--read-only", "--cap-drop ALL",
                 "--security-opt no-new-privileges", "--memory 8g"):
        assert flag in options, flag
    mounts = [run[i + 1] for i, a in enumerate(run) if a in ("-v", "--volume", "--mount")]
    assert mounts == ["$PWD/submissions:/submissions:ro", "$PWD/grades:/grades"], mounts
    assert "--no-sandbox" not in run and "--privileged" not in run
    assert run[-4:] == ["rlhf-lab-grader", "/submissions", "--out", "/grades"]


def test_the_image_holds_the_package_and_hidden_tests_only():
    steps = dockerfile_instructions()
    copies = [args.split() for op, args in steps if op == "COPY"]
    sources = [c[0] for c in copies]
    assert sources == ["requirements.txt", "rlhf_lab", "tests/hidden"], sources
    for source in sources:
        assert (ROOT / source).exists(), source
    assert all(not c[-1].startswith(("/usr", "/opt")) for c in copies[1:]), \
        "the kit must stay outside the Python installation the sandbox shows"
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "bubblewrap" in runs and "pip install" in runs
    assert not re.search(r"pip install[^&]*\s(\.|-e)\s", runs), "the kit is not pip-installed"
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "PYTHONPATH=/kit" in env
    entry = next(args for op, args in steps if op == "ENTRYPOINT")
    assert entry == '["python", "-m", "rlhf_lab", "grade"]' and "--no-sandbox" not in entry
    text = DOCKERFILE.read_text()
    assert "solutions" not in " ".join(sources) and "notebooks" not in " ".join(sources)
    assert "docker build -t rlhf-lab-grader -f docker/grader.Dockerfile ." in text
