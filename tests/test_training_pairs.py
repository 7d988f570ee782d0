"""Avatar training pairs: one person twice, stored as consecutive synth records."""

import numpy as np
import pytest

from backend.body.model import BodyModel
from backend.conventions import PERSON_PARAMS
from backend.mocap.poses import RangePoses
from training.data.pairs import SOURCE_FACING, PairGenerator, ShardPairs
from training.data.shards import ShardError
from training.data.synth import facing_yaw


@pytest.fixture(scope="module")
def generator(open_asset):
    return PairGenerator(open_asset, RangePoses(BodyModel(open_asset).double()), 5, "train")


def test_a_pair_is_one_person_in_two_frames(generator, open_asset):
    source, target = generator.pair(0)
    assert (source.index, target.index) == (0, 1)
    for name in PERSON_PARAMS:
        if name in source.sample.params:
            np.testing.assert_array_equal(source.sample.params[name], target.sample.params[name])
    assert not np.array_equal(source.sample.params["body_pose"],
                              target.sample.params["body_pose"])
    assert not np.allclose(source.cam_t, target.cam_t)
    assert abs(facing_yaw(source.sample.params["global_orient"])) <= SOURCE_FACING + 1e-6
    for record in (source, target):  # both show the person
        assert record.sample.mask.mean() > 0.1


def test_pairs_are_deterministic_and_cached(generator, open_asset):
    again = PairGenerator(open_asset, RangePoses(BodyModel(open_asset).double()), 5, "train")
    for index in (3, 2):  # the target first: each record alone is the same
        np.testing.assert_array_equal(again(index).sample.image, generator(index).sample.image)
    assert generator._last[0] == 1 and generator(3) is generator._last[1][1]


def test_synth_pairs_command_and_reader(server_home, monkeypatch, tmp_path, capsys):
    from training.cli import main

    monkeypatch.setenv("PEAR_HOME", str(server_home))
    pairs, singles = tmp_path / "pairs", tmp_path / "singles"
    assert main(["synth", "--pairs", "--count", "2", "--out", str(pairs), "--seed", "1"]) == 0
    assert "4 records (2 per pair)" in capsys.readouterr().out
    read = ShardPairs(pairs)
    assert len(read) == 2
    source, target = read[1]
    assert (source.index, target.index) == (2, 3)
    np.testing.assert_array_equal(source.sample.params["betas"], target.sample.params["betas"])
    assert main(["synth", "--count", "1", "--out", str(singles)]) == 0
    with pytest.raises(ShardError, match="not pairs: make avatar training data"):
        ShardPairs(singles)
