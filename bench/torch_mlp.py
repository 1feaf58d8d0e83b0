#!/usr/bin/env python3
"""PyTorch eager peer of ballast-train's MLP, for the GPU benchmark
(bench/bench_gpu.sh) and for a quick look on the CPU.

The same work as `ballast-train --layers H --batch B --steps S`:

  * data: Fashion-MNIST-shaped, 784 features scaled to [0, 1], 10 classes.
    The IDX files train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]
    are read from --data (ballast's data directory layout); when they are not
    there, random data of the same shape (60000 x 784, labels 0..9) is made
    instead. The output says which (data=idx:DIR or data=synthetic).
  * model: 784 -> H1 -> ReLU -> ... -> Hk -> ReLU -> 10, nn.Linear's default
    init; loss: cross-entropy, reduction mean (ballast divides its summed
    gradients by B: the same).
  * optimiser: SGD, lr 0.05 and momentum 0.9 (ballast-train's defaults).
  * batches: as ballast's sampler cuts them: every epoch a seeded permutation
    of the training set, cut into floor(N / B) batches of B; a step gathers
    its B rows. (The permutation is torch's, not ballast's generator: the same
    access pattern, not the same samples.)
  * where the data lives: by default the whole training set is on the device
    and a step gathers its rows there (what an eager PyTorch user does). With
    --host-batches the set stays in host memory and every step gathers its
    rows on the host and copies them to the device, as ballast does (host
    gather, then cudaMemcpyAsync from pageable memory). --both times the two
    modes one after the other in the same process and prints a line for each.

Timing: --warmup steps (default 20) are run and excluded, then --steps steps
are timed with time.perf_counter(), with torch.cuda.synchronize() before the
clock starts and before it stops. With --repeats R the timed part is run R
times (training simply continues) and the median is printed, with the min and
max beside it.

Output, one line per mode (the figure is the median samples/s):
  peer: torch-eager device=cuda layers=1024,1024,1024 batch=256 batches=device
        samples_per_s=... min=... max=... repeats=3 steps=... loss=... data=...
(on one line). Exit status 0, 1 when something failed, 2 on bad usage.

Examples:
  python3 bench/torch_mlp.py --device cuda --layers 1024,1024,1024 --batch 256 --steps 500 --both
  /usr/bin/python3 bench/torch_mlp.py --device cpu --steps 5 --warmup 2 --threads 1
"""
import argparse
import gzip
import os
import statistics
import struct
import sys
import time

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
FEATURES, CLASSES = 784, 10
SYNTHETIC_COUNT = 60000  # Fashion-MNIST's training set size


