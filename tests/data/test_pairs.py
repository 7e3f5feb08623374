"""Stage-1 frame pairs: the cross-clip source (FramePairs(cross_clip=p)) and what stays as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from floatalk.data.layout import clip_dir, person_of, read_frame
from floatalk.data.pairs import FramePairs, _to_tensor
from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # 19 train clips over the world's 15 train portraits: four of them have two clips
    root = tmp_path_factory.mktemp("pairs") / "data"
    cfg = SyntheticConfig(size=16, num_clips=20, seed=5, clip_seconds=(0.4, 0.5), test_fraction=0.05)
    write_synthetic_dataset(root, cfg)
    return root


def test_cross_clip_sources_come_from_another_clip_of_the_same_person(data):
    plain = FramePairs(data, 16, samples_per_epoch=200, seed=1)
    cross = FramePairs(data, 16, samples_per_epoch=200, seed=1, cross_clip=1.0)
    people = [person_of(m) for m in cross.clips]
    shared = {p for p in people if people.count(p) > 1}
    assert shared, "the fixture must give some person two clips"
    moved = 0
    for i in range(200):
        k, j, src, drv = cross.pick(i)
        k0, j0, src0, drv0 = plain.pick(i)
        assert (k0, j0) == (k, k) and drv == drv0  # the driving frame is the same item's either way
        if people[k] in shared:
            assert j != k and people[j] == people[k]  # never another person's face
            assert 0 <= src < cross.clips[j].num_frames
            moved += 1
        else:
            assert (j, src) == (k, src0)  # nobody else to take from: the own clip, as before
    assert moved > 20
    # the item's source really is the donor clip's frame
    i = next(i for i in range(200) if cross.pick(i)[1] != cross.pick(i)[0])
    _, j, src, _ = cross.pick(i)
    donor = cross.clips[j]
    expected = _to_tensor(read_frame(clip_dir(data, donor.clip_id), src, donor.frame_format), 16)
    np.testing.assert_array_equal(cross[i]["source"].numpy(), expected.numpy())


def test_half_cross_clip_mixes_and_a_bad_share_is_refused(data):
    half = FramePairs(data, 16, samples_per_epoch=400, seed=2, cross_clip=0.5)
    people = [person_of(m) for m in half.clips]
    picks = [half.pick(i) for i in range(400) if people.count(people[i % len(people)]) > 1]
    share = np.mean([j != k for k, j, _, _ in picks])
    assert 0.3 < share < 0.7, share
    with pytest.raises(ValueError, match="cross_clip"):
        FramePairs(data, 16, cross_clip=1.5)
