"""Typed configurations of the commands, built once from the parsed arguments.

``main`` turns argparse's namespace into the command's frozen dataclass at the
edge; the commands and everything they call read that, never the namespace.
A test checks that each command's parser and its dataclass name the same
options with the same defaults.
"""

from dataclasses import dataclass, fields


@dataclass(frozen=True, kw_only=True)
class CommandConfig:
    """The switches every command takes."""

    traceback: bool = False
    verbose: bool = False
    quiet: bool = False

    @classmethod
    def from_namespace(cls, namespace):
        """The configuration from an ``argparse.Namespace`` of this command's parser."""
        values = {k: v for k, v in vars(namespace).items() if k not in ("func", "config")}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field for the options {unknown}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def from_config(cls, other, **changes):
        """This kind of configuration from the fields ``other`` shares with it, then ``changes``."""
        names = {f.name for f in fields(cls)}
        shared = {f.name: getattr(other, f.name) for f in fields(other) if f.name in names}
        return cls(**{**shared, **changes})


@dataclass(frozen=True, kw_only=True)
class EmbedConfig(CommandConfig):
    """``embedxfer embed``: documents (or images) in, one vector per row out."""

    input: str
    output: str
    model: str | None = None
    kind: str = "auto"
    pooling: str | None = None
    weighting: str | None = None
    normalize: bool = False
    column: str | None = None
    batch_size: int = 32
    chunk_size: int = 1024
    cache: str | None = None
    device: str | None = None
    more_inputs: tuple | None = None
    scheduler: str | None = None
    id_column: str | None = None
    blocksize: str = "64MB"
    force: bool = False
    allow_pickle: bool = False


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig(CommandConfig):
    """The data and encoding options ``evaluate`` and ``demo`` share."""

    data: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    cv: int = 5
    max_docs: int | None = None
    seed: int = 0
    batch_size: int = 32
    device: str | None = None
    cache: str | None = None
    json: str | None = None
    allow_pickle: bool = False
    plot: str | None = None


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig(EvaluationConfig):
    """``embedxfer evaluate``: models compared on labelled data."""

    models: tuple = ("glove-6B-50d", "all-MiniLM-L6-v2", "tfidf")
    kind: str = "auto"
    task: str = "classify"
    estimators: tuple | None = None
    choose_k: str = "silhouette"
    per_class: tuple | None = None
    few_shot_methods: tuple = ("frozen", "transformer", "contrastive")
    draws: int = 3
    encoder: str = "all-MiniLM-L6-v2"


@dataclass(frozen=True, kw_only=True)
class DemoConfig(EvaluationConfig):
    """``embedxfer demo``: the packaged models on the packaged data."""

    data: str = "sms_spam"
    plot: str | None = "embedxfer-demo.png"
    quick: bool = False
    max_docs_default: int = 2000


@dataclass(frozen=True, kw_only=True)
class ModelsConfig(CommandConfig):
    """``embedxfer models``: the converted vectors, exports and tables on disk."""

    prune: bool = False
