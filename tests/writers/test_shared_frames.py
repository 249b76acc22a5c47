"""Shared frame memory (writers/shared_frames.py): the pool, the receiver's maps, and
the stream sending spectra by reference over real sockets, with the memory a
receiver still reads never reused by the readout's block pool."""
from __future__ import annotations

import contextlib
import functools
import gc
import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from xspress3.ioc.readout import SpectrumBuffers
from xspress3.writers import stream, wire
from xspress3.writers.shared_frames import (HEADER_BYTES, MAGIC, SharedFramesError, SharedMaps,
                                            SharedPool)

import writers_helpers
from writers_helpers import make_start

LOCAL = "tcp://127.0.0.1:0"
SHAPE = (8, 2, 32)   # frames, channels, bins of a block base


@pytest.fixture
def pool(tmp_path):
    p = SharedPool(str(tmp_path))
    yield p
    p.close()


def shared_block(base: np.ndarray, first: int, n: int) -> wire.FrameBlock:
    """A block whose spectra are frames [0, n) of a pool base, filled with values of `first`."""
    spectra = base[:n]
    spectra[...] = (np.arange(spectra.size, dtype=np.uint32).reshape(spectra.shape) + first * 1000)
    ch = spectra.shape[1]
    return wire.FrameBlock(first_frame=first, spectra=spectra,
                           scalers=np.full((n, ch, wire.NUM_SCALERS), first, np.uint32),
                           dtfactor=np.ones((n, ch)), dtpercent=np.zeros((n, ch)))


wait_for = functools.partial(writers_helpers.wait_for, timeout=10.0)


def test_pool_segments_are_private_files_with_the_token_and_go_at_close(tmp_path):
    pool = SharedPool(str(tmp_path))
    arrays = pool.arrays(3, SHAPE)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and pool.probe in files     # the probe and one segment
    for name in files:
        mode = os.stat(tmp_path / name).st_mode
        assert stat.S_IMODE(mode) == 0o600
        head = (tmp_path / name).read_bytes()[:HEADER_BYTES]
        assert head.startswith(MAGIC + pool.token.encode())
    # each array is its own base and lies in the segment, one after the other
    located = [pool.locate(a) for a in arrays]
    assert [loc[1] for loc in located] == [HEADER_BYTES + i * arrays[0].nbytes for i in range(3)]
    assert len({loc[0] for loc in located}) == 1
    assert pool.locate(arrays[1][2:5]) == (located[1][0], located[1][1] + 2 * arrays[1][0].nbytes)
    assert pool.locate(np.zeros(SHAPE, np.uint32)) is None        # ordinary memory
    assert pool.locate(arrays[0][:, :, ::2]) is None               # not contiguous
    pool.close()
    assert os.listdir(tmp_path) == []
    arrays[0][0, 0, 0] = 7   # the mapping outlives the files


def test_old_segments_leave_the_directory(pool, tmp_path):
    for _ in range(4):
        pool.arrays(2, SHAPE)
    assert len(os.listdir(tmp_path)) == 2   # the probe and the newest segment


def test_receiver_maps_read_the_same_values_and_count_releases_in_order(pool):
    a, b = pool.arrays(2, SHAPE)
    a[...] = 5
    b[...] = np.arange(b.size, dtype=np.uint32).reshape(SHAPE)
    maps = SharedMaps(pool.directory, pool.token)
    maps.check_probe(pool.probe)
    (seg, off_a), (_, off_b) = pool.locate(a), pool.locate(b)
    got_a = maps.array(seg, off_a, 0, "<u4", list(SHAPE))
    got_b = maps.array(seg, off_b, 1, "<u4", list(SHAPE))
    assert np.array_equal(got_a, a) and np.array_equal(got_b, b)
    assert not got_b.flags.writeable
    view_b = got_b[3:5]
    del got_b
    gc.collect()
    assert maps.released == 0          # block 0 still held, block 1 held by a view
    del view_b
    assert maps.released == 0          # block 1 is free, but releases count in order
    del got_a
    assert maps.released == 2
    maps.release(1)              # again, or late: no effect
    assert maps.released == 2


