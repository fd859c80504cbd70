"""History pool: fill phase, swap statistics, pool contents, pass-through and resume."""

import io

import pytest
import torch
from pydantic import ValidationError

from ganforge.errors import CheckpointError
from ganforge_cyclegan.pool import HistoryPool, HistoryPoolParams, build_history_pool


def batch(ids: range | list[int]) -> torch.Tensor:
    """Tiny images, each filled with its id so that it can be recognised after the query."""
    return torch.tensor(list(ids), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()


def ids_of(images: torch.Tensor | list[torch.Tensor]) -> list[int]:
    return [int(image.flatten()[0].item()) for image in images]


def full_pool(seed: int = 0, **params: object) -> HistoryPool:
    pool = build_history_pool(HistoryPoolParams(**params), seed=seed)
    for start in range(0, pool.size, 10):
        pool.query(batch(range(start, start + 10)))
    return pool


def test_returns_inputs_until_full() -> None:
    pool = build_history_pool(HistoryPoolParams(), seed=0)
    assert pool.size == 50
    for start in range(0, 50, 10):
        images = batch(range(start, start + 10))
        assert torch.equal(pool.query(images), images)
    assert ids_of(pool.images) == list(range(50))


def test_fill_stops_at_size_inside_a_batch() -> None:
    pool = build_history_pool(HistoryPoolParams(size=3, p_swap=1.0), seed=0)
    out = pool.query(batch(range(5)))
    assert ids_of(out)[:3] == [0, 1, 2]
    assert set(ids_of(out)[3:]) <= {0, 1, 2, 3}
    assert len(pool.images) == 3


def test_swap_fraction_and_pool_contents() -> None:
    pool = full_pool(seed=1)
    queries = 2000
    from_pool = []
    for new_id in range(50, 50 + queries):
        before = ids_of(pool.images)
        (returned,) = ids_of(pool.query(batch([new_id])))
        after = ids_of(pool.images)
        if returned == new_id:
            assert after == before
        else:
            from_pool.append(returned)
            slot = before.index(returned)
            assert after[slot] == new_id
            assert after[:slot] + after[slot + 1 :] == before[:slot] + before[slot + 1 :]
        assert len(after) == 50
    # Binomial(2000, 0.5): standard deviation of the fraction ~0.011; allow about 4.5 of them.
    assert abs(len(from_pool) / queries - 0.5) < 0.05
    assert len(set(from_pool)) == len(from_pool)  # an image leaves the pool once
    assert len(set(from_pool) & set(range(50))) > 40  # the chosen slot is spread over the whole pool


@pytest.mark.parametrize(("p_swap", "expected"), [(0.0, 0), (1.0, 20)])
def test_p_swap_extremes(p_swap: float, expected: int) -> None:
    pool = full_pool(p_swap=p_swap)
    new = list(range(100, 120))
    out = ids_of(pool.query(batch(new)))
    assert sum(1 for got, sent in zip(out, new) if got != sent) == expected


def test_size_zero_is_pass_through() -> None:
    pool = build_history_pool(HistoryPoolParams(size=0), seed=0)
    images = batch(range(4))
    assert pool.query(images) is images
    assert pool.images == []


def test_stored_images_are_detached_and_returned_in_the_input_dtype() -> None:
    pool = build_history_pool(HistoryPoolParams(size=2, p_swap=1.0), seed=0)
    fakes = batch([1, 2]).requires_grad_()
    assert pool.query(fakes) is not fakes
    assert not any(image.requires_grad for image in pool.images)
    out = pool.query(batch([3, 4]).double())
    assert out.dtype == torch.float64
    first, second = ids_of(out)
    assert first in (1, 2) and second in {1, 2, 3} - {first}


def test_state_round_trip_through_torch_save() -> None:
    original = full_pool(seed=7)
    for step in range(5):
        original.query(batch(range(1000 + 4 * step, 1004 + 4 * step)))
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = build_history_pool(HistoryPoolParams(), seed=123)
    restored.load_state_dict(state)
    assert ids_of(restored.images) == ids_of(original.images)
    for step in range(20):
        images = batch(range(2000 + 4 * step, 2004 + 4 * step))
        assert torch.equal(restored.query(images), original.query(images))
    assert ids_of(restored.images) == ids_of(original.images)


def test_state_of_a_larger_pool_is_refused() -> None:
    state = full_pool(size=10).state_dict()
    with pytest.raises(CheckpointError):
        build_history_pool(HistoryPoolParams(size=5), seed=0).load_state_dict(state)


def test_params_validation() -> None:
    assert HistoryPoolParams().model_dump() == {"size": 50, "p_swap": 0.5}
    for bad in ({"size": -1}, {"p_swap": 1.5}, {"p_swap": -0.1}, {"pool_size": 50}):
        with pytest.raises(ValidationError):
            HistoryPoolParams(**bad)
