"""Baselines for the stream benchmark: the same frames sent over zmq the simple ways.

Why: a figure for our stream means little alone; it is judged against (1) the
seed's way, one pickled dict per frame, and (2) the ceiling of zmq itself here,
64 frames per multipart message with no processing at all. Sender and receiver
are separate processes, as in real use.

    python benchmarks/baseline_zmq.py recv --mode pickle --endpoint tcp://127.0.0.1:5555
    python benchmarks/baseline_zmq.py send --mode pickle --endpoint tcp://127.0.0.1:5555 \
        --pool pool.npz --frames 200000

The receiver prints one JSON line: frames, seconds (first message to last), bytes.
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
import time

import numpy as np
import zmq

BATCH = 64


def load_pool(path: str) -> dict:
    with np.load(path) as data:
        return {name: np.ascontiguousarray(data[name]) for name in data.files}


def send(mode: str, endpoint: str, pool_path: str, frames: int) -> None:
    pool = load_pool(pool_path)
    spectra, scalers = pool["spectra"], pool["scalers"]
    dtfactor, dtpercent = pool["dtfactor"], pool["dtpercent"]
    size = spectra.shape[0]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.bind(endpoint)
    sock.send_json({"type": "start", "frames": frames})   # blocks until the receiver is there
    if mode == "pickle":
        for i in range(frames):
            k = i % size
            sock.send_pyobj({"type": "frame", "frame": i, "spectra": spectra[k], "scalers": scalers[k],
                             "dtfactor": dtfactor[k], "dtpercent": dtpercent[k]})
    else:
        if size % BATCH:
            raise SystemExit(f"pool size {size} is not a multiple of {BATCH}")
        sent = 0
        while sent < frames:
            n = min(BATCH, frames - sent)
            k = sent % size
            sock.send_multipart([struct.pack("<qi", sent, n), spectra[k:k + n]], copy=False)
            sent += n
    if mode == "pickle":
        sock.send_pyobj({"type": "end"})
    else:
        sock.send(b"end")   # one part: the end
    sock.close(linger=-1)
    ctx.term()          # returns once everything is sent; the pool must outlive zero-copy sends


def recv(mode: str, endpoint: str) -> None:
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.connect(endpoint)
    start = sock.recv_json()
    t0 = time.monotonic()
    frames = nbytes = 0
    if mode == "pickle":
        while True:
            msg = sock.recv_pyobj()
            if msg.get("type") == "end":
                break
            frames += 1
            nbytes += msg["spectra"].nbytes
    else:
        while True:
            parts = sock.recv_multipart(copy=False)
            if len(parts) == 1:
                break
            _, n = struct.unpack("<qi", parts[0].bytes)
            frames += n
            nbytes += len(parts[1].buffer)
    t1 = time.monotonic()
    print(json.dumps({"mode": mode, "frames": frames, "expected": start["frames"], "seconds": t1 - t0,
                      "bytes": nbytes, "t_first": t0, "t_last": t1}), flush=True)
    sock.close(0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=("send", "recv"))
    p.add_argument("--mode", choices=("pickle", "batched"), required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--pool", help="npz with spectra, scalers, dtfactor, dtpercent (send)")
    p.add_argument("--frames", type=int, default=100_000, help="frames to send (send)")
    args = p.parse_args(argv)
    if args.role == "send":
        if not args.pool:
            p.error("send needs --pool")
        send(args.mode, args.endpoint, args.pool, args.frames)
    else:
        recv(args.mode, args.endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