def test_a_lease_that_cannot_be_mapped_is_released_and_a_held_one_holds_the_later(pool):
    a, b = pool.arrays(2, SHAPE)
    seg, off = pool.locate(a)
    maps = SharedMaps(pool.directory, pool.token)
    held = maps.array(seg, off, 0, "<u4", list(SHAPE))
    with pytest.raises(SharedFramesError):
        maps.array(seg, 1 << 40, 1, "<u4", list(SHAPE))      # lease 1 fails: released
    later = maps.array(*pool.locate(b), 2, "<u4", list(SHAPE))
    del later
    assert maps.released == 0           # lease 0 is still read here: nothing counts
    del held
    assert maps.released == 3


@pytest.mark.parametrize("name", ["../etc/passwd", "", ".hidden", "UPPER", "a/b"])
def test_maps_refuse_names_outside_the_directory(pool, name):
    with pytest.raises(SharedFramesError):
        SharedMaps(pool.directory, pool.token).check_probe(name)


def test_maps_refuse_a_segment_with_another_token(pool):
    with pytest.raises(SharedFramesError, match="token differs"):
        SharedMaps(pool.directory, "0" * 32).check_probe(pool.probe)


def test_maps_refuse_an_offset_outside_the_segment(pool):
    a, = pool.arrays(1, SHAPE)
    seg, off = pool.locate(a)
    maps = SharedMaps(pool.directory, pool.token)
    with pytest.raises(SharedFramesError):
        maps.array(seg, off + 4, 0, "<u4", list(SHAPE))
    with pytest.raises(SharedFramesError):
        maps.array(seg, 0, 1, "<u4", [1])


