"""Recycled block buffers: a base is reused only when nobody refers to it any more."""
from __future__ import annotations

import gc
import time

import numpy as np
import zmq

from xspress3.ioc.readout import SpectrumBuffers

SHAPE = (8, 2, 16)


def test_a_held_block_is_never_handed_out_again():
    pool = SpectrumBuffers()
    first = pool.take(3, SHAPE)
    first[:] = 7
    second = pool.take(3, SHAPE)
    assert first.base is not second.base
    assert (first == 7).all()
    base_id = id(first.base)           # an id: holding the base itself would keep it busy
    del first
    third = pool.take(5, SHAPE)
    assert id(third.base) == base_id   # recycled once released
    assert third.shape == (5, 2, 16) and third.flags.c_contiguous


def test_views_memoryviews_and_zero_copy_zmq_frames_keep_a_base_busy():
    pool = SpectrumBuffers()
    block = pool.take(4, SHAPE)
    base_id = id(block.base)
    frame = zmq.Frame(block[1:], copy=False)     # what the stream hands to libzmq
    view = memoryview(block)
    del block
    assert all(id(pool.take(1, SHAPE).base) != base_id for _ in range(3))
    del view
    assert id(pool.take(1, SHAPE).base) != base_id  # the zmq frame still holds it
    del frame
    gc.collect()
    deadline_tries = 100
    while deadline_tries and id(pool.take(1, SHAPE).base) != base_id:
        deadline_tries -= 1                       # libzmq releases on its own thread
        time.sleep(0.01)
    assert deadline_tries > 0


def test_a_new_block_shape_starts_a_new_pool():
    pool = SpectrumBuffers()
    a = pool.take(2, SHAPE)
    base_id = id(a.base)
    b = pool.take(2, (4, 1, 8))
    assert id(b.base) != base_id and b.shape == (2, 1, 8)


def test_the_pool_keeps_a_bounded_number_of_bases():
    pool = SpectrumBuffers(keep=4)
    held = [pool.take(1, SHAPE) for _ in range(10)]
    assert len({id(h.base) if h.base is not None else id(h) for h in held}) == 10
    assert len(pool._bases) == 4
    beyond = held[4:]
    assert all(h.nbytes == 1 * 2 * 16 * 4 and h.base is None for h in beyond)   # just the block's frames
    del held
    assert np.shares_memory(pool.take(1, SHAPE), pool._bases[0])
