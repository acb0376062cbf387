"""Train a small CLIP on the toy caption dataset, on a CPU, every step written out.

    python -m miniclip.train                        # defaults: the toy dataset, the "toy" model
    python -m miniclip.train --steps 200 --out runs/quick
    python -m miniclip.train --resume runs/toy/checkpoint.safetensors
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
    checkpoint.safetensors  latest training checkpoint (weights, optimizer, step, RNG, tokenizer)
    model.safetensors       the final weights, tokenizer and preprocessing (``miniclip.load``)
    metrics.jsonl           one JSON line per logged step (loss, lr, temperature, images/s, ...)
    metrics.json            the final evaluation
    curves.png, confusion.png, similarity.png

The code follows that order: ``setup`` (steps 1-3, or a checkpoint's state on --resume),
``run_steps`` (4-5), ``finish`` (6); ``train`` calls the three.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from miniclip import backend
from miniclip.datasets.folder import data_identity, same_dataset
from miniclip.model.clip import CLIP
from miniclip.model.config import CONFIGS
from miniclip.pretrained.checkpoint import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    CheckpointError,
    load_checkpoint,
)
from miniclip.pretrained.preprocess import ToyPreprocess
from miniclip.text.tokenizer import ModelTokenizer
from miniclip.train import owndata  # your own data: --data CSV or shards
from miniclip.train.args import TrainArgs, check_args, resolve_schedule, select_backend, total_steps
from miniclip.train.data import (
    CurveProbe,
    batch_indices,
    prepare_dataset,
    tokenize_captions,
    train_tokenizer,
)
from miniclip.train.evaluate_own import evaluate_own, format_own_metrics
from miniclip.train.finetune import load_init
from miniclip.train.optim import AdamW, cosine_lr
from miniclip.train.report import open_report
from miniclip.train.run import Run
from miniclip.train.runfolder import (
    StopRequest,
    claim_run_folder,
    default_out_dir,
    read_jsonl,
    write_text_atomic,
)
from miniclip.train.runfolder import format_duration as _duration
from miniclip.train.shapegroups import shape_groups_for
from miniclip.train.step import take_step

# ---- the run ---------------------------------------------------------------------------------

def setup(args: TrainArgs, resume: str | None = None, log=print, world=None,
          regenerate: bool = False) -> Run:
    """Steps 1-3: the run folder, the data, the tokenizer, the model and the optimizer; on
    --resume, all of them as the checkpoint left them. ``world``: see train/distributed.py.

    The run folder stays locked until ``run.lock.release()`` (or a failure here); under
    --distributed the root process alone owns it (the others never write there)."""
    if resume is not None:
        resume = Path(resume) / CHECKPOINT_FILE if Path(resume).is_dir() else resume  # a run folder
        if not Path(resume).is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {resume}")
        folder, fresh = Path(resume).parent, False
    else:
        check_args(args)  # before anything is written (a resumed run checks its saved ones)
        folder, fresh = Path(args.out or default_out_dir(args)), True
    if world is not None and not world.is_root:
        return _setup(args, resume, log, regenerate, folder, world)
    lock, created = claim_run_folder(folder, fresh=fresh, log=log)
    try:
        run = _setup(args, resume, log, regenerate, lock.folder, world)
    except BaseException:
        lock.release_and_tidy(created)
        raise
    run.lock = lock
    return run


def _setup(args, resume, log, regenerate, out_dir, world) -> Run:
    from miniclip.datasets import load_split

    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt.optimizer is None:
            raise CheckpointError(f"{resume} holds weights only (no optimizer state): it cannot "
                                  "be resumed; resume from a run's checkpoint.safetensors")
        try:
            # a run from before these defaults (hard negatives on, drawn swaps) had neither
            args = TrainArgs(**{"hard_negatives": False, "swapped_images": 0.0,
                                **ckpt.train_args})
        except TypeError as e:
            raise CheckpointError(f"{resume}: its training arguments are not understood by this "
                                  f"miniclip ({e})") from e
    check_args(args)
    select_backend(args)  # --backend, --matmul
    args = replace(args, out=str(out_dir))

    init = load_init(args.init) if args.init is not None and ckpt is None else None  # --init
    source = train_split = tokens = None
    if owndata.own_data_kind(args.data) is not None:  # 1-3 for your own data: train/owndata.py
        own = owndata.setup_own_data(args, ckpt, init, log)
        source, tokenizer, cfg, meta = own["source"], own["tokenizer"], own["cfg"], own["meta"]
        preprocess, n_pairs = own["preprocess"], own["n_pairs"]
        # --warmup's default, checked (a stream of unknown length: against --steps)
        args = resolve_schedule(args, total_steps(args, n_pairs) if n_pairs else args.steps)
    else:
        # 1. data
        resolution = (ckpt.config if ckpt else init.cfg if init else CONFIGS[args.model]
                      ).image_resolution
        data_args = (args.data, args.n_train, log, regenerate, args.world, resolution)
        meta = (world.root_first(prepare_dataset, *data_args)
                if world else prepare_dataset(*data_args))
        if meta["resolution"] != resolution:
            model_flag = f"--init {args.init}" if init else f"--model {args.model}"
            raise ValueError(f"--data {args.data} holds {meta['resolution']}x"
                             f"{meta['resolution']} images; {model_flag} takes "
                             f"{resolution}x{resolution}")
        if ckpt is not None and not same_dataset(data_identity(meta, args.data), ckpt.data):
            now = data_identity(meta, args.data)
            differ = sorted(k for k in {*now, *ckpt.data} - {"dir"}
                            if now.get(k) != ckpt.data.get(k))
            raise CheckpointError(f"the dataset in {args.data} is not the one {resume} was "
                                  f"trained on (they differ in: {', '.join(differ)}); put that "
                                  f"dataset back in {args.data} to continue the run")
        train_split = load_split(args.data, "train")
        n_pairs = len(train_split)
        if n_pairs < args.batch_size:
            raise ValueError(f"--batch-size {args.batch_size} is larger than the {n_pairs} "
                             f"training pairs in {args.data}")
        args = resolve_schedule(args, total_steps(args, n_pairs))  # --warmup's default, checked

        # 2. tokenizer, 3. model and optimizer
        if ckpt is not None:
            cfg = ckpt.config
            tokenizer = ModelTokenizer(ckpt.tokenizer["merges"], cfg.context_length)
        elif init is not None:
            cfg, tokenizer = replace(init.cfg, loss=args.loss), init.tokenizer
        else:
            base_cfg = CONFIGS[args.model]
            tokenizer = train_tokenizer(train_split.captions, args.vocab_size,
                                        base_cfg.context_length)
            cfg = replace(base_cfg, vocab_size=tokenizer.vocab_size, loss=args.loss)
        tokens = tokenize_captions(tokenizer, train_split.captions)
        preprocess = ToyPreprocess(cfg.image_resolution, meta["mean"], meta["std"])
    model = CLIP(cfg, seed=args.seed, dtype=np.float32, temperature=args.temperature)
    if init is not None:
        model.load_state_dict(init.params)
    optimizer = AdamW(model.params, lr=args.lr, weight_decay=args.weight_decay)
    run = Run(args=args, out_dir=out_dir, meta=meta, train_split=train_split, tokens=tokens,
              tokenizer=tokenizer, cfg=cfg, model=model, optimizer=optimizer,
              preprocess=preprocess, aug_rng=np.random.default_rng([args.seed, 1]),
              total_steps=total_steps(args, n_pairs),
              probe=(CurveProbe(args.data, args.eval_images)
                     if args.eval_every and source is None else None),
              log_path=out_dir / "metrics.jsonl", records=[], source=source,
              report=open_report(args.report_to, out_dir), world=world)
    if not run.is_root:
        run.probe = None  # the root alone evaluates
    from miniclip.train.hardneg import hard_negatives_for  # extra false captions per batch

    run.negatives = hard_negatives_for(args, world, train_split, tokens, tokenizer, log,
                                       toy_world=meta.get("world", "classic"))
    run.shape_groups = shape_groups_for(args, train_split, log)  # --shape-groups
    if ckpt is not None:
        model.load_state_dict(ckpt.params)
        optimizer.params = model.params  # load_state_dict made new arrays
        optimizer.load_state_dict(ckpt.optimizer)
        run.aug_rng.bit_generator.state = ckpt.rng_state
        run.step = run.start_step = ckpt.step
        run.seconds_before = float(ckpt.extra.get("train_seconds", 0.0))
    if args.precision != "fp32":  # masters stay float32; the model becomes their 16-bit copies
        from miniclip.train.precision import attach_precision

        attach_precision(run, ckpt)
    if backend.get_backend() == "cuda":  # weights and Adam's moments move to the GPU, for good
        model.params = backend.to_device(model.params)
        optimizer.params = model.params
        optimizer.m, optimizer.v = backend.to_device(optimizer.m), backend.to_device(optimizer.v)

    # drop what came after the checkpoint, and a last line torn by a kill (with a warning)
    if ckpt is not None and run.is_root:
        run.records = [r for r in read_jsonl(run.log_path, torn_ok=True)
                       if r.get("step", 0) <= run.step]
        write_text_atomic(run.log_path, "".join(json.dumps(r) + "\n" for r in run.records))

    n_params = sum(p.size for p in model.params.values())
    log(f"miniclip.train: model {args.model!r} ({n_params:,} parameters, {args.loss} loss), "
        f"backend {backend.get_backend()!r}")
    pairs = "streamed" if n_pairs is None else f"{n_pairs:,}"
    log(f"  data {args.data}: {pairs} training pairs; tokenizer: {tokenizer.vocab_size} "
        f"tokens, context {cfg.context_length}" + (f"; from {args.init}" if init else ""))
    epochs = "" if n_pairs is None else f" (~{run.total_steps * args.batch_size / n_pairs:.1f} epochs)"
    log(f"  {run.total_steps} steps of {args.batch_size} pairs"
        + (f" in {args.accum} micro-batches" if args.accum > 1 else "")
        + f"{epochs}, lr {args.lr:g}, warmup "
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
                extra = None  # (K, T) hard negatives: texts without an image
                if run.source is not None:  # own data: decoded and cropped here (owndata.py)
                    images, tokens = owndata.next_batch(run)
                else:
                    idx = batch_indices(run.step, len(run.train_split), args.batch_size,
                                        args.seed, run.shape_groups)
                    images, tokens = run.train_split.images[idx], run.tokens[idx]
                    if run.negatives is not None:  # --hard-negatives (train/hardneg.py)
                        images, tokens, extra = run.negatives.batch_with_twins(idx, images)
                lr = cosine_lr(run.step, run.total_steps, args.lr, args.warmup, args.min_lr)
                loss, grad_norm = take_step(model, run.optimizer, run.preprocess, images, tokens,
                                            lr, args, run.aug_rng, run.checkpoint_path, run.step,
                                            world=run.world, toy_augment=run.source is None,
                                            precision=run.precision, extra_tokens=extra)
                run.step += 1
                step = run.step
                dt = time.perf_counter() - t0
                recent = (recent + [(dt, len(tokens))])[-20:]
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
                    if run.precision is not None:
                        record.update(run.precision.log_fields())
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
                if record is not None and run.is_root:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    run.records.append(record)
                    if run.report is not None:
                        run.report(record)
                seconds = run.seconds_before + time.perf_counter() - loop_start
                if step % args.checkpoint_every == 0 or step == run.total_steps:
                    run.save(run.checkpoint_path, seconds)
                if after_step is not None:
                    after_step(step)
                if (run.world.any(stop.requested) if run.world else stop.requested) \
                        and step < run.total_steps:
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
               "precision": args.precision,
               "out_dir": str(out_dir)}
    if final_eval and run.source is not None:  # own data: --val-data, --zeroshot-classes
        t0 = time.perf_counter()
        metrics = evaluate_own(run.model, run.preprocess, run.tokenizer, args)
        summary = {**metrics, **summary, "eval_seconds": round(time.perf_counter() - t0, 1),
                   "skipped_images": run.source.skips.count}
        log(format_own_metrics(metrics))
        final_eval = False  # the toy world's summary line below does not apply
    if final_eval:
        from miniclip.train.evaluate import evaluate, format_metrics, save_pictures

        t0 = time.perf_counter()
        metrics, details = evaluate(run.model, run.preprocess, run.tokenizer, args.data)
        summary = {**metrics, **summary, "eval_seconds": round(time.perf_counter() - t0, 1)}
        written += save_pictures(details, out_dir)
        log(format_metrics(metrics))
    write_text_atomic(out_dir / "metrics.json", json.dumps(summary, indent=1) + "\n")
    if run.report is not None:
        run.report({**summary, "step": run.step}, prefix="final/")
        run.report.close()
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
          final_eval: bool = True, after_step=None, log=print, world=None,
          regenerate: bool = False) -> dict:
    """Run (or resume) training; return a summary dict (also the end of metrics.json).

    Raises TrainingDiverged on a NaN/inf loss, RunFolderBusy if another process owns the run
    folder. ``regenerate``: replace an incomplete or outdated dataset instead of stopping."""
    wall_start = time.perf_counter()
    run = setup(args, resume, log, world, regenerate)
    try:
        stopped_by_user, train_seconds = run_steps(run, progress and run.is_root, after_step,
                                                   log)
        if stopped_by_user:
            run.save(run.checkpoint_path, train_seconds)
            log(f"stopped at step {run.step} of {run.total_steps}; checkpoint saved to "
                f"{run.checkpoint_path}\ncontinue with: python -m miniclip.train --resume "
                f"{run.checkpoint_path}")
            return {"steps": run.step, "stopped": True, "train_seconds": train_seconds,
                    "out_dir": str(run.out_dir)}
        if not run.is_root:  # the root writes the model and evaluates
            return {"steps": run.step, "train_seconds": train_seconds,
                    "out_dir": str(run.out_dir)}
        return finish(run, train_seconds, final_eval, wall_start, log)
    finally:
        if run.lock is not None:
            run.lock.release()