class Collector:
    """Receives on a thread and keeps every message (and so every shared view)."""

    def __init__(self, receiver: stream.StreamReceiver) -> None:
        self.receiver = receiver
        self.messages: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            msg = self.receiver.recv(0.05)
            if msg is not None:
                self.messages.append(msg)

    def blocks(self) -> list:
        return [m for m in self.messages if isinstance(m, wire.FrameBlock)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


@contextlib.contextmanager
def shared_stream(tmp_path, keep: int, shared: bool = True, drop_probe: bool = False):
    """A sender offering shared memory in tmp_path, a receiver (taking it unless told
    not to), the readout's block pool in that memory and a collector; yields once the
    IOC side knows whether the receiver maps the memory."""
    sender = stream.StreamSender(LOCAL, max_queued_frames=64, shared_dir=str(tmp_path))
    sender.start()
    if drop_probe:   # as on another host: the receiver cannot open the probe
        os.unlink(os.path.join(sender.shared_pool.directory, sender.shared_pool.probe))
    receiver = stream.StreamReceiver(sender.endpoint, shared=shared)
    buffers = SpectrumBuffers(keep=keep)
    buffers.allocate = sender.shared_pool.arrays
    collector = Collector(receiver)
    try:
        assert sender.wait_for_receivers(1, 10)
        if shared and not drop_probe:
            assert wait_for(lambda: sender._holder is not None and sender._holder.shared)
        else:
            time.sleep(0.2)   # an answer, if one came, would have arrived
            assert not sender._holder.shared and receiver._maps is None
        yield sender, receiver, buffers, collector
    finally:
        collector.close()
        receiver.close()
        sender.close(linger=0)


def test_spectra_go_by_reference_and_arrive_equal(tmp_path):
    with shared_stream(tmp_path, keep=4) as (sender, receiver, buffers, collector):
        sender.begin_series(make_start("byref", channels=SHAPE[1], bins=SHAPE[2]))
        sent = []
        for i in range(3):
            block = shared_block(buffers.take(4, SHAPE), i * 4, 4)
            sent.append(block.spectra.copy())
            assert sender.offer(block, 10)
        copied = wire.FrameBlock(12, np.full((2,) + SHAPE[1:], 9, np.uint32),
                                 np.zeros((2, SHAPE[1], wire.NUM_SCALERS), np.uint32),
                                 np.ones((2, SHAPE[1])), np.zeros((2, SHAPE[1])))
        assert sender.offer(copied, 10)   # ordinary memory: goes by copy in the same series
        assert wait_for(lambda: sum(b.count for b in collector.blocks()) == 14)
        assert len(sender._holder.leases) == 3       # the three shared blocks, held
        got = collector.blocks()
        for block, expected in zip(got, sent):
            assert np.array_equal(block.spectra, expected)
            assert not block.spectra.flags.writeable
        assert np.array_equal(got[3].spectra, copied.spectra)
        receiver.ack(wire.Ack("byref", 14, 14))
        end = sender.end_series("done", timeout=10)
        assert (end.frames_sent, end.frames_lost) == (14, 0)
        del got, block
        collector.messages.clear()
        assert wait_for(lambda: receiver._maps.released == 3)
    assert os.listdir(tmp_path) == []


def test_memory_a_receiver_still_reads_is_not_reused(tmp_path):
    """The receiver acknowledges every frame released and stored but keeps its views of
    the first blocks: the readout's pool must not hand out that memory again, and
    does once the views are gone."""
    with shared_stream(tmp_path, keep=2) as (sender, receiver, buffers, collector):
        sender.begin_series(make_start("held", channels=SHAPE[1], bins=SHAPE[2]))
        first = shared_block(buffers.take(SHAPE[0], SHAPE), 0, SHAPE[0])     # a whole base
        expected = first.spectra.copy()
        assert sender.offer(first, 10)
        del first
        assert wait_for(lambda: len(collector.blocks()) == 1)
        receiver.ack(wire.Ack("held", SHAPE[0], SHAPE[0]))
        end = sender.end_series("done", timeout=10)
        assert end.frames_sent == SHAPE[0]
        held = collector.blocks()[0]
        # the IOC's blocks come and go; none may be the memory the receiver holds
        for _ in range(6):
            other = buffers.take(SHAPE[0], SHAPE)
            other[...] = 0xDEAD
            del other
        assert np.array_equal(held.spectra, expected)
        assert receiver._maps.released == 0
        collector.messages.clear()
        del held
        gc.collect()   # (the collector's thread drops its last message at its next poll)
        assert wait_for(lambda: receiver._maps.released == 1)
        receiver.ack(wire.Ack("held", SHAPE[0], SHAPE[0]))   # carries shared_released 1
        receiver.send_pending_ack()
        # once released, the pool hands the base out again
        assert wait_for(lambda: not sender._holder.leases)
        taken = [buffers.take(SHAPE[0], SHAPE) for _ in range(2)]
        assert any(sender.shared_pool.locate(t) is not None for t in taken)


@pytest.mark.parametrize("declines", [True, False])
def test_a_receiver_that_declines_or_cannot_map_gets_copies(tmp_path, declines):
    with shared_stream(tmp_path, keep=2, shared=not declines, drop_probe=not declines) as (
            sender, receiver, buffers, collector):
        sender.begin_series(make_start("copies", channels=SHAPE[1], bins=SHAPE[2]))
        block = shared_block(buffers.take(4, SHAPE), 0, 4)
        assert sender.offer(block, 10)
        assert wait_for(lambda: len(collector.blocks()) == 1)
        got = collector.blocks()[0]
        assert np.array_equal(got.spectra, block.spectra)
        assert not sender._holder.leases
        receiver.ack(wire.Ack("copies", 4, 4))
        assert sender.end_series("done", timeout=10).frames_sent == 4


def test_no_offer_when_turned_off():
    sender = stream.StreamSender(LOCAL, shared_dir="")
    sender.start()
    try:
        assert sender.shared_pool is None
    finally:
        sender.close(linger=0)


def test_a_shared_reference_without_maps_is_a_format_error(pool):
    a, = pool.arrays(1, SHAPE)
    block = shared_block(a, 0, 2)
    parts = wire.encode_block(block, "s", shared=(*pool.locate(block.spectra), 0))
    assert bytes(parts[1]) == b""
    assert wire.shared_lease(wire.header(parts)) == 0
    with pytest.raises(wire.WireFormatError, match="did not ask"):
        wire.decode(parts)
    maps = SharedMaps(pool.directory, pool.token)
    got = wire.decode(parts, shared=maps.array)
    assert np.array_equal(got.spectra, block.spectra)


def test_segments_of_dead_iocs_are_removed_and_live_ones_kept(tmp_path):
    """An IOC killed with SIGKILL leaves its files; the next IOC removes them, and never
    the files of an IOC that runs (it holds its probe's lock), nor other files."""
    code = ("import sys, time; from xspress3.writers.shared_frames import SharedPool; "
            f"p = SharedPool({str(tmp_path)!r}); p.arrays(2, (4, 2, 8)); "
            "print('ready', flush=True); time.sleep(60)")
    dead = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert dead.stdout.readline().strip() == "ready"
    dead.kill()
    dead.wait()
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and all(n.startswith(f"xspress3-{dead.pid}-") for n in left)
    live = SharedPool(str(tmp_path))
    live.arrays(2, SHAPE)
    other = tmp_path / "unrelated-file"
    other.write_bytes(b"x")
    mine = sorted(os.listdir(tmp_path))
    pool = SharedPool(str(tmp_path))
    try:
        names = set(os.listdir(tmp_path))
        assert not any(n.startswith(f"xspress3-{dead.pid}-") for n in names)
        assert set(mine) <= names
    finally:
        pool.close()
        live.close()
    assert os.listdir(tmp_path) == ["unrelated-file"]


def test_arrays_are_found_by_their_base_not_by_address(pool):
    """A new segment may take the addresses of one just unmapped: only our live bases,
    and views of them, are located."""
    for _ in range(3):
        a, = pool.arrays(1, SHAPE)
        name, offset = pool.locate(a[2:4])
        assert offset == HEADER_BYTES + 2 * a[0].nbytes
        del a
    copy = np.zeros(SHAPE, np.uint32)
    assert pool.locate(copy) is None
    assert pool.locate(copy[1:]) is None


def test_maps_open_only_regular_files_of_this_user(pool, tmp_path):
    os.mkfifo(tmp_path / "xspress3-1-0123abcd-9")
    os.symlink(tmp_path / pool.probe, tmp_path / "xspress3-1-0123abcd-8")
    maps = SharedMaps(pool.directory, pool.token)
    for name in ("xspress3-1-0123abcd-9", "xspress3-1-0123abcd-8"):
        with pytest.raises(SharedFramesError):   # neither blocks nor follows the link
            maps.check_probe(name)


def test_maps_keep_only_the_newest_segments_mapped(pool):
    maps = SharedMaps(pool.directory, pool.token)
    maps.check_probe(pool.probe)
    for i in range(4):
        a, = pool.arrays(1, SHAPE)
        maps.array(*pool.locate(a), i, "<u4", list(SHAPE))
    assert len(maps._maps) == 3


def test_block_buffers_fall_back_to_ordinary_memory_when_shared_memory_fails(caplog):
    def full(count, shape):
        raise OSError(28, "No space left on device")

    buffers = SpectrumBuffers(keep=2)
    buffers.allocate = full
    block = buffers.take(4, SHAPE)
    assert block.shape == (4,) + SHAPE[1:] and block.dtype == np.uint32
    assert "ordinary memory" in caplog.text and "No space left" in caplog.text


def test_a_block_the_receiver_cannot_map_is_reported_failed_and_copies_follow(tmp_path):
    """A shared block whose segment the receiver cannot map: its frames are acknowledged
    failed with the reason at once (the IOC counts them, no end timeout), its lease is
    released, and the IOC sends copies from then on."""
    with shared_stream(tmp_path, keep=4) as (sender, receiver, buffers, collector):
        sender.begin_series(make_start("bad", channels=SHAPE[1], bins=SHAPE[2]))
        good = shared_block(buffers.take(4, SHAPE), 0, 4)
        assert sender.offer(good, 10)
        assert wait_for(lambda: len(collector.blocks()) == 1)
        receiver._maps.token = "f" * 32          # as if the next segment were another IOC's
        receiver._maps._maps.clear()
        assert sender.offer(shared_block(buffers.take(4, SHAPE), 4, 4), 10)
        assert wait_for(lambda: not sender._holder.shared)
        assert wait_for(lambda: sender.lost_reasons.get("receiver could not store") == 4)
        after = shared_block(buffers.take(4, SHAPE), 8, 4)
        assert sender.offer(after, 10)
        assert wait_for(lambda: len(collector.blocks()) == 2)
        got = collector.blocks()[1]
        assert got.first_frame == 8 and np.array_equal(got.spectra, after.spectra)
        collector.messages.clear()
        del good, got
        gc.collect()
        assert wait_for(lambda: receiver._maps.released == 2)
        for _ in range(3):   # releases re-sent: the failed frames must not count again
            receiver._shared_update()
            receiver.send_pending_ack()
        time.sleep(0.2)
        assert sender.lost_reasons == {"receiver could not store": 4}
        receiver.ack(wire.Ack("bad", 8, 8))      # the caller's counts: the 8 frames it got
        assert wait_for(lambda: not sender._holder.leases)
        end = sender.end_series("done", timeout=10)
        assert (end.frames_sent, end.frames_lost) == (8, 4)
        assert receiver.bad_messages == 0


def test_blocks_a_departed_receiver_may_still_read_stay_reserved_until_it_exits(tmp_path, monkeypatch):
    """The holder's socket goes away while its process may still read the blocks it
    was sent: the IOC keeps them (the pool does not reuse that memory) until the
    process is gone."""
    with shared_stream(tmp_path, keep=2) as (sender, receiver, buffers, collector):
        assert sender._holder.pid == os.getpid()
        sender.begin_series(make_start("orphan", channels=SHAPE[1], bins=SHAPE[2]))
        block = shared_block(buffers.take(SHAPE[0], SHAPE), 0, SHAPE[0])
        expected = block.spectra.copy()
        assert sender.offer(block, 10)
        del block
        assert wait_for(lambda: len(collector.blocks()) == 1)
        held = collector.blocks()[0]
        collector.close()
        receiver.close()                         # its socket goes; this process keeps `held`
        assert wait_for(lambda: sender.receivers == 0)
        for _ in range(4):
            other = buffers.take(SHAPE[0], SHAPE)
            other[...] = 0xDEAD
            del other
        time.sleep(2 * stream.ORPHAN_CHECK_S)    # past a check of the departed receivers
        assert np.array_equal(held.spectra, expected)
        assert len(sender._orphans) == 1
        monkeypatch.setattr(stream, "process_alive", lambda pid: pid != os.getpid())
        assert wait_for(lambda: not sender._orphans)   # the process "ended": released


def test_only_a_receiver_that_acknowledges_itself_takes_the_offer_by_default():
    """A client that keeps frames in memory (auto_ack) would hold the IOC's block pool
    while it keeps them: it gets copies unless it asks for shared memory."""
    for kwargs, expected in (({}, False), ({"auto_ack": False}, True),
                             ({"shared": True}, True), ({"auto_ack": False, "shared": False}, False)):
        receiver = stream.StreamReceiver("tcp://127.0.0.1:1", **kwargs)
        try:
            assert receiver.shared is expected, kwargs
        finally:
            receiver.close()
