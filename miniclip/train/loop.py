"""Train a small CLIP on the toy caption dataset, on a CPU, every step written out.

    python -m miniclip.train                        # defaults: the toy dataset, the "toy" model
    python -m miniclip.train --steps 200 --out runs/quick
    python -m miniclip.train --resume runs/toy/checkpoint.npz
    python -m miniclip.train --loss siglip          # SigLIP's sigmoid loss instead of softmax

What one run does, in order:

1. makes the dataset (``data/toy``) if it is not there yet (``miniclip.datasets``);
2. trains a byte-level BPE tokenizer on the training captions; it is saved with the model;
3. builds the model from a named config, its vocabulary the tokenizer's;
4. loops: a batch of (image, caption) pairs, augmented in ways that keep the caption true;
   loss and gradients (in ``--accum`` micro-batches if asked, with the same gradient as one big
   batch: ``miniclip.gradcache``); optional gradient clipping; an AdamW step with a cosine
   learning rate after a linear warmup; ``logit_scale`` clamped to [0, ln 100];
5. every ``--eval-every`` steps: zero-shot accuracy on a few hundred images, for the curves;
   every ``--checkpoint-every`` steps and on Ctrl-C: a checkpoint (``miniclip.pretrained.checkpoint``);
6. at the end: the full evaluation (``miniclip.train.evaluate``), metrics.json, the pictures.

Everything random comes from ``--seed``: the model's initial weights, the order of the training
pairs (a permutation drawn from (seed, epoch)), and the augmentation (one generator whose state is
saved in each checkpoint). That is why ``--resume`` ends with the very same weights, bit for bit,
as a run that was never interrupted.

A run folder (``runs/NAME``) holds:
    checkpoint.npz   latest training checkpoint (weights, optimizer, step, RNG, tokenizer, ...)
    model.npz        the final weights, tokenizer and preprocessing (for ``load_trained``)
    metrics.jsonl    one JSON line per logged step (loss, lr, temperature, images/s, accuracy)
    metrics.json     the final evaluation
    curves.png, confusion.png, similarity.png

The code follows that order: ``setup`` (steps 1-3, or a checkpoint's state on --resume),
``run_steps`` (4-5), ``finish`` (6); ``train`` calls the three.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from miniclip import backend
from miniclip.cli import EXIT_INTERRUPTED, run_main
from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS, CLIPConfig
from miniclip.pretrained.checkpoint import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    CheckpointError,
    ModelTokenizer,
    ToyPreprocess,
    load_checkpoint,
    save_checkpoint,
)
from miniclip.train.args import TrainArgs, build_parser, check_args, resolve_schedule, total_steps
from miniclip.train.data import (
    CurveProbe,
    batch_indices,
    data_identity,
    prepare_dataset,
    same_dataset,
    tokenize_captions,
    train_tokenizer,
)
from miniclip.train.optim import AdamW, cosine_lr
from miniclip.train.runfolder import (
    StopRequest,
    claim_run_folder,
    default_out_dir,
    read_jsonl,
    write_text_atomic,
)
from miniclip.train.step import TrainingDiverged, take_step

# ---- the run ---------------------------------------------------------------------------------

@dataclass
class Run:
    """Everything a run holds from one step to the next."""

    args: TrainArgs
    out_dir: Path
    meta: dict  # the dataset's meta.json
    train_split: object  # miniclip.datasets.Split: uint8 images, captions, labels
    tokens: np.ndarray  # (n_pairs, T) int64: the captions, tokenized once
    tokenizer: ModelTokenizer
    cfg: CLIPConfig
    model: CLIP
    optimizer: AdamW
    preprocess: ToyPreprocess
    aug_rng: np.random.Generator
    total_steps: int
    probe: CurveProbe | None
    log_path: Path
    records: list  # metrics.jsonl's lines so far
    step: int = 0
    start_step: int = 0  # the step this process started at (0, or the resumed checkpoint's)
    seconds_before: float = 0.0  # training time of the earlier processes of this run
    lock: object = None  # runfolder.RunFolderLock: this process owns out_dir until release

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    def save(self, path: Path, seconds: float, with_optimizer: bool = True) -> None:
        """A checkpoint (with the optimizer and RNG state) or the final model (without)."""
        state = dict(optimizer=self.optimizer.state_dict(),
                     rng_state=self.aug_rng.bit_generator.state) if with_optimizer else {}
        save_checkpoint(path, self.cfg, self.model.params, step=self.step,
                        tokenizer=self.tokenizer.to_dict(),
                        data=data_identity(self.meta, self.args.data),
                        train_args=asdict(self.args), extra={"train_seconds": seconds}, **state)


def setup(args: TrainArgs, resume: str | None = None, log=print, regenerate: bool = False) -> Run:
    """Steps 1-3: the run folder, the data, the tokenizer, the model and the optimizer; on
    --resume, all of them as the checkpoint left them.

    The run folder stays locked until ``run.lock.release()`` (or a failure here)."""
    if resume is not None:
        resume = Path(resume) / CHECKPOINT_FILE if Path(resume).is_dir() else resume  # a run folder
        if not Path(resume).is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {resume}")
        lock, created = claim_run_folder(Path(resume).parent, fresh=False, log=log)
    else:
        check_args(args)  # before anything is written (a resumed run checks its saved ones)
        lock, created = claim_run_folder(Path(args.out or default_out_dir(args)), fresh=True,
                                         log=log)
    try:
        run = _setup(args, resume, log, regenerate, lock.folder)
    except BaseException:
        lock.release_and_tidy(created)
        raise
    run.lock = lock
    return run


def _setup(args, resume, log, regenerate, out_dir) -> Run:
    from miniclip.datasets import load_split

    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt.optimizer is None:
            raise CheckpointError(f"{resume} holds weights only (no optimizer state): it cannot "
                                  "be resumed; resume from a run's checkpoint.npz")
        try:
            args = TrainArgs(**ckpt.train_args)
        except TypeError as e:
            raise CheckpointError(f"{resume}: its training arguments are not understood by this "
                                  f"miniclip ({e})") from e
    check_args(args)
    if args.backend is not None:
        try:
            backend.use_backend(args.backend)
        except (ImportError, RuntimeError) as e:  # no GPU for "cuda", no Numba for "numba"
            raise ValueError(f"backend {args.backend!r} cannot be used here: {e}") from e
    args = replace(args, out=str(out_dir))

    # 1. data
    meta = prepare_dataset(args.data, args.n_train, log, regenerate=regenerate)
    resolution = (ckpt.config if ckpt else CONFIGS[args.model]).image_resolution
    if meta["resolution"] != resolution:
        raise ValueError(f"--data {args.data} holds {meta['resolution']}x{meta['resolution']} "
                         f"images; --model {args.model} takes {resolution}x{resolution}")
    if ckpt is not None and not same_dataset(data_identity(meta, args.data), ckpt.data):
        now = data_identity(meta, args.data)
        differ = sorted(k for k in {*now, *ckpt.data} - {"dir"} if now.get(k) != ckpt.data.get(k))
        raise CheckpointError(f"the dataset in {args.data} is not the one {resume} was trained "
                              f"on (they differ in: {', '.join(differ)}); put that dataset back in {args.data} to "
                              "continue the run")
    train_split = load_split(args.data, "train")
    n_pairs = len(train_split)
    if n_pairs < args.batch_size:
        raise ValueError(f"--batch-size {args.batch_size} is larger than the {n_pairs} training "
                         f"pairs in {args.data}")
    args = resolve_schedule(args, total_steps(args, n_pairs))  # --warmup's default, checked

    # 2. tokenizer, 3. model and optimizer
    if ckpt is None:
        base_cfg = CONFIGS[args.model]
        tokenizer = train_tokenizer(train_split.captions, args.vocab_size,
                                    base_cfg.context_length)
        cfg = replace(base_cfg, vocab_size=tokenizer.vocab_size, loss=args.loss)
    else:
        cfg = ckpt.config
        tokenizer = ModelTokenizer(ckpt.tokenizer["merges"], cfg.context_length)
    model = CLIP(cfg, seed=args.seed, dtype=np.float32)
    optimizer = AdamW(model.params, lr=args.lr, weight_decay=args.weight_decay)
    run = Run(args=args, out_dir=out_dir, meta=meta, train_split=train_split,
              tokens=tokenize_captions(tokenizer, train_split.captions), tokenizer=tokenizer,
              cfg=cfg, model=model, optimizer=optimizer,
              preprocess=ToyPreprocess(cfg.image_resolution, meta["mean"], meta["std"]),
              aug_rng=np.random.default_rng([args.seed, 1]),
              total_steps=total_steps(args, n_pairs),
              probe=CurveProbe(args.data, args.eval_images) if args.eval_every else None,
              log_path=out_dir / "metrics.jsonl", records=[])
    if ckpt is not None:
        model.load_state_dict(ckpt.params)
        optimizer.params = model.params  # load_state_dict made new arrays
        optimizer.load_state_dict(ckpt.optimizer)
        run.aug_rng.bit_generator.state = ckpt.rng_state
        run.step = run.start_step = ckpt.step
        run.seconds_before = float(ckpt.extra.get("train_seconds", 0.0))
    if backend.get_backend() == "cuda":  # weights and Adam's moments move to the GPU, for good
        model.params = backend.to_device(model.params)
        optimizer.params = model.params
        optimizer.m, optimizer.v = backend.to_device(optimizer.m), backend.to_device(optimizer.v)

    # drop what came after the checkpoint, and a last line torn by a kill (with a warning)
    if ckpt is not None:
        run.records = [r for r in read_jsonl(run.log_path, torn_ok=True)
                       if r.get("step", 0) <= run.step]
        write_text_atomic(run.log_path, "".join(json.dumps(r) + "\n" for r in run.records))

    n_params = sum(p.size for p in model.params.values())
    log(f"miniclip.train: model {args.model!r} ({n_params:,} parameters, {args.loss} loss), "
        f"backend {backend.get_backend()!r}")
    log(f"  data {args.data}: {n_pairs:,} training pairs; tokenizer: {tokenizer.vocab_size} "
        f"tokens, context {cfg.context_length}")
    log(f"  {run.total_steps} steps of {args.batch_size} pairs"
        + (f" in {args.accum} micro-batches" if args.accum > 1 else "")
        + f" (~{run.total_steps * args.batch_size / n_pairs:.1f} epochs), lr {args.lr:g}, warmup "
        f"{args.warmup}; run folder {out_dir}" + (f"; resuming at step {run.step}" if ckpt else ""))
    return run


def run_steps(run: Run, progress: bool = True, after_step=None, log=print) -> tuple[bool, float]:
    """Steps 4-5: optimizer steps until the end or a Ctrl-C, logging, curve points and
    checkpoints on the way. -> (stopped by the user?, training seconds of the whole run).

    ``after_step(step)``, if given, is called after each completed step (tests use it to press
    Ctrl-C at a chosen step)."""
    args, model = run.args, run.model
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=run.total_steps, initial=run.step, unit="step", dynamic_ncols=True)
    loop_start = time.perf_counter()
    recent = []  # (seconds, images) of the last few steps, for images/s
    stopped_by_user = False
    try:
        with StopRequest() as stop, run.log_path.open("a") as log_file:
            while run.step < run.total_steps:
                t0 = time.perf_counter()
                idx = batch_indices(run.step, len(run.train_split), args.batch_size, args.seed)
                lr = cosine_lr(run.step, run.total_steps, args.lr, args.warmup, args.min_lr)
                loss, grad_norm = take_step(model, run.optimizer, run.preprocess,
                                            run.train_split.images[idx], run.tokens[idx], lr,
                                            args, run.aug_rng, run.checkpoint_path, run.step)
                run.step += 1
                step = run.step
                dt = time.perf_counter() - t0
                recent = (recent + [(dt, len(idx))])[-20:]
                ips = sum(n for _, n in recent) / sum(t for t, _ in recent)
                temperature = float(np.exp(-model.params["logit_scale"]))
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", T=f"{temperature:.4f}",
                                    img_s=f"{ips:.0f}", refresh=False)
                    bar.update(1)
                record = None
                if step % args.log_every == 0 or step == run.total_steps:
                    record = {"step": step, "loss": loss, "lr": lr, "temperature": temperature,
                              "grad_norm": grad_norm, "images_per_second": ips,
                              "seconds": run.seconds_before + time.perf_counter() - loop_start}
                    if "logit_bias" in model.params:
                        record["logit_bias"] = float(model.params["logit_bias"])
                if run.probe is not None and (step % args.eval_every == 0
                                              or step == run.total_steps):
                    record = {**(record or {"step": step}),
                              **run.probe(model, run.preprocess, run.tokenizer)}
                    line = (f"step {step}: loss {loss:.3f}, zero-shot top-1 seen "
                            f"{record.get('zeroshot_top1_seen', 0):.1%}, held-out "
                            f"{record.get('zeroshot_top1_heldout', 0):.1%}, {ips:.0f} images/s")
                    if bar is not None:
                        bar.write(line)  # above the bar, which stays at the bottom
                    else:
                        log(line)
                if record is not None:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    run.records.append(record)
                seconds = run.seconds_before + time.perf_counter() - loop_start
                if step % args.checkpoint_every == 0 or step == run.total_steps:
                    run.save(run.checkpoint_path, seconds)
                if after_step is not None:
                    after_step(step)
                if stop.requested and step < run.total_steps:
                    stopped_by_user = True
                    break
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread
        if bar is not None:
            bar.close()
        log(f"interrupted at step {run.step}: not saved; the last checkpoint is "
            f"{run.checkpoint_path}")
        raise
    finally:
        if bar is not None:
            bar.close()
    return stopped_by_user, run.seconds_before + time.perf_counter() - loop_start


def finish(run: Run, train_seconds: float, final_eval: bool = True, wall_start: float | None = None,
           log=print) -> dict:
    """Step 6: the final weights, the evaluation, metrics.json and the pictures -> the summary."""
    from miniclip.train.plots import plot_training_curves

    out_dir, args = run.out_dir, run.args
    run.save(out_dir / MODEL_FILE, train_seconds, with_optimizer=False)
    written = [out_dir / MODEL_FILE, run.checkpoint_path, run.log_path]
    plot_training_curves(run.records).savefig(out_dir / "curves.png", dpi=110)
    written.append(out_dir / "curves.png")
    images_per_second = (run.step - run.start_step) * args.batch_size / max(
        1e-9, train_seconds - run.seconds_before)
    summary = {"steps": run.step, "train_seconds": round(train_seconds, 1),
               "images_per_second": round(images_per_second, 1),
               "final_loss": run.records[-1].get("loss") if run.records else None,
               "model": args.model, "loss": args.loss, "backend": backend.get_backend(),
               "out_dir": str(out_dir)}
    if final_eval:
        from miniclip.train.evaluate import evaluate, format_metrics, save_pictures

        t0 = time.perf_counter()
        metrics, details = evaluate(run.model, run.preprocess, run.tokenizer, args.data)
        summary = {**metrics, **summary, "eval_seconds": round(time.perf_counter() - t0, 1)}
        written += save_pictures(details, out_dir)
        log(format_metrics(metrics))
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    written.append(out_dir / "metrics.json")
    log("wrote " + ", ".join(str(p) for p in written))
    line = f"done: {run.step} steps in {_duration(train_seconds)} ({images_per_second:.0f} images/s"
    if wall_start is not None:
        line += f", total {_duration(time.perf_counter() - wall_start)}"
    line += ")"
    if final_eval:
        line += (f"; zero-shot top-1 seen {summary['zeroshot_top1_seen']:.1%}, held-out "
                 f"{summary['zeroshot_top1_heldout']:.1%}; retrieval R@1 image->text "
                 f"{summary['retrieval_i2t_r1']:.1%}, text->image {summary['retrieval_t2i_r1']:.1%}")
    log(line)
    return summary


def train(args: TrainArgs, resume: str | None = None, progress: bool = True,
          final_eval: bool = True, after_step=None, log=print, regenerate: bool = False) -> dict:
    """Run (or resume) training; return a summary dict (also the end of metrics.json).

    Raises TrainingDiverged on a NaN/inf loss, RunFolderBusy if another process owns the run
    folder. ``regenerate``: replace an incomplete or outdated dataset instead of stopping."""
    wall_start = time.perf_counter()
    run = setup(args, resume, log, regenerate)
    try:
        stopped_by_user, train_seconds = run_steps(run, progress, after_step, log)
        if stopped_by_user:
            run.save(run.checkpoint_path, train_seconds)
            log(f"stopped at step {run.step} of {run.total_steps}; checkpoint saved to "
                f"{run.checkpoint_path}\ncontinue with: python -m miniclip.train --resume "
                f"{run.checkpoint_path}")
            return {"steps": run.step, "stopped": True, "train_seconds": train_seconds,
                    "out_dir": str(run.out_dir)}
        return finish(run, train_seconds, final_eval, wall_start, log)
    finally:
        run.lock.release()


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


# ---- command line ----------------------------------------------------------------------------

def main(argv=None) -> int:
    """The command line; expected failures are one line and exit code 2 (``miniclip.cli``), a
    run stopped by Ctrl-C (checkpoint saved) exits with 130, a diverged one with 1."""
    return run_main(_main, argv)


def _main(argv=None) -> int:
    ap = build_parser()
    ns = ap.parse_args(argv)
    given = {f.name: getattr(ns, f.name) for f in fields(TrainArgs)
             if getattr(ns, f.name) is not None}
    if ns.resume and given:
        ap.error(f"--resume continues a run with the settings saved in its checkpoint; drop "
                 f"{', '.join('--' + k.replace('_', '-') for k in given)}")
    try:
        summary = train(TrainArgs(**given), resume=ns.resume, progress=not ns.no_progress,
                        regenerate=ns.regenerate)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: train() has said what was kept
        return EXIT_INTERRUPTED
    return EXIT_INTERRUPTED if summary.get("stopped") else 0
