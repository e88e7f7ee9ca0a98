"""Hydra's side of the configuration: the dataclasses as the schema, and `compose()` for code that needs a config.

The defaults live in one place, the dataclasses of `seq2seq.config`. `register_configs()` stores `Config`
with Hydra's ConfigStore as `seq2seq_config`, the first entry of `conf/config.yaml`'s defaults list, so
the YAML files under `conf/` hold only what differs from the defaults, and Hydra checks every key and type
against the dataclasses. The library never imports this module: entry points, scripts and tests do.

    config = compose("gru", ["train.max_steps=10"])   # as `python -m seq2seq.train +experiment=gru train.max_steps=10`
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, ValidationError

from seq2seq.config import Config, ConfigError, config_keys, unknown_key_message

# conf/ at the top of the checkout; an absolute path works from any working directory
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
SCHEMA_NAME = "seq2seq_config"


def register_configs() -> None:
    """Store the `Config` dataclass as `seq2seq_config`, the schema and defaults `conf/config.yaml` starts from."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


def config_from_hydra(cfg: DictConfig) -> Config:
    """A composed Hydra config -> validated dataclasses (`ConfigError` names a bad key)."""
    return Config.from_dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


def compose(experiment: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """The config `python -m seq2seq.train [+experiment=EXPERIMENT] OVERRIDES...` would train with."""
    check_override_keys(overrides)
    register_configs()
    extra = [f"+experiment={experiment}"] if experiment else []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[*extra, *overrides])
    return config_from_hydra(cfg)


def check_override_keys(overrides: Sequence[str]) -> None:
    """Refuse a `key=value` override whose key no dataclass has, naming the closest key.

    Hydra would refuse it too, in several lines that end in advice (`+key=value`) that only leads to
    the same refusal; this says it in one line. Config groups (`data=local`, `+experiment=gru`: no dot)
    and `hydra.*` keys are left to Hydra.
    """
    check_config_groups(overrides)
    keys = config_keys()
    schema = None  # the dataclasses as an OmegaConf node, built once when a value needs checking
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or key.startswith(("hydra.", "hydra/")) or "." not in key:
            continue
        if key.lstrip("/") not in keys:
            raise ConfigError(unknown_key_message(key))
        if "," in value or value.strip().startswith(SWEEP_SYNTAX):
            continue  # sweeps (`1,2`), Hydra's functions and interpolations are left to Hydra
        schema = schema if schema is not None else OmegaConf.structured(Config)
        _check_type(schema, key, value)


def check_config_groups(overrides: Sequence[str]) -> None:
    """Refuse a config group choice that conf/ does not hold (`+experiment=gruu`, `data=multi30`) in one line
    naming the closest one and those there are (Hydra's own refusal is several lines and exits 1)."""
    groups = {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        group = key.lstrip("/")
        if not sep or group not in groups or not value or value.strip().startswith(SWEEP_SYNTAX):
            continue
        known = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        typed = override.partition("=")[0]  # as the user wrote it: `+experiment`
        for choice in (c.strip() for c in value.split(",")):  # a sweep over choices: `+experiment=gru,lstm`
            if choice not in known:
                close = difflib.get_close_matches(choice, known, n=1)
                hint = f"did you mean {typed}={close[0]}? " if close else ""
                raise ConfigError(f"no {group} named {choice!r} in conf/{group}/; {hint}known: {', '.join(known)}")


SWEEP_SYNTAX = ("range(", "choice(", "interval(", "glob(", "tag(", "sort(", "shuffle(", "${", "[", "{")


def _check_type(schema: DictConfig, key: str, value: str) -> None:
    """A value the key's dataclass field cannot hold (`train.lr=fast`) is refused in one line."""
    try:
        OmegaConf.update(schema, key, yaml.safe_load(value) if value.strip() else value, merge=True)
    except yaml.YAMLError:
        return
    except ValidationError as exc:
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"{key}={value}: {reason}") from None