def parse_args():
    p = argparse.ArgumentParser(
        description="PyTorch eager peer of ballast-train's MLP (samples/s)")
    p.add_argument("--layers", default="1024,1024,1024",
                   help="hidden widths, comma-separated (ballast-train --layers)")
    p.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per repeat (default 200)")
    p.add_argument("--warmup", type=int, default=20,
                   help="untimed steps before the first repeat (default 20)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed repeats; the median is printed (default 1)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--host-batches", action="store_true",
                      help="keep the data on the host; copy each batch to the device (as ballast)")
    mode.add_argument("--both", action="store_true",
                      help="time the device-resident mode, then --host-batches; a line each")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="momentum (default 0.9)")
    p.add_argument("--seed", type=int, default=1, help="init and shuffle seed (default 1)")
    p.add_argument("--data", default=DEFAULT_DATA,
                   help=f"directory with the IDX files (default {DEFAULT_DATA})")
    p.add_argument("--synthetic", action="store_true",
                   help="random data of the same shape even when the IDX files exist")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0: torch's choice)")
    a = p.parse_args()
    try:
        a.hidden = [int(w) for w in a.layers.split(",")]
    except ValueError:
        p.error(f"--layers: '{a.layers}' is not a comma-separated list of widths")
    if not a.hidden or min(a.hidden) < 1:
        p.error(f"--layers: '{a.layers}': every width must be a positive integer")
    for name in ("batch", "steps", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    if a.warmup < 0:
        p.error("--warmup must be at least 0")
    if a.device == "cpu" and (a.host_batches or a.both):
        # On the CPU both modes are the same thing: the data is on the host.
        a.host_batches = a.both = False
    return a


def read_idx(path):
    """An IDX file (gzip or not) as (magic, dims, raw bytes)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise ValueError(f"{path}: not an unsigned-byte IDX file of 1 or 3 dimensions")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    count = 1
    for d in dims:
        count *= d
    if len(body) != count:
        raise ValueError(f"{path}: {len(body)} bytes of data, the header says {count}")
    return dims, body


def find_idx(directory, name):
    """directory/name.gz or directory/name, as ballast-train looks for them; None if neither."""
    for candidate in (os.path.join(directory, name + ".gz"), os.path.join(directory, name)):
        if os.path.exists(candidate):
            return candidate
    return None


def load_data(a, torch):
    """(X float32 [N, 784] in [0, 1], Y int64 [N], description), on the host."""
    images = None if a.synthetic else find_idx(a.data, "train-images-idx3-ubyte")
    labels = None if a.synthetic else find_idx(a.data, "train-labels-idx1-ubyte")
    if images is not None and labels is not None:
        (n, rows, cols), pixels = read_idx(images)
        (m,), label_bytes = read_idx(labels)
        if rows * cols != FEATURES or m != n:
            raise ValueError(f"{images}, {labels}: {n} images of {rows}x{cols} and {m} labels; "
                             f"expected {FEATURES} features and one label per image")
        x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(n, FEATURES)
        y = torch.frombuffer(bytearray(label_bytes), dtype=torch.uint8).to(torch.int64)
        return x.to(torch.float32).div_(255.0), y, f"idx:{a.data}"
    g = torch.Generator().manual_seed(a.seed)
    x = torch.rand(SYNTHETIC_COUNT, FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (SYNTHETIC_COUNT,), generator=g)
    return x, y, "synthetic"


def build_model(a, nn):
    sizes = [FEATURES] + a.hidden
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], CLASSES))


class Sampler:
    """Batches as ballast's sampler cuts them: per epoch a permutation seeded by
    (seed, epoch), cut into floor(N / B) contiguous batches of B indices."""

    def __init__(self, torch, count, batch, seed, device):
        self.torch, self.count, self.batch, self.seed = torch, count, batch, seed
        self.device = device
        self.steps_per_epoch = count // batch
        self.epoch, self.order = -1, None

    def indices(self, step):
        epoch, t = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            g = self.torch.Generator().manual_seed(self.seed * 1000003 + epoch)
            # One permutation an epoch, moved to where the gather happens.
            self.order = self.torch.randperm(self.count, generator=g).to(self.device)
            self.epoch = epoch
        return self.order[t * self.batch:(t + 1) * self.batch]


def time_mode(a, torch, nn, x_host, y_host, host_batches):
    """Trains a fresh model in one mode; returns (samples/s per repeat, last loss)."""
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    model = build_model(a, nn).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    lossf = nn.CrossEntropyLoss(reduction="mean")
    if host_batches or dev.type == "cpu":
        x, y, gather_on = x_host, y_host, torch.device("cpu")
    else:
        x, y, gather_on = x_host.to(dev), y_host.to(dev), dev
    sampler = Sampler(torch, x.shape[0], a.batch, a.seed, gather_on)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step(s):
        ix = sampler.indices(s)
        xb, yb = x.index_select(0, ix), y.index_select(0, ix)
        if host_batches:
            # Pageable host memory to the device, as ballast stages a batch.
            xb, yb = xb.to(dev), yb.to(dev)
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    s = 0
    for _ in range(a.warmup):
        step(s)
        s += 1
    rates, loss = [], None
    for _ in range(a.repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = step(s)
            s += 1
        sync()
        rates.append(a.steps * a.batch / (time.perf_counter() - t0))
    return rates, loss.item()


def main():
    a = parse_args()
    try:
        import torch
        import torch.nn as nn
    except ImportError as e:
        print(f"torch_mlp.py: cannot import torch ({e}); install it (Debian: python3-torch)",
              file=sys.stderr)
        return 1
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("torch_mlp.py: --device cuda, but torch sees no CUDA device "
              f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})",
              file=sys.stderr)
        return 1
    try:
        x, y, described = load_data(a, torch)
    except (OSError, ValueError) as e:
        print(f"torch_mlp.py: {e}", file=sys.stderr)
        return 1
    if x.shape[0] < a.batch:
        print(f"torch_mlp.py: --batch {a.batch} is larger than the {x.shape[0]} samples",
              file=sys.stderr)
        return 1
    if a.device == "cuda":
        # ballast's GEMMs are plain FP32 cublasSgemm: say whether torch's are too.
        where = (f"{torch.cuda.get_device_name(0)}, "
                 f"tf32 matmul {torch.backends.cuda.matmul.allow_tf32}")
    else:
        where = f"{torch.get_num_threads()} threads"
    print(f"# torch {torch.__version__} on {a.device} ({where}); data {described}, "
          f"{x.shape[0]} samples; warm-up {a.warmup} steps, then {a.repeats} x {a.steps} timed",
          file=sys.stderr, flush=True)
    modes = [False, True] if a.both else [a.host_batches]
    for host in modes:
        rates, loss = time_mode(a, torch, nn, x, y, host)
        if a.device == "cpu":
            batches = "host"
        else:
            batches = "host" if host else "device"
        print(f"peer: torch-eager device={a.device} layers={a.layers} batch={a.batch} "
              f"batches={batches} samples_per_s={statistics.median(rates):.1f} "
              f"min={min(rates):.1f} max={max(rates):.1f} repeats={a.repeats} steps={a.steps} "
              f"loss={loss:.4f} data={described}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
