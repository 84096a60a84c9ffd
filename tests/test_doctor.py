from __future__ import annotations

import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from lfwbench.cli import main  # noqa: E402
from lfwbench.config import TrainConfig  # noqa: E402
from lfwbench.doctor import MEASURED_SHARE, estimate, images_per_epoch, measured_share  # noqa: E402
from lfwbench.model import build_twin  # noqa: E402
from lfwbench.presets import get_preset  # noqa: E402


@pytest.mark.parametrize("name", ["koch", "cpu", "quick", "cpu-plus", "cpu-colour3"])
def test_forward_arithmetic_matches_tensorflows_count(name: str) -> None:
    preset = get_preset(name)
    shape = TrainConfig(preset=name).resolved().image_spec.shape
    twin = build_twin(preset, shape)
    graph = tf.function(lambda x: twin(x)).get_concrete_function(tf.TensorSpec((1, *shape), tf.float32)).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    counted = tf.compat.v1.profiler.profile(graph, options=options)
    assert preset.forward_gflop(shape) == pytest.approx(counted.total_float_ops / 1e9, rel=0.01)


def test_epoch_arithmetic_and_expected_minutes() -> None:
    assert images_per_epoch(TrainConfig(preset="cpu").resolved()) == 125 * 128  # 8,000 pairs as person batches
    assert images_per_epoch(TrainConfig(preset="quick").resolved()) == 2 * 8000
    assert images_per_epoch(TrainConfig(preset="koch").resolved()) == 2 * 55 * 32  # 1,760 listed pairs, batch 32
    row = estimate("cpu", "float32", rate=100.0)
    assert row.gflop_per_epoch == pytest.approx(4945, rel=0.01)
    assert row.minutes == pytest.approx(30 * row.gflop_per_epoch / (100 * MEASURED_SHARE["float32"]["cpu"]) / 60)
    assert estimate("cpu", "mixed_float16", rate=100.0).minutes is None  # not measured on a GPU: no guess


def test_doctor_command_names_the_machine_and_the_minutes() -> None:
    result = CliRunner().invoke(main, ["-q", "doctor", "--seconds", "0.1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("CPU: ") and "vector instructions" in lines[0]
    assert any(line.startswith("matmul: ") and "GFLOP/s float32" in line for line in lines)
    names = {"koch", "quick", "cpu", "cpu-plus", "cpu-colour3", "cpu-colour3-vf10"}
    rows = {line.split()[0]: line.split() for line in lines[-len(names) :]}
    assert len({len(line) for line in lines[-len(names) - 1 :]}) == 1  # one column width for every preset's name
    assert set(rows) == names
    policy = lines[[line.startswith("training computes in") for line in lines].index(True)].split()[3]
    for name, row in rows.items():  # minutes where the share was measured, else said to be unknown
        assert float(row[-1]) > 0 if measured_share(name, policy) else row[-1] == "unknown"


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_presets_that_train_a_measured_step_share_its_share(policy: str) -> None:
    shares = MEASURED_SHARE[policy]
    for name in ("cpu-plus", "cpu-colour3", "cpu-colour3-vf10"):  # cpu's twin and batches: more seeds, colour, split
        assert measured_share(name, policy) == shares["cpu"]
    assert measured_share("quick", policy) == shares["quick"] != shares["cpu"]  # same twin, pair batches
    assert measured_share("tiny", policy) is None  # a twin never timed
    assert measured_share("cpu", "mixed_float16") is None
