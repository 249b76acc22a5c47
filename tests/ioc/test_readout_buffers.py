"""Recycled block buffers: a base is reused only when nobody refers to it any more."""
from __future__ import annotations

import gc
import time

import numpy as np
import zmq

from xspress3.ioc.readout import SpectrumBuffers

SHAPE = (8, 2, 16)


def _region(block: np.ndarray) -> tuple:
    """A block's memory as an address range (holding the block would keep it busy)."""
    start = block.__array_interface__["data"][0]
    return start, start + block.nbytes


def _overlaps(block: np.ndarray, region: tuple) -> bool:
    start, end = _region(block)
    return start < region[1] and region[0] < end


def test_a_held_block_is_never_handed_out_again():
    pool = SpectrumBuffers()
    first = pool.take(3, SHAPE)
    first[:] = 7
    second = pool.take(3, SHAPE)       # the next frames of the same base
    second[:] = 8
    third = pool.take(5, SHAPE)        # no room left there: another base
    assert first.base is second.base and third.base is not first.base
    assert not np.shares_memory(first, second)
    assert (first == 7).all() and (second == 8).all()
    base_id = id(first.base)           # an id: holding the base itself would keep it busy
    del first, second
    fourth = pool.take(5, SHAPE)
    assert id(fourth.base) == base_id  # recycled once all its blocks are released
    assert fourth.shape == (5, 2, 16) and fourth.flags.c_contiguous


def _take_every_base(pool: SpectrumBuffers) -> list:
    """Whole blocks until every free base is taken (and beyond: plain allocations)."""
    return [pool.take(SHAPE[0], SHAPE) for _ in range(pool.keep)]


def test_views_memoryviews_and_zero_copy_zmq_frames_keep_a_block_busy():
    pool = SpectrumBuffers()
    block = pool.take(4, SHAPE)
    region = _region(block)
    frame = zmq.Frame(block[1:], copy=False)     # what the stream hands to libzmq
    view = memoryview(block)
    del block
    assert not any(_overlaps(b, region) for b in _take_every_base(pool))
    del view
    assert not any(_overlaps(b, region) for b in _take_every_base(pool))   # the zmq frame
    del frame
    gc.collect()
    deadline_tries = 100
    while deadline_tries and not any(_overlaps(b, region) for b in _take_every_base(pool)):
        deadline_tries -= 1                       # libzmq releases on its own thread
        time.sleep(0.01)
    assert deadline_tries > 0


def test_small_blocks_share_a_base_in_order_until_it_is_full():
    pool = SpectrumBuffers(keep=2)
    blocks = [pool.take(2, SHAPE) for _ in range(4)]     # 8 frames: one whole base
    assert len({id(b.base) for b in blocks}) == 1
    for i in range(4):
        blocks[i][:] = i
    assert [_region(b)[0] for b in blocks] == sorted(_region(b)[0] for b in blocks)
    more = [pool.take(2, SHAPE) for _ in range(4)]        # the second base
    assert len({id(b.base) for b in more}) == 1 and more[0].base is not blocks[0].base
    del blocks[:3]                     # one block of the first base is still held
    beyond = pool.take(2, SHAPE)
    assert beyond.base is None         # so neither base is free: a plain allocation
    assert int(blocks[0][0, 0, 0]) == 3
    del blocks
    assert np.shares_memory(pool.take(2, SHAPE), pool._bases[0])


def test_a_new_block_shape_starts_a_new_pool():
    pool = SpectrumBuffers()
    a = pool.take(2, SHAPE)
    base_id = id(a.base)
    b = pool.take(2, (4, 1, 8))
    assert id(b.base) != base_id and b.shape == (2, 1, 8)


def test_the_pool_keeps_a_bounded_number_of_bases():
    pool = SpectrumBuffers(keep=4)
    held = [pool.take(5, SHAPE) for _ in range(10)]      # 5 of 8 frames: one block per base
    assert len({id(h.base) if h.base is not None else id(h) for h in held}) == 10
    assert len(pool._bases) == 4
    beyond = held[4:]
    assert all(h.nbytes == 5 * 2 * 16 * 4 and h.base is None for h in beyond)   # just the block's frames
    del held, beyond
    block = pool.take(5, SHAPE)        # (a loop over the bases would keep one busy while taking)
    assert any(np.shares_memory(block, base) for base in pool._bases)
