"""Known answers of the communication model."""
import pytest

from stilts_ds.studies.comm_model import comm_bytes_per_rank, predict_step, prediction_table


def test_all_reduce_moves_about_twice_the_parameter_bytes():
    # 1e9 bf16 parameters = 2 GB; ring all-reduce over 4 ranks: 2 * 3/4 * 2 GB = 3 GB per rank.
    assert comm_bytes_per_rank(1e9, 2, 4, stage=2) == pytest.approx(3e9)
    assert comm_bytes_per_rank(1e9, 2, 4, stage=0) == comm_bytes_per_rank(1e9, 2, 4, stage=1)
    assert comm_bytes_per_rank(1e9, 2, 4, stage=3) == pytest.approx(4.5e9)  # ZeRO-3: 3x
    assert comm_bytes_per_rank(1e9, 2, 1, stage=3) == 0  # alone, nothing moves


def test_step_bounds_and_efficiency():
    p = predict_step(params=1e9, bytes_per_param=2, world_size=4, stage=2, link_gb_per_s=10, compute_s=0.5)
    assert p.comm_s == pytest.approx(0.3)
    assert p.step_s_no_overlap == pytest.approx(0.8) and p.step_s_full_overlap == pytest.approx(0.5)
    assert p.efficiency_range == pytest.approx((0.625, 1.0))
    slow = predict_step(params=1e9, bytes_per_param=2, world_size=4, stage=3, link_gb_per_s=1, compute_s=0.5)
    assert slow.efficiency_range[1] < 0.2  # the network bounds it


def test_bad_input_and_table():
    with pytest.raises(ValueError, match="stage"):
        comm_bytes_per_rank(1e9, 2, 4, stage=4)
    with pytest.raises(ValueError, match="link_gb_per_s"):
        predict_step(params=1, bytes_per_param=2, world_size=2, stage=2, link_gb_per_s=0, compute_s=1)
    table = prediction_table(params=560e6, bytes_per_param=2, world_sizes=[1, 8], stages=[2, 3], link_gb_per_s=25,
                             compute_s=0.4)
    assert table.count("\n") == 5 and "| ZeRO-3 | 8 |" in table
