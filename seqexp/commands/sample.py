"""``seqexp-sample``: novel text from a trained language model, by MLflow run id or checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from seqexp.checks import ConfigError
from seqexp.commands.rerun import TRUST_HELP, recorded_config
from seqexp.config.build import build_model, build_task
from seqexp.models.language import LanguageModel
from seqexp.tracking.checkpoints import LAST, checkpoint_dir
from seqexp.tracking.records import CORPUS_FILE, CORPUS_TAG, check_corpus, check_record, migrated
from seqexp.tracking.runs import CONFIG_ARTIFACT, TAG_RUN_DIR, check_reachable, store_client, tracking_uri


def from_checkpoint(path: Path) -> tuple[DictConfig, Path, str | None]:
    """A checkpoint in a run dir (``<run dir>/checkpoints/x.ckpt``), that run's ``config.yaml`` and
    the digest of its corpus, if it recorded one."""
    run_dir = path.resolve().parents[1]
    config = run_dir / CONFIG_ARTIFACT
    if not config.is_file():
        raise ConfigError(f"no {CONFIG_ARTIFACT} beside checkpoint {path} (looked for {config})")
    digest = run_dir / CORPUS_FILE
    return migrated(OmegaConf.load(config)), path, digest.read_text().strip() if digest.is_file() else None


def from_run(client: MlflowClient, run_id: str) -> tuple[DictConfig, Path, str | None]:
    """Run ``run_id``'s recorded config, its best checkpoint (lowest ``val/loss``) and the digest of
    its corpus, if it recorded one."""
    cfg = recorded_config(client, run_id)
    tags = client.get_run(run_id).data.tags
    run_dir = Path(tags[TAG_RUN_DIR])
    best = sorted(p for p in checkpoint_dir(run_dir).glob("*.ckpt") if p.name != LAST)
    if not best:
        raise ConfigError(f"run {run_id} has no best checkpoint in {checkpoint_dir(run_dir)}")
    return cfg, best[-1], tags.get(CORPUS_TAG)


def load_model(
    cfg: DictConfig, checkpoint: Path, corpus_digest: str | None = None, trust: bool = False
) -> LanguageModel:
    """The model the recorded config describes, with the checkpoint's weights (``weights_only``)."""
    check_record(cfg, trust)
    check_corpus(cfg, corpus_digest, trust)
    model = build_model(cfg, build_task(cfg))
    if not isinstance(model, LanguageModel):
        raise ConfigError(f"task={cfg.task.name} is not a language model (sampling needs task=lm)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="seqexp-sample", description="Sample novel text from a language model.")
    p.add_argument("source", help="an MLflow run id, or a checkpoint file (.ckpt) in a run dir")
    p.add_argument("--outputs", type=Path, default=Path("outputs"), help="seqexp's outputs dir")
    p.add_argument("--count", type=int, help="how many samples (default: the run's sampling.count)")
    p.add_argument("--max-length", type=int, help="tokens per sample unless <EOS> comes first")
    p.add_argument("--temperature", type=float, help="> 0; below 1 sharper, above 1 flatter")
    p.add_argument(
        "--reject-unk", action=argparse.BooleanOptionalAction, help="redraw whenever <UNK> comes out"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    args = p.parse_args(argv)
    try:
        if args.source.endswith(".ckpt"):
            cfg, checkpoint, digest = from_checkpoint(Path(args.source))
        else:
            uri = tracking_uri(args.outputs)
            check_reachable(uri)
            cfg, checkpoint, digest = from_run(store_client(uri), args.source)
        model = load_model(cfg, checkpoint, digest, args.trust)
        options = dict(cfg.sampling) | {
            key: value
            for key, value in (
                ("count", args.count),
                ("max_length", args.max_length),
                ("temperature", args.temperature),
                ("reject_unk", args.reject_unk),
            )
            if value is not None
        }
        texts = model.sample(generator=torch.Generator().manual_seed(args.seed), **options)
    except (ConfigError, ValueError, MlflowException) as error:
        raise SystemExit(f"seqexp-sample: {error}") from None
    for text in texts:
        print(text)
