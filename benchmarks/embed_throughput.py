#!/usr/bin/env python
"""Throughput of sgpt_qdrant.Encoder in every precision mode vs sentence-transformers 6.x.

The model is the full SGPT-125M shape with random weights (same cost as the real weights),
written once under the cache directory. Texts are real sentences from STS Benchmark when
``/work/shared/data/stsbenchmark`` (or --sts-dir) is there, generated sentences otherwise.
``--mix sentences`` (default) takes them one per text, as they come (1-71 tokens, mean ~13);
``--mix joined`` joins 1-5 per text, so lengths spread evenly up to the 75-token limit (mean ~38);
``--mix chunks`` joins 8 per text, so nearly every text fills the 75-token limit, as the chunks
``sgpt-ingest`` makes do (its "expect N chunks/s" figure).

Each measurement runs in its own subprocess so that peak memory is its own; all of them share
this run's texts and machine state, so the ratios printed are like for like. sentence-transformers
gets the documented fix (module_input_name/module_output_name = "token_embeddings" on the
per-token Dense layers) and stripped texts, at the same precision; int8 is compared with its fp32.

    python benchmarks/embed_throughput.py                     # CPU: fp32, bf16, int8 vs ST
    python benchmarks/embed_throughput.py --device cuda --n 100000 --modes bf16,fp32
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_STS = Path("/work/shared/data/stsbenchmark")


# -- texts --------------------------------------------------------------------------------------

def sts_sentences(sts_dir: Path) -> list[str]:
    out: list[str] = []
    for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        path = sts_dir / name
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as f:
            for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                out.extend(cell for cell in row[5:7] if cell.strip())
    return list(dict.fromkeys(out))


def generated_sentences(n: int, rng: random.Random) -> list[str]:
    words = ("the a man woman dog cat plays runs quickly over under guitar street market report "
             "government says new study shows people city river music price rises falls after "
             "during year week children school water light green old small large").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 18))).capitalize() + "." for _ in range(n)]


def make_texts(n: int, sts_dir: Path, mix: str = "sentences", seed: int = 0) -> tuple[list[str], str]:
    """``n`` texts: single sentences, or 1-5 sentences joined (token counts ~4 to past 75)."""
    rng = random.Random(seed)
    pool = sts_sentences(sts_dir) if sts_dir.exists() else []
    source = f"STS Benchmark sentences ({sts_dir})"
    if len(pool) < 100:
        pool, source = generated_sentences(5000, rng), "generated sentences"
    if mix == "sentences":
        texts = rng.sample(pool, n) if n <= len(pool) else [rng.choice(pool) for _ in range(n)]
        return texts, source + ", one per text"
    if mix == "chunks":
        return [" ".join(rng.choice(pool) for _ in range(8)) for _ in range(n)], source + ", 8 joined (chunks)"
    return [" ".join(rng.choice(pool) for _ in range(rng.randint(1, 5))) for _ in range(n)], source + ", 1-5 joined"


# -- one measurement (child process) ------------------------------------------------------------

def measure(args: argparse.Namespace) -> dict:
    import torch

    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    device = args.device
    cuda = device.startswith("cuda")
    t0 = time.perf_counter()
    if args.impl == "st":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Dense

        model = SentenceTransformer(str(args.model_dir), device=device)
        seen_pooling = False
        for module in model:
            seen_pooling |= type(module).__name__ == "Pooling"
            if isinstance(module, Dense) and not seen_pooling:
                module.module_input_name = module.module_output_name = "token_embeddings"
        model.to({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.mode])
        stripped = [t.strip() for t in texts]

        def run(batch):
            return model.encode(batch, batch_size=args.st_batch_size, convert_to_numpy=True)

        backend, items = "sentence-transformers", stripped
    else:
        from sgpt_qdrant import Encoder

        enc = Encoder(str(args.model_dir), device=device, dtype=args.mode, backend=args.backend)
        run, backend, items = enc.encode, enc.backend, texts
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(items[: min(32, len(items))])  # first call: kernels, primitive caches, CUDA context
    first = time.perf_counter() - t0
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = float("inf")
    for _ in range(args.repeat):  # best of: other processes on a shared machine only slow a pass down
        t0 = time.perf_counter()
        vectors = np.asarray(run(items), dtype=np.float32)
        seconds = min(seconds, time.perf_counter() - t0)
    np.save(args.out, vectors)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"impl": args.impl, "mode": args.mode, "backend": backend, "n": len(items), "seconds": seconds,
            "per_s": len(items) / seconds, "load_s": load, "first_call_s": first, "peak_mb": peak,
            "peak_kind": "GPU allocated" if cuda else "process RSS",
            "warmup_s": getattr(locals().get("enc"), "warmup_seconds", None)}


# -- driver -------------------------------------------------------------------------------------

def ensure_model(model_dir: Path) -> Path:
    if not (model_dir / "config.json").exists():
        from sgpt_qdrant.testing import SHAPE_125M, write_random_checkpoint

        print(f"writing a random 125M-shape checkpoint to {model_dir} ...", flush=True)
        write_random_checkpoint(model_dir, shape=SHAPE_125M)
    return model_dir


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512, help="texts to embed (default 512)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument("--modes", default=None,
                        help="comma list of mode or mode:backend (default cpu: fp32,bf16,int8; cuda: bf16,fp32)")
    parser.add_argument("--no-st", action="store_true", help="skip sentence-transformers")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes per measurement, best kept (default 2)")
    parser.add_argument("--st-batch-size", type=int, default=None, help="ST encode batch size (cpu 32, cuda 256)")
    parser.add_argument("--model-dir", type=Path, default=None, help="random 125M checkpoint (written if missing)")
    parser.add_argument("--sts-dir", type=Path, default=DEFAULT_STS)
    parser.add_argument("--mix", choices=("sentences", "joined", "chunks"), default="sentences",
                        help="one sentence per text (default), 1-5 joined (longer texts), or 8 joined "
                             "(75-token chunks, as sgpt-ingest makes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--texts", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return

    cuda = args.device.startswith("cuda")
    from sgpt_qdrant.runtime import onednn, ort
    from sgpt_qdrant.user_cache import cache_root

    import torch

    modes = (args.modes or ("bf16,fp32" if cuda else "fp32,bf16,int8")).split(",")
    if not cuda and not onednn.available(torch.bfloat16):
        skipped = [m for m in modes if m.startswith("bf16")]
        modes = [m for m in modes if not m.startswith("bf16")]
        if skipped:
            print("skipping bf16: this CPU has no native bf16")
    if not ort.available() and any(m.startswith("int8") for m in modes):
        print("skipping int8: onnxruntime is not installed (pip install 'sgpt-qdrant[fast]')")
        modes = [m for m in modes if not m.startswith("int8")]
    model_dir = ensure_model(args.model_dir or cache_root() / "bench" / "random-125m")
    texts, source = make_texts(args.n, args.sts_dir, args.mix)
    st_batch = args.st_batch_size or (256 if cuda else 32)

    from sgpt_qdrant.checkpoint import load

    tok = load(str(model_dir)).tokenizer
    lengths = [min(len(x), 75) for x in tok([t.strip() for t in texts], add_special_tokens=False)["input_ids"]]
    print(f"{len(texts)} texts from {source}; tokens per text min {min(lengths)} mean {np.mean(lengths):.1f} "
          f"max {max(lengths)} ({sum(n == 75 for n in lengths)} at the 75-token limit)")
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, torch {torch.__version__}", flush=True)

    runs = []
    st_modes = sorted({m.split(":")[0] for m in modes if not m.startswith("int8")} | {"fp32"}) if not args.no_st else []
    plan = [("st", m, "auto") for m in st_modes] + [("ours", *(m.split(":") + ["auto"])[:2]) for m in modes]
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "texts.json"
        text_file.write_text(json.dumps(texts), encoding="utf-8")
        for impl, mode, backend in plan:
            out = Path(tmp) / f"{impl}-{mode}-{backend}.npy"
            cmd = [sys.executable, __file__, "--_child", "--impl", impl, "--mode", mode, "--backend", backend,
                   "--texts", str(text_file), "--out", str(out), "--device", args.device,
                   "--model-dir", str(model_dir), "--st-batch-size", str(st_batch), "--repeat", str(args.repeat)]
            label = "sentence-transformers" if impl == "st" else "sgpt_qdrant"
            print(f"running {label} {mode} ...", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(f"  failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
                continue
            result = json.loads(lines[-1][7:])
            result["vectors"] = np.load(out)
            runs.append(result)

    st = {r["mode"]: r for r in runs if r["impl"] == "st"}
    ours_fp32 = next((r for r in runs if r["impl"] == "ours" and r["mode"] == "fp32"), None)
    exact = ours_fp32 or st.get("fp32")
    header = (f"{'implementation':<22}{'mode':<6}{'backend':<10}{'sent/s':>9}{'vs ST same':>11}{'vs ST fp32':>11}"
              f"{'warm-up s':>10}{'1st call s':>11}{'peak MB':>9}{'max cos dev':>13}")
    print("\n" + header + "\n" + "-" * len(header))
    rows = []
    for r in runs:
        same = st.get(r["mode"]) if r["impl"] == "ours" else None
        vs_same = r["per_s"] / same["per_s"] if same else None
        vs_fp32 = r["per_s"] / st["fp32"]["per_s"] if "fp32" in st else None
        ref = exact["vectors"] if exact is not None else None
        dev = float(1 - cosines(r["vectors"], ref).min()) if ref is not None else None
        warm = r["warmup_s"] if r["warmup_s"] is not None else r["load_s"]
        name = "sentence-transformers" if r["impl"] == "st" else "sgpt_qdrant.Encoder"
        fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
        print(f"{name:<22}{r['mode']:<6}{r['backend'][:9]:<10}{r['per_s']:>9.1f}{fmt(vs_same, '>10.2f') + 'x' if vs_same else '-':>11}"
              f"{fmt(vs_fp32, '>10.2f') + 'x' if vs_fp32 else '-':>11}{warm:>10.2f}{r['first_call_s']:>11.2f}"
              f"{r['peak_mb']:>9.0f}{fmt(dev, '>13.1e')}")
        rows.append({k: v for k, v in r.items() if k != "vectors"} | {"vs_st_same": vs_same, "vs_st_fp32": vs_fp32,
                                                                       "max_cos_dev_vs_fp32": dev})
    print(f"\nwarm-up s: the encoder's one-time set-up (packing, ONNX export or cache load; ST: load time); "
          f"peak MB: {runs[0]['peak_kind'] if runs else ''}; max cos dev: 1 - min cosine to "
          f"{'our fp32' if ours_fp32 else 'ST fp32'} vectors.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"n": len(texts), "source": source, "mix": args.mix, "repeat": args.repeat, "device": args.device, "mean_tokens": float(np.mean(lengths)),
                "torch": torch.__version__, "st_batch_size": st_batch}
        args.json.write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
