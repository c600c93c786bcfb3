"""cosub_seg/datasets/samplers.py: RepeatAugSampler deals the repeats of an index across ranks and shuffles them
per epoch."""


from cosub_seg.datasets import RepeatAugSampler


class _Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_repeat_aug_sampler_deals_repeats_across_ranks(monkeypatch):
    import cosub_seg.datasets.samplers as samplers
    n, world = 10, 2
    per_rank = []
    for rank in range(world):
        monkeypatch.setattr(samplers, 'get_dist_info', lambda rank=rank: (rank, world))
        sampler = RepeatAugSampler(_Sized(n), shuffle=False, num_repeats=3, selected_round=0, seed=0)
        per_rank.append(list(sampler))
    # Repeated list 0,0,0,1,1,1,...; rank r takes every second element; each keeps ceil(10 / 2) = 5 per epoch.
    assert per_rank[0] == [0, 0, 1, 2, 2]
    assert per_rank[1] == [0, 1, 1, 2, 3]
    assert len(per_rank[0]) == len(sampler) == 5


def test_repeat_aug_sampler_shuffles_per_epoch():
    sampler = RepeatAugSampler(_Sized(512), shuffle=True, num_repeats=3, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert len(first) == 512 and first != list(sampler)
    # Every index that appears, appears in runs of its repeats.
    assert first[0] == first[1] == first[2]
