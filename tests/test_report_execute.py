"""Notebook execution is bounded: a stuck kernel or a lost reply fails fast with a message that
names the notebook and what timed out, a stall is retried once, bad parameters are refused
before a kernel starts, and the kernel talks over IPC sockets in a private directory (so no other
process can take or answer on its sockets, and ipykernel's unencrypted-TCP warning is moot)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec
from report_fixtures import default_conditions, isolate_jupyter, write_study

from specviz.report.execute import ExecutionLimits, NotebookTimeoutError, run_notebook
from specviz.report.kernel import (
    CURRENT_INTERPRETER,
    UNENCRYPTED_TCP_WARNING,
    CurrentInterpreterKernelManager,
    KernelChoice,
    choose_kernel,
)
from specviz.report.parameters import ParameterError, check_parameters, declared_parameters

PARAMETERS = 'pause = 0.0  # seconds\nlabel = "x"\nrepeat = 1\nquiet = False\nkeep = []\n'


def notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    params = nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    return nb


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_jupyter(monkeypatch, tmp_path / "home")
    return tmp_path


def run(nb: nbformat.NotebookNode, workdir: Path, limits: ExecutionLimits, **kw) -> object:
    return run_notebook(
        nb,
        workdir / "out.ipynb",
        name="probe",
        parameters=kw.pop("parameters", {}),
        kernel=kw.pop("kernel", choose_kernel()),
        cwd=workdir,
        limits=limits,
        **kw,
    )


def leftovers(workdir: Path) -> list[str]:
    return sorted(p.name for p in workdir.iterdir() if p.suffix == ".ipynb")


# a cell that makes the kernel drop its own execute replies: the kernel goes idle and the
# client never hears back, which is what a lost message looks like from outside
DROP_REPLIES = """
kernel = get_ipython().kernel
send = kernel.session.send
def drop_replies(stream, msg_or_type, *args, **kwargs):
    if msg_or_type == "execute_reply":  # built, never sent
        return kernel.session.msg(msg_or_type, content=args[0], parent=args[1])
    return send(stream, msg_or_type, *args, **kwargs)
kernel.session.send = drop_replies
"""


def test_a_lost_reply_fails_at_the_notebook_bound_naming_notebook_and_cell(home: Path) -> None:
    limits = ExecutionLimits(cell_s=600, start_s=60, total_s=15, attempts=1)
    start = time.monotonic()
    with pytest.raises(NotebookTimeoutError) as err:
        run(notebook(DROP_REPLIES, "print('never reached')"), home, limits)
    assert time.monotonic() - start < limits.total_s + 20  # not the 600 s cell bound
    message = str(err.value)
    assert "notebook 'probe' did not finish within 15 s (the notebook bound)" in message
    assert "waiting for the reply to cell 1 ('kernel = get_ipython().kernel')" in message
    assert "the kernel was killed" in message and "tried 1 time," in message
    assert leftovers(home) == []  # no executed notebook, not even a partial one


def test_a_cell_past_the_cell_bound_fails_naming_it_and_is_not_retried(home: Path) -> None:
    retries: list[Exception] = []
    limits = ExecutionLimits(cell_s=3, start_s=60, total_s=120)
    start = time.monotonic()
    with pytest.raises(NotebookTimeoutError, match=r"cell 2 \('time.sleep\(60\)'\) ran past 3 s"):
        run(notebook("import time", "time.sleep(60)"), home, limits, on_retry=retries.append)
    assert time.monotonic() - start < 60
    assert retries == []
    assert leftovers(home) == []


class SilentKernelManager(CurrentInterpreterKernelManager):
    """Starts a process that never opens a socket: a kernel that never answers."""

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-c", "import time; time.sleep(600)", "{connection_file}"],
            display_name="silent",
            language="python",
            resource_dir="",
        )


def test_a_kernel_that_never_answers_fails_at_the_start_bound_after_one_retry(
    home: Path,
) -> None:
    retries: list[Exception] = []
    silent = KernelChoice("silent", SilentKernelManager)
    limits = ExecutionLimits(cell_s=60, start_s=4, total_s=60)
    start = time.monotonic()
    with pytest.raises(NotebookTimeoutError) as err:
        run(notebook("1 + 1"), home, limits, kernel=silent, on_retry=retries.append)
    assert time.monotonic() - start < 40
    assert "notebook 'probe': the kernel did not start within 4 s" in str(err.value)
    assert "tried 2 times" in str(err.value)
    assert len(retries) == 1


class DyingKernelManager(CurrentInterpreterKernelManager):
    """Starts a process that exits at once, as a kernel does when its port was taken."""

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-c", "raise SystemExit(1)", "{connection_file}"],
            display_name="dying",
            language="python",
            resource_dir="",
        )


def test_a_kernel_that_dies_while_starting_is_retried_then_named(home: Path) -> None:
    retries: list[Exception] = []
    dying = KernelChoice("dying", DyingKernelManager)
    start = time.monotonic()
    with pytest.raises(NotebookTimeoutError, match=r"'probe': the kernel died while starting"):
        run(notebook("1 + 1"), home, ExecutionLimits(), kernel=dying, on_retry=retries.append)
    assert time.monotonic() - start < 30  # not the 60 s start bound
    assert len(retries) == 1


def test_a_stall_is_retried_once_with_a_fresh_kernel_and_writes_one_notebook(
    home: Path,
) -> None:
    # the first kernel stalls (it leaves a marker, then sleeps past the bound); the second,
    # a fresh process, finds the marker and finishes
    stall_once = (
        "import os, time\n"
        "if not os.path.exists('stalled'):\n"
        "    open('stalled', 'w').close()\n"
        "    time.sleep(600)\n"
        "print(os.getpid())"
    )
    retries: list[Exception] = []
    limits = ExecutionLimits(cell_s=600, start_s=60, total_s=12)
    executed = run(notebook(stall_once), home, limits, on_retry=retries.append)
    assert len(retries) == 1 and "did not finish within 12 s" in str(retries[0])
    pid = int(executed.cells[-1].outputs[0]["text"])
    assert pid != os.getpid()
    assert leftovers(home) == ["out.ipynb"]
    written = nbformat.read(home / "out.ipynb", as_version=4)
    assert written.cells[-1].outputs[0]["text"] == executed.cells[-1].outputs[0]["text"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"pause": "abc"}, r"parameter pause must be a number \(like 0.0\), got 'abc'"),
        ({"repeat": 2.5}, r"parameter repeat must be an integer \(like 1\), got 2.5"),
        ({"repeat": True}, r"parameter repeat must be an integer"),
        ({"quiet": 1}, r"parameter quiet must be true or false"),
        ({"keep": ["a", 3]}, r"parameter keep must be a list of strings"),
        ({"label": None}, r"parameter label must be a string"),
        ({"colour": "red"}, r"has no parameter 'colour' \(it takes: pause, label, repeat"),
    ],
)
def test_parameters_of_the_wrong_name_or_type_are_refused(parameters: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        check_parameters(notebook(), parameters, name="probe")


def test_parameters_of_the_right_type_pass_and_ints_are_numbers() -> None:
    check_parameters(
        notebook(),
        {"pause": 2, "label": "y", "repeat": 3, "quiet": True, "keep": ("a",)},
        name="probe",
    )
    assert declared_parameters(notebook()) == {
        "pause": 0.0,
        "label": "x",
        "repeat": 1,
        "quiet": False,
        "keep": [],
    }


def test_n_boot_below_its_minimum_is_refused() -> None:
    nb = notebook()
    nb.cells[0].source = "n_boot = 1000\n"
    with pytest.raises(ParameterError, match=r"n_boot must be at least 100 .* got 99"):
        check_parameters(nb, {"n_boot": 99}, name="probe")


class NoKernelManager(AsyncKernelManager):
    def __init__(self, **kwargs: object) -> None:
        raise AssertionError("a kernel manager was created for bad parameters")


def test_bad_parameters_start_no_kernel_and_write_nothing(home: Path) -> None:
    never = KernelChoice("never", NoKernelManager)
    with pytest.raises(ParameterError, match="parameter pause must be a number"):
        run(notebook(), home, ExecutionLimits(), parameters={"pause": "abc"}, kernel=never)
    assert leftovers(home) == []


def test_each_kernel_listens_in_a_private_socket_directory_removed_at_shutdown(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str, int]] = []
    socket_prefix = CurrentInterpreterKernelManager._ip_default

    def record(manager: CurrentInterpreterKernelManager) -> str:
        prefix = socket_prefix(manager)
        socket_dir = os.path.dirname(prefix)
        seen.append((manager.transport, socket_dir, os.stat(socket_dir).st_mode & 0o777))
        return prefix

    monkeypatch.setattr(CurrentInterpreterKernelManager, "_ip_default", record)
    nb = notebook("print('hello')")
    limits = ExecutionLimits(cell_s=60, start_s=60, total_s=120)
    kernel = KernelChoice(CURRENT_INTERPRETER, CurrentInterpreterKernelManager)
    for _ in range(2):
        executed = run(nb, home, limits, kernel=kernel)
        assert executed.cells[-1].outputs[0]["text"] == "hello\n"
    assert [(transport, mode) for transport, _, mode in seen] == [("ipc", 0o700)] * 2
    first, second = (socket_dir for _, socket_dir, _ in seen)
    assert first != second  # never shared between kernels
    assert not os.path.exists(first) and not os.path.exists(second)  # removed at shutdown


def test_a_kernel_run_prints_no_unencrypted_tcp_warning_which_plain_jupyter_does(
    home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    nb = notebook("print('hello')")
    limits = ExecutionLimits(cell_s=60, start_s=60, total_s=120)
    executed = run(nb, home, limits)
    assert executed.cells[-1].outputs[0]["text"] == "hello\n"
    time.sleep(0.5)  # what the kernel wrote before it exited
    ours = capfd.readouterr().err
    plain = KernelChoice(choose_kernel().name, AsyncKernelManager)  # stderr inherited
    executed = run(nb, home, limits, kernel=plain)
    time.sleep(0.5)
    theirs = capfd.readouterr().err
    assert UNENCRYPTED_TCP_WARNING.decode() in theirs  # the warning this test is about
    assert UNENCRYPTED_TCP_WARNING.decode() not in ours


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("execute") / "study", default_conditions())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n-boot", "99"], "notebook 'report': n_boot must be at least 100"),
        (["--timeout", "0"], "total_s must be at least 1 (got 0)"),
        (["--cell-timeout", "-5"], "cell_s must be at least 1 (got -5)"),
    ],
)
def test_specviz_report_refuses_bad_parameters_with_exit_2_and_writes_nothing(
    tmp_path: Path, study: Path, capsys: pytest.CaptureFixture[str], args: list, message: str
) -> None:
    from specviz.cli import main

    out = tmp_path / "reports" / "r.html"
    assert main(["report", str(study), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.parent.exists()


def test_build_report_refuses_a_non_integer_n_boot_before_a_kernel_starts(
    tmp_path: Path, study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specviz.report import build_report, builder

    monkeypatch.setattr(builder, "choose_kernel", lambda kernel: KernelChoice("x", NoKernelManager))
    out = tmp_path / "reports" / "r.html"
    with pytest.raises(ParameterError, match=r"parameter n_boot must be an integer .* got 'abc'"):
        build_report(study, out, n_boot="abc", progress=False)  # type: ignore[arg-type]
    assert not out.parent.exists()


@pytest.mark.slow
def test_specviz_report_prints_no_unencrypted_tcp_warning(
    home: Path, study: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from specviz.cli import main

    out = home / "r.html"
    assert main(["report", str(study), "--out", str(out), "--quiet", "--n-boot", "100"]) == 0
    time.sleep(0.5)  # what the kernel wrote before it exited
    captured = capfd.readouterr()
    assert out.is_file() and captured.out.strip() == str(out)
    assert UNENCRYPTED_TCP_WARNING.decode() not in captured.err
    assert "WARNING" not in captured.err
